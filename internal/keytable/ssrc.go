package keytable

import (
	"maps"
	"math"
	"sync"
	"sync/atomic"
)

// confState is the state of one conference shared by all snapshots: the
// SSRC claims. It lives as long as the conference has members.
//
// Claims are an immutable map behind an atomic pointer: the hot path (an
// SSRC already claimed) is one atomic load and one map read. A new claim
// copies the map under mu; that happens once per new SSRC in the
// conference, never per packet, and mu serializes claimers (workers) with
// the table writer, which makes "check, then claim" race-free.
//
// An SSRC whose owner left (or which a moved-in receiver has already
// received elsewhere) is not freed but retired: it stays blocked until
// every member that may have received packets under it has left, because a
// second sender reusing it could make the MD seal two different packets
// with the same (receiver key, IV). Join sequence numbers track that: a
// retired claim records the sequence number current at retirement and is
// reclaimable once the oldest member joined after it.
type confState struct {
	id ConferenceID

	// Written only under Table.mu.
	seq      uint64 // last join sequence number given out
	nmembers int

	// oldest is the smallest join sequence number of the members; it is
	// raised only after the grace period of the removal that allows it.
	oldest atomic.Uint64

	mu     sync.Mutex // serializes claim-map writers
	claims atomic.Pointer[map[uint32]claim]
}

// claim is one SSRC of a conference: its live owner, or (owner nil) a
// retired SSRC, blocked until the oldest member joined after retiredAt, or
// a reservation for the member that moved in having received it, dropped
// when that member leaves.
type claim struct {
	owner     *assoc
	retiredAt uint64
	from      uint64 // serial of the former owner, or of the member reserved for
	reserved  bool
}

func newConfState(id ConferenceID) *confState {
	cs := &confState{id: id}
	m := map[uint32]claim{}
	cs.claims.Store(&m)
	cs.oldest.Store(math.MaxUint64)
	return cs
}

// ClaimSSRC records that ep sends under ssrc and reports whether ep may:
// true if ep's association owns ssrc in its conference (now or from an
// earlier claim), false if another sender of the conference owns it (a
// collision: the packet must be dropped; it is counted in
// Stats.SSRCCollisions and Endpoint.Collisions), if the SSRC is retired, if
// the conference holds Config.MaxSSRCsPerConference claims, or if ep is a
// stale version (its association was removed or moved to another
// conference).
//
// A worker calls it for every packet, with the SSRC of a packet that
// authenticated (after the Opener accepted it, before forwarding), from ep
// in its current batch. For an SSRC already claimed it takes no lock and
// does not allocate; the first claim of an SSRC copies the conference's
// claim map under a mutex. Claims are safe across workers: of two senders
// claiming one SSRC, exactly one wins, and it keeps the SSRC until its
// association leaves the conference.
func (t *Table) ClaimSSRC(ep *Endpoint, ssrc uint32) (ok bool) {
	cs := ep.cs
	if cs == nil {
		t.stats.staleClaims.Add(1)
		return false
	}
	if c, found := (*cs.claims.Load())[ssrc]; found {
		if c.owner == ep.a {
			return true
		}
		if c.owner != nil || cs.oldest.Load() <= c.retiredAt {
			t.stats.collisions.Add(1)
			ep.a.collisions.Add(1)
			return false
		}
	}
	return t.claimSlow(ep, cs, ssrc)
}

func (t *Table) claimSlow(ep *Endpoint, cs *confState, ssrc uint32) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := *cs.claims.Load()
	c, found := m[ssrc]
	if found {
		if c.owner == ep.a {
			return true
		}
		if c.owner != nil || cs.oldest.Load() <= c.retiredAt {
			t.stats.collisions.Add(1)
			ep.a.collisions.Add(1)
			return false
		}
	}
	if ep.a.cs.Load() != cs {
		t.stats.staleClaims.Add(1)
		return false
	}
	if !found && len(m) >= t.cfg.MaxSSRCsPerConference {
		t.stats.claimsFull.Add(1)
		return false
	}
	nm := make(map[uint32]claim, len(m)+1)
	maps.Copy(nm, m)
	nm[ssrc] = claim{owner: ep.a}
	cs.claims.Store(&nm)
	t.stats.claims.Add(1)
	return true
}

// retire turns a's claims in cs into retired ones, blocked until every
// current member has left, and drops retired claims that are reclaimable.
// Called under Table.mu.
func (cs *confState) retire(a *assoc) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := *cs.claims.Load()
	oldest := cs.oldest.Load()
	nm := make(map[uint32]claim, len(m))
	for s, c := range m {
		switch {
		case c.owner == a:
			nm[s] = claim{retiredAt: cs.seq, from: a.serial}
		case c.owner == nil && c.reserved && c.from == a.serial:
			// a reservation for a: a has left, nobody else here
			// received the SSRC (it was blocked). Forget it.
		case c.owner == nil && oldest > c.retiredAt:
			// reclaimable: forget it
		default:
			nm[s] = c
		}
	}
	cs.claims.Store(&nm)
}

// received adds to out the SSRCs that member a may have received in cs
// under its current send key: those owned by another member, those another
// member gave up after a joined, and those reserved for a (received in a
// conference before). Called under Table.mu.
func (cs *confState) received(a *assoc, out map[uint32]bool) {
	for s, c := range *cs.claims.Load() {
		switch {
		case c.owner != nil:
			if c.owner != a {
				out[s] = true
			}
		case c.reserved:
			if c.from == a.serial {
				out[s] = true
			}
		case c.from != a.serial && c.retiredAt >= a.joinSeq:
			out[s] = true
		}
	}
}

// conflicts reports whether one of ssrcs is owned in cs by a live sender
// other than a. Called under Table.mu.
func (cs *confState) conflicts(a *assoc, ssrcs map[uint32]bool) bool {
	m := *cs.claims.Load()
	for s := range ssrcs {
		if c, ok := m[s]; ok && c.owner != nil && c.owner != a {
			return true
		}
	}
	return false
}

// reserve blocks ssrcs in cs until a (which joined with a.joinSeq) has
// left; it fails, changing nothing, if one of them is owned by another
// live sender. Called under Table.mu, after a joined.
func (cs *confState) reserve(a *assoc, ssrcs map[uint32]bool) bool {
	if len(ssrcs) == 0 {
		return true
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := *cs.claims.Load()
	nm := make(map[uint32]claim, len(m)+len(ssrcs))
	maps.Copy(nm, m)
	for s := range ssrcs {
		c, ok := m[s]
		switch {
		case !ok:
			nm[s] = claim{retiredAt: a.joinSeq, from: a.serial, reserved: true}
		case c.owner != nil:
			if c.owner != a {
				return false
			}
		default:
			// Already retired or reserved here: block it until every
			// member up to a (included) has left. Whoever it came from,
			// every member that joined before retiredAt (a too) counts
			// it as received.
			nm[s] = claim{retiredAt: max(c.retiredAt, a.joinSeq)}
		}
	}
	cs.claims.Store(&nm)
	return true
}
