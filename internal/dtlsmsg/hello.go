package dtlsmsg

import (
	"encoding/binary"
	"fmt"
)

// RandomLen is the length of the hello random.
const RandomLen = 32

// MaxSessionIDLen bounds SessionID<0..32> (RFC 5246 section 7.4.1.2).
const MaxSessionIDLen = 32

// ClientHello is a parsed DTLS 1.2 ClientHello (RFC 6347 section 4.2.1,
// RFC 5246 section 7.4.1.2). Byte slices alias the parsed body unless the
// ClientHello came from a Reassembler, which gives each result its own copy.
type ClientHello struct {
	// MessageSeq is the handshake message_seq: 0 for the first ClientHello,
	// 1 for the one answering a HelloVerifyRequest. ParseClientHello sees
	// only the body and leaves it 0.
	MessageSeq uint16
	// Version is client_version (0xFEFD for DTLS 1.2).
	Version uint16
	// Random is the client random.
	Random [RandomLen]byte
	// SessionID (0..32 octets) and Cookie (0..255 octets) are nil when
	// empty.
	SessionID, Cookie []byte
	// CipherSuites lists the offered cipher suites in client order.
	CipherSuites []uint16
	// CompressionMethods lists the offered compression methods (at least
	// one).
	CompressionMethods []byte
	// Extensions lists every extension, raw and in wire order; nil when
	// there are none.
	Extensions []Extension

	// ExternalSessionID is the session_id of external_session_id (RFC 8844,
	// 20..255 octets), nil when the extension is absent.
	ExternalSessionID []byte
	// HasExternalSessionID reports whether external_session_id is present.
	HasExternalSessionID bool

	// SRTPProfiles is the use_srtp offer in client preference order.
	SRTPProfiles []uint16
	// SRTPMKI is the use_srtp srtp_mki, nil when empty.
	SRTPMKI []byte
	// HasUseSRTP reports whether use_srtp is present.
	HasUseSRTP bool
}

// ServerHello is a parsed DTLS 1.2 ServerHello (RFC 5246 section 7.4.1.3).
// Byte slices alias the parsed body unless it came from a
// ServerHelloReassembler.
type ServerHello struct {
	// MessageSeq is the handshake message_seq (0 without a
	// HelloVerifyRequest, 1 after one). ParseServerHello leaves it 0.
	MessageSeq uint16
	// Version is server_version.
	Version uint16
	// Random is the server random.
	Random [RandomLen]byte
	// SessionID is nil when empty.
	SessionID []byte
	// CipherSuite is the selected cipher suite.
	CipherSuite uint16
	// CompressionMethod is the selected compression method.
	CompressionMethod uint8
	// Extensions lists every extension, raw and in wire order.
	Extensions []Extension

	// ExternalSessionID is the server's external_session_id, nil when
	// absent.
	ExternalSessionID []byte
	// HasExternalSessionID reports whether external_session_id is present.
	HasExternalSessionID bool

	// SRTPProfiles holds the profile the server selected: exactly one
	// element when HasUseSRTP (RFC 5764 section 4.1.1).
	SRTPProfiles []uint16
	// SRTPMKI is the server's srtp_mki, nil when empty.
	SRTPMKI []byte
	// HasUseSRTP reports whether use_srtp is present.
	HasUseSRTP bool
}

// ParseClientHello parses the body of a ClientHello handshake message, that
// is the reassembled message after the 12-octet DTLS handshake header. Every
// length is checked; the errors wrap ErrBadVersion, ErrBadLength,
// ErrDuplicateExtension, ErrBadExternalSessionID or ErrBadUseSRTP. Byte
// slices of the result alias body.
func ParseClientHello(body []byte) (*ClientHello, error) {
	const head = 2 + RandomLen
	if len(body) < head {
		return nil, fmt.Errorf("parsing ClientHello: %d octets: %w", len(body), ErrBadLength)
	}
	ch := &ClientHello{Version: binary.BigEndian.Uint16(body)}
	if body[0] != 0xFE {
		return nil, fmt.Errorf("parsing ClientHello: client_version %#04x: %w", ch.Version, ErrBadVersion)
	}
	copy(ch.Random[:], body[2:head])
	b := body[head:]

	var err error
	if ch.SessionID, b, err = vec8(b, "session_id"); err != nil {
		return nil, fmt.Errorf("parsing ClientHello: %w", err)
	}
	if len(ch.SessionID) > MaxSessionIDLen {
		return nil, fmt.Errorf("parsing ClientHello: session_id of %d octets: %w", len(ch.SessionID), ErrBadLength)
	}
	if ch.Cookie, b, err = vec8(b, "cookie"); err != nil {
		return nil, fmt.Errorf("parsing ClientHello: %w", err)
	}
	var suites []byte
	if suites, b, err = vec16(b, "cipher_suites"); err != nil {
		return nil, fmt.Errorf("parsing ClientHello: %w", err)
	}
	if len(suites) == 0 || len(suites)%2 != 0 {
		return nil, fmt.Errorf("parsing ClientHello: cipher_suites of %d octets: %w", len(suites), ErrBadLength)
	}
	ch.CipherSuites = make([]uint16, len(suites)/2)
	for i := range ch.CipherSuites {
		ch.CipherSuites[i] = binary.BigEndian.Uint16(suites[2*i:])
	}
	if ch.CompressionMethods, b, err = vec8(b, "compression_methods"); err != nil {
		return nil, fmt.Errorf("parsing ClientHello: %w", err)
	}
	if len(ch.CompressionMethods) == 0 {
		return nil, fmt.Errorf("parsing ClientHello: no compression method: %w", ErrBadLength)
	}
	he, err := parseExtensions(b)
	if err != nil {
		return nil, fmt.Errorf("parsing ClientHello: %w", err)
	}
	ch.Extensions = he.all
	ch.ExternalSessionID, ch.HasExternalSessionID = he.esid, he.hasESID
	ch.SRTPProfiles, ch.SRTPMKI, ch.HasUseSRTP = he.srtpProfiles, he.srtpMKI, he.hasUseSRTP
	return ch, nil
}

