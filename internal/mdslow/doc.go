// Package mdslow is the Media Distributor's slow path: everything the MD
// receives on its media port that is not SRTP/SRTCP.
//
// # What it owns
//
//   - Relay (relay.go): the DTLS associations of endpoints. A DTLS
//     ClientHello from a new 5-tuple starts an association (a random v4
//     UUID, the tls-id read from the ClientHello's external_session_id for
//     conference mapping); its datagrams go to the Key Distributor as
//     TunneledDtls and the KD's TunneledDtls go back to the endpoint's
//     address. MediaKeys become srtpfast.Keys (client_write opens what the
//     endpoint sends, server_write seals what the MD sends to it) installed
//     in the key table in the conference the Membership names.
//     EndpointDisconnect from the KD removes the endpoint; an endpoint
//     silent for Limits.IdleTimeout, a handshake that takes longer than
//     Limits.HandshakeTimeout, or a close_notify/fatal alert from the
//     endpoint ends the association with an EndpointDisconnect to the KD.
//     New associations are bounded (MaxPending) and rate-limited per source
//     address.
//   - The STUN responder (stun.go): ICE-lite answers to Binding requests
//     (RFC 8445 section 7.3, RFC 5389): USERNAME and MESSAGE-INTEGRITY
//     checked with the short-term password from Credentials,
//     XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT in the answer.
//
// # What it must not do
//
// It must not touch media packets, hold keys beyond building them, or block
// the tunnel's reader goroutines: tunnel messages are copied and handed to
// the Run goroutine, which owns all association state. Bad input from
// endpoints is a counted drop, never a panic.
package mdslow
