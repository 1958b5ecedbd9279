package keytable

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestSetConsent(t *testing.T) {
	tb := newTable(t, Config{})
	ctx := context.Background()
	var eps []*Endpoint
	for i := range 3 {
		ep, err := tb.Install(ctx, assocOf(i, 5, newPair(t, i)))
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, ep)
	}
	r := tb.NewReader()
	defer r.Close()
	receivers := func() []*Endpoint {
		s := r.Begin()
		defer r.End()
		return slices.Clone(s.Receivers(s.LookupAddr(addrOf(0))))
	}
	if got := receivers(); len(got) != 3 {
		t.Fatalf("receivers %d, want 3", len(got))
	}
	off, err := tb.SetConsent(ctx, eps[1].ID(), false)
	if err != nil {
		t.Fatal(err)
	}
	if off.Consent() || off.Gen() != eps[1].Gen() || off.Addr() != eps[1].Addr() {
		t.Fatalf("new version: consent %v gen %d addr %v", off.Consent(), off.Gen(), off.Addr())
	}
	s := r.Begin()
	got := s.Receivers(s.LookupAddr(addrOf(0)))
	members := s.Conference(5)
	// Its own media still resolves and goes to the others.
	sender := s.LookupAddr(addrOf(1))
	others := s.Receivers(sender)
	r.End()
	if len(got) != 2 || slices.ContainsFunc(got, func(e *Endpoint) bool { return e.ID() == eps[1].ID() }) {
		t.Fatalf("receivers without consent: %d, holding it: %v", len(got), got)
	}
	if len(members) != 3 {
		t.Fatalf("members %d, want 3 (it stays a member)", len(members))
	}
	if sender == nil || sender.Consent() || len(others) != 2 {
		t.Fatalf("sender without consent: %v, its receivers %d", sender, len(others))
	}
	// A new member joins a conference with a member without consent.
	if _, err := tb.Install(ctx, assocOf(3, 5, newPair(t, 3))); err != nil {
		t.Fatal(err)
	}
	if got := receivers(); len(got) != 3 {
		t.Fatalf("receivers after a join %d, want 3", len(got))
	}
	// Moves keep the flag.
	if ep, err := tb.SetAddr(ctx, eps[1].ID(), addrOf(9)); err != nil || ep.Consent() {
		t.Fatalf("SetAddr: %v, consent %v", err, ep.Consent())
	}
	if got := receivers(); len(got) != 3 {
		t.Fatalf("receivers after a move %d, want 3", len(got))
	}
	if _, err := tb.SetConsent(ctx, eps[1].ID(), true); err != nil {
		t.Fatal(err)
	}
	if got := receivers(); len(got) != 4 {
		t.Fatalf("receivers after consent came back %d, want 4", len(got))
	}
	if _, err := tb.SetConsent(ctx, idOf(99), false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown association: %v", err)
	}
	// Reading costs nothing more.
	if _, err := tb.SetConsent(ctx, eps[2].ID(), false); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		s := r.Begin()
		_ = s.Receivers(s.LookupAddr(addrOf(0)))
		r.End()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Receivers", allocs)
	}
}
