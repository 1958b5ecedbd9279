package dataplane

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
)

// twoQueues is a real key table read by two workers on fake ports, joined
// by a hub as in a Dataplane: queue 0 and queue 1 of one NIC.
type twoQueues struct {
	kt    *keytable.Table
	ports [2]*fakePort
	ws    [2]*Worker
	eps   []*endpoint
	ids   map[*endpoint]uuid.UUID
}

func newTwoQueues(t *testing.T, members int) *twoQueues {
	t.Helper()
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := &twoQueues{kt: kt, ids: map[*endpoint]uuid.UUID{}}
	h := newHub()
	for i := range q.ws {
		q.ports[i] = newFakePort(256, 256)
		q.ws[i] = NewWorker(i, q.ports[i], KeyTable{kt}.NewReader(), WorkerConfig{})
		h.join(q.ws[i])
	}
	r := rand.New(rand.NewPCG(13, 13))
	for i, a := range addrs(members) {
		e := newEndpoint(t, r, uint64(i+1), a)
		id := uuid.New()
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: id, Addr: a, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
		q.eps = append(q.eps, e)
		q.ids[e] = id
	}
	return q
}

// send delivers a fresh 80-octet RTP packet of e on queue qi (deliver).
func (q *twoQueues) send(t *testing.T, qi int, e *endpoint) int {
	t.Helper()
	plain, enc := e.sealRTP(t, 80)
	return q.deliver(t, qi, e.peer.Addr, enc, plain)
}

// deliver pushes enc from src on queue qi, runs that worker once and
// returns how many receivers got plain (decrypted with their own pion/srtp
// contexts); other datagrams fail the test.
func (q *twoQueues) deliver(t *testing.T, qi int, src netip.AddrPort, enc, plain []byte) int {
	t.Helper()
	p := q.ports[qi]
	p.reset()
	p.push(enc, src)
	if err := q.ws[qi].poll(); err != nil {
		t.Fatal(err)
	}
	bufs, dsts := p.sent()
	for i, b := range bufs {
		var r *endpoint
		for _, e := range q.eps {
			if e.peer.Addr == dsts[i] {
				r = e
			}
		}
		if r == nil {
			t.Fatalf("queue %d sent to %v: not a member", qi, dsts[i])
		}
		r.open(t, b, plain)
	}
	p.reset()
	return len(bufs)
}

// idle runs worker qi once with nothing received (as its poll timeout
// would).
func (q *twoQueues) idle(t *testing.T, qi int) {
	t.Helper()
	if err := q.ws[qi].poll(); err != nil {
		t.Fatal(err)
	}
}

// holds reports which workers hold an Opener for e.
func (q *twoQueues) holds(e *endpoint) (on []int) {
	for i, w := range q.ws {
		for _, oe := range w.openers {
			if oe.keys == e.peer.Recv {
				on = append(on, i)
			}
		}
	}
	return on
}

// owner returns the key table's owner word for e, as reader IDs, read
// through a Reader of its own (Route would claim it).
func (q *twoQueues) owner(t *testing.T, e *endpoint) (reader int, transit bool) {
	t.Helper()
	r := q.kt.NewReader()
	defer r.Close()
	ep := r.Begin().LookupAddr(e.peer.Addr)
	defer r.End()
	if ep == nil {
		t.Fatalf("endpoint %d not in the table", e.peer.ID)
	}
	reader, transit, _ = r.Owner(ep)
	return reader, transit
}

func (q *twoQueues) stat(c Counter) (s [2]uint64) {
	for i, w := range q.ws {
		s[i] = w.Stats()[c]
	}
	return s
}

