// Package webrtctest holds black-box tests of the join flow with real
// WebRTC clients: pion/webrtc v4 PeerConnections (legacy DTLS-SRTP, no
// PERC) join conferences through keydist's join endpoint (internal/keydist
// join.go), with the real mdfast and keydist daemons in network namespaces
// the tests create. They check media both ways byte for byte, conference
// isolation counted at the receivers, SRTP errors at the MD, an ICE
// restart onto a new local port (mobility) and consent expiry (RFC 7675);
// PERC endpoints (package perc: double media, EKT) joining through the same
// endpoint; and a headless Chromium decoding a pion peer's video.
//
// The package has tests only; it must not assert on daemon internals
// beyond their documented APIs and metrics.
package webrtctest
