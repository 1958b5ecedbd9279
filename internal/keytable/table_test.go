package keytable

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
		shards  int
	}{
		{name: "defaults", cfg: Config{}, shards: 512},
		{name: "100k", cfg: Config{MaxAssociations: 100_000}, shards: 1024},
		{name: "tiny", cfg: Config{MaxAssociations: 1}, shards: 1},
		{name: "explicit shards", cfg: Config{Shards: 16}, shards: 16},
		{name: "shards not power of two", cfg: Config{Shards: 3}, wantErr: ErrInvalid},
		{name: "too many shards", cfg: Config{Shards: 1 << 15}, wantErr: ErrInvalid},
		{name: "negative max", cfg: Config{MaxAssociations: -1}, wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := New(tc.cfg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("New: err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := len(tb.snap.Load().addrs); got != tc.shards {
				t.Errorf("shards %d, want %d", got, tc.shards)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	v4 := netip.MustParseAddrPort("198.18.1.2:5004")
	mapped := netip.MustParseAddrPort("[::ffff:198.18.1.2]:5004")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:5004")
	if KeyOf(v4) != KeyOf(mapped) || KeyOf(v4) != KeyV4([4]byte{198, 18, 1, 2}, 5004) {
		t.Errorf("IPv4 keys differ")
	}
	if KeyOf(v6) != KeyV6(v6.Addr().As16(), 5004) || KeyOf(v6) == KeyOf(v4) {
		t.Errorf("IPv6 key wrong")
	}
	if got := KeyOf(v4).AddrPort(); got != v4 {
		t.Errorf("AddrPort() = %v, want %v", got, v4)
	}
}

// checkRouted verifies that ep is the version of its association that the
// current snapshot routes: its address resolves to it and it is a member of
// its conference.
func checkRouted(t *testing.T, tb *Table, ep *Endpoint) {
	t.Helper()
	s := tb.snap.Load()
	if got := s.LookupAddr(ep.Addr()); got != ep {
		t.Errorf("Lookup(%v) = %p, want %p", ep.Addr(), got, ep)
	}
	if !slices.Contains(s.Receivers(ep), ep) {
		t.Errorf("endpoint %v not in conference %d", ep.ID(), ep.Conference())
	}
	if got, ok := tb.Get(ep.ID()); !ok || got != ep {
		t.Errorf("Get(%v) = %p, %v", ep.ID(), got, ok)
	}
}

func TestInstall(t *testing.T) {
	p0, p1 := newPair(t, 0), newPair(t, 1)
	ctx := context.Background()
	tests := []struct {
		name    string
		pre     []Association // installed first
		a       Association
		wantErr error
	}{
		{name: "new", a: assocOf(0, 1, p0)},
		{name: "nil ID", a: Association{Addr: addrOf(0), Recv: p0.recv, Send: p0.send}, wantErr: ErrInvalid},
		{name: "invalid address", a: Association{ID: idOf(0), Recv: p0.recv, Send: p0.send}, wantErr: ErrInvalid},
		{name: "zero port", a: Association{ID: idOf(0), Addr: netip.AddrPortFrom(addrOf(0).Addr(), 0), Recv: p0.recv, Send: p0.send}, wantErr: ErrInvalid},
		{name: "unspecified address", a: Association{ID: idOf(0), Addr: netip.MustParseAddrPort("0.0.0.0:5"), Recv: p0.recv, Send: p0.send}, wantErr: ErrInvalid},
		{name: "nil recv", a: Association{ID: idOf(0), Addr: addrOf(0), Send: p0.send}, wantErr: ErrInvalid},
		{name: "nil send", a: Association{ID: idOf(0), Addr: addrOf(0), Recv: p0.recv}, wantErr: ErrInvalid},
		{name: "table full", pre: []Association{assocOf(1, 1, p1), assocOf(2, 1, p1)}, a: assocOf(0, 1, p0), wantErr: ErrTableFull},
		{name: "address in use", pre: []Association{{ID: idOf(1), Addr: addrOf(0), Recv: p1.recv, Send: p1.send}}, a: assocOf(0, 1, p0), wantErr: ErrAddrInUse},
		{name: "rekey", pre: []Association{assocOf(0, 1, p1)}, a: assocOf(0, 1, p0)},
		{name: "rekey new address", pre: []Association{{ID: idOf(0), Addr: addrOf(5), Conference: 1, Recv: p1.recv, Send: p1.send}}, a: assocOf(0, 1, p0)},
		{name: "rekey address in use", pre: []Association{assocOf(1, 1, p1), {ID: idOf(0), Addr: addrOf(5), Conference: 1, Recv: p1.recv, Send: p1.send}},
			a: Association{ID: idOf(0), Addr: addrOf(1), Conference: 1, Recv: p0.recv, Send: p0.send}, wantErr: ErrAddrInUse},
		{name: "rekey other conference", pre: []Association{assocOf(0, 1, p1)}, a: assocOf(0, 2, p0), wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxAssociations: 2})
			var prev *Endpoint
			for _, a := range tc.pre {
				ep, err := tb.Install(ctx, a)
				if err != nil {
					t.Fatalf("pre-install: %v", err)
				}
				if a.ID == tc.a.ID {
					prev = ep
				}
			}
			ep, err := tb.Install(ctx, tc.a)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Install: err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if ep != nil {
					t.Errorf("Install failed but returned an endpoint")
				}
				if prev != nil {
					checkRouted(t, tb, prev) // unchanged
				}
				return
			}
			if ep.ID() != tc.a.ID || ep.Addr() != tc.a.Addr || ep.Conference() != tc.a.Conference ||
				ep.Recv() != tc.a.Recv || ep.Send() != tc.a.Send {
				t.Errorf("endpoint %+v does not match %+v", ep, tc.a)
			}
			checkRouted(t, tb, ep)
			if prev != nil {
				if ep.Gen() == prev.Gen() {
					t.Errorf("rekey kept Gen %d", ep.Gen())
				}
				if prev.Addr() != ep.Addr() && tb.snap.Load().LookupAddr(prev.Addr()) != nil {
					t.Errorf("old address %v still resolves", prev.Addr())
				}
				if n := len(tb.snap.Load().Conference(ep.Conference())); n != 1 {
					t.Errorf("conference has %d members after rekey, want 1", n)
				}
			}
		})
	}
}

