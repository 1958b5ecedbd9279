package tunnel

import (
	"crypto/rand"
	"fmt"

	"github.com/google/uuid"
)

// Instance announcements: an extension of ours, compatible with any peer
// that follows the protocol.
//
// The protocol does not say which process is at the other end of a tunnel,
// so a KD cannot tell a Media Distributor that reconnects after a network
// fault (its associations are alive) from one that restarted (they are
// all dead, yet nothing ever ends them). Our MD therefore sends, right after
// SupportedProfiles on every tunnel, an EndpointDisconnect whose
// association id is its instance id: a version 8 UUID (RFC 9562 section
// 5.8, the version for vendor-specific layouts) starting with the octets
// "mdfast", its capabilities in octet 7 (InstanceCaps), random in the
// rest and fixed for the life of the process.
// Association ids are version 4 UUIDs (section 5.3), so no association can
// carry that id, and a KD that does not know the extension ignores an
// EndpointDisconnect for an association it does not have. Our KD uses it to
// end the associations of an MD instance at once when a new instance of
// the same MD identity announces itself while the old one has no tunnel
// left, and to trust the MD's stateless cookie exchange (package mdslow).

var instanceMagic = [6]byte{'m', 'd', 'f', 'a', 's', 't'}

// Capabilities an MD states in octet 7 of its instance id.
const (
	// CapVerifiesCookies: the MD runs the DTLS cookie exchange itself
	// and relays only ClientHellos that returned a valid cookie, so a KD
	// may take a relayed cookie as proof of the endpoint's address
	// (dtls.Config.RelayVerifiesCookies).
	CapVerifiesCookies byte = 1 << iota
)

// NewInstanceID returns a fresh instance id stating caps.
func NewInstanceID(caps byte) (uuid.UUID, error) {
	var id uuid.UUID
	if _, err := rand.Read(id[len(instanceMagic):]); err != nil {
		return uuid.Nil, fmt.Errorf("tunnel: instance id: %w", err)
	}
	copy(id[:], instanceMagic[:])
	id[6] = 0x80 | id[6]&0x0F // version 8
	id[7] = caps
	id[8] = 0x80 | id[8]&0x3F // RFC 9562 variant
	return id, nil
}

// InstanceCaps returns the capabilities an instance id states (none for
// an id that is not one).
func InstanceCaps(id uuid.UUID) byte {
	if !IsInstanceID(id) {
		return 0
	}
	return id[7]
}

// IsInstanceID reports whether id is an instance announcement rather than
// an association id.
func IsInstanceID(id uuid.UUID) bool {
	return [6]byte(id[:6]) == instanceMagic && id[6]>>4 == 8 && id[8]>>6 == 2
}
