// Package control is the Media Distributor's control plane: conference
// membership (tls-id or endpoint address to conference, with one default
// conference for everyone not mapped), ICE-lite credentials, and the
// authenticated HTTP API through which the signalling layer sets them and
// lists associations.
//
// It must not touch packets or keys: it answers the slow path's
// Membership and Credentials questions and asks it (through the Relay
// interface it declares) to list, move or end associations.
package control