// TestHandover moves a sender's flow from queue 0 to queue 1 and back, its
// sequence numbers wrapping on the way (so the ROC must travel with the
// Opener), and checks at each step that exactly one worker holds its
// receive state, that packets forwarded before a move are replays after
// it, and the counters.
func TestHandover(t *testing.T) {
	q := newTwoQueues(t, 3)
	a := q.eps[0]
	a.seq = 65533 // wraps to ROC 1 after three packets
	var sent [][2][]byte
	send := func(qi int) int {
		plain, enc := a.sealRTP(t, 80)
		sent = append(sent, [2][]byte{plain, append([]byte(nil), enc...)})
		return q.deliver(t, qi, a.peer.Addr, enc, plain)
	}
	for range 2 {
		if n := send(0); n != 2 {
			t.Fatalf("queue 0 forwarded to %d receivers, want 2", n)
		}
	}
	if on := q.holds(a); len(on) != 1 || on[0] != 0 {
		t.Fatalf("Opener on workers %v, want [0]", on)
	}
	r0 := q.ws[0].table.ID()
	if o, tr := q.owner(t, a); o != r0 || tr {
		t.Fatalf("owner %d (transit %v), want reader %d", o, tr, r0)
	}

	// The flow moves to queue 1: dropped there, and queue 0 is asked.
	if n := send(1); n != 0 {
		t.Fatalf("misrouted packet forwarded")
	}
	if got := q.stat(DropMisrouted); got != [2]uint64{0, 1} {
		t.Fatalf("misrouted %v", got)
	}
	if got := q.stat(HandoverRequests); got != [2]uint64{0, 1} {
		t.Fatalf("requests %v", got)
	}
	if q.ports[0].wakes.Load() != 1 {
		t.Fatalf("owner's port woken %d times, want 1", q.ports[0].wakes.Load())
	}
	// A misrouted flood asks once per handoverRetry, not per packet.
	q.ws[1].retry = time.Hour
	for range 20 {
		send(1)
	}
	if got := q.stat(HandoverRequests); got != [2]uint64{0, 1} {
		t.Fatalf("requests %v after a burst", got)
	}
	// Queue 0 opened a packet of the sender less than handoverQuiet ago
	// (made an hour here, so that a slow machine cannot pass it): it
	// keeps the state, the flow may still be reaching it.
	q.ws[0].quiet = time.Hour
	q.idle(t, 0)
	if on := q.holds(a); len(on) != 1 || on[0] != 0 {
		t.Fatalf("handed over while the owner still received: Opener on %v", on)
	}
	q.ws[0].quiet, q.ws[1].retry = 0, 0 // as if both periods had passed
	send(1)                             // asks again
	if got := q.stat(HandoverRequests); got != [2]uint64{0, 2} {
		t.Fatalf("requests %v, want a second one", got)
	}
	q.idle(t, 0) // serves it: out of its map, in transit to queue 1
	if on := q.holds(a); len(on) != 0 {
		t.Fatalf("Opener on %v while in transit", on)
	}
	if o, tr := q.owner(t, a); o != q.ws[1].table.ID() || !tr {
		t.Fatalf("owner %d (transit %v), want in transit to %d", o, tr, q.ws[1].table.ID())
	}
	// In transit nobody opens the sender's packets, not even the old
	// owner (no fresh Opener anywhere).
	if n := send(0); n != 0 {
		t.Fatal("old owner forwarded a packet in transit")
	}
	if on := q.holds(a); len(on) != 0 {
		t.Fatalf("Opener on %v while in transit", on)
	}
	if q.ports[1].wakes.Load() == 0 {
		t.Fatal("new owner not woken")
	}
	q.idle(t, 1) // takes it
	if on := q.holds(a); len(on) != 1 || on[0] != 1 {
		t.Fatalf("Opener on %v after the hand-over, want [1]", on)
	}
	if got := q.stat(Handovers); got != [2]uint64{0, 1} {
		t.Fatalf("handovers %v", got)
	}

	// Media resumes on queue 1 with the ROC carried over (the sequence
	// wrapped before the move)...
	for range 3 {
		if n := send(1); n != 2 {
			t.Fatalf("queue 1 forwarded to %d receivers after the hand-over", n)
		}
	}
	lastOn1 := sent[len(sent)-1]
	// ...and the replay window too: what queue 0 forwarded is a replay.
	for i := range 2 {
		before := q.stat(DropReplay)[1]
		if n := q.deliver(t, 1, a.peer.Addr, append([]byte(nil), sent[i][1]...), sent[i][0]); n != 0 {
			t.Fatalf("packet %d forwarded twice", i)
		}
		if q.stat(DropReplay)[1] != before+1 {
			t.Fatalf("packet %d not dropped as a replay: %v", i, q.stat(DropReplay))
		}
	}
	// A packet never opened (dropped while misrouted) is still accepted
	// once: the window is the sender's, not reset nor advanced by drops.
	late := sent[2]
	if n := q.deliver(t, 1, a.peer.Addr, append([]byte(nil), late[1]...), late[0]); n != 2 {
		t.Fatalf("late packet forwarded to %d", n)
	}
	if n := q.deliver(t, 1, a.peer.Addr, append([]byte(nil), late[1]...), late[0]); n != 0 {
		t.Fatal("late packet forwarded twice")
	}

	// And back to queue 0, the same way.
	q.ws[1].quiet, q.ws[0].retry = 0, 0
	send(0)
	q.idle(t, 1)
	q.idle(t, 0)
	if n := send(0); n != 2 {
		t.Fatalf("queue 0 forwarded to %d receivers after the hand-back", n)
	}
	if got := q.stat(Handovers); got != [2]uint64{1, 1} {
		t.Fatalf("handovers %v", got)
	}
	if on := q.holds(a); len(on) != 1 || on[0] != 0 {
		t.Fatalf("Opener on %v, want [0]", on)
	}
	if n := q.deliver(t, 0, a.peer.Addr, append([]byte(nil), lastOn1[1]...), lastOn1[0]); n != 0 {
		t.Fatal("a packet queue 1 forwarded was forwarded again by queue 0")
	}
	// The other senders were never moved.
	for _, e := range q.eps[1:] {
		plain, enc := e.sealRTP(t, 60)
		if n := q.deliver(t, 0, e.peer.Addr, enc, plain); n != 2 {
			t.Fatalf("endpoint %d: forwarded to %d", e.peer.ID, n)
		}
	}
}

