package keytable

import (
	"context"
	"errors"
	"testing"
	"time"
)

func linkOf(n int, conf ConferenceID, peer int, tag uint32, p keyPair) Association {
	a := assocOf(n, conf, p)
	a.Addr, a.Link, a.Tag = netipPeer(peer), true, tag
	return a
}

// TestLinkAddressSharing checks who may share an address: links of one
// peer, one per tag; never a link and an association that is not one, nor
// two links with the same tag.
func TestLinkAddressSharing(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	p := newPair(t, 0)
	l1, err := tb.Install(ctx, linkOf(1, 1, 0, 0xa1, p))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := tb.Install(ctx, linkOf(2, 2, 0, 0xa2, p))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		a    Association
		want error
	}{
		{"same address and tag", linkOf(3, 3, 0, 0xa1, p), ErrAddrInUse},
		{"not a link at a link address", func() Association { a := assocOf(4, 1, p); a.Addr = netipPeer(0); return a }(), ErrAddrInUse},
		{"tag zero", linkOf(5, 1, 1, 0, p), ErrInvalid},
		{"tag without link", func() Association { a := assocOf(6, 1, p); a.Tag = 7; return a }(), ErrInvalid},
	} {
		if _, err := tb.Install(ctx, c.a); !errors.Is(err, c.want) {
			t.Errorf("%s: Install = %v, want %v", c.name, err, c.want)
		}
	}
	// A link at an ordinary association's address.
	plain, err := tb.Install(ctx, assocOf(7, 1, p))
	if err != nil {
		t.Fatal(err)
	}
	bad := linkOf(8, 1, 0, 0xa8, p)
	bad.Addr = plain.Addr()
	if _, err := tb.Install(ctx, bad); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("link at an association's address: %v, want ErrAddrInUse", err)
	}
	// A link moved onto an ordinary address, and an ordinary one onto a link address.
	if _, err := tb.SetAddr(ctx, l1.ID(), plain.Addr()); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("SetAddr link → association's address: %v", err)
	}
	if _, err := tb.SetAddr(ctx, plain.ID(), netipPeer(0)); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("SetAddr association → link address: %v", err)
	}

	s := tb.snap.Load()
	k := KeyOf(netipPeer(0))
	if e := s.Lookup(k); e != nil {
		t.Errorf("Lookup of a link address = %v, want nil", e.ID())
	}
	if e, link := s.Resolve(k); e != nil || !link {
		t.Errorf("Resolve of a link address = %v, %t", e, link)
	}
	if e, link := s.Resolve(KeyOf(plain.Addr())); e != plain || link {
		t.Errorf("Resolve of an association's address = %v, %t", e, link)
	}
	if e := s.LookupLink(k, 0xa1); e != l1 {
		t.Errorf("LookupLink a1 = %v", e)
	}
	if e := s.LookupLink(k, 0xa2); e != l2 {
		t.Errorf("LookupLink a2 = %v", e)
	}
	for _, tag := range []uint32{0, 0xa3} {
		if e := s.LookupLink(k, tag); e != nil {
			t.Errorf("LookupLink %#x = %v", tag, e.ID())
		}
	}
	if s.Len() != 3 || tb.Len() != 3 {
		t.Errorf("Len = %d, %d; want 3 (the reserved link address is not an association)", s.Len(), tb.Len())
	}

	// Removing one link keeps the address reserved for the other; the
	// last one frees it.
	if err := tb.Remove(ctx, l1.ID()); err != nil {
		t.Fatal(err)
	}
	s = tb.snap.Load()
	if _, link := s.Resolve(k); !link || s.LookupLink(k, 0xa1) != nil || s.LookupLink(k, 0xa2) != l2 {
		t.Error("after removing one link the other must still resolve")
	}
	// Moving the last link away frees the address.
	l2m, err := tb.SetAddr(ctx, l2.ID(), netipPeer(1))
	if err != nil {
		t.Fatal(err)
	}
	s = tb.snap.Load()
	if e, link := s.Resolve(k); e != nil || link {
		t.Errorf("old link address still resolves: %v, %t", e, link)
	}
	if s.LookupLink(KeyOf(netipPeer(1)), 0xa2) != l2m {
		t.Error("moved link does not resolve at its new address")
	}
	a := assocOf(9, 1, p)
	a.Addr = netipPeer(0)
	if _, err := tb.Install(ctx, a); err != nil {
		t.Errorf("freed link address: %v", err)
	}
	if _, err := tb.Install(ctx, linkOf(10, 1, 0, 0xa1, p)); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("link at an address an association took: %v", err)
	}
	if err := tb.Remove(ctx, l2.ID()); err != nil {
		t.Fatal(err)
	}
	if len(tb.links) != 0 {
		t.Errorf("link address counts left: %v", tb.links)
	}
}

