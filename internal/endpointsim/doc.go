// Package endpointsim simulates PERC endpoints for the demo and the
// benchmarks: an endpoint identity (a tls-id and a self-signed client
// certificate to list in the Key Distributor's registry), a UDP socket
// demultiplexed between DTLS and media (RFC 7983), the DTLS-SRTP handshake
// through a Media Distributor to the Key Distributor (internal/dtls, client
// role, with external_session_id; the KD checked by certificate
// fingerprint), and the
// SRTP keys the handshake exported (RFC 5764), as pion/srtp contexts.
//
// It owns the endpoint side only. It must not be used by the daemons: it
// trusts the KD by a fingerprint its caller passes and keeps keys in plain
// byte slices, as a test endpoint may.
package endpointsim