// TestHandoverSetAddr: an address change (keytable.Table.SetAddr, as for
// ICE mobility) whose new 5-tuple lands on the other queue hands the
// state over like an RSS change: same generation, window kept.
func TestHandoverSetAddr(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	plain, enc := a.sealRTP(t, 50)
	keep := append([]byte(nil), enc...)
	if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 1 {
		t.Fatalf("forwarded to %d", n)
	}
	moved := netip.MustParseAddrPort("198.18.1.77:41000")
	if _, err := q.kt.SetAddr(context.Background(), q.ids[a], moved); err != nil {
		t.Fatal(err)
	}
	q.ws[0].quiet = 0
	p2, e2 := a.sealRTP(t, 50)
	if n := q.deliver(t, 1, moved, e2, p2); n != 0 {
		t.Fatal("forwarded before the hand-over")
	}
	q.idle(t, 0)
	q.idle(t, 1)
	if got := q.stat(Handovers); got != [2]uint64{0, 1} {
		t.Fatalf("handovers %v", got)
	}
	if n := q.deliver(t, 1, moved, e2, p2); n != 1 {
		t.Fatalf("after the move: forwarded to %d", n)
	}
	if n := q.deliver(t, 1, moved, keep, plain); n != 0 || q.stat(DropReplay)[1] != 1 {
		t.Fatalf("replay of a packet forwarded before the move: forwarded %d, replays %v", n, q.stat(DropReplay))
	}
	// The old address is no longer the sender's.
	_, e3 := a.sealRTP(t, 50)
	q.deliver(t, 0, a.peer.Addr, e3, nil)
	if q.stat(DropUnknownSource)[0] != 1 {
		t.Fatalf("old address: %v", q.stat(DropUnknownSource))
	}
}

// TestHandoverFromStoppedWorker: a worker that stops parks its senders'
// state; the worker their flows move to takes it, window included. A
// request that reaches a worker after it stopped is answered from the
// parked states too.
func TestHandoverFromStoppedWorker(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	plain, enc := a.sealRTP(t, 50)
	keep := append([]byte(nil), enc...)
	if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 1 {
		t.Fatalf("forwarded to %d", n)
	}
	q.ws[0].park(false)
	if got := q.stat(HandoversParked); got != [2]uint64{1, 0} {
		t.Fatalf("parked %v", got)
	}
	if on := q.holds(a); len(on) != 0 {
		t.Fatalf("Opener still on %v", on)
	}
	if o, tr := q.owner(t, a); o != 0 || !tr {
		t.Fatalf("owner %d transit %v, want parked", o, tr)
	}
	p2, e2 := a.sealRTP(t, 50)
	if n := q.deliver(t, 1, a.peer.Addr, e2, p2); n != 0 {
		t.Fatal("the adopting packet is forwarded")
	}
	if got := q.stat(Handovers); got != [2]uint64{0, 1} {
		t.Fatalf("handovers %v", got)
	}
	if n := q.deliver(t, 1, a.peer.Addr, e2, p2); n != 1 {
		t.Fatalf("after adoption: forwarded to %d", n)
	}
	if n := q.deliver(t, 1, a.peer.Addr, keep, plain); n != 0 || q.stat(DropReplay)[1] != 1 {
		t.Fatal("replay accepted after adoption")
	}
}

