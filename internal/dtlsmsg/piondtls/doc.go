// Package piondtls adapts the external_session_id extension (RFC 8844,
// type 56) of package dtlsmsg to pion/dtls v3, which has no support for it.
//
// pion/dtls v3 (checked against v3.1.15) lets an application replace the
// hello messages it sends through ClientHelloMessageHook and
// ServerHelloMessageHook (dtls.WithClientHelloMessageHook,
// dtls.WithServerHelloMessageHook; the dtls.Config fields of the same names
// are deprecated). extension.Extension is an interface (Marshal, Unmarshal,
// TypeValue) that a foreign type can implement: MessageClientHello.Marshal
// and MessageServerHello.Marshal concatenate whatever each element's
// Marshal returns, which must be the whole extension (type, length,
// extension_data). ExternalSessionID is such a type, and ClientHelloHook and
// ServerHelloHook return hooks that append it.
//
// On receipt pion's extension.Unmarshal skips extension types it does not
// know without an error, so a pion peer accepts the extension and drops it;
// the handshake transcript still covers it, because pion hashes the raw
// handshake octets. The receiving side therefore reads the value from the
// wire with dtlsmsg.Reassembler (ClientHello, on the server side) or
// dtlsmsg.ServerHelloReassembler (ServerHello, on the client side).
//
// pion calls the client hook for both ClientHellos (before and after a
// HelloVerifyRequest) and the server hook for the ServerHello. A hook sees
// only the message, not the peer's hello: a server that must answer only
// clients that sent the extension (RFC 8844) builds its hook per
// association, after reading the ClientHello.
//
// This package must not hold per-association state or parse anything
// itself: parsing is dtlsmsg's.
package piondtls
