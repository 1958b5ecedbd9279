package dataplane

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestNetnsHandover runs the data plane with two AF_XDP sockets (two
// queues, two workers) on a veth pair with two RX and two TX queues, and
// moves one sender's flow from one queue to the other.
//
// Steering: veth delivers a frame on the peer's RX queue numbered like the
// TX queue the sender's side put it on (veth_xmit keeps skb->queue_mapping;
// native XDP and AF_XDP then see that rx_queue_index; generic XDP sees one
// less, see txFor). The test chooses each
// endpoint's TX queue with XPS: the peer's TX queue q is mapped to CPU q
// (netnstest.End.SetXPS) and each endpoint sends from a thread pinned to
// the CPU of the queue its flow should reach, so sending from the other
// CPU moves the flow to the MD's other queue without changing its
// 5-tuple, as an RSS change would on a NIC. (tc's skbedit queue_mapping
// on egress would do it per flow, but this kernel is built without
// act_skbedit and cls_flower; a BPF program writing skb->queue_mapping is
// overridden by the TX queue selection that follows the egress hook.)
//
// It checks that the flows land on both queues, that each sender's receive
// state is owned by exactly one worker (the key table's owner word names
// the worker whose queue its flow reaches), that after the move media
// resumes through the other worker with the replay window carried over (a
// packet forwarded before the move, sent again, is dropped as a replay and
// reaches nobody), and that exactly one hand-over was counted.
func TestNetnsHandover(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP, tc and network namespaces")
	for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric} {
		t.Run(m.String(), func(t *testing.T) { testNetnsHandover(t, m) })
	}
}

// handoverTestPoll is the AF_XDP poll interval of TestNetnsHandover,
// longer than the default so that a hand-over that waits for it (the
// idle owner not woken) is told from one that does not by a wide margin.
const handoverTestPoll = 300 * time.Millisecond

