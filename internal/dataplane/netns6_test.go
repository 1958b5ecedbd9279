package dataplane

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestNetnsIPv6 runs the whole data plane over IPv6 in network namespaces
// (a dual-stack star, 2001:db8::/64): SRTP and SRTCP from one endpoint reach
// the two others re-encrypted under their own keys and are decrypted there
// with pion/srtp, in each mode.
func TestNetnsIPv6(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric, ModeSocket} {
		t.Run(m.String(), func(t *testing.T) { testNetnsIPv6(t, m) })
	}
}

func testNetnsIPv6(t *testing.T, mode Mode) {
	star := netnstest.NewStar6(t, 3)
	tbl := newMemTable()
	as := make([]netip.AddrPort, len(star.Endpoints))
	conns := make([]*net.UDPConn, len(star.Endpoints))
	for i, e := range star.Endpoints {
		as[i] = netip.AddrPortFrom(e.Addr6, 40000)
		err := e.NS.Do(func() error {
			var err error
			conns[i], err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(as[i]))
			return err
		})
		if err != nil {
			t.Fatalf("listen on %s: %v", as[i], err)
		}
		defer conns[i].Close()
	}
	eps := newConference(t, tbl, as)

	var dp *Dataplane
	err := star.MD.NS.Do(func() error {
		var err error
		dp, err = New(Config{
			Mode: mode, Interface: star.MD.Name, Ports: []uint16{mediaPort},
			NumFrames: 1024, RingSize: 256, BatchSize: 32, Poll: 20 * time.Millisecond,
			Table: tbl,
		})
		return err
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	if dp.Mode() != mode {
		t.Fatalf("mode %s, want %s", dp.Mode(), mode)
	}
	for _, e := range star.Endpoints {
		dp.Resolve(e.Addr6)
	}
	md := netip.AddrPortFrom(star.MD.Addr6, mediaPort)
	send := func(i int, b []byte) {
		t.Helper()
		if _, err := conns[i].WriteToUDPAddrPort(b, md); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(i int, timeout time.Duration) ([]byte, bool) {
		t.Helper()
		buf := make([]byte, 2048)
		conns[i].SetReadDeadline(time.Now().Add(timeout))
		n, from, err := conns[i].ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, false
		}
		if from != md {
			t.Fatalf("endpoint %d: datagram from %s, want %s", i, from, md)
		}
		return buf[:n], true
	}

	// The first packet may meet a neighbour table not yet refreshed after
	// Resolve (AF_XDP): endpoint 0 sends until both others receive.
	for got, try := [3]bool{}, 0; !got[1] || !got[2]; try++ {
		if st := dp.Stats(); try == 50 {
			t.Fatalf("nothing forwarded over IPv6 during warm-up; stats %s", nonZero(&st))
		}
		plain, enc := eps[0].sealRTP(t, 100)
		send(0, enc)
		for r := 1; r < 3; r++ {
			if b, ok := recv(r, 50*time.Millisecond); ok {
				eps[r].open(t, b, plain)
				got[r] = true
			}
		}
		for r := 1; r < 3; r++ { // a late copy of an earlier packet
			for b, ok := recv(r, time.Millisecond); ok; b, ok = recv(r, time.Millisecond) {
				if _, err := eps[r].dec.DecryptRTP(nil, b, nil); err != nil {
					t.Fatalf("warm-up: endpoint %d: %v", r, err)
				}
			}
		}
	}

	// Media: endpoint 0 sends RTP (sizes up to 1200 octets: IPv6 headers
	// are 20 octets longer than IPv4's) and RTCP; 1 and 2 decrypt each.
	const n = 20
	for k := range n {
		var plain, enc []byte
		if k%5 == 4 {
			plain, enc = eps[0].sealRTCP(t)
		} else {
			plain, enc = eps[0].sealRTP(t, 20+k*60)
		}
		send(0, enc)
		for r := 1; r < 3; r++ {
			b, ok := recv(r, 2*time.Second)
			if !ok {
				t.Fatalf("packet %d: endpoint %d received nothing; stats %s", k, r, nonZero(ptr(dp.Stats())))
			}
			eps[r].open(t, b, plain)
		}
	}
	if _, ok := recv(0, 20*time.Millisecond); ok {
		t.Fatal("the sender got its own packet back")
	}

	// Mixed families: endpoint 2 moves to its IPv4 address; endpoint 0
	// still sends over IPv6. The copy to endpoint 2 leaves from the MD's
	// IPv4 address (AF_XDP: the route's source, since the packet arrived on
	// IPv6), the one to endpoint 1 still over IPv6.
	v4 := netip.AddrPortFrom(star.Endpoints[2].Addr, 40000)
	c4, err := star.Endpoints[2].NS.ListenUDP(v4.Addr(), v4.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	moved := *eps[2].peer
	moved.Addr, moved.Gen = v4, 2
	tbl.add(&moved)
	dp.Resolve(v4.Addr())
	md4 := netip.AddrPortFrom(star.MD.Addr, mediaPort)
	for k, ok4 := 0, false; !ok4; k++ {
		if k == 50 {
			t.Fatalf("nothing reached endpoint 2 over IPv4; stats %s", nonZero(ptr(dp.Stats())))
		}
		plain, enc := eps[0].sealRTP(t, 200)
		send(0, enc)
		if b, ok := recv(1, 2*time.Second); !ok {
			t.Fatalf("mixed: endpoint 1 received nothing; stats %s", nonZero(ptr(dp.Stats())))
		} else {
			eps[1].open(t, b, plain)
		}
		buf := make([]byte, 2048)
		c4.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, from, err := c4.ReadFromUDPAddrPort(buf); err == nil {
			if from != md4 {
				t.Fatalf("mixed: endpoint 2: datagram from %s, want %s", from, md4)
			}
			eps[2].open(t, buf[:n], plain)
			ok4 = true
		}
	}

	st := dp.Stats()
	t.Logf("%s: %s", mode, nonZero(&st))
	if st[DropAuth]+st[DropReplay]+st[DropUnknownSource]+st[DropTxFull]+st[DropNoSource]+st[SlowMedia] != 0 {
		t.Fatalf("unexpected drops: %s", nonZero(&st))
	}
	if st[Forwarded] < n {
		t.Fatalf("forwarded %d, want at least %d", st[Forwarded], n)
	}
	if mode != ModeSocket {
		c, err := dp.ClassifierCounters()
		if err != nil {
			t.Fatal(err)
		}
		if c[bpf.CounterRedirect] < n {
			t.Fatalf("classifier redirected %d IPv6 datagrams, want at least %d", c[bpf.CounterRedirect], n)
		}
	}
	if err := dp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testutil.GoroutinesGone(t, planeGoroutines...)
}
