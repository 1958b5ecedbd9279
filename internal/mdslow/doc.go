// Package mdslow is the Media Distributor's slow path: everything the MD
// receives on its media port that is not SRTP/SRTCP.
//
// # What it owns
//
//   - Relay (relay.go): the DTLS associations of endpoints. The MD runs
//     the stateless cookie exchange itself (cookie.go): a ClientHello
//     without a valid cookie gets a HelloVerifyRequest and leaves no state;
//     one that returns a cookie made for its 5-tuple starts an association
//     (a random v4 UUID, the tls-id read from the ClientHello's
//     external_session_id for conference mapping). Its datagrams go to the
//     Key Distributor as TunneledDtls and the KD's TunneledDtls go back to
//     the endpoint's address. MediaKeys become srtpfast.Keys (client_write
//     opens what the endpoint sends, server_write seals what the MD sends
//     to it) installed in the key table in the conference the Membership
//     names. An endpoint the Membership places in no conference (no
//     tls-id or address mapping, single-conference mode off) is refused
//     when its ClientHello is complete, before the KD sees it: a fatal
//     access_denied alert, counted by Refusal (Relay.refuse says why
//     there). The conference is looked up again when the keys arrive and
//     on every mapping change (Reassign), which ends an established
//     association no mapping places any more. Otherwise only the KD
//     (EndpointDisconnect) or the MD's own timers
//     (Limits.IdleTimeout, Limits.HandshakeTimeout) end an association:
//     nothing the MD cannot authenticate does (alerts and protected records
//     go to the KD; a new handshake from an established 5-tuple runs beside
//     the established association and replaces it when its keys arrive).
//     New associations are rate-limited per source address and bounded per
//     source prefix and in total, with fair eviction (admit).
//   - Triage, the data plane's hook that picks the priority lane: known
//     5-tuples and cookie-bearing ClientHellos; the rest is served fairly
//     across source prefixes by the data plane.
//   - The STUN responder (stun.go): ICE-lite answers to Binding requests
//     (RFC 8445 section 7.3, RFC 5389): USERNAME and MESSAGE-INTEGRITY
//     checked with the short-term password from Credentials,
//     XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT in the answer.
//   - ICE sessions (session.go): a check a session's credentials
//     authenticate places the DTLS association that starts from its
//     address (Membership.Place), binds it to the session when its keys
//     arrive, moves it on a nominating check from a new address, or on
//     the consecutive checks of a NAT rebinding (keytable
//     SetAddr: the only way an association's address changes, never on a
//     media packet) and is its consent: without one for
//     Limits.ConsentTimeout it stops receiving (keytable SetConsent).
//
// # What it must not do
//
// It must not touch media packets, hold keys beyond building them, or block
// the tunnel's reader goroutines: tunnel messages are copied and handed to
// the Run goroutine, which owns all association state. Bad input from
// endpoints is a counted drop, never a panic.
package mdslow
