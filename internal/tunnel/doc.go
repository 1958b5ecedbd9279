// Package tunnel implements the TLS tunnel between a PERC Media Distributor
// (MD) and a Key Distributor (KD) defined by draft-ietf-perc-dtls-tunnel-05
// (RFC 9185 keeps the wire format and tightens some bounds).
//
// The package owns:
//
//   - the codec of the five tunnel messages (codec.go, messages.go), exactly
//     the TLS presentation-language encoding of section 6, with strict
//     validation and typed errors;
//   - the framing of those messages over the TLS byte stream (framing.go);
//   - the per-connection machinery shared by both sides (conn.go): one reader
//     goroutine, one writer goroutine draining a bounded queue, idle timeout,
//     TCP keepalive and TCP_USER_TIMEOUT for half-open detection;
//   - helpers that build mutually authenticated *tls.Config values with
//     optional SPKI pinning and name allow-lists (tlsconfig.go);
//   - the MD side (md.go): dialing (or, in reverse mode, accepting) tunnels,
//     SupportedProfiles first on every connection, reconnect with backoff,
//     version fallback on UnsupportedVersion, a pool of tunnels with
//     per-association pinning;
//   - the KD side (kd.go): accepting (or, in reverse mode, dialing) tunnels,
//     authorizing the MD before any tunnel message is exchanged, version
//     negotiation, dispatch to a handler, and MediaKeys delivery that returns
//     only once the keys are on the wire.
//
// The package must not import the key table, the SRTP code or anything that
// parses DTLS: it hands messages to the MDHandler and KDHandler interfaces
// its callers implement. It never panics on bytes received from a peer: a
// malformed message is a typed error that closes only the tunnel it arrived
// on.
//
// Data received from a peer is handed to handlers in buffers that the
// package reuses: slices in a delivered message are valid only for the
// duration of the handler call. Handlers are called from the tunnel's reader
// goroutine (one per tunnel, so calls for one tunnel are serialized, calls
// for different tunnels are concurrent) and must not block for long: a
// blocked handler stalls only its own tunnel.
package tunnel
