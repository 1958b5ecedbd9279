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
//     pending entry holding a dtlsmsg.Reassembler, bounded in number and in
//     time); anything else is a counted drop.
//  3. Complete ClientHello: read external_session_id (RFC 8844, type 56) and
//     use_srtp; look the tls-id up in the Registry; intersect the offered
//     profiles with the MD's SupportedProfiles and the KD's own. No match or
//     no common profile ends the association here (fatal alert, EndpointDisconnect)
//     without ever starting a DTLS server: a ClientHello flood costs a parse.
//  4. Otherwise a pion/dtls server runs over a datagram adapter (adapter.go)
//     whose writes go back to the MD as TunneledDtls on the tunnel the last
//     message arrived on (or another live tunnel of the same MD).
//  5. VerifyPeerCertificate matches the tls-id AND the SHA-256 fingerprint
//     of the endpoint certificate against the registry before the server's
//     final flight is built; a mismatch is a fatal alert.
//  6. The adapter holds the final flight (ChangeCipherSpec, Finished) until
//     the keys are exported and SendMediaKeys has returned, then releases it.
//  7. When the association ends for any reason the KD sends EndpointDisconnect,
//     zeroes the key buffers and forgets every byte of its state.
//
// The package owns the KD logic, the endpoint registry (file and admin API
// sources) and its metrics. It must not parse the tunnel wire format (that
// is internal/tunnel) nor DTLS records beyond the record headers it needs to
// hold a flight (the ClientHello parsing is internal/dtlsmsg), and it never
// logs key material.
//
// The double profiles of RFC 8723 (0x0009, 0x000A) cannot be negotiated with
// pion/dtls; the key splitting for them is here (SplitDouble) so that the
// MediaKeys layout is settled once a DTLS stack can negotiate them.
package keydist
