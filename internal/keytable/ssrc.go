package keytable

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Kind tells which index space a packet uses: the 48-bit SRTP packet index
// (ROC << 16 | SEQ) or the 31-bit SRTCP index. They are kept apart because
// SRTP and SRTCP use different session keys (RFC 3711 section 4.3).
type Kind uint8

// Index kinds.
const (
	KindRTP  Kind = 0
	KindRTCP Kind = 1
)

const (
	// RebaseMargin is the gap left between the highest index a receiver
	// was sent under an SSRC and the first index of the SSRC's next claim
	// towards it. It exceeds srtpfast.ReplayWindow, so that every packet
	// the new owner's Opener can still accept (at most ReplayWindow behind
	// the first one) maps above the old range; older ones are dropped and
	// counted (Stats.IndexDrops).
	RebaseMargin = 512

	rtpLimit  = 1 << 48 // SRTP index space
	rtcpLimit = 1 << 31 // SRTCP index space

	idxMask   = 1<<48 - 1
	setBit    = 1 << 62 // the word holds an index
	closedBit = 1 << 63 // the claim is closed: nothing more is admitted

	// DefaultMaxSSRCsPerSender bounds the live claims of one association.
	DefaultMaxSSRCsPerSender = 16
	// DefaultClaimContest is how long an SSRC's owner must be silent, or
	// outsent, before a contender takes the SSRC over (see doc.go).
	DefaultClaimContest = 1_000_000_000 // 1 s in nanoseconds
)

// confState is the state of one conference shared by all snapshots: its
// SSRCs. It lives as long as the conference has members.
//
// Live claims are an immutable map behind an atomic pointer: the hot path
// (an SSRC already claimed by the sender) is one atomic load and one map
// read. Everything else changes under mu, which serializes claimers
// (workers, on a new SSRC, a takeover or a re-key) with the table writer.
type confState struct {
	id ConferenceID
	t  *Table

	// seq is the last join sequence number given out (written under
	// Table.mu, read by claimers).
	seq      atomic.Uint64
	nmembers int // under Table.mu

	mu     sync.Mutex
	claims atomic.Pointer[map[uint32]*claim] // live claims; replaced under mu
	// hist is, per SSRC, what each receiver key (by Endpoint.Gen) may
	// have been sent under it: one past the highest index, per Kind. An
	// entry exists while that receiver is a member (or moving out); an
	// SSRC with no entries and no live claim is forgotten. Under mu;
	// nil until the first entry (histFor): most conferences never re-use
	// an SSRC.
	hist map[uint32]map[uint64]lane
	// away holds the members moving out of the conference (SetConference
	// between its two steps), by association serial: a claim closed
	// meanwhile must still record what it sent them. Under mu; nil until
	// the first move.
	away map[uint64]member
}

// lane is what one receiver key was sent under one SSRC: per Kind, one
// past the highest index (0: nothing); serial is the receiver's
// association.
type lane struct {
	next   [2]uint64
	serial uint64
}

// member is a receiver as claims see it.
type member struct {
	a    *assoc
	gen  uint64 // its Send key generation
	join uint64 // its join sequence number in the conference
}

