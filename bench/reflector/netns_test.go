package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestXDPNetns reflects real frames through a veth pair in both XDP modes:
// three endpoints on the peer side (one address, three ports, as the bench
// topology has them) and a stranger. Media from an endpoint reaches the
// two others octet for octet, from the reflector's media address, and not
// the sender; the stranger's media and DTLS (which the classifier
// redirects to the AF_XDP socket as it does for mdfast) reach nobody and
// are counted; every datagram went through the classifier's redirect
// (there is no kernel socket on the media port to take it otherwise).
// Close leaves no XDP program and no goroutine.
func TestXDPNetns(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, m := range []dataplane.Mode{dataplane.ModeXDPGeneric, dataplane.ModeXDPNative} {
		t.Run(m.String(), func(t *testing.T) { testXDPNetns(t, m) })
	}
}

func testXDPNetns(t *testing.T, mode dataplane.Mode) {
	pair := netnstest.NewPair(t)
	const mediaPort = 5004
	md := netip.AddrPortFrom(pair.MD.Addr, mediaPort)
	var eps []netip.AddrPort
	var conns []*net.UDPConn
	for i := range 4 { // the fourth is the stranger
		c, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, uint16(41000+i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
		eps = append(eps, netip.AddrPortFrom(pair.Peer.Addr, uint16(41000+i)))
	}
	var x *xdpPlane
	err := pair.MD.NS.Do(func() error {
		var err error
		x, err = openXDP(xdpOptions{Mode: mode, Interface: pair.MD.Name, Port: mediaPort, Members: eps[:3]})
		return err
	})
	if err != nil {
		t.Fatalf("openXDP: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			x.Close()
		}
	})
	if !strings.HasPrefix(x.Describe(), mode.String()) {
		t.Fatalf("describes itself as %q", x.Describe())
	}
	recv := func(i int, timeout time.Duration) ([]byte, bool) {
		t.Helper()
		return netnstest.RecvFrom(t, conns[i], md, timeout, fmt.Sprintf("endpoint %d", i))
	}
	send := func(i int, b []byte) {
		t.Helper()
		if _, err := conns[i].WriteToUDPAddrPort(b, md); err != nil {
			t.Fatal(err)
		}
	}
	// The neighbour table resolves in the background: send until the
	// first copy arrives.
	warm := rtp(0, 60)
	for try := 0; ; try++ {
		if try == 100 {
			t.Fatalf("nothing reflected; counters %v", counters(x.Stats()))
		}
		send(0, warm)
		if _, ok := recv(1, 30*time.Millisecond); ok {
			break
		}
	}
	// Drain the warm-up copies.
	for i := range 3 {
		for {
			if _, ok := recv(i, 50*time.Millisecond); !ok {
				break
			}
		}
	}
	before, dwell0 := x.Stats(), x.Dwell()
	// Each endpoint sends media of several sizes (RTP and RTCP); the two
	// others get each datagram unchanged.
	sizes := []int{12 + 160, 12 + 1200, 8 + 40}
	for s := range 3 {
		for k, n := range sizes {
			b := rtp(byte(10*s+k), n)
			if k == 2 {
				b[1] = 200 // RTCP sender report
			}
			send(s, b)
			for r := range 3 {
				if r == s {
					continue
				}
				got, ok := recv(r, 500*time.Millisecond)
				if !ok {
					t.Fatalf("endpoint %d: nothing from endpoint %d's %d octets; counters %v", r, s, n, counters(x.Stats()))
				}
				if !bytes.Equal(got, b) {
					t.Fatalf("endpoint %d: got %d octets, not endpoint %d's %d", r, len(got), s, n)
				}
			}
			// The copies went out in one batch: had the sender been sent
			// one, it would be here by now.
			if _, ok := recv(s, 20*time.Millisecond); ok {
				t.Fatalf("endpoint %d got its own datagram back", s)
			}
		}
	}
	// The stranger's media and a member's DTLS go nowhere.
	send(3, rtp(99, 60))
	send(0, []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for r := range 4 {
		if b, ok := recv(r, 100*time.Millisecond); ok {
			t.Fatalf("endpoint %d got %d octets from a stranger or a DTLS record", r, len(b))
		}
	}
	cc, err := x.cl.Counters()
	if err != nil {
		t.Fatal(err)
	}
	closed = true
	st, err := x.Close()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	d := func(c dataplane.Counter) uint64 { return st[c] - before[c] }
	if d(dataplane.Forwarded) != 9 || d(dataplane.TxPackets) != 18 || d(dataplane.RxPackets) != 11 ||
		d(dataplane.DropUnknownSource) != 1 || d(dataplane.DropJunk) != 1 {
		t.Fatalf("counters over the test: forwarded %d, tx %d, rx %d, unknown source %d, junk %d (all %v)",
			d(dataplane.Forwarded), d(dataplane.TxPackets), d(dataplane.RxPackets), d(dataplane.DropUnknownSource), d(dataplane.DropJunk), counters(st))
	}
	// Every reflected datagram's dwell was measured (the XDP receive time
	// reached the reflector through the UMEM), none under 1 µs.
	dwell1 := x.Dwell()
	if dd := dwell1.Sub(&dwell0); dd.Count() != d(dataplane.Forwarded) || dd.Bins[0] != 0 {
		t.Fatalf("%d dwells for %d reflected datagrams, %d under 1 µs", dd.Count(), d(dataplane.Forwarded), dd.Bins[0])
	}
	if got := cc[bpf.CounterRedirect] + cc[bpf.CounterRedirectSlow]; got != st[dataplane.RxPackets] {
		t.Fatalf("classifier redirected %d datagrams, the reflector received %d (classifier %v)", got, st[dataplane.RxPackets], cc)
	}
	out, err := exec.Command("ip", "-n", pair.MD.NS.Name, "link", "show", "dev", pair.MD.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	if strings.Contains(string(out), "xdp") || strings.Contains(string(out), "prog/") {
		t.Fatalf("XDP program left after Close:\n%s", out)
	}
	testutil.GoroutinesGone(t, "main.(*xdpPlane).start", "neigh.(*Table).Run")
}
