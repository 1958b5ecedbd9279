// Package directory is the Media Distributors' shared directory on etcd
// (issue 14): which MDs are alive and which conferences each hosts members
// of, so that the link manager (internal/cascade) knows whom to connect to.
//
// Each MD writes, on one lease of its own (Config.Lease, kept alive):
//
//	<prefix>md/alive/<md-id>                   Alive (JSON): media and cascade
//	                                            addresses, certificate
//	                                            fingerprint, start time
//	<prefix>md/conf/<escaped conference>/<md-id> Hosting (JSON): profile kind,
//	                                            while it has local members
//
// A killed MD's entries vanish when its lease expires. Presence changes are
// debounced (Config.Debounce) and written in one transaction (chunks of
// etcdclient.TxnOps operations when larger: etcd refuses a transaction
// above its --max-txn-ops), never once per packet or per member. Every MD
// watches md/ and hands its user the whole current view
// (Directory.Updates), its own entries included.
//
// md-ids must be unique, and the directory does not let two live MDs of
// one md-id fight over it. Before registering, an MD reads its md-id's
// alive entry and takes it over (writes its own on a new lease and
// revokes the old lease, with the stale hosting entries on it) only when
// it is an earlier incarnation of itself: the same media and cascade
// addresses and certificate fingerprint, started no later (a restart
// within the lease, registered again at once). An entry on a lease that
// differs in any of these, or does not parse, is another live MD's: the
// MD writes and deletes nothing, reports it (State.IDInUse and InUseBy,
// a rate-limited error log naming the md-id and the other MD's
// addresses) and retries with capped back-off, at once when the watch
// sees that entry deleted; a crashed MD's entry goes with its lease, so
// it never locks the md-id out for longer than the lease. An entry on no
// lease is no MD's (written by hand) and is replaced. The alive entry is
// claimed by a transaction comparing it with what was read, so of two
// MDs registering at the same moment exactly one succeeds. Two live MDs
// that publish identical addresses and certificate cannot be told apart
// but by their start time: the later one takes over once, and the
// earlier one is then refused.
//
// When etcd is unreachable the directory keeps the last view it had (the
// links built on it keep carrying media), retries with capped back-off and
// logs rate-limited; when etcd is back and the lease expired meanwhile, it
// registers again on a new lease and republishes what it hosts.
//
// What it must not do: import the key table or the data plane (it knows
// names and addresses, not keys), trust an entry it read (every key and
// value is bounds-checked and parsed into typed errors, see parse.go), or
// write to anything but its own entries under md/.
package directory