// claim is one live claim: an SSRC of the conference, owned by one sender
// key generation, from the moment it is (re)claimed until that owner
// leaves, re-keys or loses it. Receivers that were sent the SSRC before
// the claim began get its packets under rebased indices (lanes); the
// others get the sender's own indices.
//
// A claim is 104 octets, in the 112-octet size class (two per sender of
// audio and video; TestClaimSize; 96 before linkBase):
// the packet counts are 32-bit, which the contest reads only as
// differences within one contest period.
type claim struct {
	owner *assoc
	gen   uint64
	ssrc  uint32
	// pkts counts the packets admitted, modulo 2^32 (written by the
	// owner's worker).
	pkts atomic.Uint32
	// lanes is, per receiver key generation, what it had been sent under
	// the SSRC when the claim began. Immutable; nil when nobody had.
	lanes map[uint64]lane
	// linkBase is, per link receiver key generation without a lane, what
	// Out subtracts from the SRTP index for it: the ROC part of the first
	// index it was sent under the claim, so that the peer MD's fresh
	// Opener, which starts an SSRC at ROC 0, can open it (see Out).
	// Copy-on-write, written only by the owner's worker (once per link
	// and claim), read by closers.
	linkBase atomic.Pointer[map[uint64]uint64]

	// Written by the owner's worker, read by closers and contenders.
	hi     [2]atomic.Uint64 // closedBit | setBit | highest index admitted
	anchor [2]atomic.Uint64 // setBit | first index admitted
	served atomic.Uint64    // highest join sequence number of a receiver
	used   atomic.Int64     // time of the last packet admitted

	// The contest (see doc.go): collisions by other senders since
	// contestAt, and pkts when it began. The contest reads both counts
	// over one period (ClaimContest: 1 s by default, and the daemon does
	// not change it), in which neither can reach 2^32 at any packet rate
	// a NIC delivers.
	contestAt   atomic.Int64
	contested   atomic.Uint32
	pktsAtStart atomic.Uint32
}

func newConfState(t *Table, id ConferenceID) *confState {
	cs := &confState{id: id, t: t}
	m := map[uint32]*claim{}
	cs.claims.Store(&m)
	return cs
}

// histFor returns cs.hist, making it on first use. Under mu.
func (cs *confState) histFor() map[uint32]map[uint64]lane {
	if cs.hist == nil {
		cs.hist = make(map[uint32]map[uint64]lane)
	}
	return cs.hist
}

// Claim is the admission of one packet under a live claim, returned by
// Table.Admit. Out gives, per receiver, the index to seal the packet
// with. The zero Claim is not valid.
type Claim struct {
	c      *claim
	in     uint64
	anchor uint64
	kind   Kind
}

// Rebased reports whether some receiver may get this packet under an index
// other than its own (the SSRC was sent to it before the current claim).
func (c Claim) Rebased() bool { return c.c != nil && len(c.c.lanes) != 0 }

// Out returns the index under which to seal the admitted packet for
// receiver r: the packet's own index unless r's current Send key was sent
// the SSRC before this claim began; then one that continues, with a gap of
// RebaseMargin, above everything r was sent under it. ok is false (drop
// this copy; count it) when that index would leave the index space.
//
// A link receiver (Association.Link) without a lane gets SRTP indices
// with the SEQ unchanged and the ROC counted from the first packet it is
// sent under the claim: the peer MD's Opener for it starts every SSRC at
// ROC 0 (RFC 3711 section 3.3.1), and a link may be set up, or re-keyed,
// long after the stream began. A copy older than that first packet's ROC
// cycle is refused (ok false).
//
// Out neither locks nor allocates, but for the first packet of a claim
// towards each link receiver (one small map copy). Only the worker that
// admitted the packet may call it.
func (c Claim) Out(r *Endpoint) (out uint64, ok bool) {
	var (
		l     lane
		found bool
	)
	if len(c.c.lanes) != 0 {
		l, found = c.c.lanes[r.gen]
	}
	if !found || l.next[c.kind] == 0 {
		if r.link && c.kind == KindRTP {
			base := c.c.linkBaseFor(r.gen, c.in)
			return c.in - base, c.in >= base
		}
		return c.in, true
	}
	// Admit guaranteed c.in+RebaseMargin > c.anchor.
	out = l.next[c.kind] + (c.in + RebaseMargin - c.anchor)
	limit := uint64(rtpLimit)
	if c.kind == KindRTCP {
		limit = rtcpLimit
	}
	return out, out < limit
}

