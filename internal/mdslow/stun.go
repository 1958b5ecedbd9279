package mdslow

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// STUN constants (RFC 5389).
const (
	stunHeaderLen   = 20
	stunMagicCookie = 0x2112A442
	// fingerprintXOR is XORed into the CRC-32 of FINGERPRINT (RFC 5389
	// section 15.5).
	fingerprintXOR = 0x5354554e

	stunBindingRequest  = 0x0001
	stunBindingSuccess  = 0x0101
	stunBindingError    = 0x0111
	attrUsername        = 0x0006
	attrMessageIntegrty = 0x0008
	attrErrorCode       = 0x0009
	attrXORMappedAddr   = 0x0020
	attrUseCandidate    = 0x0025 // RFC 8445 section 16.1
	attrFingerprint     = 0x8028
	miLen               = 20 // HMAC-SHA1
	// MaxSTUNMessage bounds the STUN messages the MD parses.
	MaxSTUNMessage = 1280
	maxUsername    = 513 // RFC 5389 section 15.3
)

// STUNMessage is a parsed STUN message. Slices alias the datagram.
type STUNMessage struct {
	// Type is the message type (class and method).
	Type uint16
	// TransactionID is the 96-bit transaction ID.
	TransactionID [12]byte
	// Username is the USERNAME attribute (nil when absent).
	Username []byte
	// HasIntegrity reports a MESSAGE-INTEGRITY attribute; Integrity is its
	// value and IntegrityOffset the offset of its attribute header.
	HasIntegrity    bool
	Integrity       []byte
	IntegrityOffset int
	// HasFingerprint reports a FINGERPRINT attribute, which was checked.
	HasFingerprint bool
	// UseCandidate reports a USE-CANDIDATE attribute before
	// MESSAGE-INTEGRITY (one after it is not covered by the integrity
	// check and is ignored).
	UseCandidate bool
}

// ParseSTUN parses a STUN message (RFC 5389 section 6 and 15) with bounds
// checks on every length, and verifies FINGERPRINT when present. It returns
// a *STUNError (wrapping ErrSTUN) on bad input; it never panics.
func ParseSTUN(b []byte) (*STUNMessage, error) {
	if len(b) < stunHeaderLen {
		return nil, stunErr("header", "short message")
	}
	if len(b) > MaxSTUNMessage {
		return nil, stunErr("header", "message too large")
	}
	if b[0]&0xC0 != 0 {
		return nil, stunErr("header", "first two bits not zero")
	}
	if binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return nil, stunErr("header", "bad magic cookie")
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 {
		return nil, stunErr("header", "length not a multiple of 4")
	}
	if n != len(b)-stunHeaderLen {
		return nil, stunErr("header", "length does not match the datagram")
	}
	m := &STUNMessage{Type: binary.BigEndian.Uint16(b[0:2])}
	copy(m.TransactionID[:], b[8:20])
	off := stunHeaderLen
	for off < len(b) {
		if len(b)-off < 4 {
			return nil, stunErr("attribute", "truncated attribute header")
		}
		typ := binary.BigEndian.Uint16(b[off:])
		alen := int(binary.BigEndian.Uint16(b[off+2:]))
		padded := (alen + 3) &^ 3
		if padded > len(b)-off-4 {
			return nil, stunErr("attribute", "attribute overruns the message")
		}
		val := b[off+4 : off+4+alen]
		if m.HasFingerprint {
			return nil, stunErr("attribute", "attribute after FINGERPRINT")
		}
		switch typ {
		case attrUsername:
			if m.HasIntegrity {
				break // ignored after MESSAGE-INTEGRITY (section 15.4)
			}
			if alen > maxUsername {
				return nil, stunErr("USERNAME", "too long")
			}
			m.Username = val
		case attrMessageIntegrty:
			if m.HasIntegrity {
				break
			}
			if alen != miLen {
				return nil, stunErr("MESSAGE-INTEGRITY", "length is not 20")
			}
			m.HasIntegrity, m.Integrity, m.IntegrityOffset = true, val, off
		case attrUseCandidate:
			if alen != 0 {
				return nil, stunErr("USE-CANDIDATE", "length is not 0")
			}
			if !m.HasIntegrity {
				m.UseCandidate = true
			}
		case attrFingerprint:
			if alen != 4 {
				return nil, stunErr("FINGERPRINT", "length is not 4")
			}
			if off+8 != len(b) {
				return nil, stunErr("FINGERPRINT", "not the last attribute")
			}
			if binary.BigEndian.Uint32(val) != fingerprint(b[:off], off+8-stunHeaderLen) {
				return nil, stunErr("FINGERPRINT", "mismatch")
			}
			m.HasFingerprint = true
		}
		off += 4 + padded
	}
	return m, nil
}

