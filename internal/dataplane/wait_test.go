package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// flushPort is a fakePort that records, at every Flush, how many
// datagrams had been committed.
type flushPort struct {
	*fakePort
	flushedAt []int
}

func (p *flushPort) Flush() error {
	p.flushedAt = append(p.flushedAt, p.ntx)
	return nil
}

// TestLonePacketFlushed: a packet that arrives alone (an audio speaker's
// one packet per 20 ms) is handled, and its copies to every receiver are
// flushed, in the poll that received it: it does not wait for a batch of
// 64 to fill, nor for the next poll.
func TestLonePacketFlushed(t *testing.T) {
	tbl := newMemTable()
	eps := newConference(t, tbl, addrs(5))
	port := &flushPort{fakePort: newFakePort(256, 4096)}
	w := NewWorker(0, port, tbl.NewReader(), WorkerConfig{BatchSize: 64})
	for k := range 3 {
		port.reset()
		port.flushedAt = port.flushedAt[:0]
		plain, enc := eps[0].sealRTP(t, 160)
		port.push(enc, eps[0].peer.Addr)
		if err := w.poll(); err != nil {
			t.Fatal(err)
		}
		if len(port.flushedAt) == 0 || port.flushedAt[len(port.flushedAt)-1] != len(eps)-1 {
			t.Fatalf("packet %d: flushes saw %v datagrams committed, want the last to see all %d copies", k, port.flushedAt, len(eps)-1)
		}
		bufs, dsts := port.sent()
		for i, b := range bufs {
			for _, e := range eps[1:] {
				if e.peer.Addr == dsts[i] {
					e.open(t, b, plain)
				}
			}
		}
	}
}

func TestParseWait(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Wait
		ok   bool
	}{
		{"", WaitPoll, true}, {"adaptive", WaitAdaptive, true}, {"poll", WaitPoll, true}, {"spin", WaitSpin, true},
		{"busy", 0, false}, {"Poll", 0, false},
	} {
		got, err := ParseWait(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseWait(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && tc.in != "" && got.String() != tc.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// TestLonePacketsXDP runs the AF_XDP data plane (native XDP on veth) with
// each wait and a poll interval of 3 s, and sends lone packets, one at a
// time: each must reach both receivers long before the poll interval, so
// neither the wait nor the TX flush holds a packet for company. (The bound
// of 1 s only tells "at once" from "at the next poll timeout"; it is not a
// latency figure: those come from make bench.)
func TestLonePacketsXDP(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, w := range []Wait{WaitPoll, WaitAdaptive, WaitSpin} {
		t.Run(w.String(), func(t *testing.T) { testLonePackets(t, w) })
	}
}

func testLonePackets(t *testing.T, wait Wait) {
	star, tbl, eps, conns := starConference(t, 3)
	dp := starDataplane(t, star, Config{
		Mode: ModeXDPNative, Queues: 1,
		NumFrames: 1024, RingSize: 256, BatchSize: 64, Poll: 3 * time.Second, Wait: wait,
		UDPChecksumIPv4: true, Table: tbl,
	})
	md := netip.AddrPortFrom(star.MD.Addr, mediaPort)
	// The neighbour entries are resolved asynchronously: send until the
	// first packet gets through (bounded), then measure lone packets.
	buf := make([]byte, 2048)
	recv := func(i int, timeout time.Duration) ([]byte, bool) {
		conns[i].SetReadDeadline(time.Now().Add(timeout))
		n, _, err := conns[i].ReadFromUDPAddrPort(buf)
		return buf[:n], err == nil
	}
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatalf("nothing forwarded; stats %s", nonZero(ptr(dp.Stats())))
		}
		_, enc := eps[0].sealRTP(t, 160)
		if _, err := conns[0].WriteToUDPAddrPort(enc, md); err != nil {
			t.Fatal(err)
		}
		if _, ok := recv(1, 100*time.Millisecond); ok {
			break
		}
	}
	for r := 1; r < len(eps); r++ { // drain the warm-up
		for {
			if _, ok := recv(r, 50*time.Millisecond); !ok {
				break
			}
		}
	}
	for k := range 5 {
		plain, enc := eps[0].sealRTP(t, 160)
		if _, err := conns[0].WriteToUDPAddrPort(enc, md); err != nil {
			t.Fatal(err)
		}
		for r := 1; r < len(eps); r++ {
			b, ok := recv(r, time.Second)
			if !ok {
				t.Fatalf("lone packet %d: endpoint %d got nothing within 1 s (poll interval 3 s); stats %s", k, r, nonZero(ptr(dp.Stats())))
			}
			eps[r].open(t, b, plain)
		}
		// Longer than the adaptive spin: the next packet finds the worker
		// asleep in poll.
		time.Sleep(20 * time.Millisecond)
	}
	// The counters say how each wait ended (published per batch: the
	// last packet's wait may not be counted yet).
	st := dp.Stats()
	sleeps, catches := st[XDPPollSleeps], st[XDPSpinCatches]
	switch wait {
	case WaitSpin:
		if sleeps != 0 || catches < 4 {
			t.Fatalf("spin: %d poll sleeps, %d spin catches", sleeps, catches)
		}
	case WaitPoll:
		if catches != 0 || sleeps < 4 {
			t.Fatalf("poll: %d poll sleeps, %d spin catches", sleeps, catches)
		}
	case WaitAdaptive:
		// Packets 20 ms apart: the 50 µs spin expires, the worker sleeps.
		if sleeps < 4 {
			t.Fatalf("adaptive: %d poll sleeps, %d spin catches", sleeps, catches)
		}
	}
}

// TestXDPCloseWakes: Close ends the AF_XDP workers' wait at once
// (XDPPort.Interrupt wakes the socket's poll or spin), with a poll
// interval of 10 s that an unwoken worker would sleep out, whatever the
// Wait.
func TestXDPCloseWakes(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, w := range []Wait{WaitPoll, WaitAdaptive, WaitSpin} {
		t.Run(w.String(), func(t *testing.T) {
			star := netnstest.NewStar(t, 1)
			var dp *Dataplane
			err := star.MD.NS.Do(func() error {
				var err error
				dp, err = New(Config{
					Mode: ModeXDPNative, Interface: star.MD.Name, Ports: []uint16{mediaPort}, Queues: 1,
					NumFrames: 256, RingSize: 64, Poll: 10 * time.Second, Wait: w, Table: newMemTable(),
				})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the worker is waiting (not needed for correctness)
			start := time.Now()
			if err := dp.Close(); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			t.Logf("%s: Close took %v", w, took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Fatalf("%s: Close took %v: the waiting worker was not woken", w, took)
			}
			testutil.GoroutinesGone(t, planeGoroutines...)
		})
	}
}
