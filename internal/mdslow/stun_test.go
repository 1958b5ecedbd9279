package mdslow

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

type creds map[string]string

func (c creds) ICEPassword(u string) (string, bool) { p, ok := c[u]; return p, ok }

// request builds a Binding request with USERNAME, MESSAGE-INTEGRITY keyed
// with pwd and FINGERPRINT.
func request(user, pwd string) []byte {
	s := newStunBuilder(stunBindingRequest, [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	s.attr(attrUsername, []byte(user))
	s.attr(0x0024, []byte{0, 0, 0, 1}) // PRIORITY
	s.integrity([]byte(pwd))
	s.fingerprint()
	return s.b
}

func TestAnswerSTUN(t *testing.T) {
	c := creds{"mdufrag": "md-password-0123456789"}
	from := netip.MustParseAddrPort("198.18.0.11:40000")
	resp, res, err := AnswerSTUN(request("mdufrag:epufrag", "md-password-0123456789"), from, c)
	if err != nil || res != STUNAnswered {
		t.Fatalf("AnswerSTUN = %v, %v", res, err)
	}
	m, err := ParseSTUN(resp)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	if m.Type != stunBindingSuccess || !m.HasFingerprint || !m.VerifyIntegrity(resp, []byte("md-password-0123456789")) {
		t.Fatalf("bad response %+v", m)
	}
	// XOR-MAPPED-ADDRESS decodes to from.
	v := resp[stunHeaderLen+4 : stunHeaderLen+12]
	if binary.BigEndian.Uint16(resp[stunHeaderLen:]) != attrXORMappedAddr {
		t.Fatal("first attribute is not XOR-MAPPED-ADDRESS")
	}
	port := binary.BigEndian.Uint16(v[2:]) ^ uint16(stunMagicCookie>>16)
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], binary.BigEndian.Uint32(v[4:])^stunMagicCookie)
	if got := netip.AddrPortFrom(netip.AddrFrom4(ip), port); got != from {
		t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, from)
	}
	// IPv6 mapped address round-trips through the parser too.
	if _, res, _ := AnswerSTUN(request("mdufrag:x", "md-password-0123456789"), netip.MustParseAddrPort("[2001:db8::1]:5"), c); res != STUNAnswered {
		t.Fatal("IPv6 source not answered")
	}
}

func TestAnswerSTUNRejects(t *testing.T) {
	c := creds{"mdufrag": "md-password-0123456789"}
	from := netip.MustParseAddrPort("198.18.0.11:40000")
	noMI := newStunBuilder(stunBindingRequest, [12]byte{})
	noMI.attr(attrUsername, []byte("mdufrag:x"))
	for _, tc := range []struct {
		name string
		req  []byte
		want STUNResult
	}{
		{"wrong password", request("mdufrag:x", "nope"), STUNRejected},
		{"unknown ufrag", request("other:x", "md-password-0123456789"), STUNRejected},
		{"no integrity", noMI.b, STUNRejected},
		{"not a request", func() []byte { b := request("mdufrag:x", "p"); b[1] = 0x11; return b }(), STUNIgnored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, res, _ := AnswerSTUN(tc.req, from, c)
			if res != tc.want {
				t.Fatalf("result %v, want %v", res, tc.want)
			}
			if res == STUNRejected {
				if m, err := ParseSTUN(resp); err != nil || m.Type != stunBindingError {
					t.Fatalf("error response %v %v", m, err)
				}
			}
		})
	}
}

func TestParseSTUNBad(t *testing.T) {
	good := request("a:b", "pw")
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:19]},
		{"top bits", mut(func(b []byte) []byte { b[0] |= 0x80; return b })},
		{"bad cookie", mut(func(b []byte) []byte { b[4] ^= 1; return b })},
		{"length not multiple of 4", mut(func(b []byte) []byte { b[3] |= 1; return b })},
		{"length too long", mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], uint16(len(b))); return b })},
		{"truncated datagram", good[:len(good)-4]},
		{"attribute overrun", mut(func(b []byte) []byte { binary.BigEndian.PutUint16(b[22:], 0xFFF0); return b })},
		{"bad fingerprint", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"short integrity", func() []byte {
			s := newStunBuilder(stunBindingRequest, [12]byte{})
			s.attr(attrMessageIntegrty, make([]byte, 16))
			return s.b
		}()},
		{"attribute after fingerprint", func() []byte {
			s := newStunBuilder(stunBindingRequest, [12]byte{})
			s.fingerprint()
			s.attr(attrUsername, []byte("x"))
			return s.b
		}()},
		{"too large", make([]byte, MaxSTUNMessage+4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSTUN(tc.in); !errors.Is(err, ErrSTUN) {
				t.Fatalf("ParseSTUN = %v, want ErrSTUN", err)
			}
		})
	}
}

func FuzzParseSTUN(f *testing.F) {
	f.Add(request("mdufrag:x", "md-password-0123456789"))
	f.Add(request("", ""))
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	c := creds{"mdufrag": "md-password-0123456789"}
	from := netip.MustParseAddrPort("198.18.0.11:1")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSTUN(b)
		if err == nil && m.HasIntegrity {
			_ = m.VerifyIntegrity(b, []byte("k"))
		}
		resp, res, _ := AnswerSTUN(b, from, c)
		if res != STUNIgnored {
			if _, err := ParseSTUN(resp); err != nil {
				t.Fatalf("our response does not parse: %v", err)
			}
		}
	})
}
