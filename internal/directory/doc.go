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
