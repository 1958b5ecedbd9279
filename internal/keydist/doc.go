// Package keydist is the Key Distributor (KD) of draft-ietf-perc-dtls-tunnel
// (section 5.4): it terminates the endpoints' DTLS-SRTP associations that
// Media Distributors (MDs) relay to it through the tunnel of
// internal/tunnel, checks each endpoint against a registry of what the
// signalling said (tls-id and certificate fingerprint per conference), and
// hands the MD the hop-by-hop SRTP keys in a MediaKeys message before the
// KD's Finished reaches the endpoint.
//
// Pipeline for one TunneledDtls message (KeyDistributor.HandleTunneledDtls):
//
//  1. Look the association up by (MD identity, association id). An MD can
//     never reach another MD's associations.
//  2. Unknown id: only a record that starts a ClientHello creates state (a
//     pending association holding an internal/dtls server Conn, bounded in
//     number and in time); anything else is a counted drop.
//  3. The datagram goes to the KD worker the association hashes to (a few
//     workers run every association's DTLS server: no goroutine per
//     association). A ClientHello without a valid cookie gets a stateless
//     HelloVerifyRequest and the association is forgotten at once: a
//     ClientHello flood costs a parse and an HMAC.
//  4. The ClientHello hook reads external_session_id (RFC 8844) and
//     use_srtp: the tls-id must be in the Registry, the profile is the
//     endpoint's first offered one that the MD's SupportedProfiles and the
//     KD's own contain (double profiles included), EKT (RFC 8870) is
//     negotiated when Config.EKT is set. A refusal is a fatal alert and
//     EndpointDisconnect.
//  5. VerifyPeer matches the tls-id AND the SHA-256 fingerprint of the
//     endpoint certificate against the registry once its CertificateVerify
//     checks, before the server's final flight exists.
//  6. The DTLS server holds its final flight (ChangeCipherSpec, Finished)
//     until the keys are exported and SendMediaKeys has returned; for a
//     double profile MediaKeys carries only the outer (hop-by-hop) halves.
//     Then the conference's EKTKey follows, retransmitted until the
//     endpoint's ACK.
//  7. When the association ends for any reason the KD sends
//     EndpointDisconnect, zeroes the keys and forgets every byte of its
//     state.
//
// The package owns the KD logic, the endpoint registry (file and admin API
// sources) and its metrics. It must not parse the tunnel wire format (that
// is internal/tunnel) nor DTLS (that is internal/dtls), and it never logs
// key material.
package keydist