// linkBaseFor returns the base of link receiver gen under c, setting it
// from in on first use. Owner's worker only.
func (c *claim) linkBaseFor(gen, in uint64) uint64 {
	m := c.linkBase.Load()
	if m != nil {
		if b, ok := (*m)[gen]; ok {
			return b
		}
	}
	b := in &^ 0xffff
	nm := make(map[uint64]uint64, 1)
	if m != nil {
		maps.Copy(nm, *m)
	}
	nm[gen] = b
	c.linkBase.Store(&nm)
	return b
}

// ClaimSSRC claims ssrc for ep without admitting a packet (for the control
// plane and tests; workers use Admit): true if ep's association owns ssrc
// in its conference afterwards.
func (t *Table) ClaimSSRC(ep *Endpoint, ssrc uint32) bool {
	return t.claimFor(ep, ssrc, t.cfg.Now().UnixNano()) != nil
}

// Admit claims ssrc for ep (if it is not ep's already) and admits one
// authenticated packet from ep under it: index is the packet's SRTP index
// (ROC << 16 | SEQ) or SRTCP index, by kind; maxJoin is the highest
// Endpoint.JoinSeq among the receivers the packet is about to be sealed for
// (the conference's members in the worker's snapshot); now is the batch
// time in nanoseconds. On false the packet must be dropped; the reason is
// counted (Stats.SSRCCollisions, SSRCOverBudget, ClaimsFull, StaleClaims,
// IndexDrops and Endpoint.Collisions).
//
// A worker calls it for every packet, after its Opener accepted it, from
// ep in its current batch, and seals the packet for receiver r under
// Claim.Out(r). For an SSRC ep already owns it takes no lock and does not
// allocate. See doc.go for why no (receiver key, SSRC, index) repeats.
func (t *Table) Admit(ep *Endpoint, ssrc uint32, kind Kind, index, maxJoin uint64, now int64) (Claim, bool) {
	var cl Claim
	ok := t.admitTo(&cl, nil, ep, ssrc, kind, index, maxJoin, now)
	return cl, ok
}

// admitTo is Admit writing the Claim to *cl (the zero Claim on false),
// with a Reader's claim cache (nil: none): it admits under the claim
// cached for (ep, ssrc) when it is still open, else under the one
// claimFor finds, which then replaces it in the cache (every claim leaves
// the live map closed, so an open one is still the live claim of that
// SSRC for that Endpoint version).
func (t *Table) admitTo(cl *Claim, cache *[claimSlots]claimSlot, ep *Endpoint, ssrc uint32, kind Kind, index, maxJoin uint64, now int64) bool {
	var (
		s    *claimSlot
		c    *claim
		miss = true
	)
	if cache != nil {
		s = &cache[claimSlotOf(ep, ssrc)]
		c = s.c
		miss = s.ep != ep || s.ssrc != ssrc || c.hi[kind].Load()&closedBit != 0
	}
	if miss {
		if c = t.claimFor(ep, ssrc, now); c == nil {
			*cl = Claim{}
			return false
		}
		if s != nil {
			*s = claimSlot{ep: ep, c: c, ssrc: ssrc}
		}
	}
	// Receivers first, then the index: a closer that sets closedBit and
	// then reads served sees this packet's receivers whenever the index
	// check below passes (all atomics here are sequentially consistent).
	if s := c.served.Load(); maxJoin > s {
		for !c.served.CompareAndSwap(s, maxJoin) {
			if s = c.served.Load(); maxJoin <= s {
				break
			}
		}
	}
	anchor := c.anchor[kind].Load()
	if anchor == 0 {
		c.anchor[kind].CompareAndSwap(0, setBit|index)
		anchor = c.anchor[kind].Load()
	}
	anchor &= idxMask
	if len(c.lanes) != 0 && index+RebaseMargin <= anchor {
		t.stats.indexDrops.Add(1)
		*cl = Claim{}
		return false
	}
	for {
		v := c.hi[kind].Load()
		if v&closedBit != 0 {
			t.stats.staleClaims.Add(1)
			*cl = Claim{}
			return false
		}
		if v&setBit != 0 && index <= v&idxMask {
			break
		}
		if c.hi[kind].CompareAndSwap(v, setBit|index) {
			break
		}
	}
	if c.used.Load() < now {
		c.used.Store(now)
	}
	c.pkts.Add(1)
	*cl = Claim{c: c, in: index, anchor: anchor, kind: kind}
	return true
}

