// Package srtpfast is the per-packet hop-by-hop (HBH) crypto of the Media
// Distributor: SRTP and SRTCP with AEAD_AES_128_GCM and AEAD_AES_256_GCM
// (RFC 7714), the outer layer of DOUBLE_AEAD_AES_{128,256}_GCM (RFC 8723),
// and the RFC 3711 key derivation that turns MediaKeys material into session
// keys.
//
// # What it owns
//
//   - Keys: one direction's HBH key material for one association, derived
//     once (RFC 3711 AES-CM PRF, AES-256 for 256-bit keys, key derivation
//     rate 0) with both AEADs constructed. Immutable, shared by all workers.
//   - Opener: the receive state for one Keys: per SSRC, the ROC estimate
//     (RFC 3711 appendix A) and a replay window of ReplayWindow packets for
//     SRTP, and the SRTCP index with its own window.
//   - The packet transforms: Opener.OpenRTP / Opener.OpenRTCP (in place),
//     Keys.SealRTP / Keys.SealRTCP (append-style, in place allowed),
//     Keys.SealRTPHeader (SealRTP for a fan-out: the header length, from
//     RTPInfo.HeaderLen or RTPHeaderLen, found once per packet, not once
//     per receiver), and RewriteDouble for the RFC 8723 section 5.2 header change with the
//     Original Header Block (OHB) update.
//
// # What it must not do
//
// It must not import tunnel or keytable (keys arrive as bytes through
// NewKeys), allocate or format per packet, panic on outside input, or touch
// the inner (end-to-end) layer of double packets: the MD never has those
// keys, and the inner ciphertext and tag pass through unchanged.
//
// # Concurrency
//
// A Keys is immutable after NewKeys and may be used by any number of
// goroutines at once. An Opener is owned by exactly one worker goroutine. A
// Scratch (the nonce and SRTCP AAD of one call, kept out of the heap) belongs
// to one worker; Opener has its own. Seal methods keep no state, so one
// worker may seal for any receiver with only its Scratch.
//
// # Forwarding, and why no (key, IV) pair repeats
//
// The MD opens a packet with the sender's Opener and re-seals it for each
// receiver with that receiver's Keys, reusing the sender's SSRC and SEQ (in
// the header), the ROC from RTPInfo.ROC, and for SRTCP the index from
// RTCPInfo.Index:
//
//	info, err := opener.OpenRTP(pkt)         // drop and count on err
//	out, err := rk.SealRTP(&w.scratch, out[:0], pkt[:info.Len], info.ROC)
//
// The GCM IV is (SSRC, ROC, SEQ) XOR salt for SRTP and (SSRC, index) XOR
// salt for SRTCP (RFC 7714 sections 8.1 and 9.1). Reusing the sender's values
// is safe because every receiver's HBH key is its own (the server_write key
// of that receiver's association: never the sender's key, never another
// receiver's), and, under one receiver key, the triple is unique:
//
//   - Per sender SSRC the Opener accepts each packet index once: the replay
//     window rejects repeats, indices older than the window, and a ROC that
//     would go below zero; SSRC states are never evicted. This needs exactly
//     one Opener per receiving Keys for the life of the Keys (never rebuild
//     one for the same Keys; hand the Opener over when moving work).
//   - The caller seals each opened packet at most once per receiver.
//   - SSRCs are unique among the senders forwarded to one receiver (the key
//     table must not forward a second association's packets under an SSRC
//     it already forwards to that receiver; RFC 3550 collision handling).
//   - Anything the MD originates itself (e.g. its own RTCP) uses an SSRC of
//     its own with its own index counter.
//
// Re-sealing byte-identical input with the same IV would yield identical
// output and leak nothing; the rules above also exclude the dangerous case
// of the same IV with different plaintext or header, which double rewrites
// could otherwise produce.
//
// # Double (RFC 8723)
//
// For the double profiles, NewKeys takes the outer halves of the master key
// and salt (what MediaKeys carries), OpenRTP removes the outer layer and
// validates the OHB, leaving header | inner ciphertext | inner tag | OHB.
// RewriteDouble changes PT, SEQ or M and updates the OHB (original recorded
// only when not already present; dropped when the field is set back to its
// original). SealRTP with the receiver's Keys then applies the outer layer.
// RTCP uses the outer key only, as plain RFC 7714 SRTCP.
//
// SEQ rewrites and the ROC: the outer IV and the receiver's ROC estimate
// both follow the SEQ in the header the receiver sees. A caller that
// rewrites SEQ therefore owns an output sequence space per (receiver, SSRC):
// it maps each forwarded packet to a 48-bit output index (output ROC << 16 |
// new SEQ), injective (never the same output index twice) and increasing
// with the input as far as reordering allows, and passes
// uint32(outIndex >> 16) as roc to SealRTP. Passing the sender's ROC with a
// rewritten SEQ would be wrong twice over: the receiver's ROC estimate would
// diverge at the first wrap that does not line up, failing authentication,
// and two packets mapped to the same new SEQ in different sender ROC epochs
// could repeat an IV. Without SEQ rewrites, info.ROC is the right value.
//
// # Headroom and tailroom
//
// No headroom is needed: the RTP/RTCP packet starts at pkt[0] and all
// changes happen at its end. Opening shrinks the packet in place (the
// plaintext is pkt[:info.Len]). Sealing grows it by Keys.RTPOverhead (16 +
// MKI length) or Keys.RTCPOverhead (20 + MKI length); in place this needs
// that much capacity beyond the plaintext, otherwise SealRTP allocates (and
// the hot path would no longer be allocation-free). RewriteDouble may grow
// the OHB by up to MaxOHBLen-1 = 3 octets and fails with ErrTailroom without
// that capacity. A frame buffer with Tailroom + MaxMKILen + MaxOHBLen octets
// of capacity past the received datagram always suffices; in practice the
// received tag and MKI already free 16 + MKI octets.
//
// # Errors
//
// Per-packet failures are the Error constants (one per drop reason, see
// NumErrors), returned unwrapped and without allocation; NewKeys returns
// wrapped lifecycle errors.
package srtpfast
