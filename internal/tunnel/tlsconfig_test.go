package tunnel

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPeerPolicy(t *testing.T) {
	p := newPKI(t)
	md := p.md.Leaf // CN and DNS SAN md1.example
	fp := SPKIOf(md)
	tests := []struct {
		name   string
		policy PeerPolicy
		ok     bool
	}{
		{"empty accepts any verified peer", PeerPolicy{}, true},
		{"SPKI pinned", PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.kd.Leaf), fp}}, true},
		{"other SPKI", PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.kd.Leaf)}}, false},
		{"name, case-insensitive", PeerPolicy{Names: []string{"MD1.EXAMPLE"}}, true},
		{"other name", PeerPolicy{Names: []string{"md2.example"}}, false},
		{"either entry matches", PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.kd.Leaf)}, Names: []string{"md1.example"}}, true},
		{"empty name never matches an empty CN", PeerPolicy{Names: []string{""}}, false},
		{"same name from the foreign CA key is a different SPKI", PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.foreign.Leaf)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(md)
			if (err == nil) != tt.ok {
				t.Fatalf("Check = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnauthorizedPeer) {
				t.Fatalf("error %v does not wrap ErrUnauthorizedPeer", err)
			}
		})
	}
	if err := (&PeerPolicy{}).Check(nil); !errors.Is(err, ErrUnauthorizedPeer) {
		t.Fatalf("nil certificate: %v", err)
	}
}

func TestParseSPKIFingerprint(t *testing.T) {
	p := newPKI(t)
	fp := SPKIOf(p.md.Leaf)
	s := fp.String()
	for _, in := range []string{s, strings.ToUpper(s), colons(s)} {
		got, err := ParseSPKIFingerprint(in)
		if err != nil || got != fp {
			t.Fatalf("ParseSPKIFingerprint(%q) = %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "zz", s[:62], s + "00"} {
		if _, err := ParseSPKIFingerprint(bad); err == nil {
			t.Fatalf("ParseSPKIFingerprint(%q) accepted", bad)
		}
	}
}

func colons(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s[i : i+2])
	}
	return b.String()
}

// Half-open detection relies on the kernel: check the socket options that
// tuneTCP sets on tunnel sockets.
func TestTuneTCPSetsKeepaliveAndUserTimeout(t *testing.T) {
	ln := listen(t)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := tuneTCP(c, 7*time.Second); err != nil {
		t.Fatal(err)
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ level, opt, v int }{
		"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(DefaultKeepAliveIdle / time.Second)},
		"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(DefaultKeepAliveInterval / time.Second)},
		"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, DefaultKeepAliveCount},
		"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 7000},
	}
	for name, w := range want {
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), w.level, w.opt) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != w.v {
			t.Errorf("%s = %d, %v; want %d", name, got, gerr, w.v)
		}
	}
	// Not a TCP socket: nothing to do, no error.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := tuneTCP(a, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestBackoffDelay(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for n := range 80 {
		ceil := hi
		if n < 6 {
			ceil = lo << n
		}
		var maxSeen time.Duration
		for range 200 {
			d := backoffDelay(n, lo, hi)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/2 { // full jitter spreads over the whole range
			t.Fatalf("attempt %d: max %v of 200 draws, ceiling %v", n, maxSeen, ceil)
		}
	}
}