func testNetnsHandover(t *testing.T, mode Mode) {
	// The TX queue of the peer that reaches the MD's RX queue q: q in
	// native mode; q+1 in generic mode, where the skb's queue_mapping
	// (which veth keeps from the sender's TX queue) is read as a recorded
	// RX queue plus one (skb_get_rx_queue), so TX queue 0 and 1 both land
	// on RX queue 0. Three queues on each end; the MD serves 0 and 1.
	txFor := func(q int) int { return q }
	if mode == ModeXDPGeneric {
		txFor = func(q int) int { return q + 1 }
	}
	pair := netnstest.NewPairQueues(t, 3)
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Three endpoints behind the peer end, told apart by UDP port.
	const n = 3
	rng := rand.New(rand.NewPCG(21, 21))
	eps := make([]*endpoint, n)
	conns := make([]*net.UDPConn, n)
	queueOf := []int{0, 1, 0}
	for i := range eps {
		port := uint16(41000 + i)
		eps[i] = newEndpoint(t, rng, uint64(i+1), netip.AddrPortFrom(pair.Peer.Addr, port))
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: uuid.New(), Addr: eps[i].peer.Addr, Conference: 3, Recv: eps[i].peer.Recv, Send: eps[i].peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
		c, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for q := range 3 {
		pair.Peer.SetXPS(t, q, 0)
	}
	for q := range 2 { // CPU q sends on the TX queue that reaches RX queue q
		pair.Peer.SetXPS(t, txFor(q), 1<<q)
	}
	cpus := [2]*pinned{newPinned(t, 0), newPinned(t, 1)}
	var dp *Dataplane
	if err := pair.MD.NS.Do(func() error {
		var err error
		dp, err = New(Config{
			Mode: mode, Interface: pair.MD.Name, Ports: []uint16{mediaPort}, Queues: 2,
			NumFrames: 1024, RingSize: 256, BatchSize: 32, Poll: handoverTestPoll,
			UDPChecksumIPv4: true, Table: KeyTable{kt},
		})
		return err
	}); err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	if dp.Mode() != mode {
		t.Fatalf("mode %s, want %s", dp.Mode(), mode)
	}
	dp.Resolve(pair.Peer.Addr)
	md := netip.AddrPortFrom(pair.MD.Addr, mediaPort)

	// deliver has endpoint s send one RTP packet (enc, or a new one) and
	// reports whether every other endpoint received and decrypted it.
	deliver := func(s int, plain, enc []byte, wait time.Duration) bool {
		t.Helper()
		if enc == nil {
			plain, enc = eps[s].sealRTP(t, 100)
		}
		cpus[queueOf[s]].do(func() {
			if _, err := conns[s].WriteToUDPAddrPort(enc, md); err != nil {
				t.Error(err)
			}
		})
		all := true
		for r := range eps {
			if r == s {
				continue
			}
			got := false
			buf := make([]byte, 2048)
			for !got {
				conns[r].SetReadDeadline(time.Now().Add(wait))
				k, _, err := conns[r].ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				// A late copy of an earlier packet may come first.
				if dec, err := eps[r].dec.DecryptRTP(nil, buf[:k], nil); err == nil && string(dec) == string(plain) {
					got = true
				}
			}
			all = all && got
		}
		return all
	}
	warm := func(s int) {
		t.Helper()
		for try := 0; !deliver(s, nil, nil, 30*time.Millisecond); try++ {
			if try == 100 {
				t.Fatalf("endpoint %d: nothing forwarded; stats %s", s, nonZero(ptr(dp.Stats())))
			}
		}
	}
	for s := range eps {
		warm(s)
	}
	for range 20 {
		for s := range eps {
			if !deliver(s, nil, nil, 2*time.Second) {
				t.Fatalf("endpoint %d: not delivered; stats %s", s, nonZero(ptr(dp.Stats())))
			}
		}
	}
	ws := dp.WorkerStats()
	if ws[0][Forwarded] == 0 || ws[1][Forwarded] == 0 {
		t.Fatalf("flows not on both queues: forwarded %d and %d", ws[0][Forwarded], ws[1][Forwarded])
	}
	readers := [2]int{dp.workers[0].table.ID(), dp.workers[1].table.ID()}
	obs := kt.NewReader()
	defer obs.Close()
	ownerOf := func(i int) (worker int, transit bool) {
		t.Helper()
		snap := obs.Begin()
		defer obs.End()
		ep := snap.LookupAddr(eps[i].peer.Addr)
		if ep == nil {
			t.Fatalf("endpoint %d not in the table", i)
		}
		r, transit, _ := obs.Owner(ep)
		for w, id := range readers {
			if id == r {
				return w, transit
			}
		}
		return -1, transit
	}
	for i := range eps {
		if w, tr := ownerOf(i); w != queueOf[i] || tr {
			t.Fatalf("endpoint %d: owned by worker %d (transit %v), its flow reaches queue %d", i, w, tr, queueOf[i])
		}
	}
	if st := dp.Stats(); st[Handovers] != 0 || st[DropMisrouted] != 0 {
		t.Fatalf("before the move: %s", nonZero(&st))
	}

	// One packet forwarded by worker 0 before the move, kept to be
	// replayed after it.
	oldPlain, oldEnc := eps[0].sealRTP(t, 100)
	keep := append([]byte(nil), oldEnc...)
	if !deliver(0, oldPlain, oldEnc, 2*time.Second) {
		t.Fatal("packet before the move not delivered")
	}

	// Move endpoint 0's flow to queue 1 and send a packet every 5 ms
	// until media resumes. Worker 0, idle since the last packet, must be
	// woken by worker 1's request (Port.Wake) and hand over handoverQuiet
	// after the sender's last packet (Port.WaitUntil), not when its poll
	// interval (handoverTestPoll) ends: resuming before half of that is
	// possible only that way, whatever the machine's load (which can only
	// make it later).
	queueOf[0] = 1
	start := time.Now()
	lost := 0
	for !deliver(0, nil, nil, 5*time.Millisecond) {
		lost++
		if time.Since(start) > 5*time.Second {
			t.Fatalf("media did not resume after the move; stats %s", nonZero(ptr(dp.Stats())))
		}
	}
	resumed := time.Since(start)
	t.Logf("%s: media resumed %v after the move (%d packets lost, one sent every 5 ms; poll interval %v, handoverQuiet %v)",
		mode, resumed.Round(time.Millisecond), lost, handoverTestPoll, handoverQuiet)
	if resumed >= handoverTestPoll/2 {
		t.Errorf("%s: media resumed %v after the move, want < %v: the idle owner slept its poll interval (%v)",
			mode, resumed.Round(time.Millisecond), handoverTestPoll/2, handoverTestPoll)
	}
	for range 20 {
		if !deliver(0, nil, nil, 2*time.Second) {
			t.Fatalf("after the move: not delivered; stats %s", nonZero(ptr(dp.Stats())))
		}
	}
	if w, tr := ownerOf(0); w != 1 || tr {
		t.Fatalf("after the move endpoint 0 is owned by worker %d (transit %v), want 1", w, tr)
	}
	for i := 1; i < n; i++ {
		if w, _ := ownerOf(i); w != queueOf[i] {
			t.Fatalf("endpoint %d moved to worker %d", i, w)
		}
	}

	// The replay: worker 1 has the window worker 0 built.
	before := dp.WorkerStats()[1][DropReplay]
	if deliver(0, oldPlain, keep, 300*time.Millisecond) {
		t.Fatal("a packet forwarded before the move was forwarded again after it")
	}
	var st Stats
	for try := 0; ; try++ {
		ws = dp.WorkerStats()
		if ws[1][DropReplay] == before+1 || try == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ws[1][DropReplay] != before+1 {
		t.Fatalf("replay not dropped as a replay by worker 1: %s", nonZero(&ws[1]))
	}
	// Media goes on, and the counters show one hand-over, from 0 to 1.
	if !deliver(0, nil, nil, 2*time.Second) {
		t.Fatal("media stopped after the replay")
	}
	st = dp.Stats()
	ws = dp.WorkerStats()
	if st[Handovers] != 1 || ws[1][Handovers] != 1 {
		t.Fatalf("hand-overs: total %d, worker 1 %d; want 1", st[Handovers], ws[1][Handovers])
	}
	if ws[1][DropMisrouted] == 0 || ws[1][HandoverRequests] == 0 {
		t.Fatalf("worker 1 neither dropped nor asked: %s", nonZero(&ws[1]))
	}
	if st[DropAuth] != 0 || st[DropTooOld] != 0 {
		t.Fatalf("state reset or lost: %s", nonZero(&st))
	}
	t.Logf("%s: worker 0 %s", mode, nonZero(&ws[0]))
	t.Logf("%s: worker 1 %s", mode, nonZero(&ws[1]))
}

// pinned runs functions on an OS thread pinned to one CPU.
type pinned struct{ fns chan func() }

func newPinned(t *testing.T, cpu int) *pinned {
	t.Helper()
	if runtime.NumCPU() < 2 {
		t.Skipf("XPS steering needs 2 CPUs, have %d", runtime.NumCPU())
	}
	p := &pinned{fns: make(chan func())}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var set unix.CPUSet
		set.Set(cpu)
		ready <- unix.SchedSetaffinity(0, &set)
		for fn := range p.fns {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("pin to CPU %d: %v", cpu, err)
	}
	t.Cleanup(func() { close(p.fns) })
	return p
}

// do runs fn on the pinned thread and waits for it.
func (p *pinned) do(fn func()) {
	done := make(chan struct{})
	p.fns <- func() { fn(); close(done) }
	<-done
}

// TestNetnsHandoverSocket: in socket mode (two sockets in an SO_REUSEPORT
// group, two workers) the kernel picks a flow's socket by a hash of its
// addresses, so a flow moves only when its address does: the endpoint
// changes its source port (keytable.Table.SetAddr, as for ICE mobility) to
// one whose flow the kernel gives to the other socket. The owner is idle,
// blocked in recvmmsg with no deadline: only Port.Wake gets it to answer.
// Media resumes through the other worker, and a packet forwarded before the
// move, sent again from the new address, is a replay.
func TestNetnsHandoverSocket(t *testing.T) {
	testutil.NeedRoot(t, "network namespaces")
	pair := netnstest.NewPair(t)
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(22, 22))
	var eps [2]*endpoint
	var conns [2]*net.UDPConn
	var ids [2]uuid.UUID
	for i := range eps {
		port := uint16(42000 + i)
		eps[i] = newEndpoint(t, rng, uint64(i+1), netip.AddrPortFrom(pair.Peer.Addr, port))
		ids[i] = uuid.New()
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: ids[i], Addr: eps[i].peer.Addr, Conference: 3, Recv: eps[i].peer.Recv, Send: eps[i].peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
		c, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	var dp *Dataplane
	if err := pair.MD.NS.Do(func() error {
		var err error
		dp, err = New(Config{
			Mode: ModeSocket, Ports: []uint16{mediaPort}, Queues: 2, Address: pair.MD.Addr,
			BatchSize: 32, Table: KeyTable{kt},
		})
		return err
	}); err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	md := netip.AddrPortFrom(pair.MD.Addr, mediaPort)
	// deliver sends enc (a new packet if nil) from conn as endpoint 0 and
	// reports whether endpoint 1 decrypted it.
	deliver := func(conn *net.UDPConn, plain, enc []byte, wait time.Duration) bool {
		t.Helper()
		if enc == nil {
			plain, enc = eps[0].sealRTP(t, 100)
		}
		if _, err := conn.WriteToUDPAddrPort(enc, md); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		for {
			conns[1].SetReadDeadline(time.Now().Add(wait))
			k, _, err := conns[1].ReadFromUDPAddrPort(buf)
			if err != nil {
				return false
			}
			if dec, err := eps[1].dec.DecryptRTP(nil, buf[:k], nil); err == nil && string(dec) == string(plain) {
				return true
			}
		}
	}
	for try := 0; !deliver(conns[0], nil, nil, 50*time.Millisecond); try++ {
		if try == 40 {
			t.Fatalf("nothing forwarded; stats %s", nonZero(ptr(dp.Stats())))
		}
	}
	oldPlain, oldEnc := eps[0].sealRTP(t, 100)
	keep := append([]byte(nil), oldEnc...)
	if !deliver(conns[0], oldPlain, oldEnc, 2*time.Second) {
		t.Fatal("not delivered")
	}
	settled := func() []Stats {
		prev := dp.WorkerStats()
		for range 100 {
			time.Sleep(10 * time.Millisecond)
			cur := dp.WorkerStats()
			if cur[0] == prev[0] && cur[1] == prev[1] {
				return cur
			}
			prev = cur
		}
		return prev
	}
	ws := settled()
	owner := 0
	if ws[1][Forwarded] > 0 {
		owner = 1
	}
	if ws[1-owner][Forwarded] != 0 {
		t.Fatalf("one flow forwarded by both workers: %d and %d", ws[0][Forwarded], ws[1][Forwarded])
	}
	// Find a source port whose flow the kernel gives to the other socket:
	// probe with a datagram from an unknown source and see which worker
	// counted it.
	var moved *net.UDPConn
	probe := []byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}
	for port := uint16(43000); port < 43064 && moved == nil; port++ {
		c, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, port)
		if err != nil {
			continue
		}
		before := settled()[1-owner][DropUnknownSource]
		if _, err := c.WriteToUDPAddrPort(probe, md); err != nil {
			t.Fatal(err)
		}
		if settled()[1-owner][DropUnknownSource] > before {
			moved = c
			defer c.Close()
		} else {
			c.Close()
		}
	}
	if moved == nil {
		t.Fatal("no source port among 64 hashed to the other socket")
	}
	newAddr := moved.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := kt.SetAddr(context.Background(), ids[0], netip.AddrPortFrom(pair.Peer.Addr, newAddr.Port())); err != nil {
		t.Fatal(err)
	}
	// The owner has been idle since the probes: blocked in recvmmsg.
	start := time.Now()
	for !deliver(moved, nil, nil, 50*time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("media did not resume after the address change; stats %s / %s",
				nonZero(&dp.WorkerStats()[0]), nonZero(&dp.WorkerStats()[1]))
		}
	}
	t.Logf("socket: media resumed %v after the address change", time.Since(start).Round(time.Millisecond))
	if deliver(moved, oldPlain, keep, 300*time.Millisecond) {
		t.Fatal("a packet forwarded before the move was forwarded again after it")
	}
	if !deliver(moved, nil, nil, 2*time.Second) {
		t.Fatal("media stopped after the replay")
	}
	ws = settled()
	if ws[1-owner][Handovers] != 1 || ws[owner][Handovers] != 0 {
		t.Fatalf("hand-overs %d and %d, want 1 to worker %d", ws[0][Handovers], ws[1][Handovers], 1-owner)
	}
	if ws[1-owner][DropReplay] != 1 {
		t.Fatalf("replay not dropped by the new owner: %s", nonZero(&ws[1-owner]))
	}
}
