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

// An SSRC whose owner is removed stays blocked while a member that may have
// received it is present, then becomes free.
func TestClaimSSRCRetiredOnRemove(t *testing.T) {
	ctx := context.Background()
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	a, _ := tb.Install(ctx, assocOf(0, 1, p))
	b, _ := tb.Install(ctx, assocOf(1, 1, p)) // receives a's SSRC 10
	if !tb.ClaimSSRC(a, 10) {
		t.Fatal("claim refused")
	}
	if err := tb.Remove(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	if tb.ClaimSSRC(a, 11) {
		t.Errorf("removed endpoint claimed an SSRC")
	}
	c, _ := tb.Install(ctx, assocOf(2, 1, p))
	if tb.ClaimSSRC(c, 10) {
		t.Errorf("SSRC of a removed sender reused while a receiver of it remains")
	}
	if err := tb.Remove(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	if !tb.ClaimSSRC(c, 10) {
		t.Errorf("SSRC still blocked after every member that saw it left")
	}
	st := tb.Stats()
	if st.StaleClaims != 1 || st.SSRCCollisions != 1 {
		t.Errorf("stats %+v", st)
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
