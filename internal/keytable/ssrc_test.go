package keytable

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestClaimSSRC(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	type step struct {
		who  int // endpoint index
		ssrc uint32
		want bool
	}
	tests := []struct {
		name           string
		confs          []ConferenceID // conference of endpoint i
		steps          []step
		wantCollisions uint64
		max            int
	}{
		{name: "first claim", confs: []ConferenceID{1}, steps: []step{{0, 10, true}, {0, 10, true}}},
		{name: "several SSRCs per sender", confs: []ConferenceID{1}, steps: []step{{0, 10, true}, {0, 11, true}, {0, 10, true}}},
		{name: "intruder dropped, owner kept", confs: []ConferenceID{1, 1},
			steps: []step{{0, 10, true}, {1, 10, false}, {0, 10, true}, {1, 10, false}}, wantCollisions: 2},
		{name: "other conference independent", confs: []ConferenceID{1, 2}, steps: []step{{0, 10, true}, {1, 10, true}}},
		{name: "conference full", confs: []ConferenceID{1, 1}, max: 2,
			steps: []step{{0, 1, true}, {1, 2, true}, {0, 3, false}, {0, 1, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxSSRCsPerConference: tc.max})
			var eps []*Endpoint
			for i, c := range tc.confs {
				ep, err := tb.Install(ctx, assocOf(i, c, p))
				if err != nil {
					t.Fatal(err)
				}
				eps = append(eps, ep)
			}
			for i, s := range tc.steps {
				if got := tb.ClaimSSRC(eps[s.who], s.ssrc); got != s.want {
					t.Errorf("step %d: ClaimSSRC(%d, %d) = %v, want %v", i, s.who, s.ssrc, got, s.want)
				}
			}
			if got := tb.Stats().SSRCCollisions; got != tc.wantCollisions {
				t.Errorf("collisions %d, want %d", got, tc.wantCollisions)
			}
			var sum uint64
			for _, ep := range eps {
				sum += ep.Collisions()
			}
			if sum != tc.wantCollisions {
				t.Errorf("per-endpoint collisions %d, want %d", sum, tc.wantCollisions)
			}
		})
	}
}

