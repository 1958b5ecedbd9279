// Package keytable is the table the Media Distributor's workers read for
// every packet: association (UUID) ⇄ endpoint transport address ⇄ the SSRCs
// the endpoint sends ⇄ its conference, with the association's hop-by-hop
// keys in both directions (Recv: client_write, packets from the endpoint;
// Send: server_write, packets to it) as immutable *srtpfast.Keys.
//
// # What it owns, and what it must not do
//
// It owns the routing state and its publication: Install (a MediaKeys
// arrival: keys, address learned from the DTLS 5-tuple, conference), Remove
// (EndpointDisconnect), SetAddr, SetConference, ExpireIdle, and the SSRC
// claims. It must not hold worker-owned state: replay windows, ROC and the
// srtpfast.Opener live in the worker that owns the flow, keyed by
// Endpoint.Gen. It does not import tunnel (the control plane in cmd/ calls
// it) and starts no goroutines.
//
// Conferences are identified by ConferenceID, a uint32 the caller assigns
// (mapping its own names once on the control plane), so the hot path hashes
// a fixed-size integer, never a string.
//
// # Reading: one snapshot per batch, no lock, no allocation
//
// The whole table is an immutable Snapshot behind an atomic.Pointer. A
// worker owns a Reader (Table.NewReader) and brackets each batch with
// Reader.Begin, which loads the snapshot once, and Reader.End. In between,
// Snapshot.Lookup resolves a packet's source address (an AddrKey: a
// comparable 18-octet struct built on the stack with KeyV4, KeyV6 or KeyOf)
// to the sender's *Endpoint, and Snapshot.Receivers returns the
// conference's member list. Both are a shift-and-mask to a shard plus a
// linear probe in a flat slot array: O(1), no lock, no allocation
// (testing.AllocsPerRun asserts it, for Admit and Claim.Out too). A worker
// uses Snapshot.Resolve, which also tells it when the address is a peer
// Media Distributor's, whose link associations Snapshot.LookupLink finds
// by (address, conference tag): one more probe of the same table, where a
// link's slot is keyed by its address and tag (see "Links" below).
//
// Per packet the worker does: Resolve (drop unknown sources; from a link
// address, LookupLink by the packet's tag) → Own (drop if
// another worker owns the endpoint's receive state) → open with its Opener
// for ep.Gen() → Admit(ep, ssrc, kind, index, max JoinSeq of the
// receivers, now) (drop on false) → Touch → for each receiver r ≠ ep in
// Receivers(ep): seal with r.Send() under index Claim.Out(r) (rewriting
// SEQ, and recording the original in the OHB for the double profiles, when
// it is not the packet's own) and send to r.Addr(); a packet from a link
// goes to no other link.
//
// # Links: the hop to a peer Media Distributor
//
// A conference with members on several MDs has, on each, one link
// association per peer MD (Association.Link, installed by the link
// manager in internal/cascade, with the hop keys of that conference in
// each direction). To this table a link is an association like any
// other: a member of its conference, a receiver the workers seal for with
// its Send key, and a sender whose SSRCs (those of every remote sender
// behind the peer) are claimed under it. What differs:
//
//   - Address: all the links to one peer share the peer's media address.
//     The address slot (no tag) holds a reserved marker while links use
//     the address (no other association may take it, ErrAddrInUse; nor may
//     a link take an address an association uses), and each link has its
//     own slot keyed by (address, Tag); two links with the same address
//     and tag are refused. Table.links counts the links per address.
//   - Life: never idle-expired (ExpireIdle skips links), always consent
//     (SetConsent(false) is ErrInvalid), never moved (SetConference is
//     ErrInvalid: the tag is the conference's); a re-key keeps Link and Tag.
//   - Budget: Config.MaxSSRCsPerLink claims (default 1024, at most
//     MaxSSRCsPerConference) instead of MaxSSRCsPerSender; the worker's
//     Opener for a link tracks as many SSRCs.
//   - Indices towards a link: a link receiver without a lane gets the
//     sender's SEQ unchanged but the ROC counted from the first packet the
//     claim sends it (Claim.Out subtracts that packet's ROC part, the
//     claim's per-link base), because the peer MD opens with a fresh
//     Opener that starts every SSRC at ROC 0, and a link may be set up or
//     re-keyed long after a stream began. Lanes work as for any receiver.
//   - Counters: LinkStats (packets and octets each way, copies and packets
//     dropped), added to by each worker once per batch.
//
// # Writing: sharded copy-on-write, chosen by measurement
//
// Writers serialize on a mutex, build the next snapshot and publish it with
// one atomic store: a reader sees all of a change or none of it, so an
// association's keys, address and membership become visible as one unit,
// never half-installed, and a writer never blocks a reader.
//
// A plain copy-on-write map copies the whole table per change. Measured at
// 100,000 associations (BenchmarkInstall, one install plus one remove per
// op, 2 shared cores): shards=1 (one flat map) costs about 19.6 ms and
// 17.8 MB of garbage per op; at 1,000 installs per second that is more CPU
// than exists. The snapshot is therefore split into Config.Shards shards
// (default: a power of two near MaxAssociations/128, 1024 for 100,000), each
// a small open-addressing table; a change copies the root arrays (one slice
// header per shard) and only the shards it touches, and shares everything
// else with the previous snapshot. At 100,000 associations an install plus
// a remove costs about 68 µs and 128 KB with 1024 shards (90 µs and 90 KB
// with 256 or 512; 190 µs and 400 KB with 4096, where the root copy
// dominates): under 10% of one core at 1,000 installs and removes per
// second. Per-worker shards fed by messages
// were rejected: every worker would need every conference's receiver list
// (any worker may carry any sender), so each change would be applied N
// times, and "visible as one unit to all workers" would need a barrier
// anyway. A reader's Begin+Lookup+Receivers+End at 100,000 associations
// is dominated by cache misses (~430 ns with no writes, ~540 ns while
// installs and removes run at ~850-1,000 per second on the same two cores,
// BenchmarkReaderLatency; ~46 ns when the table is cache-resident).
//
// # Removal and the grace period
//
// A worker may still hold the previous snapshot mid-batch, so publishing a
// removal is not enough to stop sending to the removed endpoint. Each
// Reader publishes, in its own cache line, the epoch of the snapshot it is
// reading (Begin stores it and re-checks the pointer, so a writer cannot
// miss a reader that is just starting; End clears it). Remove, ExpireIdle,
// SetAddr, SetConference and a re-keying Install publish, release the
// writer mutex, then wait (RCU-style) until every Reader is idle or reading
// an epoch at least the published one. When they return nil, no batch that
// could see the old state is running: a removed endpoint receives nothing
// and nothing from it is forwarded. The wait is bounded by the context (or
// Config.GraceTimeout): a stuck worker yields ErrGraceTimeout naming the
// readers, counted in Stats.GraceTimeouts; the change stays published. An
// Install of a new association does not wait.
//
// # One sender stream, one worker
//
// Packets of one sender stream always reach the same worker. With AF_XDP
// the NIC's RSS hashes the 5-tuple of each flow to one receive queue and one
// queue is served by one worker; an endpoint's media is one flow (its
// address and port to the MD's address and port), so all of it lands on one
// worker. In socket-fallback mode each worker has its own socket in a
// SO_REUSEPORT group, and the kernel picks the socket by a hash of the flow,
// with the same effect. That worker alone holds the srtpfast.Opener (ROC
// and replay window per SSRC) for the endpoint's Recv keys, and Reader.Own
// records it per key generation. If the flow moves to another queue (an
// RSS change, or an address change through SetAddr, which keeps the
// generation and so the owner), the new worker drops and counts
// (Stats.Misrouted) and asks the owner for the Opener; the owner stops
// using it, moves ownership to "in transit" to the new worker
// (Reader.HandOver), hands the Opener over, and the new worker takes
// ownership back out of transit (Reader.Accept) once it holds it. In
// transit Own refuses the generation on every reader, so no worker builds
// a fresh Opener for the same keys meanwhile (that would reset the replay
// window); a stopping worker parks its Openers (HandOver to reader 0) for
// any other to Accept. The data plane's handover.go has the protocol and
// its ordering argument. Release is for an owner that holds no Opener.
//
// # Why no (receiver key, SSRC, index) repeats
//
// The MD re-seals a packet for each receiver with that receiver's own Send
// key (never the sender's), and the AES-GCM IV is built from the SSRC and
// the packet index: ROC||SEQ for SRTP, the SRTCP index for SRTCP, each
// under its own session key (RFC 7714, RFC 3711 section 4.3). Under one
// receiver key the IV repeats only if (SSRC, kind, index) repeats. The
// table hands out, per receiver key r (Endpoint.Gen) and SSRC s, the
// indices of a sequence of claims on s: a claim is one sender key
// generation owning s in the conference, from its first packet until that
// sender leaves, re-keys or loses s to a takeover. Then:
//
//  1. Within one claim, r gets each input index at most once: one worker,
//     one Opener per sender key generation, and the Opener accepts each
//     index once (see "One sender stream, one worker"); Claim.Out is
//     injective (in, or in plus a per-receiver constant, or for a link
//     receiver without a lane in minus its base, fixed for the claim once
//     set).
//  2. A claim that ends is closed first: Admit raises the claim's served
//     mark (the largest JoinSeq among the packet's receivers) and then
//     checks the closed bit while raising the claim's highest index;
//     closing sets that bit and then reads both (sequentially consistent
//     atomics, a Dekker pair). So every packet sealed under the claim is
//     seen by the closer, or was refused. The closer records, per receiver
//     key that was a member (or is moving out), one past the highest index
//     the claim may have given it: hist[s][r] exceeds every index r was
//     sent under s. For a link receiver without a lane whose base the
//     closer reads, that is hi - base + 1 (exact: Out sent it in - base
//     for in <= hi); if Out sets the base after the closer read it, the
//     closer records hi + 1, above anything in - base.
//  3. The next claim copies hist[s] as its lanes. A receiver with a lane
//     gets out = lane + RebaseMargin + (in - anchor), where anchor is the
//     claim's first admitted index; Admit drops a packet with in +
//     RebaseMargin <= anchor, so out >= lane: above everything r was ever
//     sent under s. A receiver without a lane gets in: its key was never
//     sent s. Every closing claim that may have reached a receiver records
//     it: it is in the closer's member list (loaded after the close; a
//     member published later got nothing under the closed claim) with a
//     lane or a JoinSeq at most the served mark (a member that joined
//     after the last packet forwarded got nothing), or it is moving out
//     (confState.away).
//  4. A moving receiver takes hist[.][r] (live claims included, read after
//     the grace period of its leaving, when it no longer receives there)
//     to the new conference, where it becomes hist there; if a live claim
//     there already uses one of those SSRCs, the move is refused
//     (ErrSSRCConflict). A re-keyed receiver's new key starts with no
//     history (a new Gen); a removed receiver's key is gone.
//  5. hist[s][r] is forgotten only when r's key leaves the conference
//     (Remove, re-key, move); an SSRC is forgotten when no present
//     receiver was sent it and nobody claims it.
//  6. Consent (SetConsent, RFC 7675) changes only who receives: a member
//     without consent is left out of Snapshot.Receivers, so workers
//     neither send to it nor count its JoinSeq in the served mark, but it
//     stays in the member list closers read (Snapshot.Conference), so a
//     claim that reached it before its consent went records it in hist
//     like any member; the served mark only rises, so one that received
//     under a claim has a JoinSeq at most the mark.
//
// So across leave, rejoin, re-key, move, consent and takeover, each (receiver key,
// SSRC, kind, index) is sealed at most once. TestNonceNeverRepeats and
// FuzzNonceNeverRepeats collect every one the table hands out over random
// such sequences, with senders that start their indices over and link
// associations among the members (links to two peers, as senders and
// receivers, never sent what came from a link), and fail on a repeat.
//
// Links change nothing in this argument. Their keys are per conference
// (derived per conference by the link manager), so a link's Send key is
// a receiver key of one conference only, like an endpoint's; as a
// receiver it is covered by 1-6 (its base is a per-receiver constant of
// the claim); as a sender it is one association, with one Opener per key
// generation on one worker, whose claims are the SSRCs of the remote
// senders: the peer MD sent each (link key, SSRC, kind, index) at most
// once (this same argument on that MD), the Opener accepts it at most
// once here. The SRTCP tag after the packet is not authenticated but only
// picks the keys (a wrong tag picks another conference's, which fail).
//
// Continuity: a receiver with a lane sees the SSRC go on a little above
// its last index (RebaseMargin plus reordering), well inside the 2^15 its
// ROC estimate (RFC 3711 appendix A) follows, so a rejoined sender is
// delivered at once. For the double profiles the OHB keeps the sender's
// SEQ, and the endpoint tracks the inner ROC per end-to-end key,
// independently of the outer one (RFC 8723 section 3; perc learns it from
// the FullEKTField). A receiver without a lane gets the sender's indices
// unchanged, so a late joiner can still take the ROC from the
// FullEKTField.
//
// Admit is race-free across workers: the conference's live claims are an
// immutable map behind an atomic pointer; an SSRC the sender owns costs one
// load, one map read and a few atomics on the claim (written by the
// owner's worker only). A new claim copies the map under a per-conference
// mutex that also serializes with the writer (once per claim, never per
// packet). Claim.Out is one map read per receiver, only for a re-based
// claim.
//
// # SSRC budget, collisions and takeovers
//
// A sender holds at most Config.MaxSSRCsPerSender live claims (default 16;
// its Opener tracks at most 64 SSRCs anyway): its packets under one more
// SSRC are dropped and counted (Stats.SSRCOverBudget,
// Endpoint.OverBudget), so one participant cannot fill the conference's
// Config.MaxSSRCsPerConference.
//
// A packet under an SSRC another sender of the conference owns is a
// collision: dropped, counted (Stats.SSRCCollisions, Endpoint.Collisions)
// and counted against the claim. The SSRC belongs to whoever uses it:
//
//   - an owner that has sent nothing under it for Config.ClaimContest
//     (default 1 s) loses it to the next sender that collides;
//   - otherwise a collision starts a contest of ClaimContest; at its end,
//     if the colliding senders sent more than twice what the owner sent,
//     the owner loses it to the next one, else a new contest begins.
//
// A squatter that claimed a joiner's SSRC (learnt from signalling) and
// went quiet loses it within a second of the joiner's first packet; to
// keep it, it must go on sending more than half of the joiner's rate under
// it, per SSRC and within its budget, all of it forwarded and counted
// (Endpoint.LostClaims counts what it lost, Stats.SSRCTakeovers). A
// newcomer cannot take an SSRC from an owner that is actually sending
// unless it outsends it two to one. A takeover starts a new claim, so the
// re-basing above applies: the squatter's packets and the joiner's never
// share an index towards any receiver. The MD cannot tell the participant
// entitled to an SSRC (RFC 8871 gives it no SSRC binding), so this rule is
// about cost, not identity.
//
// # Limits and memory
//
// Config.MaxAssociations bounds the table (Install returns ErrTableFull);
// Config.MaxSSRCsPerConference bounds the SSRCs a conference holds state
// for (live claims and SSRCs with history); the history of an SSRC is one
// lane (24 bytes plus map overhead) per receiver key that was sent it,
// dropped when that receiver leaves; a claim costs about 136 bytes (112,
// the size class of its 104 octets, and its claim-map entry), a copy of
// its SSRC's lanes and, once it reached a link, a small map of link bases.
// Beside the AEAD state (the two srtpfast.Keys, about 1.6 KB each), an
// association costs about 650 to 710 bytes of heap with two SSRCs claimed
// (TestMemoryPerAssociation here: 688 B with 20,000 associations in
// conferences of 10, 640 B before links; internal/memtest's key-table
// share at 10,000 in conferences of 4 and of 100: 711 and 654 B, 664 and
// 606 B before links): the Endpoint (120 B) and association state
// (120 B), its address slot (32 B at ≤ 3/4 load), its ID index entry, its
// member-list slot and its share of the conference, and two claims (112 B
// each) with their entries in the conference's claim map. A link
// association adds its traffic counters (48 B).
// Each write also leaves the copied root arrays and shards as garbage (tens
// of kilobytes at 100,000 associations).
//
// Counters are atomics, read with Table.Stats.
package keytable
