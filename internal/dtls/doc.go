// Package dtls is mdfast's own DTLS 1.2 (RFC 6347) for DTLS-SRTP (RFC 5764),
// client and server, written from the RFCs because no DTLS stack reachable
// here negotiates the RFC 8723 double profiles and carries the RFC 8870
// EKTKey. It is security-critical code.
//
// # Shape
//
// A Conn is an event-driven state machine with no goroutine and no socket:
//
//	datagram in  -> Conn.HandleDatagram(now, b)
//	timer fired  -> Conn.HandleTimeout(now)       (Conn.Deadline says when)
//	datagrams out <- Conn.Datagrams()              (drain after every call)
//	events out    <- Conn.Events()                 (handshake done, EKTKey, closed)
//
// The Key Distributor drives thousands of server Conns from a few worker
// goroutines and the datagrams the tunnel brings; an endpoint wraps one
// client Conn in a Runner (runner.go) around its UDP socket. A Conn is not
// safe for concurrent use: its owner serialises every call.
//
// # What it negotiates
//
//   - DTLS 1.2 only; a ClientHello that also offers DTLS 1.0 gets 1.2.
//   - TLS_ECDHE_{ECDSA,RSA}_WITH_AES_{128_GCM_SHA256,256_GCM_SHA384};
//     groups X25519, P-256, P-384; signatures ECDSA P-256/P-384, RSA
//     PKCS#1 v1.5 and PSS-RSAE with SHA-256/384.
//   - extended_master_secret (RFC 7627), required both ways.
//   - use_srtp (RFC 5764) with profiles 0x0001, 0x0002, 0x0007, 0x0008,
//     0x0009, 0x000A and an MKI; external_session_id (RFC 8844);
//     supported_ekt_ciphers (RFC 8870); renegotiation_info (RFC 5746),
//     always empty: renegotiation is refused.
//   - Mutual authentication as WebRTC does it: the server always sends a
//     CertificateRequest, each side hands the peer chain to a verification
//     callback (fingerprints, not a PKI).
//   - HelloVerifyRequest with a stateless HMAC cookie (server, on by
//     default), retransmission with exponential back-off (RFC 6347 section
//     4.2.4), fragmentation to an MTU and bounded reassembly, a record
//     replay window, alerts and close_notify.
//   - After the handshake, the server sends EKTKey messages (RFC 8870
//     section 5.2, handshake type 26) under the epoch-1 keys and
//     retransmits each until the client's ACK (RFC 9147 section 7, content
//     type 26); the client delivers each EKTKey once and acknowledges every
//     record that carried it.
//
// Hooks: Config.ClientHello decides the SRTP profile, EKT cipher and the
// server's external_session_id from the parsed ClientHello (or refuses it
// with an alert); Config.VerifyPeer sees the peer chain before the final
// flight is built; Config.HoldFinalFlight makes the server stop after the
// client's Finished with EventKeysReady, so that its owner can act (the KD
// sends MediaKeys) before ReleaseFinalFlight sends the server's Finished;
// ExportKeyingMaterial is RFC 5705.
//
// # What it must not do
//
// Trust a length it did not check, panic or allocate without bound on any
// input, keep a secret longer than the association (Conn.Close zeroes
// them), log or print key material, compare secrets in variable time, or
// accept an unauthenticated record as a reason to end an established
// association. Everything outside the scope above (resumption, tickets,
// renegotiation, connection IDs, DTLS 1.3, PSK, static RSA, CBC suites) is
// refused or ignored.
package dtls