// TestMisroutedNoAlloc: neither the owner's empty mailbox check nor a
// flood of packets of a sender another worker holds (one request per
// handoverRetry at most, into a mailbox allocated once) allocates.
func TestMisroutedNoAlloc(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	plain, enc := a.sealRTP(t, 50)
	q.deliver(t, 0, a.peer.Addr, enc, plain)
	if allocs := testing.AllocsPerRun(100, func() { _ = q.ws[0].poll() }); allocs != 0 {
		t.Fatalf("%v allocations per idle loop", allocs)
	}
	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = a.sealRTP(t, 160)
	}
	q.deliver(t, 1, a.peer.Addr, pkts[101], nil) // the first request
	q.ws[1].retry = 0                            // every packet asks: the mailbox must not allocate
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		q.ports[1].push(pkts[i], a.peer.Addr)
		i++
		_ = q.ws[1].poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per misrouted packet", allocs)
	}
	if got := q.stat(DropMisrouted)[1]; got != 1+101 {
		t.Fatalf("misrouted %d, want 102", got)
	}
	if got := q.stat(HandoverRequests)[1]; got != 1+101 {
		t.Fatalf("requests %d, want 102", got)
	}
}

// TestSweepReleases: an Opener dropped for idleness (OpenerIdle) takes its
// ownership with it, so the next worker the sender's flow reaches starts
// afresh at once (as the owner itself would) instead of asking a worker
// that has nothing to hand over.
func TestSweepReleases(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	plain, enc := a.sealRTP(t, 50)
	if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 1 {
		t.Fatalf("forwarded to %d", n)
	}
	q.ws[0].sweep(time.Now().Add(q.ws[0].cfg.OpenerIdle + time.Second).UnixNano())
	if on := q.holds(a); len(on) != 0 {
		t.Fatalf("Opener still on %v", on)
	}
	if o, tr := q.owner(t, a); o != 0 || tr {
		t.Fatalf("owner %d (transit %v) after the sweep, want none", o, tr)
	}
	p2, e2 := a.sealRTP(t, 50)
	if n := q.deliver(t, 1, a.peer.Addr, e2, p2); n != 1 {
		t.Fatalf("queue 1 forwarded to %d after the sweep", n)
	}
	if got := q.stat(DropMisrouted); got != [2]uint64{} {
		t.Fatalf("misrouted %v", got)
	}
}

// TestHandoverMailboxFull: a request the owner's full mailbox cannot take
// is counted (HandoverMailboxFull), wakes nobody, and is made again after
// handoverRetry once there is room.
func TestHandoverMailboxFull(t *testing.T) {
	q := newTwoQueues(t, 3)
	a := q.eps[0]
	send := func(qi int) int { return q.send(t, qi, a) }
	if n := send(0); n != 2 {
		t.Fatalf("queue 0 forwarded to %d receivers, want 2", n)
	}
	h := q.ws[0].hub
	h.mu.Lock()
	for len(q.ws[0].box.reqs) < cap(q.ws[0].box.reqs) {
		q.ws[0].box.reqs = append(q.ws[0].box.reqs, handoverRequest{})
	}
	h.mu.Unlock()
	q.ws[1].retry = 0
	if n := send(1); n != 0 {
		t.Fatal("misrouted packet forwarded")
	}
	if got := q.stat(HandoverMailboxFull); got != [2]uint64{0, 1} {
		t.Fatalf("mailbox full %v, want [0 1]", got)
	}
	if got := q.stat(HandoverRequests); got != [2]uint64{0, 0} {
		t.Fatalf("requests %v, want none sent", got)
	}
	if w := q.ports[0].wakes.Load(); w != 0 {
		t.Fatalf("owner woken %d times for a request it did not get", w)
	}
	h.mu.Lock()
	q.ws[0].box.reqs = q.ws[0].box.reqs[:0]
	h.mu.Unlock()
	send(1)
	if got := q.stat(HandoverRequests); got != [2]uint64{0, 1} {
		t.Fatalf("requests %v after room was made, want [0 1]", got)
	}
}

// TestSetOpenerIdle: the Opener lifetime follows SetOpenerIdle (a reload
// of idle-timeout): longer keeps an idle sender's state past the old
// lifetime, shorter drops it at the next sweep.
func TestSetOpenerIdle(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	plain, enc := a.sealRTP(t, 50)
	if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 1 {
		t.Fatalf("forwarded to %d", n)
	}
	later := time.Now().Add(time.Hour).UnixNano()
	q.ws[0].SetOpenerIdle(2 * time.Hour)
	q.ws[0].sweep(later)
	if on := q.holds(a); len(on) != 1 {
		t.Fatalf("Opener on %v after an hour with a 2 h lifetime, want kept", on)
	}
	q.ws[0].SetOpenerIdle(0) // ignored
	q.ws[0].SetOpenerIdle(30 * time.Minute)
	q.ws[0].sweep(later)
	if on := q.holds(a); len(on) != 0 {
		t.Fatalf("Opener still on %v after an hour with a 30 min lifetime", on)
	}
}

