package tunnel

import (
	"encoding/binary"
	"fmt"
)

// Wire-format sizes.
const (
	// HeaderLen is the size of the msg_type and length fields.
	HeaderLen = 3
	// MaxBodyLen is the largest body the uint16 length field can describe.
	MaxBodyLen = 0xFFFF
	// MaxFrameSize is the largest frame the format allows: header plus
	// MaxBodyLen (65538 octets).
	MaxFrameSize = HeaderLen + MaxBodyLen

	uuidLen = 16
	// MaxDtlsMessageLen is the largest dtls_message that fits a TunneledDtls
	// body (association_id and the two-octet vector length take 18 octets).
	MaxDtlsMessageLen = MaxBodyLen - uuidLen - 2
	// maxProfiles is the largest profile list that fits a SupportedProfiles
	// body.
	maxProfiles = (MaxBodyLen - 3) / 2
)

// AppendMessage appends the encoding of m (header and body) to dst and
// returns the extended slice. It refuses, with an error wrapping
// ErrNotSendable, ErrVectorLength or ErrFrameTooLarge, anything RFC 9185 does
// not allow on the wire: an empty profile list, an empty dtls_message, an
// empty or over-long key or salt, an over-long MKI, or a body over 65535
// octets. On error dst is returned unchanged in length.
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	return appendMessage(dst, m, true)
}

func appendMessage(dst []byte, m Message, strict bool) ([]byte, error) {
	if m == nil {
		return dst, fmt.Errorf("tunnel: encode: nil message")
	}
	start := len(dst)
	dst = append(dst, byte(m.Type()), 0, 0)
	out, err := m.appendBody(dst, strict)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - HeaderLen
	if n > MaxBodyLen {
		return out[:start], encodeErr(m.Type(), "length", fmt.Errorf("%w: body of %d octets", ErrFrameTooLarge, n))
	}
	binary.BigEndian.PutUint16(out[start+1:], uint16(n))
	return out, nil
}

// ParseHeader returns the msg_type and body length of the frame starting at
// b. It checks only that the three header octets are present.
func ParseHeader(b []byte) (MsgType, int, error) {
	if len(b) < HeaderLen {
		return 0, 0, decodeErr(0, "", ErrTruncated)
	}
	return MsgType(b[0]), int(binary.BigEndian.Uint16(b[1:3])), nil
}

// Decoder decodes frames into message values it owns and reuses. The zero
// value is ready to use. A Decoder is not safe for concurrent use.
//
// The message returned by Decode is one of the Decoder's own values: it is
// overwritten by the next call to Decode, and its byte slices
// (TunneledDtls.Message, the MediaKeys fields) alias the frame passed in, so
// they are valid only while that buffer is. Decoding a TunneledDtls,
// UnsupportedVersion, EndpointDisconnect or MediaKeys allocates nothing;
// SupportedProfiles allocates only when its profile list outgrows the one
// reused from previous calls.
type Decoder struct {
	sp SupportedProfiles
	uv UnsupportedVersion
	mk MediaKeys
	td TunneledDtls
	ed EndpointDisconnect
}

// Decode decodes exactly one frame: the header and a body whose length
// matches the header. Any octet after the body is an error
// (ErrTrailingBytes). On error the returned message is nil and the error is a
// *DecodeError.
func (d *Decoder) Decode(frame []byte) (Message, error) {
	t, n, err := ParseHeader(frame)
	if err != nil {
		return nil, err
	}
	var m Message
	switch t {
	case MsgSupportedProfiles:
		m = &d.sp
	case MsgUnsupportedVersion:
		m = &d.uv
	case MsgMediaKeys:
		m = &d.mk
	case MsgTunneledDtls:
		m = &d.td
	case MsgEndpointDisconnect:
		m = &d.ed
	default:
		return nil, decodeErr(t, "", ErrReservedType)
	}
	switch rest := len(frame) - HeaderLen; {
	case rest < n:
		return nil, decodeErr(t, "", ErrTruncated)
	case rest > n:
		return nil, decodeErr(t, "", ErrTrailingBytes)
	}
	if err := m.decodeBody(frame[HeaderLen:]); err != nil {
		return nil, err
	}
	return m, nil
}

// Decode decodes one frame into a newly allocated message. Byte slices in the
// result alias frame. Use a Decoder to avoid the allocation.
func Decode(frame []byte) (Message, error) {
	return new(Decoder).Decode(frame)
}

// --- SupportedProfiles

func (m *SupportedProfiles) appendBody(dst []byte, strict bool) ([]byte, error) {
	if strict && len(m.Profiles) == 0 {
		return dst, encodeErr(MsgSupportedProfiles, "protection_profiles", fmt.Errorf("%w: empty profile list", ErrNotSendable))
	}
	if len(m.Profiles) > maxProfiles {
		return dst, encodeErr(MsgSupportedProfiles, "protection_profiles", fmt.Errorf("%w: %d profiles", ErrFrameTooLarge, len(m.Profiles)))
	}
	dst = append(dst, m.Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(2*len(m.Profiles)))
	for _, p := range m.Profiles {
		dst = binary.BigEndian.AppendUint16(dst, uint16(p))
	}
	return dst, nil
}

func (m *SupportedProfiles) decodeBody(b []byte) error {
	if len(b) < 3 {
		return decodeErr(MsgSupportedProfiles, "version", ErrBodyLength)
	}
	m.Version = b[0]
	n := int(binary.BigEndian.Uint16(b[1:3]))
	b = b[3:]
	switch {
	case n > len(b):
		return decodeErr(MsgSupportedProfiles, "protection_profiles", ErrBodyLength)
	case n < len(b):
		return decodeErr(MsgSupportedProfiles, "protection_profiles", ErrTrailingBytes)
	case n%2 != 0:
		return decodeErr(MsgSupportedProfiles, "protection_profiles", ErrVectorLength)
	}
	m.Profiles = m.Profiles[:0]
	for i := 0; i < n; i += 2 {
		m.Profiles = append(m.Profiles, ProtectionProfile(binary.BigEndian.Uint16(b[i:])))
	}
	return nil
}

