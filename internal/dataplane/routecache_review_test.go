package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// TestRouteCacheMatchesTable checks the ktReader's routes, which it keeps
// across batches while the snapshot stays the same, against what the
// table says at that moment, after random changes between (and around)
// batches: removals, re-installs (new key generations), address moves,
// consent changes, conference moves, another reader taking senders, and
// this reader handing senders over, releasing them and taking them back.
// For every packet the worker's way of routing (ktReader.cachedRoute, then
// Route) must give: ok exactly when the snapshot resolves the source to an
// endpoint whose current generation this reader owns; that endpoint; the
// snapshot's receivers of its conference (less itself); and their highest
// join sequence number as maxJoin. A route kept from an earlier batch that
// the table or an ownership change has made stale fails it.
func TestRouteCacheMatchesTable(t *testing.T) {
	ctx := context.Background()
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	pool := addrs(n + 6) // the last 6 are free addresses to move to
	eps := newConference(t, newMemTable(), pool[:n])
	ids := make([]uuid.UUID, n)
	addr := make([]netip.AddrPort, n) // current address; invalid when not installed
	conf := make([]keytable.ConferenceID, n)
	for i := range eps {
		ids[i] = uuid.New()
		conf[i] = keytable.ConferenceID(7 + i%2)
	}
	// fresh returns keys never installed before: a re-key must bring new
	// keys (the table refuses the installed ones, keytable.ErrSameKeys).
	var made uint64
	fresh := func() *srtpfast.Keys {
		t.Helper()
		made++
		key, salt := make([]byte, 16), make([]byte, 12)
		binary.BigEndian.PutUint64(key, made)
		k, err := srtpfast.NewKeys(srtpfast.ProfileAEADAES128GCM, key, salt, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	install := func(i int) {
		t.Helper()
		a := addr[i]
		if !a.IsValid() {
			a = eps[i].peer.Addr
			if slices.Contains(addr, a) {
				return // taken by another endpoint that moved there
			}
		}
		if _, err := kt.Install(ctx, keytable.Association{
			ID: ids[i], Addr: a, Conference: conf[i], Recv: fresh(), Send: fresh(),
		}); err != nil {
			t.Fatalf("install %d at %v: %v", i, a, err)
		}
		addr[i] = a
	}
	for i := range eps {
		install(i)
	}

	r := KeyTable{kt}.NewReader()
	kr := r.(*ktReader)
	defer kr.Close()
	other := KeyTable{kt}.NewReader()
	ko := other.(*ktReader)
	defer ko.Close()

	rnd := rand.New(rand.NewPCG(21, 22))
	// routed are Peers r routed (for HandOver and Release).
	var routed []*Peer
	checkBatch := func(step int) {
		t.Helper()
		r.Begin()
		defer r.End()
		for range 1 + rnd.IntN(12) {
			src := pool[rnd.IntN(len(pool))]
			// The worker's way: the inline cache, then Route.
			var (
				sender  *Peer
				members []*Peer
				ok      bool
			)
			if e := kr.cachedRoute(src); e != nil {
				sender, members, ok = e.peer, e.members, true
			} else {
				sender, members, ok = r.Route(src)
			}
			ep := kr.snap.LookupAddr(src)
			if ep == nil {
				if ok || sender != nil {
					t.Fatalf("step %d: %v resolves to nothing, routed as %v (ok %v)", step, src, sender, ok)
				}
				continue
			}
			owner, transit, stale := kr.r.Owner(ep)
			wantOK := owner == kr.ID() && !transit && !stale
			if ok != wantOK {
				t.Fatalf("step %d: %v (gen %d): ok %v, want %v (owner %d transit %v stale %v)", step, src, ep.Gen(), ok, wantOK, owner, transit, stale)
			}
			if sender == nil || sender.ep != ep {
				t.Fatalf("step %d: %v routed to another endpoint version", step, src)
			}
			if !ok {
				continue
			}
			routed = append(routed, sender)
			var want []netip.AddrPort
			var maxJoin uint64
			for _, m := range kr.snap.Receivers(ep) {
				maxJoin = max(maxJoin, m.JoinSeq())
				if m != ep {
					want = append(want, m.Addr())
				}
			}
			var got []netip.AddrPort
			for _, m := range members {
				if m.ID != sender.ID {
					got = append(got, m.Addr)
				}
			}
			slices.SortFunc(want, netip.AddrPort.Compare)
			slices.SortFunc(got, netip.AddrPort.Compare)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: %v: members %v, the snapshot's receivers %v", step, src, got, want)
			}
			if kr.maxJoin != maxJoin {
				t.Fatalf("step %d: %v: maxJoin %d, the receivers' highest %d", step, src, kr.maxJoin, maxJoin)
			}
		}
	}

	for step := range 6000 {
		i := rnd.IntN(n)
		switch op := rnd.IntN(16); {
		case op < 6:
			checkBatch(step)
		case op == 6: // remove
			if addr[i].IsValid() {
				if err := kt.Remove(ctx, ids[i]); err != nil {
					t.Fatal(err)
				}
				addr[i] = netip.AddrPort{}
			}
		case op == 7: // install, or re-key (a new generation)
			install(i)
		case op == 8: // move to a free address
			if addr[i].IsValid() {
				to := pool[rnd.IntN(len(pool))]
				if !slices.Contains(addr, to) {
					if _, err := kt.SetAddr(ctx, ids[i], to); err != nil {
						t.Fatal(err)
					}
					addr[i] = to
				}
			}
		case op == 9: // consent
			if addr[i].IsValid() {
				if _, err := kt.SetConsent(ctx, ids[i], rnd.IntN(2) == 0); err != nil {
					t.Fatal(err)
				}
			}
		case op == 10: // conference move
			if addr[i].IsValid() {
				to := 15 - conf[i] // 7 <-> 8
				if _, err := kt.SetConference(ctx, ids[i], to); err != nil && !errors.Is(err, keytable.ErrSSRCConflict) {
					t.Fatal(err)
				} else if err == nil {
					conf[i] = to
				}
			}
		case op == 11: // the other reader routes (and may take) a sender
			other.Begin()
			_, _, _ = other.Route(pool[rnd.IntN(len(pool))])
			other.End()
		case op == 12: // the other reader gives one back
			if len(routed) > 0 {
				other.Release(routed[rnd.IntN(len(routed))])
			}
		case op == 13: // this reader hands one over; the other accepts (or not yet)
			if len(routed) > 0 {
				p := routed[rnd.IntN(len(routed))]
				if r.HandOver(p, other.ID()) && rnd.IntN(2) == 0 {
					other.Accept(p)
				}
			}
		case op == 14: // this reader releases one
			if len(routed) > 0 {
				r.Release(routed[rnd.IntN(len(routed))])
			}
		case op == 15: // parked hand-over from the other reader, taken here
			if len(routed) > 0 {
				p := routed[rnd.IntN(len(routed))]
				if other.HandOver(p, 0) {
					r.Accept(p)
				}
			}
		}
		if len(routed) > 64 {
			routed = routed[len(routed)-32:]
		}
	}
}

// TestRouteKeptAcrossBatchesReleased: a worker that routed a sender in
// several batches on one snapshot (its route kept from batch to batch)
// and then dropped its Opener as idle (releasing the sender) must not
// take the kept route again once another worker owns the sender: a
// packet there, new or replayed, is misrouted, and no second Opener is
// built for the sender's keys (it would start a fresh replay window).
func TestRouteKeptAcrossBatchesReleased(t *testing.T) {
	q := newTwoQueues(t, 2)
	a := q.eps[0]
	var first []byte
	for i := range 3 {
		plain, enc := a.sealRTP(t, 50)
		if i == 0 {
			first = append([]byte(nil), enc...)
		}
		if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 1 {
			t.Fatalf("batch %d: forwarded to %d", i, n)
		}
	}
	kr := q.ws[0].kt
	if kr.cachedRoute(a.peer.Addr) == nil {
		t.Fatal("the route of the batches before is not kept on the same snapshot")
	}
	q.ws[0].sweep(time.Now().Add(q.ws[0].cfg.OpenerIdle + time.Second).UnixNano())
	plain, enc := a.sealRTP(t, 50)
	if n := q.deliver(t, 1, a.peer.Addr, enc, plain); n != 1 {
		t.Fatalf("queue 1 after the release: forwarded to %d", n)
	}
	plain, enc = a.sealRTP(t, 50)
	if n := q.deliver(t, 0, a.peer.Addr, enc, plain); n != 0 {
		t.Fatalf("queue 0 forwarded a packet of a sender queue 1 owns to %d", n)
	}
	p0 := q.ports[0]
	p0.reset()
	p0.push(first, a.peer.Addr)
	if err := q.ws[0].poll(); err != nil {
		t.Fatal(err)
	}
	if bufs, _ := p0.sent(); len(bufs) != 0 {
		t.Fatalf("queue 0 forwarded a replay of its first packet to %d", len(bufs))
	}
	if on := q.holds(a); !slices.Equal(on, []int{1}) {
		t.Fatalf("Openers for the sender on queues %v, want only 1", on)
	}
	if got := q.stat(DropMisrouted); got[0] != 2 {
		t.Fatalf("misrouted %v, want 2 on queue 0", got)
	}
}