// fingerprint is the FINGERPRINT value of msg (the message up to the
// attribute) with the header length set to length.
func fingerprint(msg []byte, length int) uint32 {
	var hdr [4]byte
	copy(hdr[:], msg[:4])
	binary.BigEndian.PutUint16(hdr[2:], uint16(length))
	c := crc32.Update(0, crc32.IEEETable, hdr[:])
	c = crc32.Update(c, crc32.IEEETable, msg[4:])
	return c ^ fingerprintXOR
}

// integrity computes the MESSAGE-INTEGRITY HMAC-SHA1 of msg (the message up
// to the attribute) with the header length set to length.
func integrity(key, msg []byte, length int) []byte {
	h := hmac.New(sha1.New, key)
	var hdr [4]byte
	copy(hdr[:], msg[:4])
	binary.BigEndian.PutUint16(hdr[2:], uint16(length))
	h.Write(hdr[:])
	h.Write(msg[4:])
	return h.Sum(nil)
}

// VerifyIntegrity checks m's MESSAGE-INTEGRITY against the short-term
// password (RFC 5389 section 15.4) in constant time. raw is the datagram m
// was parsed from.
func (m *STUNMessage) VerifyIntegrity(raw []byte, password []byte) bool {
	if !m.HasIntegrity || m.IntegrityOffset+4+miLen > len(raw) {
		return false
	}
	want := integrity(password, raw[:m.IntegrityOffset], m.IntegrityOffset+4+miLen-stunHeaderLen)
	return subtle.ConstantTimeCompare(want, m.Integrity) == 1
}

// stunBuilder appends attributes to a STUN message.
type stunBuilder struct{ b []byte }

func newStunBuilder(typ uint16, txid [12]byte) *stunBuilder {
	b := make([]byte, stunHeaderLen, 128)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	copy(b[8:], txid[:])
	return &stunBuilder{b: b}
}

func (s *stunBuilder) attr(typ uint16, val []byte) {
	var h [4]byte
	binary.BigEndian.PutUint16(h[0:], typ)
	binary.BigEndian.PutUint16(h[2:], uint16(len(val)))
	s.b = append(s.b, h[:]...)
	s.b = append(s.b, val...)
	for len(s.b)%4 != 0 {
		s.b = append(s.b, 0)
	}
	s.setLen(len(s.b) - stunHeaderLen)
}

func (s *stunBuilder) setLen(n int) { binary.BigEndian.PutUint16(s.b[2:], uint16(n)) }

func (s *stunBuilder) xorMappedAddress(ap netip.AddrPort) {
	var v []byte
	port := ap.Port() ^ uint16(stunMagicCookie>>16)
	a := ap.Addr().Unmap()
	if a.Is4() {
		v = make([]byte, 8)
		v[1] = 0x01
		binary.BigEndian.PutUint16(v[2:], port)
		ip := a.As4()
		binary.BigEndian.PutUint32(v[4:], binary.BigEndian.Uint32(ip[:])^stunMagicCookie)
	} else {
		v = make([]byte, 20)
		v[1] = 0x02
		binary.BigEndian.PutUint16(v[2:], port)
		ip := a.As16()
		var x [16]byte
		binary.BigEndian.PutUint32(x[0:], stunMagicCookie)
		copy(x[4:], s.b[8:20])
		for i := range ip {
			v[4+i] = ip[i] ^ x[i]
		}
	}
	s.attr(attrXORMappedAddr, v)
}

func (s *stunBuilder) errorCode(code int, reason string) {
	v := make([]byte, 4, 4+len(reason))
	v[2] = byte(code / 100)
	v[3] = byte(code % 100)
	s.attr(attrErrorCode, append(v, reason...))
}

// integrity appends MESSAGE-INTEGRITY keyed with password.
func (s *stunBuilder) integrity(password []byte) {
	mac := integrity(password, s.b, len(s.b)+4+miLen-stunHeaderLen)
	s.attr(attrMessageIntegrty, mac)
}

