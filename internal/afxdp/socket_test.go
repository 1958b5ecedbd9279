package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

const mediaPort = 5004

// setup is a veth pair with the classifier attached on the MD end and an
// AF_XDP socket on its queue 0, registered in the XSKMAP.
type setup struct {
	pair *netnstest.Pair
	cl   *bpf.Classifier
	sock *Socket
}

func newSetup(t *testing.T, mode bpf.Mode, cfg Config) *setup {
	t.Helper()
	testutil.NeedRoot(t, "AF_XDP sockets, XDP programs and network namespaces")
	pair := netnstest.NewPair(t)
	cl, err := bpf.Load(bpf.Options{Ports: []uint16{mediaPort}})
	if err != nil {
		t.Fatalf("load classifier: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	cfg.Ifindex = pair.MD.Index
	var sock *Socket
	err = pair.MD.NS.Do(func() error {
		a, err := cl.Attach(pair.MD.Index, mode)
		if err != nil {
			return err
		}
		if a.Mode() != mode {
			return fmt.Errorf("attached in %s", a.Mode())
		}
		sock, err = Open(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	t.Cleanup(func() {
		if err := sock.Close(); err != nil {
			t.Errorf("close socket: %v", err)
		}
	})
	if err := cl.RegisterSocket(0, sock.FD()); err != nil {
		t.Fatal(err)
	}
	return &setup{pair: pair, cl: cl, sock: sock}
}

func xdpModes(t *testing.T, f func(t *testing.T, mode bpf.Mode)) {
	for _, m := range []bpf.Mode{bpf.ModeNative, bpf.ModeGeneric} {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

// TestRxTx receives RTP sent from the peer namespace through AF_XDP, checks
// that DTLS reaches the MD's kernel socket instead, and transmits frames
// built here through AF_XDP to a UDP socket in the peer namespace.
func TestRxTx(t *testing.T) {
	xdpModes(t, func(t *testing.T, mode bpf.Mode) {
		st := newSetup(t, mode, Config{Mode: ModeAuto, NumFrames: 256, FillRingSize: 64, CompletionRingSize: 64, RxRingSize: 64, TxRingSize: 64})
		s := st.sock
		if s.Mode() != ModeCopy {
			t.Fatalf("veth bound in %s mode, want copy", s.Mode())
		}
		initial := s.FrameStats()
		if initial.KernelRx != 64 || initial.Free != 192 || initial.Total != 256 {
			t.Fatalf("initial frames %+v", initial)
		}
		mdUDP, err := st.pair.MD.NS.ListenUDP(st.pair.MD.Addr, mediaPort)
		if err != nil {
			t.Fatal(err)
		}
		defer mdUDP.Close()
		peer, err := st.pair.Peer.NS.ListenUDP(st.pair.Peer.Addr, 40000)
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(st.pair.MD.Addr, mediaPort))

		// RX: 100 RTP packets (more than the fill ring holds: recycling
		// must keep up) interleaved with DTLS.
		const n = 100
		descs := make([]Desc, 16)
		seen := make(map[uint16]bool)
		for i := 0; i < n; i++ {
			p := rtpPayload(uint16(i), 20+i)
			if _, err := peer.WriteToUDP(p, to); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				if _, err := peer.WriteToUDP([]byte{22, 0xfe, 0xfd, byte(i)}, to); err != nil {
					t.Fatal(err)
				}
			}
			if i%8 == 7 || i == n-1 {
				receive(t, s, descs, seen, n)
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for len(seen) < n && time.Now().Before(deadline) {
			receive(t, s, descs, seen, n)
		}
		if len(seen) != n {
			t.Fatalf("received %d of %d RTP packets through AF_XDP", len(seen), n)
		}
		for i := 0; i < n/10; i++ {
			buf := make([]byte, 64)
			if err := mdUDP.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			k, _, err := mdUDP.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("DTLS datagram %d did not reach the kernel socket: %v", i, err)
			}
			if buf[0] != 22 || k != 4 {
				t.Fatalf("kernel socket got % x", buf[:k])
			}
		}
		if err := mdUDP.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if k, _, err := mdUDP.ReadFromUDP(make([]byte, 64)); err == nil {
			t.Fatalf("kernel socket got an unexpected %d-octet datagram", k)
		}
		c, err := st.cl.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c[bpf.CounterRedirect] != n || c[bpf.CounterPassDTLS] != n/10 {
			t.Fatalf("counters: redirect %d dtls %d", c[bpf.CounterRedirect], c[bpf.CounterPassDTLS])
		}

		// TX: 100 frames built here, to the peer's UDP socket.
		hdr := netnstest.UDP4{
			SrcMAC: st.pair.MD.MAC, DstMAC: st.pair.Peer.MAC,
			Src: st.pair.MD.Addr, Dst: st.pair.Peer.Addr,
			SrcPort: mediaPort, DstPort: 40000,
		}
		sent := 0
		for sent < n {
			k := s.Alloc(descs[:min(len(descs), n-sent)])
			if k == 0 {
				t.Fatalf("no free frame after %d sent: %+v", sent, s.FrameStats())
			}
			for j := range descs[:k] {
				buf := s.Frame(descs[j])[:0]
				buf = netnstest.AppendUDP4(buf, hdr, rtpPayload(uint16(sent+j), 100))
				descs[j].Len = uint32(len(buf))
			}
			q, err := s.Transmit(descs[:k])
			if err != nil {
				t.Fatal(err)
			}
			s.Recycle(descs[q:k]) // what did not fit goes back
			sent += q
			if _, err := s.Complete(); err != nil {
				t.Fatal(err)
			}
			// Receive as we go so the peer's socket buffer never overflows.
			if sent%32 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		got := make(map[uint16]bool)
		buf := make([]byte, 2048)
		for len(got) < n {
			if _, err := s.Complete(); err != nil {
				t.Fatal(err)
			}
			if err := peer.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			k, from, err := peer.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("peer received %d of %d: %v (stats %+v)", len(got), n, err, mustStats(t, s))
			}
			if from.AddrPort() != netip.AddrPortFrom(st.pair.MD.Addr, mediaPort) {
				t.Fatalf("datagram from %s", from)
			}
			seq, ok := checkRTP(buf[:k], 100)
			if !ok {
				t.Fatalf("peer received bad payload % x", buf[:k])
			}
			got[seq] = true
		}
		drain(t, s)
		if fs := s.FrameStats(); fs != initial {
			t.Fatalf("frames after RX and TX: %+v, want %+v", fs, initial)
		}
		if err := s.frames.verify(); err != nil {
			t.Fatal(err)
		}
		stats := mustStats(t, s)
		if stats.Soft.RxPackets != n || stats.Soft.TxPackets != n || stats.Soft.Completions != n {
			t.Fatalf("stats %+v", stats)
		}
		if stats.RxInvalidDescs != 0 || stats.TxInvalidDescs != 0 {
			t.Fatalf("invalid descriptors: %+v", stats)
		}
	})
}

func mustStats(t *testing.T, s *Socket) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// receive takes what the RX ring holds, checks each payload, records its
// sequence number and recycles the frames.
func receive(t *testing.T, s *Socket, descs []Desc, seen map[uint16]bool, n int) {
	t.Helper()
	if _, err := s.Wait(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	k, err := s.Receive(descs)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs[:k] {
		f := s.Frame(d)
		if len(f) < netnstest.UDP4HeadersLen {
			t.Fatalf("short frame % x", f)
		}
		seq, ok := checkRTP(f[netnstest.UDP4HeadersLen:], 0)
		if !ok || int(seq) >= n || seen[seq] {
			t.Fatalf("bad or repeated packet % x", f)
		}
		seen[seq] = true
	}
	s.Recycle(descs[:k])
}

// rtpPayload is an RTP-like payload: 0x80, PT 96, the sequence number, then
// extra octets of a pattern derived from it (at least 20 in all).
func rtpPayload(seq uint16, size int) []byte {
	p := []byte{0x80, 96}
	p = binary.BigEndian.AppendUint16(p, seq)
	for len(p) < size {
		p = append(p, byte(len(p))^byte(seq))
	}
	return p
}

// checkRTP checks a payload built by rtpPayload (of size when not 0).
func checkRTP(p []byte, size int) (uint16, bool) {
	if len(p) < 4 || p[0] != 0x80 || (size != 0 && len(p) != size) {
		return 0, false
	}
	seq := binary.BigEndian.Uint16(p[2:])
	for i := 4; i < len(p); i++ {
		if p[i] != byte(i)^byte(seq) {
			return 0, false
		}
	}
	return seq, true
}

// drain reaps completions until no frame is in flight.
func drain(t *testing.T, s *Socket) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for s.FrameStats().KernelTx > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("frames still in flight: %+v", s.FrameStats())
		}
		if _, err := s.Complete(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	s.Refill()
}

// TestEchoNoLeak pushes packets from the peer through RX, an echo that
// rewrites the headers in place and transmits the same frame, and back to
// the peer; the UMEM frame accounting must return to its initial state.
// MDFAST_AFXDP_PACKETS sets the count (the 1,000,000 for the long
// variant); -short uses 20,000.
func TestEchoNoLeak(t *testing.T) {
	total := 200_000
	if testing.Short() {
		total = 20_000
	}
	if v := os.Getenv("MDFAST_AFXDP_PACKETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("MDFAST_AFXDP_PACKETS: %v", err)
		}
		total = n
	}
	xdpModes(t, func(t *testing.T, mode bpf.Mode) {
		st := newSetup(t, mode, Config{Mode: ModeCopy, NumFrames: 512, FillRingSize: 256, CompletionRingSize: 256, RxRingSize: 256, TxRingSize: 256})
		s := st.sock
		initial := s.FrameStats()
		peer, err := st.pair.Peer.NS.ListenUDP(st.pair.Peer.Addr, 40000)
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		if err := peer.SetReadBuffer(1 << 20); err != nil {
			t.Fatal(err)
		}

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var echoErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoErr = echo(s, stop)
		}()

		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(st.pair.MD.Addr, mediaPort))
		const window = 64
		p := rtpPayload(0, 64)
		buf := make([]byte, 2048)
		sent, echoed := 0, 0
		start := time.Now()
		for sent < total {
			burst := min(window, total-sent)
			for i := 0; i < burst; i++ {
				binary.BigEndian.PutUint16(p[2:], uint16(sent+i))
				if _, err := peer.WriteToUDP(p, to); err != nil {
					t.Fatal(err)
				}
			}
			sent += burst
			for got := 0; got < burst; got++ {
				if err := peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				k, err := peer.Read(buf)
				if err != nil {
					break // lost in the rings: counted below
				}
				if k != len(p) || buf[0] != 0x80 {
					t.Fatalf("echo % x", buf[:k])
				}
				echoed++
			}
		}
		close(stop)
		wg.Wait()
		if echoErr != nil {
			t.Fatal(echoErr)
		}
		drain(t, s)
		elapsed := time.Since(start)
		stats := mustStats(t, s)
		t.Logf("%s: %d sent, %d echoed in %v; stats %+v", mode, sent, echoed, elapsed, stats)
		if echoed < total*99/100 {
			t.Errorf("only %d of %d packets echoed", echoed, total)
		}
		if fs := s.FrameStats(); fs != initial {
			t.Fatalf("frames after %d packets: %+v, want %+v", total, fs, initial)
		}
		if s.FreeFrames() != int(initial.Free) {
			t.Fatalf("free frames %d, want %d", s.FreeFrames(), initial.Free)
		}
		if err := s.frames.verify(); err != nil {
			t.Fatal(err)
		}
	})
}

// echo is the worker: receive a batch, swap the Ethernet, IPv4 and UDP
// addresses in place, fix the UDP checksum, transmit the same frames,
// reap completions, refill.
func echo(s *Socket, stop <-chan struct{}) error {
	descs := make([]Desc, 64)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := s.Wait(5 * time.Millisecond); err != nil {
			return err
		}
		n, err := s.Receive(descs)
		if err != nil {
			return err
		}
		for i := range descs[:n] {
			f := s.Frame(descs[i])
			if len(f) < netnstest.UDP4HeadersLen {
				return fmt.Errorf("short frame % x", f)
			}
			var mac [6]byte
			copy(mac[:], f[0:6])
			copy(f[0:6], f[6:12])
			copy(f[6:12], mac[:])
			ip := f[netnstest.EthLen:]
			var a [4]byte
			copy(a[:], ip[12:16])
			copy(ip[12:16], ip[16:20])
			copy(ip[16:20], a[:])
			udp := ip[netnstest.IPv4Len:]
			var port [2]byte
			copy(port[:], udp[0:2])
			copy(udp[0:2], udp[2:4])
			copy(udp[2:4], port[:])
			netnstest.SetUDP4Checksum(f)
		}
		q, err := s.Transmit(descs[:n])
		if err != nil {
			return err
		}
		s.Recycle(descs[q:n]) // TX ring full: drop the rest
		if _, err := s.Complete(); err != nil {
			return err
		}
		s.Refill()
	}
}

func TestOpenErrors(t *testing.T) {
	bad := []Config{
		{Ifindex: 1, FrameSize: 1024},
		{Ifindex: 1, FrameSize: 3000},
		{Ifindex: 1, RxRingSize: 100},
		{Ifindex: 1, Headroom: 2048},
		{Ifindex: 1, NumFrames: 16, FillTarget: 32},
		{Ifindex: 0},
		{Ifindex: 1, Mode: Mode(7)},
	}
	for i, cfg := range bad {
		if s, err := Open(cfg); err == nil {
			s.Close()
			t.Errorf("config %d %+v accepted", i, cfg)
		}
	}
	testutil.NeedRoot(t, "AF_XDP sockets, XDP programs and network namespaces")
	pair := netnstest.NewPair(t)
	err := pair.MD.NS.Do(func() error {
		_, err := Open(Config{Ifindex: pair.MD.Index, Mode: ModeZeroCopy, NumFrames: 64})
		if !errors.Is(err, ErrZeroCopyUnsupported) {
			return fmt.Errorf("zero-copy on veth: %v, want ErrZeroCopyUnsupported", err)
		}
		if _, err := Open(Config{Ifindex: 9999, Mode: ModeCopy, NumFrames: 64}); err == nil {
			return errors.New("bound to a missing interface")
		}
		if _, err := Open(Config{Ifindex: pair.MD.Index, QueueID: 5, Mode: ModeCopy, NumFrames: 64}); err == nil {
			return errors.New("bound to a missing queue")
		}
		s, err := Open(Config{Ifindex: pair.MD.Index, Mode: ModeCopy, NumFrames: 64})
		if err != nil {
			return err
		}
		defer s.Close()
		// A second socket on the same queue is refused (EBUSY).
		if s2, err := Open(Config{Ifindex: pair.MD.Index, Mode: ModeCopy, NumFrames: 64}); err == nil {
			s2.Close()
			return errors.New("two sockets bound to one queue")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDescriptorOwnership checks that Transmit and Recycle refuse frames
// the caller does not hold, and that methods fail after Close.
func TestDescriptorOwnership(t *testing.T) {
	testutil.NeedRoot(t, "AF_XDP sockets, XDP programs and network namespaces")
	pair := netnstest.NewPair(t)
	var s *Socket
	err := pair.MD.NS.Do(func() (err error) {
		s, err = Open(Config{Ifindex: pair.MD.Index, Mode: ModeCopy, NumFrames: 64, FillRingSize: 16, CompletionRingSize: 16, RxRingSize: 16, TxRingSize: 16})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	initial := s.FrameStats()
	descs := make([]Desc, 2)
	if s.Alloc(descs) != 2 {
		t.Fatal("Alloc")
	}
	cases := []Desc{
		{Addr: 64 * 2048, Len: 60},             // beyond the UMEM
		{Addr: descs[0].Addr + 2000, Len: 100}, // crosses its frame
		{Addr: descs[0].Addr, Len: 0},          // empty
		{Addr: 10 * 2048, Len: 60},             // with the kernel (fill ring)
		{Addr: 50 * 2048, Len: 60},             // free, not allocated
	}
	for i, d := range cases {
		if _, err := s.Transmit([]Desc{descs[1], d}); !errors.Is(err, ErrBadDescriptor) {
			t.Errorf("case %d: Transmit = %v", i, err)
		}
		if s.Frame(d) != nil && i < 2 {
			t.Errorf("case %d: Frame returned a view", i)
		}
	}
	s.Recycle(cases[3:])
	if st := mustStats(t, s); st.Soft.RejectedRecycles != 2 {
		t.Errorf("rejected recycles %d", st.Soft.RejectedRecycles)
	}
	s.Recycle(descs)
	s.Recycle(descs) // double free: refused
	if st := mustStats(t, s); st.Soft.RejectedRecycles != 4 {
		t.Errorf("rejected recycles %d after double recycle", st.Soft.RejectedRecycles)
	}
	if fs := s.FrameStats(); fs != initial {
		t.Errorf("frames %+v, want %+v", fs, initial)
	}
	if err := s.frames.verify(); err != nil {
		t.Fatal(err)
	}

	// The worker's calls allocate nothing. The frames are zeroed (a
	// destination MAC of 00:..:00), so the peer drops them.
	batch := make([]Desc, 8)
	allocs := testing.AllocsPerRun(200, func() {
		k := s.Alloc(batch)
		for i := range batch[:k] {
			batch[i].Len = 60
		}
		q, err := s.Transmit(batch[:k])
		if err != nil {
			t.Fatal(err)
		}
		s.Recycle(batch[q:k])
		if _, err := s.Complete(); err != nil {
			t.Fatal(err)
		}
		r, err := s.Receive(batch)
		if err != nil {
			t.Fatal(err)
		}
		s.Recycle(batch[:r])
		s.Refill()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per worker iteration", allocs)
	}
	drain(t, s)
	if fs := s.FrameStats(); fs != initial {
		t.Errorf("frames after the allocation loop %+v, want %+v", fs, initial)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Receive(descs); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close = %v", err)
	}
	if _, err := s.Transmit(descs); !errors.Is(err, ErrClosed) {
		t.Errorf("Transmit after Close = %v", err)
	}
	if s.Alloc(descs) != 0 {
		t.Error("Alloc after Close")
	}
}