func TestRemove(t *testing.T) {
	p := newPair(t, 0)
	ctx := context.Background()
	tests := []struct {
		name    string
		install int // associations 0..install-1, all in conference 7
		remove  uuid.UUID
		wantErr error
	}{
		{name: "only member", install: 1, remove: idOf(0)},
		{name: "one of three", install: 3, remove: idOf(1)},
		{name: "not found", install: 1, remove: idOf(9), wantErr: ErrNotFound},
		{name: "empty table", remove: idOf(0), wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{})
			var eps []*Endpoint
			for i := range tc.install {
				ep, err := tb.Install(ctx, assocOf(i, 7, p))
				if err != nil {
					t.Fatal(err)
				}
				eps = append(eps, ep)
			}
			err := tb.Remove(ctx, tc.remove)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Remove: err %v, want %v", err, tc.wantErr)
			}
			s := tb.snap.Load()
			for _, ep := range eps {
				removed := err == nil && ep.ID() == tc.remove
				if got := s.LookupAddr(ep.Addr()); (got == nil) != removed {
					t.Errorf("%v: Lookup = %p, removed %v", ep.ID(), got, removed)
				}
				if slices.Contains(s.Conference(7), ep) == removed {
					t.Errorf("%v: membership wrong, removed %v", ep.ID(), removed)
				}
				if _, ok := tb.Get(ep.ID()); ok == removed {
					t.Errorf("%v: Get ok=%v, removed %v", ep.ID(), ok, removed)
				}
			}
			want := tc.install
			if err == nil {
				want--
			}
			if st := tb.Stats(); st.Associations != want || s.Len() != want {
				t.Errorf("Associations %d, Len %d, want %d", st.Associations, s.Len(), want)
			}
			if want == 0 && tb.Stats().Conferences != 0 {
				t.Errorf("empty conference kept")
			}
		})
	}
}

