package dataplane

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestNetnsDwell runs real XDPPorts and workers on veth in both XDP modes
// and checks the dwell measurement end to end: the XDP program's receive
// time reaches the workers through the UMEM (the kernel copies the XDP
// metadata in front of the frame), every forwarded media packet is
// observed exactly once, with a dwell of at least 1 µs and under 100 ms.
// With the receive time switched off in the program (frames without
// metadata) the same traffic is forwarded, none dropped, none observed.
func TestNetnsDwell(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric} {
		for _, noMeta := range []bool{false, true} {
			name := m.String()
			if noMeta {
				name += "/no-rx-time"
			}
			t.Run(name, func(t *testing.T) { testNetnsDwell(t, m, noMeta) })
		}
	}
}

func testNetnsDwell(t *testing.T, mode Mode, noMeta bool) {
	star, tbl, eps, conns := starConference(t, 3)
	dp := starDataplane(t, star, Config{
		Mode: mode, Queues: 1,
		NumFrames: 1024, RingSize: 256, BatchSize: 32, Poll: 20 * time.Millisecond,
		UDPChecksumIPv4: true, Table: tbl, NoRxTime: noMeta,
	})
	md := netip.AddrPortFrom(star.MD.Addr, mediaPort)
	buf := make([]byte, 2048)
	// drain reads what reaches the receivers until they are quiet.
	drain := func(timeout time.Duration) int {
		n := 0
		for r := 1; r < len(conns); r++ {
			for {
				conns[r].SetReadDeadline(time.Now().Add(timeout))
				if _, _, err := conns[r].ReadFromUDPAddrPort(buf); err != nil {
					break
				}
				n++
			}
		}
		return n
	}
	// Warm up until both receivers get endpoint 0's packets.
	for try := 0; ; try++ {
		if try == 100 {
			t.Fatalf("nothing forwarded during warm-up; stats %s", nonZero(ptr(dp.Stats())))
		}
		_, enc := eps[0].sealRTP(t, 100)
		if _, err := conns[0].WriteToUDPAddrPort(enc, md); err != nil {
			t.Fatal(err)
		}
		if drain(30*time.Millisecond) == 2 {
			break
		}
	}
	settle := func() (Stats, dwell.Hist) {
		prev := dp.Stats()
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			if cur := dp.Stats(); cur == prev {
				break
			}
			prev = dp.Stats()
		}
		return prev, dp.WorkerDwell()[0]
	}
	s0, h0 := settle()

	// The receivers read in the background: their socket buffers would
	// not hold every copy.
	var wg sync.WaitGroup
	var copies atomic.Int64
	var done atomic.Bool
	for r := 1; r < len(conns); r++ {
		wg.Add(1)
		go func(c *net.UDPConn) {
			defer wg.Done()
			b := make([]byte, 2048)
			for {
				c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, _, err := c.ReadFromUDPAddrPort(b); err == nil {
					copies.Add(1)
				} else if done.Load() {
					return
				}
			}
		}(conns[r])
	}

	// Bursts of 10 (several per batch), then singles (one per batch, the
	// worker woken from poll each time).
	const n = 300
	sent := 0
	for sent < n {
		burst := 10
		if sent >= n-50 {
			burst = 1
		}
		for range burst {
			_, enc := eps[0].sealRTP(t, 40+sent)
			if _, err := conns[0].WriteToUDPAddrPort(enc, md); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	done.Store(true)
	wg.Wait()
	got := copies.Load()
	s1, h1 := settle()
	fwd := s1[Forwarded] - s0[Forwarded]
	d := h1.Sub(&h0)
	t.Logf("%s: %d sent, %d forwarded, %d copies received, %d dwells: p50 %v p99 %v p100 %v",
		mode, n, fwd, got, d.Count(), d.Quantile(0.5), d.Quantile(0.99), d.Quantile(1))
	if fwd != n || got != 2*int64(n) {
		t.Fatalf("forwarded %d of %d, %d of %d copies received; stats %s", fwd, n, got, 2*n, nonZero(ptr(s1)))
	}
	if drops := s1.Drops() - s0.Drops(); drops != 0 {
		t.Fatalf("%d drops; stats %s", drops, nonZero(ptr(s1)))
	}
	if noMeta {
		if h1.Count() != 0 {
			t.Fatalf("%d dwells observed for frames without a receive time", h1.Count())
		}
		return
	}
	if d.Count() != fwd {
		t.Fatalf("%d dwells observed for %d forwarded packets", d.Count(), fwd)
	}
	if d.Bins[0] != 0 {
		t.Fatalf("%d dwells under 1 µs: the clocks do not agree", d.Bins[0])
	}
	if d.Bins[dwell.NumBins-1] != 0 {
		t.Fatalf("%d dwells of 100 ms or more", d.Bins[dwell.NumBins-1])
	}
}