// ParseServerHello parses the body of a ServerHello handshake message (after
// the 12-octet handshake header), with the same checks as ParseClientHello;
// use_srtp must carry exactly one profile (ErrBadUseSRTP otherwise). Byte
// slices of the result alias body.
func ParseServerHello(body []byte) (*ServerHello, error) {
	const head = 2 + RandomLen
	if len(body) < head {
		return nil, fmt.Errorf("parsing ServerHello: %d octets: %w", len(body), ErrBadLength)
	}
	sh := &ServerHello{Version: binary.BigEndian.Uint16(body)}
	if body[0] != 0xFE {
		return nil, fmt.Errorf("parsing ServerHello: server_version %#04x: %w", sh.Version, ErrBadVersion)
	}
	copy(sh.Random[:], body[2:head])
	b := body[head:]

	var err error
	if sh.SessionID, b, err = vec8(b, "session_id"); err != nil {
		return nil, fmt.Errorf("parsing ServerHello: %w", err)
	}
	if len(sh.SessionID) > MaxSessionIDLen {
		return nil, fmt.Errorf("parsing ServerHello: session_id of %d octets: %w", len(sh.SessionID), ErrBadLength)
	}
	if len(b) < 3 {
		return nil, fmt.Errorf("parsing ServerHello: cipher_suite and compression_method: %d octets: %w", len(b), ErrBadLength)
	}
	sh.CipherSuite = binary.BigEndian.Uint16(b)
	sh.CompressionMethod = b[2]
	he, err := parseExtensions(b[3:])
	if err != nil {
		return nil, fmt.Errorf("parsing ServerHello: %w", err)
	}
	if he.hasUseSRTP && len(he.srtpProfiles) != 1 {
		return nil, fmt.Errorf("parsing ServerHello: use_srtp selects %d profiles: %w", len(he.srtpProfiles), ErrBadUseSRTP)
	}
	sh.Extensions = he.all
	sh.ExternalSessionID, sh.HasExternalSessionID = he.esid, he.hasESID
	sh.SRTPProfiles, sh.SRTPMKI, sh.HasUseSRTP = he.srtpProfiles, he.srtpMKI, he.hasUseSRTP
	return sh, nil
}

// ParseClientHelloMessage parses one whole, unfragmented ClientHello
// handshake message (12-octet header then body), as it appears in a record
// when the message was not fragmented. It fails with ErrNotClientHello for
// another msg_type and ErrBadFragment when the fragment is not the whole
// message or octets follow it; use a Reassembler for fragmented input.
func ParseClientHelloMessage(msg []byte) (*ClientHello, error) {
	h, body, err := wholeMessage(msg, HandshakeTypeClientHello, ErrNotClientHello)
	if err != nil {
		return nil, err
	}
	ch, err := ParseClientHello(body)
	if err != nil {
		return nil, err
	}
	ch.MessageSeq = h.MessageSeq
	return ch, nil
}

// ParseServerHelloMessage is ParseClientHelloMessage for a ServerHello
// (ErrNotServerHello for another msg_type).
func ParseServerHelloMessage(msg []byte) (*ServerHello, error) {
	h, body, err := wholeMessage(msg, HandshakeTypeServerHello, ErrNotServerHello)
	if err != nil {
		return nil, err
	}
	sh, err := ParseServerHello(body)
	if err != nil {
		return nil, err
	}
	sh.MessageSeq = h.MessageSeq
	return sh, nil
}

func wholeMessage(msg []byte, typ uint8, errType error) (HandshakeHeader, []byte, error) {
	h, body, rest, err := NextHandshake(msg)
	switch {
	case err != nil:
		return h, nil, fmt.Errorf("reading handshake header: %w", err)
	case h.Type != typ:
		return h, nil, fmt.Errorf("handshake msg_type %d: %w", h.Type, errType)
	case h.FragmentOffset != 0 || h.FragmentLength != h.Length:
		return h, nil, fmt.Errorf("fragment %d+%d of a %d-octet message: %w",
			h.FragmentOffset, h.FragmentLength, h.Length, ErrBadFragment)
	case len(rest) != 0:
		return h, nil, fmt.Errorf("%d octets after the message: %w", len(rest), ErrBadFragment)
	}
	return h, body, nil
}

// vec8 splits an opaque<0..255> off the front of b; the vector is nil when
// empty.
func vec8(b []byte, field string) (v, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, fmt.Errorf("%s: missing length: %w", field, ErrBadLength)
	}
	n := int(b[0])
	if len(b)-1 < n {
		return nil, nil, fmt.Errorf("%s: length %d past the %d octets left: %w", field, n, len(b)-1, ErrBadLength)
	}
	if n > 0 {
		v = b[1 : 1+n : 1+n]
	}
	return v, b[1+n:], nil
}

// vec16 splits an opaque<0..2^16-1> off the front of b.
func vec16(b []byte, field string) (v, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%s: missing length: %w", field, ErrBadLength)
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < n {
		return nil, nil, fmt.Errorf("%s: length %d past the %d octets left: %w", field, n, len(b)-2, ErrBadLength)
	}
	return b[2 : 2+n : 2+n], b[2+n:], nil
}