func TestSetAddr(t *testing.T) {
	p := newPair(t, 0)
	ctx := context.Background()
	tests := []struct {
		name    string
		id      uuid.UUID
		addr    netip.AddrPort
		wantErr error
	}{
		{name: "move", id: idOf(0), addr: addrOf(50)},
		{name: "same address", id: idOf(0), addr: addrOf(0)},
		{name: "IPv6", id: idOf(0), addr: netip.MustParseAddrPort("[2001:db8::7]:4000")},
		{name: "in use", id: idOf(0), addr: addrOf(1), wantErr: ErrAddrInUse},
		{name: "invalid", id: idOf(0), addr: netip.AddrPort{}, wantErr: ErrInvalid},
		{name: "not found", id: idOf(9), addr: addrOf(50), wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{})
			old, _ := tb.Install(ctx, assocOf(0, 1, p))
			other, _ := tb.Install(ctx, assocOf(1, 1, p))
			ep, err := tb.SetAddr(ctx, tc.id, tc.addr)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SetAddr: err %v, want %v", err, tc.wantErr)
			}
			checkRouted(t, tb, other)
			if err != nil {
				checkRouted(t, tb, old)
				return
			}
			if ep.Addr() != tc.addr || ep.Gen() != old.Gen() || ep.Recv() != old.Recv() {
				t.Errorf("new version %+v wrong (old %+v)", ep, old)
			}
			checkRouted(t, tb, ep)
			if tc.addr != old.Addr() && tb.snap.Load().LookupAddr(old.Addr()) != nil {
				t.Errorf("old address still resolves")
			}
			if n := len(tb.snap.Load().Conference(1)); n != 2 {
				t.Errorf("conference has %d members, want 2", n)
			}
		})
	}
}

func TestSetConference(t *testing.T) {
	p := newPair(t, 0)
	ctx := context.Background()
	tests := []struct {
		name    string
		id      uuid.UUID
		conf    ConferenceID
		claims  func(tb *Table, eps []*Endpoint) // SSRC claims before the move
		wantErr error
	}{
		{name: "to new conference", id: idOf(0), conf: 9},
		{name: "to existing conference", id: idOf(0), conf: 2},
		{name: "same conference", id: idOf(0), conf: 1},
		{name: "not found", id: idOf(9), conf: 2, wantErr: ErrNotFound},
		{name: "received SSRC in use in target", id: idOf(0), conf: 2,
			claims: func(tb *Table, eps []*Endpoint) {
				send(t, tb, eps[1], 1234, 5) // 0 received 1234 from 1 in conference 1
				send(t, tb, eps[2], 1234, 5) // and 2 sends 1234 in conference 2
			}, wantErr: ErrSSRCConflict},
		{name: "own SSRC in use in target is fine", id: idOf(0), conf: 2,
			claims: func(tb *Table, eps []*Endpoint) {
				tb.ClaimSSRC(eps[0], 1234)
				tb.ClaimSSRC(eps[2], 1234)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{})
			e0, _ := tb.Install(ctx, assocOf(0, 1, p))
			e1, _ := tb.Install(ctx, assocOf(1, 1, p))
			e2, _ := tb.Install(ctx, assocOf(2, 2, p))
			if tc.claims != nil {
				tc.claims(tb, []*Endpoint{e0, e1, e2})
			}
			ep, err := tb.SetConference(ctx, tc.id, tc.conf)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SetConference: err %v, want %v", err, tc.wantErr)
			}
			checkRouted(t, tb, e1)
			checkRouted(t, tb, e2)
			if err != nil {
				checkRouted(t, tb, e0)
				return
			}
			if ep.Conference() != tc.conf || ep.Gen() != e0.Gen() || ep.Addr() != e0.Addr() {
				t.Errorf("moved version %+v wrong", ep)
			}
			checkRouted(t, tb, ep)
			if tc.conf != 1 && slices.ContainsFunc(tb.snap.Load().Conference(1), func(e *Endpoint) bool { return e.ID() == ep.ID() }) {
				t.Errorf("still a member of conference 1")
			}
		})
	}
}

// A moved member carries what it was sent: a sender of the new conference
// that uses the same SSRC is re-based above it.
func TestSetConferenceCarriesReceivedSSRCs(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	r, _ := tb.Install(ctx, assocOf(0, 1, p))
	s, _ := tb.Install(ctx, assocOf(1, 1, p))
	x, _ := tb.Install(ctx, assocOf(2, 2, p))
	const top = 70_000
	if _, ok := send(t, tb, s, 77, top); !ok {
		t.Fatal("packet refused")
	}
	r2, err := tb.SetConference(ctx, r.ID(), 2)
	if err != nil {
		t.Fatal(err)
	}
	// x now sends 77 from index 3: r2 must get it above top.
	c, ok := send(t, tb, x, 77, 3)
	if !ok {
		t.Fatal("claim of an SSRC a moved-in member was sent refused")
	}
	if out, ok := c.Out(r2); !ok || out <= top || out > top+RebaseMargin+1 {
		t.Errorf("moved member gets index %d (ok %v), want just above %d", out, ok, top)
	}
	if !tb.ClaimSSRC(x, 78) || !tb.ClaimSSRC(r2, 99) {
		t.Errorf("unrelated claims refused")
	}
	// The stale version of r (conference 1) may not claim anything.
	if tb.ClaimSSRC(r, 5) {
		t.Errorf("stale version claimed")
	}
}

