package mdslow

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

type creds map[string]string

func (c creds) ICECredential(u string) (ICECredential, bool) {
	p, ok := c[u]
	return ICECredential{Pwd: p}, ok
}

// sessCreds are per-session credentials: ufrag to credential.
type sessCreds map[string]ICECredential

func (c sessCreds) ICECredential(u string) (ICECredential, bool) { x, ok := c[u]; return x, ok }

// request builds a Binding request with USERNAME, MESSAGE-INTEGRITY keyed
// with pwd and FINGERPRINT.
func request(user, pwd string) []byte {
	return check(user, pwd, [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, false)
}

// check builds a Binding request with transaction ID txid, USERNAME,
// PRIORITY, USE-CANDIDATE when nominate, MESSAGE-INTEGRITY keyed with pwd
// and FINGERPRINT.
func check(user, pwd string, txid [12]byte, nominate bool) []byte {
	s := newStunBuilder(stunBindingRequest, txid)
	s.attr(attrUsername, []byte(user))
	s.attr(0x0024, []byte{0, 0, 0, 1}) // PRIORITY
	if nominate {
		s.attr(attrUseCandidate, nil)
	}
	s.integrity([]byte(pwd))
	s.fingerprint()
	return s.b
}

func TestAnswerSTUN(t *testing.T) {
	c := creds{"mdufrag": "md-password-0123456789"}
	from := netip.MustParseAddrPort("198.18.0.11:40000")
	resp, chk, err := AnswerSTUN(request("mdufrag:epufrag", "md-password-0123456789"), from, c)
	if res := chk.Result; err != nil || res != STUNAnswered || chk.UseCandidate || chk.Session != "" {
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
	if _, chk, _ := AnswerSTUN(request("mdufrag:x", "md-password-0123456789"), netip.MustParseAddrPort("[2001:db8::1]:5"), c); chk.Result != STUNAnswered {
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
			resp, chk, _ := AnswerSTUN(tc.req, from, c)
			if res := chk.Result; res != tc.want {
				t.Fatalf("result %v, want %v", res, tc.want)
			}
			if chk.Result == STUNRejected {
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
		{"USE-CANDIDATE with a value", func() []byte {
			s := newStunBuilder(stunBindingRequest, [12]byte{})
			s.attr(attrUseCandidate, []byte{0, 0, 0, 1})
			return s.b
		}()},
		{"truncated USE-CANDIDATE header", func() []byte {
			s := newStunBuilder(stunBindingRequest, [12]byte{})
			s.b = append(s.b, 0x00, 0x25)
			s.setLen(2)
			return s.b
		}()},
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
	f.Add(check("mdufrag:x", "md-password-0123456789", [12]byte{9}, true))
	c := creds{"mdufrag": "md-password-0123456789"}
	from := netip.MustParseAddrPort("198.18.0.11:1")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSTUN(b)
		if err == nil && m.HasIntegrity {
			_ = m.VerifyIntegrity(b, []byte("k"))
		}
		resp, chk, _ := AnswerSTUN(b, from, c)
		if chk.Result != STUNIgnored {
			if _, err := ParseSTUN(resp); err != nil {
				t.Fatalf("our response does not parse: %v", err)
			}
		}
	})
}

func TestAnswerSTUNSession(t *testing.T) {
	const pwd = "session-password-0123456789"
	c := sessCreds{
		"sessufrag": {Pwd: pwd, Session: "s1", Remote: "epufrag"},
		"anyremote": {Pwd: pwd, Session: "s2"},
	}
	from := netip.MustParseAddrPort("198.18.0.11:40000")
	tx := [12]byte{7, 7, 7}
	for _, tc := range []struct {
		name      string
		req       []byte
		want      STUNResult
		session   string
		nominated bool
	}{
		{"nominated", check("sessufrag:epufrag", pwd, tx, true), STUNAnswered, "s1", true},
		{"not nominated", check("sessufrag:epufrag", pwd, tx, false), STUNAnswered, "s1", false},
		{"any remote ufrag", check("anyremote:whatever", pwd, tx, true), STUNAnswered, "s2", true},
		{"wrong remote ufrag", check("sessufrag:other", pwd, tx, true), STUNRejected, "", false},
		{"no remote ufrag", check("sessufrag", pwd, tx, true), STUNRejected, "", false},
		{"remote ufrag prefix", check("sessufrag:epufragX", pwd, tx, true), STUNRejected, "", false},
		{"bad integrity", check("sessufrag:epufrag", pwd+"x", tx, true), STUNRejected, "", false},
		{"USE-CANDIDATE after MESSAGE-INTEGRITY", func() []byte {
			s := newStunBuilder(stunBindingRequest, tx)
			s.attr(attrUsername, []byte("sessufrag:epufrag"))
			s.integrity([]byte(pwd))
			s.attr(attrUseCandidate, nil) // not covered by the integrity
			s.fingerprint()
			return s.b
		}(), STUNAnswered, "s1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, chk, _ := AnswerSTUN(tc.req, from, c)
			if chk.Result != tc.want || chk.Session != tc.session || chk.UseCandidate != tc.nominated {
				t.Fatalf("check %+v, want result %v session %q nominated %v", chk, tc.want, tc.session, tc.nominated)
			}
			if chk.Result == STUNAnswered && chk.TransactionID != tx {
				t.Fatalf("transaction ID %x", chk.TransactionID)
			}
		})
	}
}