// fingerprint appends FINGERPRINT; it must be the last attribute.
func (s *stunBuilder) fingerprint() {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], fingerprint(s.b, len(s.b)+8-stunHeaderLen))
	s.attr(attrFingerprint, v[:])
}

// ICECredential is what one of the MD's local ufrags authenticates.
type ICECredential struct {
	// Pwd is the short-term password (the MD's ice-pwd).
	Pwd string
	// Session is the session the ufrag was issued for ("" for the
	// configured credentials, which belong to no session).
	Session string
	// Remote is the endpoint's ufrag: when set, the USERNAME must be
	// exactly "local:Remote".
	Remote string
}

// Credentials looks up the ICE credentials of a local username fragment
// (the ICE-lite MD's ufrag).
type Credentials interface {
	ICECredential(ufrag string) (ICECredential, bool)
}

// STUNResult says what AnswerSTUN did.
type STUNResult int

// AnswerSTUN outcomes.
const (
	// STUNAnswered: a Binding success response was built.
	STUNAnswered STUNResult = iota
	// STUNRejected: an error response was built (400 or 401).
	STUNRejected
	// STUNIgnored: no answer (not a request we answer, or malformed).
	STUNIgnored
)

// STUNCheck is what an answered check proved, for the relay to act on.
// Session, UseCandidate and TransactionID are set only when Result is
// STUNAnswered (the request's MESSAGE-INTEGRITY verified).
type STUNCheck struct {
	Result STUNResult
	// Session is the session whose credentials authenticated the check
	// ("" for the configured credentials).
	Session string
	// UseCandidate reports USE-CANDIDATE under the integrity check: the
	// controlling agent nominated this pair (RFC 8445 section 8.1.1).
	UseCandidate bool
	// TransactionID is the request's transaction ID.
	TransactionID [12]byte
}

// AnswerSTUN answers an ICE connectivity check (RFC 8445 section 7.3, ICE
// lite): a Binding request whose USERNAME is "localUfrag:remoteUfrag" with a
// known local ufrag (and, when the credentials name one, the expected
// remote ufrag) and a valid MESSAGE-INTEGRITY gets a success response
// with XOR-MAPPED-ADDRESS (from), MESSAGE-INTEGRITY and FINGERPRINT. A
// request without USERNAME or MESSAGE-INTEGRITY gets 400, one with an
// unknown ufrag, a wrong remote ufrag or a bad MESSAGE-INTEGRITY 401 (RFC
// 5389 section 10.1.2). Malformed messages and non-requests are ignored
// (no answer).
func AnswerSTUN(req []byte, from netip.AddrPort, creds Credentials) ([]byte, STUNCheck, error) {
	m, err := ParseSTUN(req)
	if err != nil {
		return nil, STUNCheck{Result: STUNIgnored}, err
	}
	if m.Type != stunBindingRequest {
		return nil, STUNCheck{Result: STUNIgnored}, stunErr("header", "not a Binding request")
	}
	reject := func(code int, reason string) ([]byte, STUNCheck, error) {
		s := newStunBuilder(stunBindingError, m.TransactionID)
		s.errorCode(code, reason)
		s.fingerprint()
		return s.b, STUNCheck{Result: STUNRejected}, stunErr("check", reason)
	}
	if m.Username == nil || !m.HasIntegrity {
		return reject(400, "Bad Request")
	}
	local, remote, colon := m.Username, []byte(nil), false
	for i, c := range m.Username {
		if c == ':' {
			local, remote, colon = m.Username[:i], m.Username[i+1:], true
			break
		}
	}
	var cred ICECredential
	ok := false
	if creds != nil {
		cred, ok = creds.ICECredential(string(local))
	}
	if ok && cred.Remote != "" && (!colon || string(remote) != cred.Remote) {
		ok = false
	}
	if !ok || !m.VerifyIntegrity(req, []byte(cred.Pwd)) {
		return reject(401, "Unauthorized")
	}
	s := newStunBuilder(stunBindingSuccess, m.TransactionID)
	s.xorMappedAddress(from)
	s.integrity([]byte(cred.Pwd))
	s.fingerprint()
	return s.b, STUNCheck{Result: STUNAnswered, Session: cred.Session, UseCandidate: m.UseCandidate, TransactionID: m.TransactionID}, nil
}