// TestLinkLifecycle checks what a link is spared and refused: idle expiry,
// losing consent, moving, changing its tag on re-key; and that a re-key
// keeps it routable with the new keys.
func TestLinkLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	tb := newTable(t, Config{Now: func() time.Time { return now }})
	p, q := newPair(t, 0), newPair(t, 1)
	l, err := tb.Install(ctx, linkOf(1, 1, 0, 0xb1, p))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := tb.Install(ctx, assocOf(2, 1, p))
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	ids, err := tb.ExpireIdle(ctx, time.Minute)
	if err != nil || len(ids) != 1 || ids[0] != plain.ID() {
		t.Fatalf("ExpireIdle = %v, %v; want only the association that is not a link", ids, err)
	}
	if _, ok := tb.Get(l.ID()); !ok {
		t.Fatal("link expired")
	}
	if _, err := tb.SetConsent(ctx, l.ID(), false); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetConsent(link, false) = %v, want ErrInvalid", err)
	}
	if e, err := tb.SetConsent(ctx, l.ID(), true); err != nil || !e.Consent() {
		t.Errorf("SetConsent(link, true) = %v", err)
	}
	if _, err := tb.SetConference(ctx, l.ID(), 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetConference(link) = %v, want ErrInvalid", err)
	}
	for _, a := range []Association{linkOf(1, 1, 0, 0xb2, q), assocOf(1, 1, q)} {
		if _, err := tb.Install(ctx, a); !errors.Is(err, ErrInvalid) {
			t.Errorf("re-key changing link %t tag %#x: %v, want ErrInvalid", a.Link, a.Tag, err)
		}
	}
	nl, err := tb.Install(ctx, linkOf(1, 1, 0, 0xb1, q))
	if err != nil {
		t.Fatal(err)
	}
	if nl.Gen() == l.Gen() || nl.Recv() != q.recv || !nl.Link() || nl.Tag() != 0xb1 {
		t.Errorf("re-keyed link: gen %d→%d, link %t tag %#x", l.Gen(), nl.Gen(), nl.Link(), nl.Tag())
	}
	if tb.snap.Load().LookupLink(KeyOf(netipPeer(0)), 0xb1) != nl {
		t.Error("re-keyed link does not resolve")
	}
}

// TestLinkSSRCBudget: a link claims up to MaxSSRCsPerLink SSRCs (every
// sender behind the peer MD), an association MaxSSRCsPerSender.
func TestLinkSSRCBudget(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{MaxSSRCsPerSender: 2, MaxSSRCsPerLink: 5, MaxSSRCsPerConference: 64})
	p := newPair(t, 0)
	l, err := tb.Install(ctx, linkOf(1, 1, 0, 0xc1, p))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tb.Install(ctx, assocOf(2, 1, p))
	if err != nil {
		t.Fatal(err)
	}
	claims := func(ep *Endpoint, base uint32) int {
		n := 0
		for s := range uint32(8) {
			if _, ok := send(t, tb, ep, base+s, 100); ok {
				n++
			}
		}
		return n
	}
	if n := claims(l, 0x100); n != 5 {
		t.Errorf("link claimed %d SSRCs, want 5", n)
	}
	if n := claims(e, 0x200); n != 2 {
		t.Errorf("association claimed %d SSRCs, want 2", n)
	}
	if got := l.OverBudget(); got != 3 {
		t.Errorf("link OverBudget = %d, want 3", got)
	}
	// The cap: MaxSSRCsPerLink above MaxSSRCsPerConference.
	tb2 := newTable(t, Config{MaxSSRCsPerLink: 100, MaxSSRCsPerConference: 10})
	if tb2.cfg.MaxSSRCsPerLink != 10 {
		t.Errorf("MaxSSRCsPerLink = %d, want capped at 10", tb2.cfg.MaxSSRCsPerLink)
	}
	if _, err := New(Config{MaxSSRCsPerLink: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative MaxSSRCsPerLink: %v", err)
	}
}