// TestHandoverDeferred checks that an owner asked for a sender it opened
// a packet of less than handoverQuiet ago keeps the request and hands
// the state over once the sender has been quiet that long, without a new
// request, having told its port to wait no later than that
// (Port.WaitUntil); and that a deferred request lapses when the requester
// stops asking (the flow came back). The worker's clock is given to serve
// directly: nothing here depends on the machine's speed.
func TestHandoverDeferred(t *testing.T) {
	q := newTwoQueues(t, 3)
	a := q.eps[0]
	send := func(qi int) int { return q.send(t, qi, a) }
	opened := func() int64 {
		for _, oe := range q.ws[0].openers {
			if oe.keys == a.peer.Recv {
				return oe.opened
			}
		}
		t.Fatal("worker 0 holds no Opener for the sender")
		return 0
	}
	w0, quiet, retry := q.ws[0], int64(handoverQuiet), int64(handoverRetry)
	serve := func(w *Worker, now int64) {
		w.serve(now)
		w.publish()
	}

	if n := send(0); n != 2 {
		t.Fatalf("queue 0 forwarded to %d receivers, want 2", n)
	}
	t0 := opened()
	send(1) // misrouted: asks worker 0
	serve(w0, t0+1)
	if got := q.stat(HandoversDeferred); got != [2]uint64{1, 0} {
		t.Fatalf("deferred %v, want worker 0 to defer the request", got)
	}
	if got := q.ports[0].waitUntil; got != t0+quiet {
		t.Fatalf("WaitUntil %d, want the sender's last packet + handoverQuiet (%d)", got, t0+quiet)
	}
	serve(w0, t0+quiet-1) // not due yet, nothing new
	if on := q.holds(a); len(on) != 1 || on[0] != 0 {
		t.Fatalf("handed over before the sender was quiet: Opener on %v", on)
	}
	serve(w0, t0+quiet) // due: answered without a new request
	if o, tr := q.owner(t, a); o != q.ws[1].table.ID() || !tr {
		t.Fatalf("owner %d (transit %v), want in transit to %d", o, tr, q.ws[1].table.ID())
	}
	if len(w0.deferred) != 0 || w0.deferDue != 0 {
		t.Fatalf("deferred requests left after the hand-over: %d, due %d", len(w0.deferred), w0.deferDue)
	}
	q.idle(t, 1)
	if n := send(1); n != 2 {
		t.Fatalf("after the hand-over queue 1 forwarded to %d receivers, want 2", n)
	}
	if got := q.stat(Handovers); got != [2]uint64{0, 1} {
		t.Fatalf("hand-overs %v", got)
	}

	// Back to queue 0 (worker 1 now owns it), then the flow keeps reaching
	// worker 1 after one stray packet on queue 0: worker 1 defers the
	// request while the sender's packets keep reaching it, and the request
	// lapses once worker 0 stops asking.
	w1 := q.ws[1]
	var t1 int64
	for _, oe := range w1.openers {
		t1 = oe.opened
	}
	q.ws[0].retry = 0
	send(0) // misrouted on 0: asks worker 1
	serve(w1, t1+1)
	if got := q.stat(HandoversDeferred); got != [2]uint64{1, 1} {
		t.Fatalf("deferred %v", got)
	}
	// The sender keeps sending to worker 1: each due time finds it not
	// quiet and moves on, until the request is quiet+retry old.
	now := t1 + 1
	for len(w1.deferred) > 0 {
		now = w1.deferDue
		for _, oe := range w1.openers {
			oe.opened = now - 1 // a packet just before each due time
		}
		serve(w1, now)
		if now-t1 > 10*(quiet+retry) {
			t.Fatal("deferred request never lapsed")
		}
	}
	if asked := t1 + 1; now-asked <= quiet+retry || w1.deferDue != 0 {
		t.Fatalf("request lapsed %d ns after it was made, before quiet+retry; due %d", now-asked, w1.deferDue)
	}
	if on := q.holds(a); len(on) != 1 || on[0] != 1 {
		t.Fatalf("state moved while the flow reached its owner: Opener on %v", on)
	}
}
