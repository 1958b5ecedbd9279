package dtlsmsg

import (
	"encoding/binary"
	"fmt"
)

// Extension types read or built by this package (IANA TLS ExtensionType
// registry).
const (
	// ExtensionUseSRTP is use_srtp (RFC 5764 section 4.1.1).
	ExtensionUseSRTP uint16 = 14
	// ExtensionExternalIDHash is external_id_hash (RFC 8844 section 4.2);
	// kept raw, not interpreted.
	ExtensionExternalIDHash uint16 = 55
	// ExtensionExternalSessionID is external_session_id (RFC 8844
	// section 4.3).
	ExtensionExternalSessionID uint16 = 56
)

// Bounds of ExternalSessionId.session_id<20..255> (RFC 8844 section 4.3).
const (
	ExternalSessionIDMinLen = 20
	ExternalSessionIDMaxLen = 255
)

// Extension is one hello extension as it appeared on the wire. Data is the
// extension_data (without the type and length) and aliases the parsed
// message.
type Extension struct {
	Type uint16
	Data []byte
}

// AppendExtension appends one encoded extension (type, uint16 length, data)
// to dst. It fails with ErrBadLength if data is longer than 65535 octets.
func AppendExtension(dst []byte, typ uint16, data []byte) ([]byte, error) {
	if len(data) > 0xFFFF {
		return dst, fmt.Errorf("building extension %d of %d octets: %w", typ, len(data), ErrBadLength)
	}
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	return append(dst, data...), nil
}

// AppendExternalSessionID appends the extension_data of external_session_id
// (RFC 8844 section 4.3: struct { opaque session_id<20..255>; }, that is a
// one-octet length followed by the id) to dst. For SDP the id is the ASCII
// tls-id value. It fails with ErrBadExternalSessionID when len(id) is
// outside 20..255. Wrap the result with AppendExtension and
// ExtensionExternalSessionID for a whole extension.
func AppendExternalSessionID(dst, id []byte) ([]byte, error) {
	if len(id) < ExternalSessionIDMinLen || len(id) > ExternalSessionIDMaxLen {
		return dst, fmt.Errorf("building external_session_id of %d octets (want %d..%d): %w",
			len(id), ExternalSessionIDMinLen, ExternalSessionIDMaxLen, ErrBadExternalSessionID)
	}
	dst = append(dst, byte(len(id)))
	return append(dst, id...), nil
}

// ParseExternalSessionID returns the session_id carried in the
// extension_data of an external_session_id extension. The result aliases
// data. It fails with ErrBadExternalSessionID if the length is outside
// 20..255 or does not account for exactly the octets of data.
func ParseExternalSessionID(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("parsing external_session_id: empty extension_data: %w", ErrBadExternalSessionID)
	}
	n := int(data[0])
	switch {
	case n < ExternalSessionIDMinLen:
		return nil, fmt.Errorf("parsing external_session_id: session_id of %d octets (want %d..%d): %w",
			n, ExternalSessionIDMinLen, ExternalSessionIDMaxLen, ErrBadExternalSessionID)
	case len(data)-1 != n:
		return nil, fmt.Errorf("parsing external_session_id: length %d for %d octets: %w",
			n, len(data)-1, ErrBadExternalSessionID)
	}
	return data[1 : 1+n : 1+n], nil
}

// AppendUseSRTP appends the extension_data of use_srtp (RFC 5764 section
// 4.1.1: SRTPProtectionProfiles<2..2^16-1> then srtp_mki<0..255>) to dst.
// It fails with ErrBadUseSRTP for no profiles, more than 32767 profiles, or
// an MKI longer than 255 octets.
func AppendUseSRTP(dst []byte, profiles []uint16, mki []byte) ([]byte, error) {
	switch {
	case len(profiles) == 0 || len(profiles) > 0x7FFF:
		return dst, fmt.Errorf("building use_srtp with %d profiles: %w", len(profiles), ErrBadUseSRTP)
	case len(mki) > 255:
		return dst, fmt.Errorf("building use_srtp with a %d-octet MKI: %w", len(mki), ErrBadUseSRTP)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(2*len(profiles)))
	for _, p := range profiles {
		dst = binary.BigEndian.AppendUint16(dst, p)
	}
	dst = append(dst, byte(len(mki)))
	return append(dst, mki...), nil
}

