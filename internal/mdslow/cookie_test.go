package mdslow

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

func TestParseHelloHead(t *testing.T) {
	good := clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{7}, []byte("0123456789abcdef0123456789abcdef"))
	h, err := parseHelloHead(good)
	if err != nil || h.msgSeq != 1 || h.recSeq != 1 || h.version != 0xFEFD || h.random[0] != 7 ||
		len(h.sessionID) != 0 || string(h.cookie) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("parseHelloHead = %+v, %v", h, err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errNotHello},
		{"STUN", []byte{0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42}, errNotHello},
		{"record header only", good[:13], errNotHello},
		{"record shorter than its length", good[:40], errNotHello},
		{"alert record", mut(func(b []byte) []byte { b[0] = 21; return b }), errNotHello},
		{"epoch 1", mut(func(b []byte) []byte { b[4] = 1; return b }), errNotHello},
		{"ServerHello", mut(func(b []byte) []byte { b[13] = 2; return b }), errNotHello},
		{"not the first fragment", mut(func(b []byte) []byte { b[13+8] = 1; return b }), errNotHello},
		{"fragment beyond its message", mut(func(b []byte) []byte { b[13+3] = 1; return b }), errNotHello},
		{"session_id over 32", mut(func(b []byte) []byte { b[13+12+34] = 33; return b }), errNotHello},
		{"session_id past the fragment", mut(func(b []byte) []byte {
			b[13+12+34] = 32
			b[13+11] = 40
			b[13+3] = 40
			b[12] = 12 + 40
			return b[:13+12+40]
		}), errShortHello},
		{"cookie past the fragment", mut(func(b []byte) []byte { b[13+12+35] = 255; return b }), errShortHello},
		{"fragment ends before session_id", shortHelloFragment(), errShortHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseHelloHead(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCookie(t *testing.T) {
	now := time.Unix(1000, 0)
	j, err := newCookieJar(now)
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("198.18.0.11:4000")
	hello := func(random byte, cookie []byte) *helloHead {
		h, err := parseHelloHead(clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{random}, cookie))
		if err != nil {
			t.Fatal(err)
		}
		return &h
	}
	c := bytes.Clone(j.make(nil, now, from, 5004, hello(1, nil)))
	if len(c) != cookieLen {
		t.Fatalf("cookie of %d octets", len(c))
	}
	if !j.valid(now, from, 5004, hello(1, c)) {
		t.Fatal("own cookie refused")
	}
	for _, tc := range []struct {
		name string
		ok   bool
		f    func() bool
	}{
		{"other source port", false, func() bool { return j.valid(now, netip.MustParseAddrPort("198.18.0.11:4001"), 5004, hello(1, c)) }},
		{"other source address", false, func() bool { return j.valid(now, netip.MustParseAddrPort("198.18.0.12:4000"), 5004, hello(1, c)) }},
		{"other media port", false, func() bool { return j.valid(now, from, 5006, hello(1, c)) }},
		{"other random", false, func() bool { return j.valid(now, from, 5004, hello(2, c)) }},
		{"truncated", false, func() bool { return j.valid(now, from, 5004, hello(1, c[:31])) }},
		{"one bit flipped", false, func() bool { x := bytes.Clone(c); x[5] ^= 1; return j.valid(now, from, 5004, hello(1, x)) }},
		{"after one rotation", true, func() bool { return j.valid(now.Add(cookieRotation), from, 5004, hello(1, c)) }},
		{"after two rotations", false, func() bool { return j.valid(now.Add(2*cookieRotation), from, 5004, hello(1, c)) }},
		{"after an hour of silence", false, func() bool {
			k, _ := newCookieJar(now)
			ck := bytes.Clone(k.make(nil, now, from, 5004, hello(1, nil)))
			return k.valid(now.Add(time.Hour), from, 5004, hello(1, ck))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f(); got != tc.ok {
				t.Fatalf("valid = %v, want %v", got, tc.ok)
			}
		})
	}
}

// TestHelloVerifyRequest: the answer echoes the ClientHello's record
// sequence number and message_seq (RFC 6347 section 4.2.1) and is smaller
// than the ClientHello it answers (no amplification).
func TestHelloVerifyRequest(t *testing.T) {
	ch := clientHelloWith(t, "some-tls-id-of-twenty-octets", 0, [32]byte{1}, nil)
	ch[10] = 42 // record sequence number
	h, err := parseHelloHead(ch)
	if err != nil {
		t.Fatal(err)
	}
	cookie := bytes.Repeat([]byte{0xAB}, cookieLen)
	b := appendHelloVerifyRequest(nil, &h, cookie)
	rec, _, err := dtlsmsg.NextRecord(b)
	if err != nil || rec.Sequence != 42 {
		t.Fatalf("record %+v %v", rec, err)
	}
	if got := hvrCookie(t, b); !bytes.Equal(got, cookie) {
		t.Fatalf("cookie %x", got)
	}
	if len(b) >= len(ch) {
		t.Fatalf("HelloVerifyRequest of %d octets answers a ClientHello of %d", len(b), len(ch))
	}
}

func FuzzHelloHead(f *testing.F) {
	f.Add(clientHelloWith(&testing.T{}, "some-tls-id-of-twenty-octets", 1, [32]byte{7}, []byte("0123456789abcdef0123456789abcdef")))
	f.Add(shortHelloFragment())
	f.Add([]byte{22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	j, err := newCookieJar(time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("198.18.0.11:4000")
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHelloHead(b)
		if err != nil {
			if !errors.Is(err, errNotHello) && !errors.Is(err, errShortHello) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(h.random) != 32 || len(h.sessionID) > 32 || len(h.cookie) > 255 {
			t.Fatalf("head %+v", h)
		}
		// Every accepted head can be answered and its answer parses.
		out := appendHelloVerifyRequest(nil, &h, j.make(nil, time.Unix(0, 0), from, 5004, &h))
		if _, err := parseHelloHead(out); !errors.Is(err, errNotHello) {
			t.Fatalf("HelloVerifyRequest read as a ClientHello: %v", err)
		}
		if j.valid(time.Unix(0, 0), from, 5004, &h) && len(h.cookie) != cookieLen {
			t.Fatal("a cookie of the wrong length is valid")
		}
	})
}
