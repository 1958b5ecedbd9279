package tunnel

import (
	"fmt"

	"github.com/google/uuid"
)

// MsgType is the msg_type octet of a TunnelMessage (section 6.1).
type MsgType uint8

// Message types. 0x00 and 0x06-0xFF are reserved.
const (
	MsgSupportedProfiles  MsgType = 1
	MsgUnsupportedVersion MsgType = 2
	MsgMediaKeys          MsgType = 3
	MsgTunneledDtls       MsgType = 4
	MsgEndpointDisconnect MsgType = 5
)

// String returns the message name used in the draft.
func (t MsgType) String() string {
	switch t {
	case MsgSupportedProfiles:
		return "SupportedProfiles"
	case MsgUnsupportedVersion:
		return "UnsupportedVersion"
	case MsgMediaKeys:
		return "MediaKeys"
	case MsgTunneledDtls:
		return "TunneledDtls"
	case MsgEndpointDisconnect:
		return "EndpointDisconnect"
	}
	return fmt.Sprintf("MsgType(0x%02X)", uint8(t))
}

// ProtectionProfile is a two-octet DTLS-SRTP protection profile (RFC 5764
// section 4.1.2 and the IANA registry).
type ProtectionProfile uint16

// Protection profiles the MD may advertise.
const (
	ProfileAES128CMHMACSHA1_80 ProtectionProfile = 0x0001 // RFC 5764
	ProfileAES128CMHMACSHA1_32 ProtectionProfile = 0x0002 // RFC 5764
	ProfileAEADAES128GCM       ProtectionProfile = 0x0007 // RFC 7714
	ProfileAEADAES256GCM       ProtectionProfile = 0x0008 // RFC 7714
	ProfileDoubleAEADAES128GCM ProtectionProfile = 0x0009 // RFC 8723
	ProfileDoubleAEADAES256GCM ProtectionProfile = 0x000A // RFC 8723
)

// String returns the IANA name of the profile.
func (p ProtectionProfile) String() string {
	switch p {
	case ProfileAES128CMHMACSHA1_80:
		return "SRTP_AES128_CM_HMAC_SHA1_80"
	case ProfileAES128CMHMACSHA1_32:
		return "SRTP_AES128_CM_HMAC_SHA1_32"
	case ProfileAEADAES128GCM:
		return "SRTP_AEAD_AES_128_GCM"
	case ProfileAEADAES256GCM:
		return "SRTP_AEAD_AES_256_GCM"
	case ProfileDoubleAEADAES128GCM:
		return "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM"
	case ProfileDoubleAEADAES256GCM:
		return "DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM"
	}
	return fmt.Sprintf("ProtectionProfile(0x%04X)", uint16(p))
}

// Version0 is the protocol version defined by draft -05 and RFC 9185.
const Version0 uint8 = 0

// Message is one of *SupportedProfiles, *UnsupportedVersion, *MediaKeys,
// *TunneledDtls or *EndpointDisconnect.
type Message interface {
	// Type returns the message's msg_type.
	Type() MsgType
	// appendBody appends the encoded body. strict refuses what RFC 9185
	// forbids; lenient encoding is used only to check that decoding of
	// draft -05 input round-trips.
	appendBody(dst []byte, strict bool) ([]byte, error)
	// decodeBody decodes a body whose length is already checked against the
	// header. Slices alias body.
	decodeBody(body []byte) error
}

// SupportedProfiles is the first message the MD sends on every connection.
type SupportedProfiles struct {
	Version  uint8
	Profiles []ProtectionProfile // protection_profiles<0..2^16-1> (<2..2^16-1> in RFC 9185)
}

// UnsupportedVersion is the KD's answer to a SupportedProfiles carrying a
// version it does not support; the KD closes the tunnel after sending it.
type UnsupportedVersion struct {
	HighestVersion uint8
}

// MediaKeys carries the hop-by-hop SRTP keying material of one association
// from the KD to the MD. The byte slices hold key material: zero them when
// no longer needed.
type MediaKeys struct {
	AssociationID         uuid.UUID
	Profile               ProtectionProfile
	MKI                   []byte // mki<0..255>; empty means no MKI
	ClientWriteMasterKey  []byte // <1..255>
	ServerWriteMasterKey  []byte // <1..255>
	ClientWriteMasterSalt []byte // <1..255>
	ServerWriteMasterSalt []byte // <1..255>
}

// TunneledDtls carries the UDP payload of one datagram (one or more whole
// DTLS records) between an endpoint and the KD.
type TunneledDtls struct {
	AssociationID uuid.UUID
	Message       []byte // dtls_message<0..2^16-1> (<1..2^16-1> in RFC 9185)
}

// EndpointDisconnect says that an association has ended. Either side may
// send it.
type EndpointDisconnect struct {
	AssociationID uuid.UUID
}

// Type implements Message.
func (*SupportedProfiles) Type() MsgType { return MsgSupportedProfiles }

// Type implements Message.
func (*UnsupportedVersion) Type() MsgType { return MsgUnsupportedVersion }

// Type implements Message.
func (*MediaKeys) Type() MsgType { return MsgMediaKeys }

// Type implements Message.
func (*TunneledDtls) Type() MsgType { return MsgTunneledDtls }

// Type implements Message.
func (*EndpointDisconnect) Type() MsgType { return MsgEndpointDisconnect }

// NewAssociationID returns a new association identifier: a random (version
// 4) UUID, as section 5.3 requires ("MUST be randomly assigned UUID").
func NewAssociationID() (uuid.UUID, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return uuid.Nil, fmt.Errorf("tunnel: new association id: %w", err)
	}
	return id, nil
}
