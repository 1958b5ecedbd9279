package dataplane

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
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

const mediaPort = 5004

// planeGoroutines name the goroutines of the data plane, none of which may
// outlive Close.
var planeGoroutines = []string{"dataplane.(*Worker).Run", "dataplane.(*Dataplane).readSlow", "neigh.(*Table).Run"}

// TestNetns runs the whole data plane in network namespaces: an MD and
// three endpoints on one bridge. SRTP and SRTCP from one endpoint reach the
// two others re-encrypted under their own keys (decrypted there with
// pion/srtp); DTLS and STUN reach the slow path; junk is dropped and
// counted; Close leaves no XDP program and no goroutine.
func TestNetns(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric, ModeSocket} {
		t.Run(m.String(), func(t *testing.T) { testNetns(t, m) })
	}
}

func testNetns(t *testing.T, mode Mode) {
	star, tbl, eps, conns := starConference(t, 3)
	queues := 1
	if mode == ModeSocket {
		queues = 2
	}
	var dp *Dataplane
	err := star.MD.NS.Do(func() error {
		var err error
		dp, err = New(Config{
			Mode: mode, Interface: star.MD.Name, Ports: []uint16{mediaPort}, Queues: queues,
			NumFrames: 1024, RingSize: 256, BatchSize: 32, Poll: 20 * time.Millisecond,
			UDPChecksumIPv4: true, Table: tbl,
		})
		return err
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			dp.Close()
		}
	}()
	if dp.Mode() != mode {
		t.Fatalf("mode %s, want %s", dp.Mode(), mode)
	}
	md := netip.AddrPortFrom(star.MD.Addr, mediaPort)
	send := func(i int, b []byte) {
		t.Helper()
		if _, err := conns[i].WriteToUDPAddrPort(b, md); err != nil {
			t.Fatal(err)
		}
	}
	// recv reads one datagram at endpoint i and checks it decrypts to
	// one of want (by first-seen plaintext match).
	recv := func(i int, timeout time.Duration) ([]byte, bool) {
		t.Helper()
		return netnstest.RecvFrom(t, conns[i], md, timeout, fmt.Sprintf("endpoint %d", i))
	}

	// The daemon resolves each endpoint's next hop when it installs it, so
	// that no media packet finds the neighbour table cold.
	for _, e := range star.Endpoints {
		dp.Resolve(e.Addr)
	}
	// Warm up: endpoints 0 and 1 send until everybody got something.
	got := [3]bool{}
	for try := 0; !(got[0] && got[1] && got[2]); try++ {
		if try == 100 {
			t.Fatalf("no packet forwarded during warm-up; stats %s", nonZero(ptr(dp.Stats())))
		}
		for s := range 2 {
			_, enc := eps[s].sealRTP(t, 100)
			send(s, enc)
		}
		for r := range eps {
			for {
				b, ok := recv(r, 30*time.Millisecond)
				if !ok {
					break
				}
				if _, err := eps[r].dec.DecryptRTP(nil, b, nil); err != nil {
					t.Fatalf("warm-up: endpoint %d: %v", r, err)
				}
				got[r] = true
			}
		}
	}

	if n := dp.Stats()[DropNoNeighbour]; n != 0 {
		t.Fatalf("%d packets dropped for want of a next hop after Resolve", n)
	}

	// Media: endpoint 0 sends RTP, endpoint 1 RTCP; the others decrypt.
	const n = 200
	for k := range n {
		sender := 0
		var plain, enc []byte
		if k%10 == 9 {
			sender = 1
			plain, enc = eps[1].sealRTCP(t)
		} else {
			plain, enc = eps[0].sealRTP(t, 20+k*5)
		}
		send(sender, enc)
		for r := range eps {
			if r == sender {
				continue
			}
			b, ok := recv(r, 2*time.Second)
			if !ok {
				t.Fatalf("packet %d: endpoint %d received nothing; stats %s", k, r, nonZero(ptr(dp.Stats())))
			}
			eps[r].open(t, b, plain)
		}
	}

	// TxBytes counts UDP payload octets in every mode (not whole frames in
	// the XDP ones): one packet to the len(eps)-1 others adds exactly
	// their payloads.
	// Counters are published per batch: read them once they have settled.
	settled := func() Stats {
		prev := dp.Stats()
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			cur := dp.Stats()
			if cur[TxBytes] == prev[TxBytes] && cur[TxPackets] == prev[TxPackets] {
				return cur
			}
			prev = cur
		}
		return prev
	}
	before := settled()
	plain, enc := eps[0].sealRTP(t, 20+n*5)
	send(0, enc)
	payload := 0
	for r := 1; r < len(eps); r++ {
		b, ok := recv(r, 2*time.Second)
		if !ok {
			t.Fatalf("byte-count packet: endpoint %d received nothing", r)
		}
		eps[r].open(t, b, plain)
		payload += len(b)
	}
	after := settled()
	if pk := after[TxPackets] - before[TxPackets]; pk != uint64(len(eps)-1) {
		t.Fatalf("tx_packets grew by %d for %d packets sent", pk, len(eps)-1)
	}
	if got := after[TxBytes] - before[TxBytes]; got != uint64(payload) {
		t.Fatalf("tx_bytes grew by %d for %d octets of UDP payload sent", got, payload)
	}

	// Slow path: DTLS and STUN from endpoint 2.
	dtls := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	stun := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	send(2, dtls)
	send(2, stun)
	for _, want := range [][]byte{dtls, stun} {
		select {
		case sp := <-dp.Slow():
			if from := netip.AddrPortFrom(star.Endpoints[2].Addr, 40000); !bytes.Equal(sp.Data, want) || sp.From != from {
				t.Fatalf("slow path got % x from %s, want % x from %s", sp.Data, sp.From, want, from)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("slow path: nothing received")
		}
	}
	if mode != ModeSocket {
		// They came through the AF_XDP socket, not the kernel's.
		cc, err := dp.ClassifierCounters()
		if err != nil {
			t.Fatal(err)
		}
		if cc[bpf.CounterRedirectSlow] < 2 || cc[bpf.CounterPassDTLS]+cc[bpf.CounterPassSTUN] != 0 {
			t.Fatalf("classifier: redirect_slow %d pass_dtls %d pass_stun %d", cc[bpf.CounterRedirectSlow], cc[bpf.CounterPassDTLS], cc[bpf.CounterPassSTUN])
		}
	}
	if err := dp.SendSlow(mediaPort, []byte{22, 1, 2}, netip.AddrPortFrom(star.Endpoints[2].Addr, 40000)); err != nil {
		t.Fatal(err)
	}
	if b, ok := recv(2, 2*time.Second); !ok || !bytes.Equal(b, []byte{22, 1, 2}) {
		t.Fatalf("slow-path reply not received: % x", b)
	}

	// Junk on the media port: dropped and counted (by the classifier in
	// XDP modes, by the worker in socket mode).
	const junk = 5
	for range junk {
		send(0, []byte{70, 1, 2, 3})
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var counted uint64
		if mode == ModeSocket {
			counted = dp.Stats()[DropJunk]
		} else {
			c, err := dp.ClassifierCounters()
			if err != nil {
				t.Fatal(err)
			}
			counted = c[bpf.CounterDropJunk]
		}
		if counted == junk {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("junk counted %d, want %d", counted, junk)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range conns[1:] { // nothing else was sent
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
			t.Fatal("junk was forwarded")
		}
	}

	st := dp.Stats()
	t.Logf("%s: %s", mode, nonZero(&st))
	if st[DropAuth]+st[DropReplay]+st[DropUnknownSource]+st[DropTxFull] != 0 {
		t.Fatalf("unexpected drops: %s", nonZero(&st))
	}
	if mode != ModeSocket {
		x := dp.ports[0].(*XDPPort).Socket()
		if fs := x.FrameStats(); fs.Free+fs.KernelRx+fs.User+fs.KernelTx != fs.Total {
			t.Fatalf("UMEM accounting: %+v", fs)
		}
	}

	closed = true
	if err := dp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := <-dp.Slow(); ok {
		t.Fatal("slow channel not closed")
	}
	out, err := exec.Command("ip", "-n", star.MD.NS.Name, "link", "show", "dev", star.MD.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	if strings.Contains(string(out), "xdp") || strings.Contains(string(out), "prog/") {
		t.Fatalf("XDP program left after Close:\n%s", out)
	}
	testutil.GoroutinesGone(t, planeGoroutines...)
}

func ptr(s Stats) *Stats { return &s }

// TestAutoFallback: in ModeAuto without an interface, the socket mode
// serves.
func TestAutoFallback(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()
	dp, err := New(Config{
		Mode: ModeAuto, Ports: []uint16{port}, // no interface: sockets (a missing one is an error: TestAutoModeMissingInterface)
		Address: netip.MustParseAddr("127.0.0.1"), Table: newMemTable(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if dp.Mode() != ModeSocket {
		t.Fatalf("mode %s, want socket", dp.Mode())
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.GoroutinesGone(t, planeGoroutines...)
}

// TestAutoNative: in ModeAuto on a veth, native XDP is chosen.
func TestAutoNative(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	star := netnstest.NewStar(t, 1)
	var dp *Dataplane
	err := star.MD.NS.Do(func() error {
		var err error
		dp, err = New(Config{Interface: star.MD.Name, Ports: []uint16{mediaPort}, NumFrames: 256, RingSize: 64, Table: newMemTable()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if dp.Mode() != ModeXDPNative {
		t.Errorf("mode %s, want xdp-native", dp.Mode())
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.GoroutinesGone(t, planeGoroutines...)
}

// starConference returns a star of n endpoint namespaces around the MD's
// (see netnstest.NewStar), a table holding one conference of its endpoints
// (port 40000), the endpoints and a UDP socket bound in each endpoint's
// namespace, closed with the test.
func starConference(t *testing.T, n int) (*netnstest.Star, *memTable, []*endpoint, []*net.UDPConn) {
	t.Helper()
	star := netnstest.NewStar(t, n)
	tbl := newMemTable()
	var as []netip.AddrPort
	for _, e := range star.Endpoints {
		as = append(as, netip.AddrPortFrom(e.Addr, 40000))
	}
	eps := newConference(t, tbl, as)
	conns := make([]*net.UDPConn, len(eps))
	for i, e := range star.Endpoints {
		c, err := e.NS.ListenUDP(e.Addr, 40000)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return star, tbl, eps, conns
}

// starDataplane starts a Dataplane in the star's MD namespace on its
// interface and mediaPort, with the rest of cfg, closed with the test, and
// asks it to resolve every endpoint's next hop.
func starDataplane(t *testing.T, star *netnstest.Star, cfg Config) *Dataplane {
	t.Helper()
	cfg.Interface, cfg.Ports = star.MD.Name, []uint16{mediaPort}
	var dp *Dataplane
	err := star.MD.NS.Do(func() error {
		var err error
		dp, err = New(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { dp.Close() })
	for _, e := range star.Endpoints {
		dp.Resolve(e.Addr)
	}
	return dp
}
