// Package sdp reads the SDP offers of WebRTC and PERC endpoints (RFC 8866,
// JSEP RFC 8829) and writes the ICE-lite answers of the join endpoint
// (internal/keydist): a small strict parser of just what a media
// distributor behind a key distributor needs, not a general SDP library.
//
// What an offer must carry to be accepted (ParseOffer):
//
//   - DTLS-SRTP: every audio/video m-line uses UDP/TLS/RTP/SAVPF; the
//     certificate fingerprint is given with sha-256 (RFC 8122; other hashes
//     are refused with ErrFingerprintHash: the KD matches endpoints by their
//     SHA-256 fingerprint only);
//   - a=setup:actpass or active (the KD is the DTLS server, RFC 5763);
//   - a=rtcp-mux and one BUNDLE group holding every accepted m-line (the MD
//     has one 5-tuple per endpoint);
//   - one ICE ufrag/password, fingerprint and tls-id for the bundle (media
//     level values override the session level, as JSEP writes them);
//   - a supported codec in each audio (opus) or video (VP8, H264) m-line.
//
// a=tls-id (RFC 8842) present makes the endpoint a PERC one. Other
// m-lines (data channels, unknown media) are answered rejected (port 0).
//
// Limits: the whole offer is at most MaxOffer bytes, MaxLines lines of at
// most MaxLine bytes, MaxMedia m-lines and MaxFormats formats per m-line;
// anything beyond is ErrMalformed. Errors are *Error values wrapping one of
// the exported sentinels, never a panic (FuzzParseOffer).
//
// The package must not know about registries, HTTP or the MD: it turns
// bytes into an Offer and an Answer into bytes.
package sdp