// --- UnsupportedVersion

func (m *UnsupportedVersion) appendBody(dst []byte, _ bool) ([]byte, error) {
	return append(dst, m.HighestVersion), nil
}

func (m *UnsupportedVersion) decodeBody(b []byte) error {
	switch {
	case len(b) < 1:
		return decodeErr(MsgUnsupportedVersion, "highest_version", ErrBodyLength)
	case len(b) > 1:
		return decodeErr(MsgUnsupportedVersion, "highest_version", ErrTrailingBytes)
	}
	m.HighestVersion = b[0]
	return nil
}

// --- MediaKeys

func (m *MediaKeys) appendBody(dst []byte, _ bool) ([]byte, error) {
	fields := [...]struct {
		name string
		v    []byte
		min  int
	}{
		{"mki", m.MKI, 0},
		{"client_write_SRTP_master_key", m.ClientWriteMasterKey, 1},
		{"server_write_SRTP_master_key", m.ServerWriteMasterKey, 1},
		{"client_write_SRTP_master_salt", m.ClientWriteMasterSalt, 1},
		{"server_write_SRTP_master_salt", m.ServerWriteMasterSalt, 1},
	}
	for _, f := range fields {
		if len(f.v) < f.min || len(f.v) > 255 {
			return dst, encodeErr(MsgMediaKeys, f.name, fmt.Errorf("%w: %d octets, want %d..255", ErrVectorLength, len(f.v), f.min))
		}
	}
	dst = append(dst, m.AssociationID[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Profile))
	for _, f := range fields {
		dst = append(dst, byte(len(f.v)))
		dst = append(dst, f.v...)
	}
	return dst, nil
}

func (m *MediaKeys) decodeBody(b []byte) error {
	if len(b) < uuidLen+2 {
		return decodeErr(MsgMediaKeys, "association_id", ErrBodyLength)
	}
	copy(m.AssociationID[:], b[:uuidLen])
	m.Profile = ProtectionProfile(binary.BigEndian.Uint16(b[uuidLen:]))
	b = b[uuidLen+2:]
	var err error
	if m.MKI, b, err = vec8(b, 0, "mki"); err != nil {
		return err
	}
	if m.ClientWriteMasterKey, b, err = vec8(b, 1, "client_write_SRTP_master_key"); err != nil {
		return err
	}
	if m.ServerWriteMasterKey, b, err = vec8(b, 1, "server_write_SRTP_master_key"); err != nil {
		return err
	}
	if m.ClientWriteMasterSalt, b, err = vec8(b, 1, "client_write_SRTP_master_salt"); err != nil {
		return err
	}
	if m.ServerWriteMasterSalt, b, err = vec8(b, 1, "server_write_SRTP_master_salt"); err != nil {
		return err
	}
	if len(b) != 0 {
		return decodeErr(MsgMediaKeys, "", ErrTrailingBytes)
	}
	return nil
}

// vec8 reads an opaque vector with a one-octet length prefix and at least min
// octets. The result aliases b and has its capacity clipped.
func vec8(b []byte, min int, field string) (v, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, decodeErr(MsgMediaKeys, field, ErrBodyLength)
	}
	n := int(b[0])
	if n < min {
		return nil, nil, decodeErr(MsgMediaKeys, field, ErrVectorLength)
	}
	if 1+n > len(b) {
		return nil, nil, decodeErr(MsgMediaKeys, field, ErrBodyLength)
	}
	return b[1 : 1+n : 1+n], b[1+n:], nil
}

// --- TunneledDtls

func (m *TunneledDtls) appendBody(dst []byte, strict bool) ([]byte, error) {
	if strict && len(m.Message) == 0 {
		return dst, encodeErr(MsgTunneledDtls, "dtls_message", fmt.Errorf("%w: empty dtls_message", ErrNotSendable))
	}
	if len(m.Message) > MaxDtlsMessageLen {
		return dst, encodeErr(MsgTunneledDtls, "dtls_message", fmt.Errorf("%w: %d octets", ErrFrameTooLarge, len(m.Message)))
	}
	dst = append(dst, m.AssociationID[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Message)))
	return append(dst, m.Message...), nil
}

func (m *TunneledDtls) decodeBody(b []byte) error {
	if len(b) < uuidLen+2 {
		return decodeErr(MsgTunneledDtls, "association_id", ErrBodyLength)
	}
	copy(m.AssociationID[:], b[:uuidLen])
	n := int(binary.BigEndian.Uint16(b[uuidLen:]))
	b = b[uuidLen+2:]
	switch {
	case n > len(b):
		return decodeErr(MsgTunneledDtls, "dtls_message", ErrBodyLength)
	case n < len(b):
		return decodeErr(MsgTunneledDtls, "dtls_message", ErrTrailingBytes)
	}
	m.Message = b[:n:n]
	return nil
}

// --- EndpointDisconnect

func (m *EndpointDisconnect) appendBody(dst []byte, _ bool) ([]byte, error) {
	return append(dst, m.AssociationID[:]...), nil
}

func (m *EndpointDisconnect) decodeBody(b []byte) error {
	switch {
	case len(b) < uuidLen:
		return decodeErr(MsgEndpointDisconnect, "association_id", ErrBodyLength)
	case len(b) > uuidLen:
		return decodeErr(MsgEndpointDisconnect, "association_id", ErrTrailingBytes)
	}
	copy(m.AssociationID[:], b)
	return nil
}