// claimFor returns ep's live claim on ssrc, taking or re-basing it when
// the rules allow, or nil (counted).
func (t *Table) claimFor(ep *Endpoint, ssrc uint32, now int64) *claim {
	cs := ep.cs
	if cs == nil {
		t.stats.staleClaims.Add(1)
		return nil
	}
	c := (*cs.claims.Load())[ssrc]
	switch {
	case c == nil:
	case c.owner == ep.a && c.gen == ep.gen:
		return c
	case c.owner != ep.a && !t.contestDue(c, now):
		c.contested.Add(1)
		t.collision(ep)
		return nil
	}
	return t.claimSlow(ep, cs, ssrc, now)
}

// budget is the most live claims ep's association may hold.
func (t *Table) budget(ep *Endpoint) int64 {
	if ep.link {
		return int64(t.cfg.MaxSSRCsPerLink)
	}
	return int64(t.cfg.MaxSSRCsPerSender)
}

func (t *Table) collision(ep *Endpoint) {
	t.stats.collisions.Add(1)
	ep.a.collisions.Add(1)
}

// contestDue reports whether a collision with c must be judged under the
// lock: the owner has been silent for a contest period, or no contest is
// running, or the running one has lasted a period.
func (t *Table) contestDue(c *claim, now int64) bool {
	p := t.cfg.ClaimContest.Nanoseconds()
	at := c.contestAt.Load()
	return now-c.used.Load() >= p || at == 0 || now-at >= p
}

func (t *Table) claimSlow(ep *Endpoint, cs *confState, ssrc uint32, now int64) *claim {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ep.a.cs.Load() != cs {
		t.stats.staleClaims.Add(1)
		return nil
	}
	m := *cs.claims.Load()
	c := m[ssrc]
	if c != nil {
		switch {
		case c.owner == ep.a && c.gen == ep.gen:
			return c
		case c.owner == ep.a && c.gen > ep.gen:
			t.stats.staleClaims.Add(1) // an older key generation
			return nil
		case c.owner == ep.a:
			// The sender was re-keyed: a new Opener, so its indices
			// may start over. A new claim, re-based for everyone
			// who was sent the old one.
			t.stats.rebases.Add(1)
			return t.replace(cs, m, c, ep, ssrc, now)
		case !t.contestWon(c, now):
			c.contested.Add(1)
			t.collision(ep)
			return nil
		}
		// Taken over: the owner was silent or outsent.
		if ep.a.nclaims.Load() >= t.budget(ep) {
			t.stats.overBudget.Add(1)
			ep.a.overBudget.Add(1)
			return nil
		}
		c.owner.nclaims.Add(-1)
		c.owner.lost.Add(1)
		ep.a.nclaims.Add(1)
		t.stats.takeovers.Add(1)
		return t.replace(cs, m, c, ep, ssrc, now)
	}
	if ep.a.nclaims.Load() >= t.budget(ep) {
		t.stats.overBudget.Add(1)
		ep.a.overBudget.Add(1)
		return nil
	}
	if _, known := cs.hist[ssrc]; !known && cs.records() >= t.cfg.MaxSSRCsPerConference {
		t.stats.claimsFull.Add(1)
		return nil
	}
	ep.a.nclaims.Add(1)
	t.stats.claims.Add(1)
	return t.replace(cs, m, nil, ep, ssrc, now)
}

