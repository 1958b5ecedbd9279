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
// (testing.AllocsPerRun asserts it, for ClaimSSRC on a claimed SSRC too).
//
// Per packet the worker does: Lookup (drop unknown sources) → Own (drop if
// another worker owns the endpoint's receive state) → open with its Opener
// for ep.Gen() → ClaimSSRC(ep, ssrc) (drop on false) → Touch → for each
// receiver r ≠ ep in Receivers(ep): seal with r.Send() and send to
// r.Addr().
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
// records it per key generation: if an address change moves the flow to
// another queue, the new worker drops and counts (Stats.Misrouted) until the
// owner hands its Opener over and calls Release; a fresh Opener for the
// same keys would reset the replay window.
//
// # Why no (key, IV) pair repeats for a receiver
//
// The MD re-seals a packet for each receiver with that receiver's own Send
// key (never the sender's), and the AES-GCM IV is built from the sender's
// SSRC, ROC and SEQ (RFC 7714). Under one receiver key the IV repeats only
// if (SSRC, ROC, SEQ) repeats:
//
//   - (ROC, SEQ) is unique per SSRC because one worker sees the whole stream
//     (above) and its replay window opens each packet index once;
//   - the SSRC identifies one sender towards that receiver because
//     ClaimSSRC gives each SSRC of a conference to the first sender that
//     claims it; another sender of the conference claiming it is refused,
//     its packets dropped and counted (Stats.SSRCCollisions,
//     Endpoint.Collisions);
//   - claims are not simply freed: when the owner leaves (Remove,
//     ExpireIdle, SetConference), its SSRCs are retired, blocked until every
//     member that may have received them has left (join sequence numbers);
//     a member moving to another conference reserves there what it has
//     received, and the move is refused (ErrSSRCConflict) if another sender
//     there already uses one of them.
//
// ClaimSSRC is race-free across workers: the conference's claims are an
// immutable map behind an atomic pointer; a claimed SSRC is one load and
// one map read, and a new SSRC is added by copying the map under a
// per-conference mutex that also serializes with the writer (once per new
// SSRC, never per packet).
//
// # Limits and memory
//
// Config.MaxAssociations bounds the table (Install returns ErrTableFull);
// Config.MaxSSRCsPerConference bounds the claims of a conference.
// Beside the AEAD state (the two srtpfast.Keys), an association costs about
// 460 bytes of heap (TestMemoryPerAssociation: 20,000 associations in
// conferences of 10 with two SSRCs each): the Endpoint and association
// state (~200 B), its address slot (32 B at ≤ 3/4 load), its member-list
// slot and the conference slot, its ID index entry, and two claim entries.
// Each write also leaves the copied root arrays and shards as garbage (tens
// of kilobytes at 100,000 associations).
//
// Counters are atomics, read with Table.Stats.
package keytable