// An SSRC whose owner is removed is free at once; a member that was sent it
// gets the new owner's packets above what it was sent, a newer member gets
// them under the sender's own indices.
func TestRejoinSameSSRC(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	a, _ := tb.Install(ctx, assocOf(0, 1, p))
	b, _ := tb.Install(ctx, assocOf(1, 1, p)) // receives a's SSRC 10
	const top = 3<<16 | 500                   // a sent for a while: ROC 3
	for i := uint64(top - 10); i <= top; i++ {
		if _, ok := send(t, tb, a, 10, i); !ok {
			t.Fatalf("packet %d refused", i)
		}
	}
	if err := tb.Remove(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	if tb.ClaimSSRC(a, 11) {
		t.Errorf("removed endpoint claimed an SSRC")
	}
	c, _ := tb.Install(ctx, assocOf(2, 1, p))  // joined after a left
	a2, _ := tb.Install(ctx, assocOf(3, 1, p)) // a rejoins: new association, same SSRC
	var last uint64
	for i := range uint64(100) {
		cl, ok := send(t, tb, a2, 10, 40000+i) // its indices start over
		if !ok {
			t.Fatalf("rejoined sender's packet %d refused", i)
		}
		if !cl.Rebased() {
			t.Fatalf("claim not re-based")
		}
		ob, ok := cl.Out(b)
		if !ok || ob <= top || (last != 0 && ob != last+1) {
			t.Fatalf("old receiver: index %d ok %v (top %d, last %d)", ob, ok, top, last)
		}
		last = ob
		if oc, _ := cl.Out(c); oc != 40000+i {
			t.Fatalf("new receiver: index %d, want the sender's %d", oc, 40000+i)
		}
	}
	if last-top > RebaseMargin+100 {
		t.Errorf("old receiver's index jumped by %d", last-top)
	}
	// A packet older than the margin behind the first one cannot be placed.
	if _, ok := send(t, tb, a2, 10, 40000-RebaseMargin); ok {
		t.Errorf("packet far behind a re-based claim's first admitted")
	}
	if st := tb.Stats(); st.StaleClaims != 1 || st.SSRCCollisions != 0 || st.IndexDrops != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A re-keyed sender may start its indices over: its claim is re-based for
// every receiver it was sent to.
func TestRekeyRebases(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	a, _ := tb.Install(ctx, assocOf(0, 1, p))
	b, _ := tb.Install(ctx, assocOf(1, 1, p))
	send(t, tb, a, 10, 1000)
	a2, err := tb.Install(ctx, assocOf(0, 1, newPair(t, 5)))
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := send(t, tb, a2, 10, 1000) // same index, new key
	if !ok {
		t.Fatal("re-keyed sender refused")
	}
	if out, _ := cl.Out(b); out <= 1000 {
		t.Errorf("index %d repeats towards the old receiver", out)
	}
	if _, ok := send(t, tb, a, 10, 1001); ok {
		t.Errorf("old key generation admitted")
	}
	if tb.Stats().SSRCRebases != 1 {
		t.Errorf("stats %+v", tb.Stats())
	}
}

// One sender cannot fill the conference: past MaxSSRCsPerSender its claims
// are refused and counted against it, and a later joiner's claim succeeds.
func TestSSRCBudget(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{MaxSSRCsPerConference: 64})
	sq, _ := tb.Install(ctx, assocOf(0, 1, p))
	for s := range uint32(4096) {
		tb.ClaimSSRC(sq, s)
	}
	if n := sq.a.nclaims.Load(); n != DefaultMaxSSRCsPerSender {
		t.Errorf("squatter holds %d claims, want %d", n, DefaultMaxSSRCsPerSender)
	}
	if got := sq.OverBudget(); got != 4096-DefaultMaxSSRCsPerSender {
		t.Errorf("OverBudget %d", got)
	}
	j, _ := tb.Install(ctx, assocOf(1, 1, p))
	if !tb.ClaimSSRC(j, 5000) {
		t.Errorf("joiner locked out")
	}
	if st := tb.Stats(); st.SSRCOverBudget != 4096-DefaultMaxSSRCsPerSender || st.ClaimsFull != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A squatted SSRC costs the squatter: silent, it is taken over at once;
// sending less than half of what the newcomer sends over a contest period,
// it is taken over then; an owner that keeps sending keeps it.
func TestSSRCTakeover(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	const sec = int64(1e9)
	tests := []struct {
		name         string
		squatterRate int // packets per 10 ms tick
		joinerRate   int
		wantJoiner   bool
	}{
		{"silent squatter", 0, 1, true},
		{"trickling squatter", 1, 5, true},
		{"owner keeps sending", 1, 1, false},
		{"owner outsends", 3, 5, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, Config{})
			sq, _ := tb.Install(ctx, assocOf(0, 1, p))
			j, _ := tb.Install(ctx, assocOf(1, 1, p))
			r, _ := tb.Install(ctx, assocOf(2, 1, p))
			now := int64(100 * sec)
			var idxS, idxJ uint64 = 5000, 100
			sendAt(t, tb, sq, 42, &idxS, now) // the squat
			now += 2 * sec
			got := false
			for tick := 0; tick < 300 && !got; tick++ {
				now += sec / 100
				for range tc.squatterRate {
					sendAt(t, tb, sq, 42, &idxS, now)
				}
				for range tc.joinerRate {
					if _, ok := sendAt(t, tb, j, 42, &idxJ, now); ok {
						got = true
					}
				}
			}
			if got != tc.wantJoiner {
				t.Fatalf("joiner got the SSRC: %v, want %v", got, tc.wantJoiner)
			}
			if !got {
				return
			}
			if sq.LostClaims() != 1 || tb.Stats().SSRCTakeovers != 1 {
				t.Errorf("LostClaims %d, stats %+v", sq.LostClaims(), tb.Stats())
			}
			if n := sq.a.nclaims.Load(); n != 0 {
				t.Errorf("squatter still counts %d claims", n)
			}
			// The takeover is a re-use: r was sent the squatter's
			// packets, so it gets the joiner's above them.
			cl, ok := sendAt(t, tb, j, 42, &idxJ, now)
			if out, _ := cl.Out(r); !ok || out <= idxS {
				t.Errorf("receiver of the squatter gets index %d, squatter reached %d", out, idxS)
			}
			if _, ok := sendAt(t, tb, sq, 42, &idxS, now); ok {
				t.Errorf("squatter still admitted")
			}
		})
	}
}

// Senders on several workers race for one SSRC: exactly one wins, and
// keeps winning.
func TestClaimSSRCRace(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	const n = 8
	var eps []*Endpoint
	for i := range n {
		ep, _ := tb.Install(ctx, assocOf(i, 1, p))
		eps = append(eps, ep)
	}
	for round := range 50 {
		ssrc := uint32(1000 + round)
		var wins [n]atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				for range 20 {
					if tb.ClaimSSRC(eps[i], ssrc) {
						wins[i].Add(1)
					}
				}
			})
		}
		wg.Wait()
		winners := 0
		for i := range n {
			switch wins[i].Load() {
			case 0:
			case 20:
				winners++
			default:
				t.Fatalf("round %d: endpoint %d won %d of 20", round, i, wins[i].Load())
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d owners", round, winners)
		}
	}
}