// ParseUseSRTP returns the protection profiles (in the sender's order) and
// the MKI carried in the extension_data of a use_srtp extension. The MKI is
// nil when empty and otherwise aliases data. It fails with ErrBadUseSRTP for
// an empty or odd-length profile list, a vector running past data, or
// octets after srtp_mki.
func ParseUseSRTP(data []byte) (profiles []uint16, mki []byte, err error) {
	if len(data) < 2 {
		return nil, nil, fmt.Errorf("parsing use_srtp: %d octets: %w", len(data), ErrBadUseSRTP)
	}
	n := int(binary.BigEndian.Uint16(data))
	rest := data[2:]
	switch {
	case n == 0 || n%2 != 0:
		return nil, nil, fmt.Errorf("parsing use_srtp: profile list of %d octets: %w", n, ErrBadUseSRTP)
	case len(rest) < n+1:
		return nil, nil, fmt.Errorf("parsing use_srtp: profile list of %d octets and MKI length run past %d octets: %w",
			n, len(rest), ErrBadUseSRTP)
	}
	m := int(rest[n])
	if len(rest)-n-1 != m {
		return nil, nil, fmt.Errorf("parsing use_srtp: srtp_mki of %d octets for %d octets: %w",
			m, len(rest)-n-1, ErrBadUseSRTP)
	}
	profiles = make([]uint16, n/2)
	for i := range profiles {
		profiles[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	if m > 0 {
		mki = rest[n+1 : n+1+m : n+1+m]
	}
	return profiles, mki, nil
}

// helloExtensions holds the extensions of one hello message and the fields
// decoded from the two this package interprets.
type helloExtensions struct {
	all          []Extension
	esid         []byte
	hasESID      bool
	srtpProfiles []uint16
	srtpMKI      []byte
	hasUseSRTP   bool
}

// parseExtensions parses what follows the compression method(s) of a hello
// message: nothing, or extensions<0..2^16-1> filling b exactly.
func parseExtensions(b []byte) (helloExtensions, error) {
	var he helloExtensions
	if len(b) == 0 {
		return he, nil
	}
	if len(b) < 2 {
		return he, fmt.Errorf("extensions: 1 octet left: %w", ErrBadLength)
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n != len(b) {
		return he, fmt.Errorf("extensions: block length %d for %d octets: %w", n, len(b), ErrBadLength)
	}
	var seen [1 << 16 / 64]uint64
	for len(b) > 0 {
		if len(b) < 4 {
			return helloExtensions{}, fmt.Errorf("extensions: %d octets left for an extension header: %w", len(b), ErrBadLength)
		}
		typ := binary.BigEndian.Uint16(b)
		l := int(binary.BigEndian.Uint16(b[2:]))
		b = b[4:]
		if l > len(b) {
			return helloExtensions{}, fmt.Errorf("extension %d: length %d past the %d octets left: %w", typ, l, len(b), ErrBadLength)
		}
		data := b[:l:l]
		b = b[l:]
		if seen[typ/64]&(1<<(typ%64)) != 0 {
			return helloExtensions{}, fmt.Errorf("extension %d: %w", typ, ErrDuplicateExtension)
		}
		seen[typ/64] |= 1 << (typ % 64)
		switch typ {
		case ExtensionExternalSessionID:
			id, err := ParseExternalSessionID(data)
			if err != nil {
				return helloExtensions{}, err
			}
			he.esid, he.hasESID = id, true
		case ExtensionUseSRTP:
			p, mki, err := ParseUseSRTP(data)
			if err != nil {
				return helloExtensions{}, err
			}
			he.srtpProfiles, he.srtpMKI, he.hasUseSRTP = p, mki, true
		}
		if he.all == nil {
			he.all = make([]Extension, 0, 16)
		}
		he.all = append(he.all, Extension{Type: typ, Data: data})
	}
	return he, nil
}