// contestWon judges a collision with c under cs.mu: true if the owner has
// been silent for a contest period, or a contest period has passed in
// which other senders sent more than twice what the owner sent. A contest
// the owner wins starts over.
func (t *Table) contestWon(c *claim, now int64) bool {
	p := t.cfg.ClaimContest.Nanoseconds()
	if now-c.used.Load() >= p {
		return true
	}
	at := c.contestAt.Load()
	if at == 0 {
		c.pktsAtStart.Store(c.pkts.Load())
		c.contested.Store(0)
		c.contestAt.Store(now)
		return false
	}
	if now-at < p {
		return false
	}
	owner := c.pkts.Load() - c.pktsAtStart.Load()
	if uint64(c.contested.Load()) > 2*uint64(owner) {
		return true
	}
	c.pktsAtStart.Store(c.pkts.Load())
	c.contested.Store(0)
	c.contestAt.Store(now)
	return false
}

// records is the number of SSRCs the conference holds state for. Under mu.
func (cs *confState) records() int {
	n := len(cs.hist)
	for s := range *cs.claims.Load() {
		if _, ok := cs.hist[s]; !ok {
			n++
		}
	}
	return n
}

// replace closes old (if not nil) and publishes a new claim on ssrc for
// ep, re-based on everything the SSRC was sent under. Under cs.mu.
func (t *Table) replace(cs *confState, m map[uint32]*claim, old *claim, ep *Endpoint, ssrc uint32, now int64) *claim {
	if old != nil {
		cs.close(old)
	}
	nc := &claim{owner: ep.a, gen: ep.gen, ssrc: ssrc}
	nc.used.Store(now)
	if h := cs.hist[ssrc]; len(h) != 0 {
		nc.lanes = maps.Clone(h)
	}
	nm := make(map[uint32]*claim, len(m)+1)
	maps.Copy(nm, m)
	nm[ssrc] = nc
	cs.claims.Store(&nm)
	return nc
}

// close ends claim c: nothing more is admitted under it (closedBit, set
// before record reads the receivers), and what it may have sent each
// receiver is added to hist. Under cs.mu.
func (cs *confState) close(c *claim) {
	for k := range c.hi {
		c.hi[k].Or(closedBit)
	}
	cs.record(c, nil)
}

// record adds to hist what c has sent (or, if only is not nil, what it
// has sent to that one member). It reads the members after c was closed
// (or, for a live c, after the member stopped receiving). Under cs.mu.
func (cs *confState) record(c *claim, only *member) {
	var hi, anchor [2]uint64
	var sent [2]bool
	for k := range c.hi {
		v := c.hi[k].Load()
		sent[k], hi[k] = v&setBit != 0, v&idxMask
		anchor[k] = c.anchor[k].Load() & idxMask
	}
	if !sent[KindRTP] && !sent[KindRTCP] {
		return
	}
	served := c.served.Load()
	var linkBase map[uint64]uint64
	if m := c.linkBase.Load(); m != nil {
		linkBase = *m
	}
	h := cs.hist[c.ssrc]
	add := func(mb member) {
		if mb.a == c.owner {
			return
		}
		l := c.lanes[mb.gen]
		nl, had := h[mb.gen]
		changed := false
		for k := range sent {
			if !sent[k] {
				continue
			}
			var next uint64
			switch {
			case l.next[k] != 0:
				next = l.next[k] + (hi[k] + RebaseMargin - anchor[k]) + 1
			case mb.join <= served && mb.a.link != nil && Kind(k) == KindRTP:
				// A link: Out sent it in - base; without a base
				// (Out set none, or set it after this read) in at
				// most.
				next = hi[k] + 1
				if b, ok := linkBase[mb.gen]; ok && b <= hi[k] {
					next = hi[k] - b + 1
				}
			case mb.join <= served:
				next = hi[k] + 1
			default:
				continue
			}
			if next > nl.next[k] {
				nl.next[k], changed = next, true
			}
		}
		if changed || had {
			if h == nil {
				h = map[uint64]lane{}
				cs.histFor()[c.ssrc] = h
			}
			nl.serial = mb.a.serial
			h[mb.gen] = nl
		}
	}
	if only != nil {
		add(*only)
		return
	}
	// The current members, loaded after c was closed: one that is not
	// among them was published after the close, so no packet admitted
	// under c reached it (see doc.go).
	for _, e := range cs.snapMembers() {
		add(member{a: e.a, gen: e.gen, join: e.join})
	}
	for _, mb := range cs.away {
		add(mb)
	}
}

