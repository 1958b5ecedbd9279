// Package dtlsmsg parses the plaintext parts of DTLS 1.2 that a PERC Media
// Distributor and Key Distributor need to read themselves: the record layer
// (RFC 6347 section 4.1), the handshake message header (section 4.2.2), and
// the ClientHello and ServerHello with two of their extensions:
//
//   - external_session_id (RFC 8844 section 4.3, extension type 56): the
//     endpoint's SDP tls-id, opaque session_id<20..255>;
//   - use_srtp (RFC 5764 section 4.1.1, extension type 14): the SRTP
//     protection profiles offered (SRTPProtectionProfiles<2..2^16-1>) and
//     the srtp_mki<0..255>.
//
// pion/dtls drops extensions it does not know, so these values are read from
// the wire bytes. A ClientHello can be split into several handshake
// fragments, records and datagrams, delivered in any order and repeated; the
// Reassembler collects them for one association and yields each ClientHello
// (the first one, and the second one carrying the cookie after a
// HelloVerifyRequest) exactly once. ServerHelloReassembler does the same for
// the ServerHello on the client side.
//
// The package also builds the extension bytes (AppendExternalSessionID,
// AppendUseSRTP, AppendExtension) for load generators and tests. The
// subpackage piondtls adapts them to pion/dtls v3's extension interface and
// hello message hooks; this package itself imports nothing outside the
// standard library.
//
// What the package must not do: keep state beyond one handshake (a
// Reassembler holds at most one message in progress, bounded by its maximum
// length), trust a length it did not check, or panic on any input. Malformed
// input is reported as an error wrapping one of the sentinel errors in
// errors.go, so callers branch with errors.Is. Only plaintext is parsed:
// epoch 0 records; encrypted records, connection-ID records and DTLS 1.3
// ciphertext are skipped by the reassemblers and reported by NextRecord.
package dtlsmsg
