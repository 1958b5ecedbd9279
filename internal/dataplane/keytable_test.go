package dataplane

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
)

// TestKeyTableAdapter forwards through the real key table: 1 sender, 2
// receivers, RTP and RTCP, decrypted with pion/srtp; then an SSRC
// collision and zero allocations per packet.
func TestKeyTableAdapter(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	scratch := newMemTable()
	eps := newConference(t, scratch, addrs(3))
	for _, e := range eps {
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: uuid.New(), Addr: e.peer.Addr, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{tbl: scratch, eps: eps, port: newFakePort(256, 256)}
	f.w = NewWorker(0, f.port, KeyTable{kt}.NewReader(), WorkerConfig{})
	plain, enc := eps[0].sealRTP(t, 100)
	f.port.push(enc, eps[0].peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)
	plain, enc = eps[0].sealRTCP(t)
	f.port.push(enc, eps[0].peer.Addr)
	f.poll(t)
	f.checkSent(t, 0, plain)

	eps[1].ssrc = eps[0].ssrc
	_, enc = eps[1].sealRTP(t, 100)
	f.port.push(enc, eps[1].peer.Addr)
	f.poll(t)
	if st := f.w.Stats(); st[DropSSRCCollision] != 1 {
		t.Fatalf("collision not counted: %s", nonZero(&st))
	}

	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = eps[0].sealRTP(t, 160)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		f.port.reset()
		f.port.push(pkts[i], eps[0].peer.Addr)
		i++
		_ = f.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}

// TestKeyTableRouteCache: the adapter reuses a conference's members for
// the packets of one batch. Packets of two conferences interleaved in a
// batch each reach their own conference only, and a member installed
// between batches receives the next batch.
func TestKeyTableRouteCache(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newConference(t, newMemTable(), addrs(6))
	conf := []keytable.ConferenceID{7, 7, 7, 8, 8, 7} // eps[5] joins conference 7 later
	install := func(i int) {
		t.Helper()
		var id uuid.UUID
		id[0], id[15] = 0xca, byte(i+1)
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: id, Addr: eps[i].peer.Addr, Conference: conf[i], Recv: eps[i].peer.Recv, Send: eps[i].peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		install(i)
	}
	port := newFakePort(16, 64)
	w := NewWorker(0, port, KeyTable{kt}.NewReader(), WorkerConfig{})
	// want: the receivers of each pushed packet, in order.
	send := func(senders []int, want [][]int) {
		t.Helper()
		pollExpect(t, w, port, eps, senders, ownKeys(want))
	}
	send([]int{0, 3, 1, 4, 0}, [][]int{{1, 2}, {4}, {0, 2}, {3}, {1, 2}})
	install(5)
	// The batch before ended with a packet of conference 7.
	send([]int{0, 4}, [][]int{{1, 2, 5}, {3}})
	if st := w.Stats(); st.Drops() != 0 {
		t.Fatalf("drops: %s", nonZero(&st))
	}
}

// TestKeyTableRouteRepeat: Route reuses the last route for the next packet
// from the same source in a batch, and only then: interleaved with packets
// of another conference, of a sender another reader owns, of an unknown
// source and of a link address, each gets its own answer; a change
// between batches (a removal, a new address) is seen by the next batch.
func TestKeyTableRouteRepeat(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newConference(t, newMemTable(), addrs(5))
	conf := []keytable.ConferenceID{7, 7, 7, 8, 8}
	ids := make([]uuid.UUID, len(eps))
	for i, e := range eps {
		ids[i][0], ids[i][15] = 0xce, byte(i+1)
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: ids[i], Addr: e.peer.Addr, Conference: conf[i], Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Another reader owns endpoint 2's receive side.
	other := KeyTable{kt}.NewReader()
	other.Begin()
	if _, _, ok := other.Route(eps[2].peer.Addr); !ok {
		t.Fatal("the other reader does not own endpoint 2")
	}
	other.End()

	r := KeyTable{kt}.NewReader()
	unknown := netip.MustParseAddrPort("198.18.9.9:4000")
	// route checks the answer for a packet from endpoint i (-1: unknown).
	route := func(i int, wantOK bool, wantMembers ...int) {
		t.Helper()
		src := unknown
		if i >= 0 {
			src = eps[i].peer.Addr
		}
		p, members, ok := r.Route(src)
		if ok != wantOK || (i < 0) != (p == nil) || (p != nil && p.Addr != src) {
			t.Fatalf("Route(%v) = %v, %v; want ok %v", src, p, ok, wantOK)
		}
		// The sender may be among the members or not (a repeated route
		// leaves it out): the worker skips it either way.
		var got []netip.AddrPort
		for _, m := range members {
			if m.Addr != src {
				got = append(got, m.Addr)
			}
		}
		var want []netip.AddrPort
		for _, m := range wantMembers {
			if eps[m].peer.Addr != src {
				want = append(want, eps[m].peer.Addr)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Route(%v): members %v, want %v", src, got, want)
		}
	}
	r.Begin()
	route(0, true, 0, 1, 2)
	route(0, true, 0, 1, 2)
	route(3, true, 3, 4)
	route(3, true, 3, 4)
	route(0, true, 0, 1, 2)
	route(2, false) // misrouted
	route(0, true, 0, 1, 2)
	route(-1, false)
	route(0, true, 0, 1, 2)
	route(4, true, 3, 4)
	route(1, true, 0, 1, 2)
	route(1, true, 0, 1, 2)
	r.End()

	// Between batches endpoint 1 leaves, endpoint 0 moves.
	if err := kt.Remove(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}
	old := eps[0].peer.Addr
	eps[0].peer.Addr = netip.MustParseAddrPort("198.18.0.200:5000")
	if _, err := kt.SetAddr(context.Background(), ids[0], eps[0].peer.Addr); err != nil {
		t.Fatal(err)
	}
	r.Begin()
	if p, _, ok := r.Route(eps[1].peer.Addr); ok || p != nil {
		t.Fatalf("Route(removed endpoint) = %v, %v", p, ok)
	}
	route(0, true, 0, 2)
	if p, _, ok := r.Route(old); ok || p != nil {
		t.Fatalf("Route(old address) = %v, %v", p, ok)
	}
	route(0, true, 0, 2)
	r.End()

	// Batches on the same snapshot take the routes of the batches before
	// (the entry is the one routed, not a new lookup) until this reader
	// gives a sender away: then the next batch does not route it.
	r.Begin()
	route(3, true, 3, 4)
	kr := r.(*ktReader)
	cached := kr.cachedRoute(eps[3].peer.Addr)
	if cached == nil || cached.peer.Addr != eps[3].peer.Addr {
		t.Fatalf("cachedRoute(routed source) = %v", cached)
	}
	if e := kr.cachedRoute(netip.MustParseAddrPort("198.18.0.250:9")); e != nil {
		t.Fatalf("cachedRoute(unknown source) = %v", e)
	}
	if e := (*ktReader)(nil).cachedRoute(eps[3].peer.Addr); e != nil {
		t.Fatalf("cachedRoute on no ktReader = %v", e)
	}
	r.End()
	r.Begin()
	route(3, true, 3, 4)
	if kr.cachedRoute(eps[3].peer.Addr) != cached || cached.epoch != kr.epoch {
		t.Fatal("same snapshot: the route of the batch before was looked up again")
	}
	p3, _, _ := r.Route(eps[3].peer.Addr)
	r.End()
	if !r.HandOver(p3, other.ID()) {
		t.Fatal("HandOver of endpoint 3 refused")
	}
	r.Begin()
	route(3, false) // in transit to the other reader: not routed here
	route(4, true, 3, 4)
	r.End()
	if !other.Accept(p3) {
		t.Fatal("the other reader cannot accept endpoint 3")
	}
	r.Begin()
	route(3, false) // the other reader's now
	r.End()
	// The other reader releases it; this one takes it again, and gives it
	// up by Release: the batch after does not take the route it had.
	other.Release(p3)
	r.Begin()
	route(3, true, 3, 4)
	r.End()
	r.Release(p3)
	other.Begin()
	if _, _, ok := other.Route(eps[3].peer.Addr); !ok {
		t.Fatal("the other reader does not take endpoint 3 after Release")
	}
	other.End()
	r.Begin()
	route(3, false) // released, then owned by the other reader
	r.End()
}

// TestKeyTableRouteMany: more sources in one batch than the route cache
// has slots, in two conferences, interleaved in turn three times: every
// packet gets its own sender and its conference's members (colliding
// sources evict each other, never answer for each other), and the next
// batch sees an endpoint removed in between.
func TestKeyTableRouteMany(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * routeSlots
	eps := newConference(t, newMemTable(), addrs(n))
	ids := make([]uuid.UUID, n)
	for i, e := range eps {
		ids[i][0], ids[i][14], ids[i][15] = 0xcf, byte(i>>8), byte(i+1)
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: ids[i], Addr: e.peer.Addr, Conference: keytable.ConferenceID(7 + i%2), Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	r := KeyTable{kt}.NewReader()
	check := func(gone int) {
		t.Helper()
		r.Begin()
		defer r.End()
		for round := range 3 {
			for i, e := range eps {
				p, members, ok := r.Route(e.peer.Addr)
				if i == gone {
					if ok || p != nil {
						t.Fatalf("round %d: removed endpoint %d routed", round, i)
					}
					continue
				}
				if !ok || p.Addr != e.peer.Addr {
					t.Fatalf("round %d: Route(endpoint %d) = %v, %v", round, i, p, ok)
				}
				want := 0
				for j := range eps {
					if j%2 == i%2 && j != gone {
						want++
					}
				}
				if len(members) != want {
					t.Fatalf("round %d: endpoint %d: %d members, want %d", round, i, len(members), want)
				}
				for _, m := range members {
					if k := slices.IndexFunc(eps, func(x *endpoint) bool { return x.peer.Addr == m.Addr }); k%2 != i%2 || k == gone {
						t.Fatalf("round %d: endpoint %d routed to endpoint %d", round, i, k)
					}
				}
			}
		}
	}
	check(-1)
	if err := kt.Remove(context.Background(), ids[5]); err != nil {
		t.Fatal(err)
	}
	check(5)
}

// TestReaderRebased: the key table Reader's Admit says (rebased) when OutIndex
// may differ from the admitted index for a member that is not a link (the
// worker then asks OutIndex per receiver; otherwise it seals under the
// packet's own index). A first stream is never re-based; the stream of a
// sender that rejoined with the same SSRC is, for the members that were
// sent the first one, and not for a member that joined in between.
func TestReaderRebased(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newConference(t, newMemTable(), addrs(5))
	a, b, d, late, a2 := eps[0], eps[1], eps[2], eps[3], eps[4]
	ids := map[*endpoint]uuid.UUID{}
	join := func(e *endpoint) {
		ids[e] = uuid.New()
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: ids[e], Addr: e.peer.Addr, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	rd := KeyTable{kt}.NewReader()
	defer rd.(*ktReader).Close()
	now := time.Now().UnixNano()
	// admit admits one RTP packet of ssrc with index idx from e and
	// returns Admit's rebased and, per member, OutIndex.
	admit := func(e *endpoint, ssrc uint32, idx uint64) (bool, map[netip.AddrPort]uint64) {
		t.Helper()
		rd.Begin()
		defer rd.End()
		sender, members, ok := rd.Route(e.peer.Addr)
		var rebased bool
		if ok {
			rebased, ok = rd.Admit(sender, ssrc, false, idx, now)
		}
		if !ok {
			t.Fatalf("%v: not routed or not admitted", e.peer.Addr)
		}
		out := map[netip.AddrPort]uint64{}
		for _, m := range members {
			if m.ID == sender.ID {
				continue
			}
			oi, ok := rd.OutIndex(m)
			if !ok {
				t.Fatalf("OutIndex(%v) refused", m.Addr)
			}
			out[m.Addr] = oi
		}
		return rebased, out
	}

	join(a)
	join(b)
	join(d)
	const ssrc = 0x5eed
	for i := range uint64(50) {
		idx := 1000 + i
		rebased, out := admit(a, ssrc, idx)
		if rebased {
			t.Fatalf("first stream, packet %d: Rebased", i)
		}
		for m, oi := range out {
			if oi != idx {
				t.Fatalf("first stream: OutIndex(%v) = %d, want the packet's %d", m, oi, idx)
			}
		}
	}
	if err := kt.Remove(context.Background(), ids[a]); err != nil {
		t.Fatal(err)
	}
	join(late)
	join(a2) // the rejoin: new keys, the same SSRC, indices from 10
	rebased, out := admit(a2, ssrc, 10)
	if !rebased {
		t.Fatal("rejoined stream: not Rebased")
	}
	if out[late.peer.Addr] != 10 {
		t.Fatalf("member that joined in between: OutIndex %d, want the packet's 10", out[late.peer.Addr])
	}
	for _, m := range []*endpoint{b, d} {
		if oi := out[m.peer.Addr]; oi <= 1049 {
			t.Fatalf("member sent the first stream: OutIndex %d, want above its 1049", oi)
		}
	}
}

// TestKeyTableCachesAcrossChanges: what the adapter and the worker cache
// (routes and members per batch, Peers, Openers, claims) never outlives a
// change of the table between batches. After a batch that routed every
// sender, a receiver is removed, another re-keyed (new Send keys: its
// copies must be sealed with them) and a sender moved to another
// conference: the next batch reaches exactly the members of the new
// table, under their current keys, and the moved sender's packets reach
// its new conference only.
func TestKeyTableCachesAcrossChanges(t *testing.T) {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := newConference(t, newMemTable(), addrs(6))
	ids := make([]uuid.UUID, len(eps))
	for i := range ids {
		ids[i][0], ids[i][15] = 0xcb, byte(i+1)
	}
	// install installs association i at endpoint i's address with the
	// keys of endpoint keys (a re-key brings new keys).
	install := func(i, keys int, conf keytable.ConferenceID) {
		t.Helper()
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: ids[i], Addr: eps[i].peer.Addr, Conference: conf, Recv: eps[keys].peer.Recv, Send: eps[keys].peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		install(i, i, 7)
	}
	install(5, 5, 8)
	port := newFakePort(16, 64)
	w := NewWorker(0, port, KeyTable{kt}.NewReader(), WorkerConfig{})
	send := func(senders []int, want [][]copyTo) {
		t.Helper()
		pollExpect(t, w, port, eps, senders, want)
	}
	send([]int{0, 3, 0, 1}, [][]copyTo{
		{{1, 1}, {2, 2}, {3, 3}}, {{0, 0}, {1, 1}, {2, 2}}, {{1, 1}, {2, 2}, {3, 3}}, {{0, 0}, {2, 2}, {3, 3}},
	})
	ctx := context.Background()
	if err := kt.Remove(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	install(1, 4, 7) // re-keyed: endpoint 4's keys
	if _, err := kt.SetConference(ctx, ids[3], 8); err != nil {
		t.Fatal(err)
	}
	// (Endpoint 1's own packets would now be re-based: its association
	// was re-keyed, a new claim on its SSRC; TestReaderRebased covers
	// that.)
	send([]int{0, 3, 0}, [][]copyTo{{{1, 4}}, {{5, 5}}, {{1, 4}}})
	if st := w.Stats(); st.Drops() != 0 {
		t.Fatalf("drops: %s", nonZero(&st))
	}
}

// copyTo is a copy a test expects the worker to send: to the address of
// endpoint addr, opened with the keys of endpoint keys.
type copyTo struct{ addr, keys int }

// ownKeys makes want's receivers copyTos opened with their own keys.
func ownKeys(want [][]int) [][]copyTo {
	out := make([][]copyTo, len(want))
	for p, rs := range want {
		for _, r := range rs {
			out[p] = append(out[p], copyTo{r, r})
		}
	}
	return out
}

// pollExpect pushes one packet from each of senders, runs one poll of w
// and checks that the port sent exactly the copies want lists for each
// pushed packet, in order, each opening to the packet sent; then it
// resets the port.
func pollExpect(t *testing.T, w *Worker, port *fakePort, eps []*endpoint, senders []int, want [][]copyTo) {
	t.Helper()
	var plains [][]byte
	for _, s := range senders {
		plain, enc := eps[s].sealRTP(t, 100)
		plains = append(plains, plain)
		port.push(enc, eps[s].peer.Addr)
	}
	if err := w.poll(); err != nil {
		t.Fatal(err)
	}
	bufs, dsts := port.sent()
	k := 0
	for p, rs := range want {
		for _, r := range rs {
			if k >= len(bufs) {
				t.Fatalf("%d datagrams sent, fewer than wanted", len(bufs))
			}
			if dsts[k] != eps[r.addr].peer.Addr {
				t.Fatalf("packet %d: datagram %d to %v, want endpoint %d at %v", p, k, dsts[k], r.addr, eps[r.addr].peer.Addr)
			}
			eps[r.keys].open(t, bufs[k], plains[p])
			k++
		}
	}
	if k != len(bufs) {
		t.Fatalf("%d datagrams sent, want %d", len(bufs), k)
	}
	port.reset()
}
