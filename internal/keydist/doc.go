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
// # The join endpoint (join.go)
//
// A WHIP-style (RFC 9725) HTTP endpoint through which a normal WebRTC app,
// or a PERC endpoint, joins a conference with one SDP offer:
//
//	POST   /v1/join/{conference}    Content-Type: application/sdp, the offer
//	   -> 201 Created, Location: /v1/join/sessions/{id}, ETag, the SDP answer
//	PATCH  /v1/join/sessions/{id}   Content-Type: application/trickle-ice-sdpfrag
//	   with a=ice-ufrag/a=ice-pwd: ICE restart -> 200 and the MD's new
//	   credentials in an sdpfrag; candidates only -> 204 (ICE lite needs none)
//	DELETE /v1/join/sessions/{id}   -> 204: the endpoint leaves
//
// It lives in the KD, not in the MD, because registering a fingerprint is
// what authorizes an endpoint to receive keys, and the MD is not trusted
// with that (RFC 8871). Per offer (internal/sdp reads it: DTLS-SRTP with a
// sha-256 fingerprint, setup actpass/active, rtcp-mux, BUNDLE) the KD
// registers the endpoint (fingerprint, and tls-id when the offer has
// a=tls-id: PERC; without one only in an allow_legacy conference), then
// PUTs at the MD's control API only what the MD may know:
//
//	PUT /v1/sessions/{id} {"conference": "room-1", "tls_id": "<endpoint's, PERC only>",
//	                       "ice_ufrag": "<MD's>", "ice_pwd": "<MD's>", "remote_ufrag": "<endpoint's>"}
//	DELETE /v1/sessions/{id}
//
// and answers ICE lite: the MD's fresh credentials (crypto/rand), one host
// candidate per MD media address, the KD's certificate fingerprint,
// a=setup:passive, rtcp-mux, the BUNDLE group, per m-line the first
// opus / VP8 / H264 codec of the offer under its payload type, and the
// KD's tls-id for a PERC endpoint. If the MD refuses, the registration is
// rolled back: a failed request leaves nothing anywhere. A session ends
// (registry entry removed, which ends its association; MD session
// deleted) on DELETE, when its DTLS association ends, when none completed
// within JoinConfig.Timeout, and at shutdown.
//
// Authentication is a signed join token, not a bearer token per
// conference: the operator's backend (which knows who may join what) mints
// a short-lived token for one conference (MintJoinToken, or the admin
// API's POST /v1/conferences/{conf}/join-tokens) and hands it to the app;
// the KD keeps no per-conference secret, a leaked token is bounded by its
// expiry, and conferences can be created without touching the join
// endpoint's configuration. A token is
// "mdj1.<base64url conference>.<expiry unix>.<base64url HMAC-SHA256>", its
// MAC checked in constant time before anything it says is believed. PATCH
// and DELETE of a session need a token of its conference (not necessarily
// unexpired: the session URL is itself a 128-bit secret). Every request is
// rate-limited per source (IPv4 address, IPv6 /64) and globally before it
// is parsed; bodies are limited to 64 KiB; refusals are logged through
// ratelog and counted in keydist_join_requests_total{method,result}.
//
// A whole join with curl (TOKEN from the admin API, offer.sdp from the app):
//
//	curl -s -X POST -H "Authorization: Bearer $ADMIN" -d '{"ttl":"1h"}' \
//	    http://127.0.0.1:5741/v1/conferences/room-1/join-tokens      # {"token": "mdj1...."}
//	curl -si -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/sdp' \
//	    --data-binary @offer.sdp https://kd.example:8443/v1/join/room-1  # 201, Location, answer
//	curl -s -X DELETE -H "Authorization: Bearer $TOKEN" https://kd.example:8443/v1/join/sessions/<id>
//
// # Replicas on etcd
//
// With a Store (store.go), several KD processes share one etcd: the
// registry's API layer lives there (regstore.go: written in transactions
// that also claim the tls-id, mirrored by a watch into every replica's
// Registry), each conference's EKT parameter set too (ektstore.go: sealed
// under a key only the KDs hold, created if absent and re-keyed by
// compare-and-swap, so members of one conference never get two sets; a
// watch sends another replica's re-key to the local members), and each
// replica's established associations (assocstore.go, for the join
// endpoint, and so that the others know a dead replica's associations).
//
// A replica that dies takes its associations' DTLS state with it: their
// endpoints keep their keys at the MD (media goes on: they are NOT ended
// when their replica dies), but nobody can send them an EKTKey any more.
// The other replicas keep the dead replica's records as orphans. When
// their conference is re-keyed (a member left, the set's TTL ran low), the
// replica whose compare-and-swap replaced the set (one per re-key, so no
// orphan is ended twice) ends each orphan of that conference at its MD:
// EndpointDisconnect over its own tunnel to the MD named in the record
// (orphans.go), then the record is forgotten (deleted from etcd if still
// there). The endpoint joins again and gets the new set; it would
// otherwise lose the others' media after the grace period and keep a key
// whoever left knows. Without a tunnel to that MD it is retried on the
// janitor tick (30 times, a second apart), then given up until the next
// re-key; keydist_orphans_disconnected_total,
// keydist_orphan_disconnect_retries_total and
// keydist_orphan_disconnects_failed_total count it. etcd being unreachable costs only what needs a new write: a
// new conference's set, a re-key (retried), a registration (503);
// established associations and joins of conferences already held go on.
//
// The package owns the KD logic, the endpoint registry (file and admin API
// sources, optionally in etcd) and its metrics. It must not parse the tunnel wire format (that
// is internal/tunnel) nor DTLS (that is internal/dtls), and it never logs
// key material.
package keydist