// snapMembers returns the conference's members in the current snapshot.
func (cs *confState) snapMembers() []*Endpoint {
	return cs.t.snap.Load().Conference(cs.id)
}

// retire closes a's claims in cs (a is leaving) and records what they
// sent; if a is removed (not moving), it also forgets what a was sent.
// Called under Table.mu, before the change is published.
func (cs *confState) retire(a *assoc, gen uint64, moving bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := *cs.claims.Load()
	nm := make(map[uint32]*claim, len(m))
	for s, c := range m {
		if c.owner == a {
			cs.close(c)
			a.nclaims.Add(-1)
			continue
		}
		nm[s] = c
	}
	cs.claims.Store(&nm)
	if moving {
		if cs.away == nil {
			cs.away = make(map[uint64]member)
		}
		cs.away[a.serial] = member{a: a, gen: gen, join: a.joinSeq}
	} else {
		cs.forget(a.serial, 0)
	}
}

// forget drops what the Send keys of association serial other than
// keepGen (0: all of them) were sent, and SSRCs nobody needs any more.
// Under mu.
func (cs *confState) forget(serial, keepGen uint64) {
	for s, h := range cs.hist {
		for g, l := range h {
			if l.serial == serial && g != keepGen {
				delete(h, g)
			}
		}
		if len(h) == 0 {
			delete(cs.hist, s)
		}
	}
}

// received returns, per SSRC, what member mb was sent in cs under its
// current key. Unless peek, mb is moving out and no longer receives
// anything in cs (Table.mu held, after the grace period of its leaving):
// what live claims sent it is recorded first, and afterwards cs forgets
// it.
func (cs *confState) received(mb member, peek bool) map[uint32]lane {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !peek {
		for _, c := range *cs.claims.Load() {
			cs.record(c, &mb)
		}
	}
	out := map[uint32]lane{}
	for s, h := range cs.hist {
		if l, ok := h[mb.gen]; ok {
			out[s] = l
		}
	}
	for s, c := range *cs.claims.Load() {
		if _, ok := out[s]; !ok && c.owner != mb.a && mb.join != 0 && mb.join <= c.served.Load() {
			out[s] = lane{} // sent something under a live claim
		}
	}
	if !peek {
		delete(cs.away, mb.a.serial)
		cs.forget(mb.a.serial, 0)
	}
	return out
}

// conflicts reports whether one of ssrcs is live-claimed in cs by a sender
// other than a. Called under Table.mu.
func (cs *confState) conflicts(a *assoc, ssrcs map[uint32]lane) bool {
	m := *cs.claims.Load()
	for s := range ssrcs {
		if c, ok := m[s]; ok && c.owner != a {
			return true
		}
	}
	return false
}

// reserve records in cs what receiver gen was sent under ssrcs elsewhere,
// so that claims in cs continue above it; it fails, changing nothing, if
// one of them is live-claimed by another sender (that claim's indices
// towards the newcomer could repeat). Called under Table.mu.
func (cs *confState) reserve(a *assoc, gen uint64, ssrcs map[uint32]lane) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.conflicts(a, ssrcs) {
		return false
	}
	for s, l := range ssrcs {
		h := cs.hist[s]
		if h == nil {
			h = map[uint64]lane{}
			cs.histFor()[s] = h
		}
		cur := h[gen]
		cur.serial = a.serial
		for k := range l.next {
			cur.next[k] = max(cur.next[k], l.next[k])
		}
		h[gen] = cur
	}
	return true
}

// rekeyed forgets what the older Send keys of association a were sent:
// its new key gen has been sent nothing. Called under Table.mu.
func (cs *confState) rekeyed(a *assoc, gen uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.forget(a.serial, gen)
}
