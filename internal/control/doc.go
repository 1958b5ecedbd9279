// Package control is the Media Distributor's control plane: conference
// membership (tls-id or endpoint address to conference; an endpoint no
// mapping places is in no conference unless the operator configured
// single-conference mode), ICE-lite credentials, sessions (an endpoint as
// the signalling layer set it up: conference, tls-id, the MD's ICE
// credentials for it, session.go), and the authenticated HTTP API through
// which the signalling layer sets them and lists associations.
//
// It must not touch packets or keys: it answers the slow path's
// Membership and Credentials questions and asks it (through the Relay
// interface it declares) to list, move or end associations and sessions.
// It never registers an endpoint at the KD: the MD is not trusted with
// that (RFC 8871); the KD's join endpoint calls this API.
package control