func TestExpireIdle(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	now := time.Unix(1000, 0)
	tb := newTable(t, Config{Now: func() time.Time { return now }})
	var eps []*Endpoint
	for i := range 4 {
		ep, _ := tb.Install(ctx, assocOf(i, ConferenceID(i%2), p))
		eps = append(eps, ep)
	}
	now = now.Add(10 * time.Second)
	eps[1].Touch(now.UnixNano())
	eps[2].Touch(now.Add(-2 * time.Second).UnixNano())
	if eps[1].LastSeen() != now.UnixNano() {
		t.Errorf("LastSeen not updated")
	}
	eps[1].Touch(now.Add(-time.Hour).UnixNano()) // never goes back
	if eps[1].LastSeen() != now.UnixNano() {
		t.Errorf("Touch went back in time")
	}
	ids, err := tb.ExpireIdle(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if want := []uuid.UUID{idOf(0), idOf(3)}; !slices.Equal(ids, want) {
		t.Errorf("expired %v, want %v", ids, want)
	}
	s := tb.snap.Load()
	for i, ep := range eps {
		gone := i == 0 || i == 3
		if (s.LookupAddr(ep.Addr()) == nil) != gone {
			t.Errorf("endpoint %d: routed=%v", i, !gone)
		}
	}
	if ids, err := tb.ExpireIdle(ctx, time.Hour); err != nil || ids != nil {
		t.Errorf("second expiry: %v, %v", ids, err)
	}
	if st := tb.Stats(); st.Expired != 2 || st.Associations != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestGraceTimeout(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{GraceTimeout: 20 * time.Millisecond})
	ep, _ := tb.Install(ctx, assocOf(0, 1, p))
	r := tb.NewReader()
	defer r.Close()
	idle := tb.NewReader()
	defer idle.Close()
	snap := r.Begin() // a stuck worker
	err := tb.Remove(ctx, ep.ID())
	if !errors.Is(err, ErrGraceTimeout) {
		t.Fatalf("Remove with a stuck reader: %v", err)
	}
	t.Logf("reported: %v", err)
	if snap.LookupAddr(ep.Addr()) != ep {
		t.Errorf("the stuck reader's snapshot changed")
	}
	if tb.snap.Load().LookupAddr(ep.Addr()) != nil {
		t.Errorf("removal not published")
	}
	if tb.Stats().GraceTimeouts != 1 {
		t.Errorf("GraceTimeouts not counted")
	}
	r.End()
	if err := tb.Synchronize(ctx); err != nil {
		t.Errorf("Synchronize after End: %v", err)
	}
}

func TestRemoveWaitsForReader(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	ep, _ := tb.Install(ctx, assocOf(0, 1, p))
	r := tb.NewReader()
	defer r.Close()
	snap := r.Begin()
	done := make(chan error)
	go func() { done <- tb.Remove(ctx, ep.ID()) }()
	select {
	case err := <-done:
		t.Fatalf("Remove returned (%v) while a batch holding the endpoint was running", err)
	case <-time.After(30 * time.Millisecond):
	}
	if snap.LookupAddr(ep.Addr()) != ep {
		t.Errorf("snapshot changed under the reader")
	}
	r.End()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := r.Begin()
	if s.LookupAddr(ep.Addr()) != nil {
		t.Errorf("removed endpoint visible in a batch begun after Remove returned")
	}
	r.End()
}

func TestOwn(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	ep, _ := tb.Install(ctx, assocOf(0, 1, newPair(t, 0)))
	r1, r2 := tb.NewReader(), tb.NewReader()
	defer r1.Close()
	defer r2.Close()
	if r1.ID() == r2.ID() {
		t.Fatalf("reader IDs equal")
	}
	if !r1.Own(ep) {
		t.Errorf("first owner refused")
	}
	if !r1.Own(ep) {
		t.Errorf("owner refused the second time")
	}
	if r2.Own(ep) {
		t.Errorf("second worker owns it too")
	}
	// An address change keeps the owner.
	moved, _ := tb.SetAddr(ctx, ep.ID(), addrOf(9))
	if r2.Own(moved) || !r1.Own(moved) {
		t.Errorf("ownership lost on SetAddr")
	}
	r1.Release(moved)
	if !r2.Own(moved) {
		t.Errorf("no hand-over after Release")
	}
	// New keys: a new generation, free for the first worker that sees it.
	rk, _ := tb.Install(ctx, Association{ID: ep.ID(), Addr: addrOf(9), Conference: 1, Recv: newKeys(t, 5), Send: newKeys(t, 6)})
	if !r1.Own(rk) {
		t.Errorf("new generation not claimable")
	}
	if r2.Own(moved) {
		t.Errorf("old generation still owned after rekey")
	}
	if tb.Stats().Misrouted != 3 {
		t.Errorf("Misrouted = %d, want 3", tb.Stats().Misrouted)
	}
}

// TestHandOver checks the ownership word through a hand-over, a parking,
// and the refusals in between: while a generation is in transit nobody
// owns it, not even the reader it is handed to.
func TestHandOver(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	ep, _ := tb.Install(ctx, assocOf(0, 1, newPair(t, 0)))
	r1, r2, r3 := tb.NewReader(), tb.NewReader(), tb.NewReader()
	defer r1.Close()
	defer r2.Close()
	defer r3.Close()
	check := func(step string, r *Reader, want bool) {
		t.Helper()
		if got := r.Own(ep); got != want {
			t.Errorf("%s: reader %d Own = %v, want %v", step, r.ID(), got, want)
		}
	}
	owner := func(step string, wantReader int, wantTransit bool) {
		t.Helper()
		got, transit, stale := r3.Owner(ep)
		if got != wantReader || transit != wantTransit || stale {
			t.Errorf("%s: Owner = %d, %v, %v; want %d, %v, false", step, got, transit, stale, wantReader, wantTransit)
		}
	}
	owner("unowned", 0, false)
	check("first", r1, true)
	owner("owned", r1.ID(), false)
	if r2.HandOver(ep, r3.ID()) {
		t.Fatal("a non-owner handed over")
	}
	if r2.Accept(ep) {
		t.Fatal("accepted what was not handed over")
	}
	if !r1.HandOver(ep, r2.ID()) {
		t.Fatal("owner could not hand over")
	}
	owner("in transit", r2.ID(), true)
	check("in transit", r1, false)
	check("in transit", r2, false)
	check("in transit", r3, false)
	if r3.Accept(ep) {
		t.Fatal("a third reader accepted a hand-over to r2")
	}
	if !r2.Accept(ep) {
		t.Fatal("r2 could not accept")
	}
	check("accepted", r2, true)
	check("accepted", r1, false)
	// An address change keeps the generation, hence the owner.
	moved, _ := tb.SetAddr(ctx, ep.ID(), addrOf(9))
	if !r2.Own(moved) || r1.Own(moved) {
		t.Error("ownership changed on SetAddr")
	}
	// Parking: any reader may take it, once.
	if !r2.HandOver(moved, 0) {
		t.Fatal("could not park")
	}
	owner("parked", 0, true)
	check("parked", r1, false)
	if !r3.Accept(moved) || r1.Accept(moved) {
		t.Fatal("parked generation not taken exactly once")
	}
	check("unparked", r3, true)
	// A hand-over of an old generation is stale after a rekey.
	if !r3.HandOver(moved, r1.ID()) {
		t.Fatal("hand-over to r1")
	}
	rk, _ := tb.Install(ctx, Association{ID: ep.ID(), Addr: addrOf(9), Conference: 1, Recv: newKeys(t, 5), Send: newKeys(t, 6)})
	if !r2.Own(rk) {
		t.Error("new generation not claimable while the old one is in transit")
	}
	if r1.Accept(moved) {
		t.Error("accepted a generation the keys replaced")
	}
	if _, _, stale := r1.Owner(moved); !stale {
		t.Error("old generation not reported stale")
	}
	if r2.HandOver(rk, maxReaders) || r2.HandOver(rk, -1) {
		t.Error("hand-over to an impossible reader ID")
	}
}