// TestLinkStats: the counters add up per association, across versions,
// and are zero (and ignored) for an association that is not a link.
func TestLinkStats(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	p, q := newPair(t, 0), newPair(t, 1)
	l, err := tb.Install(ctx, linkOf(1, 1, 0, 0xd1, p))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tb.Install(ctx, assocOf(2, 1, p))
	if err != nil {
		t.Fatal(err)
	}
	l.AddLinkTraffic(LinkStats{TxPackets: 1, TxBytes: 100, RxPackets: 2, RxBytes: 300, TxDrops: 4, RxDrops: 5})
	nl, err := tb.Install(ctx, linkOf(1, 1, 0, 0xd1, q))
	if err != nil {
		t.Fatal(err)
	}
	nl.AddLinkTraffic(LinkStats{TxPackets: 10, TxBytes: 1000})
	want := LinkStats{TxPackets: 11, TxBytes: 1100, RxPackets: 2, RxBytes: 300, TxDrops: 4, RxDrops: 5}
	if got := l.LinkStats(); got != want {
		t.Errorf("LinkStats = %+v, want %+v", got, want)
	}
	e.AddLinkTraffic(LinkStats{TxPackets: 1})
	if got := e.LinkStats(); got != (LinkStats{}) {
		t.Errorf("LinkStats of an association = %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { nl.AddLinkTraffic(LinkStats{RxPackets: 1, RxBytes: 60}) }); n != 0 {
		t.Errorf("AddLinkTraffic allocates %v", n)
	}
}

// TestLinkLookupAllocs: the worker's link lookups do not allocate.
func TestLinkLookupAllocs(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	p := newPair(t, 0)
	for i := range 8 {
		if _, err := tb.Install(ctx, linkOf(i, ConferenceID(i+1), i%2, 0xe0+uint32(i), p)); err != nil {
			t.Fatal(err)
		}
	}
	r := tb.NewReader()
	defer r.Close()
	k := KeyV4(netipPeer(1).Addr().As4(), netipPeer(1).Port())
	var sink int
	n := testing.AllocsPerRun(1000, func() {
		s := r.Begin()
		if _, link := s.Resolve(k); link {
			if e := s.LookupLink(k, 0xe3); e != nil {
				sink += len(s.Receivers(e))
			}
		}
		r.End()
	})
	if n != 0 {
		t.Errorf("Resolve+LookupLink allocates %v per run", n)
	}
	if sink == 0 {
		t.Error("link not found")
	}
}

// TestLinkOutROC: a link that joins while a stream runs at ROC 5 is sent
// the stream with the SEQ unchanged and the ROC counted from 0 (the peer
// MD's Opener starts the SSRC there); when the sender re-keys, the next
// claim continues just above what the link was sent, not above the
// sender's index.
func TestLinkOutROC(t *testing.T) {
	ctx := context.Background()
	tb := newTable(t, Config{})
	p, q := newPair(t, 0), newPair(t, 1)
	snd, err := tb.Install(ctx, assocOf(1, 1, p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Install(ctx, assocOf(2, 1, p)); err != nil {
		t.Fatal(err)
	}
	const ssrc = 0x55
	idx := uint64(5<<16 | 60000)
	if _, ok := send(t, tb, snd, ssrc, idx); !ok {
		t.Fatal("refused")
	}
	l, err := tb.Install(ctx, linkOf(3, 1, 0, 0xf1, p))
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range uint64(10000) { // crosses a ROC boundary at the sender
		in := idx + 1 + i
		c, ok := send(t, tb, snd, ssrc, in)
		if !ok {
			t.Fatal("refused")
		}
		out, ok := c.Out(l)
		if !ok || uint16(out) != uint16(in) || out>>16 != in>>16-5 {
			t.Fatalf("index %#x to the link: %#x, %t; want SEQ kept, ROC from 0", in, out, ok)
		}
		last = out
	}
	// A copy older than the link's first ROC cycle is refused.
	if c, ok := send(t, tb, snd, ssrc, 4<<16|65535); ok {
		if out, ok := c.Out(l); ok {
			t.Fatalf("old index to the link: %#x", out)
		}
	}
	// The sender re-keys: a new claim, re-based for the link just above
	// what it was sent.
	a := assocOf(1, 1, q)
	if _, err := tb.Install(ctx, a); err != nil {
		t.Fatal(err)
	}
	snd2, _ := tb.Get(a.ID)
	c, ok := send(t, tb, snd2, ssrc, 7)
	if !ok {
		t.Fatal("refused after re-key")
	}
	out, ok := c.Out(l)
	if !ok || out <= last || out > last+RebaseMargin+1 {
		t.Fatalf("after re-key: %#x (last %#x), want just above", out, last)
	}
	if n := testing.AllocsPerRun(100, func() {
		c, _ := send(t, tb, snd2, ssrc, 8)
		_, _ = c.Out(l)
	}); n != 0 {
		t.Errorf("Out to a link allocates %v per packet once its base is set", n)
	}
}
