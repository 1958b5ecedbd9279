package keytable

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// nonceModel drives a Table with join, leave, rejoin, re-key, move,
// consent (SetConsent) and takeover sequences, among associations and link
// associations (two peer Media Distributors, one link per peer and
// conference, which claim SSRCs for all the senders behind them and, like
// a worker, are never sent what came from a link), and packets whose indices start over with every key
// (the worst a sender can do), admitting only what a real Opener would
// (each index once per sender key and SSRC, none more than ReplayWindow
// behind the highest). It records every (receiver key, SSRC, kind, index)
// that Claim.Out hands out and fails on a repeat: that would be an AES-GCM
// nonce used twice under one key.
type nonceModel struct {
	tb     testing.TB
	t      *Table
	next   int         // next association number
	live   map[int]int // association number → key number
	links  map[int]Association
	keys   int // key pairs made
	opener map[[2]uint64]*modelOpener
	sealed map[[4]uint64]bool
	now    int64
	pkts   int
	// consents counts SetConsent calls.
	consents int
	// deliveredOld counts packets under a re-based claim that reached a
	// receiver which had been sent the SSRC before.
	deliveredOld int
	// linkPkts counts packets admitted from link associations.
	linkPkts int
	pairs    []keyPair
	// reader, when set, admits the packets (Reader.Admit, with its claim
	// cache) instead of Table.Admit.
	reader *Reader
	// admitted records each packet's Admit result, in order.
	admitted []bool
}

type modelOpener struct {
	top  uint64
	seen map[uint64]bool
}

func newNonceModel(tb testing.TB) *nonceModel {
	m := &nonceModel{tb: tb, live: map[int]int{}, links: map[int]Association{}, opener: map[[2]uint64]*modelOpener{}, sealed: map[[4]uint64]bool{}, now: 1e12}
	m.t = newTable(tb, Config{MaxSSRCsPerSender: 3, MaxSSRCsPerLink: 4, MaxSSRCsPerConference: 16})
	for i := range 4 {
		m.pairs = append(m.pairs, newPair(tb, i))
	}
	return m
}

func (m *nonceModel) pick(v byte) (int, bool) {
	if len(m.live) == 0 {
		return 0, false
	}
	// In order: the same operations pick the same association (two
	// models run in lockstep, TestReaderAdmitMatchesTable).
	live := slices.Sorted(maps.Keys(m.live))
	return live[int(v)%len(live)], true
}

func (m *nonceModel) ep(n int) *Endpoint {
	ep, ok := m.t.Get(idOf(n))
	if !ok {
		m.tb.Fatalf("association %d missing", n)
	}
	return ep
}

// step runs one operation chosen by op with argument v.
func (m *nonceModel) step(op, v, w byte) {
	ctx := context.Background()
	m.now += int64(w) * 20e6 // up to 5 s
	switch op % 8 {
	case 0: // join
		if len(m.live) >= 8 {
			return
		}
		m.keys++
		a := assocOf(m.next, ConferenceID(1+v%2), m.pairs[m.keys%4])
		if w%3 == 0 {
			// A link to peer w%2 for the conference, if it has none.
			a.Link, a.Tag = true, 0x7a90_0000|uint32(a.Conference)
			a.Addr = netipPeer(int(w/3) % 2)
			for _, l := range m.links {
				if l.Addr == a.Addr && l.Tag == a.Tag {
					a.Link, a.Tag, a.Addr = false, 0, addrOf(m.next)
					break
				}
			}
		}
		if _, err := m.t.Install(ctx, a); err != nil {
			m.tb.Fatal(err)
		}
		if a.Link {
			m.links[m.next] = a
		}
		m.live[m.next] = m.keys
		m.next++
	case 1: // leave
		if n, ok := m.pick(v); ok {
			if err := m.t.Remove(ctx, idOf(n)); err != nil {
				m.tb.Fatal(err)
			}
			delete(m.live, n)
			delete(m.links, n)
		}
	case 2: // re-key
		if n, ok := m.pick(v); ok {
			m.keys++
			cur := m.ep(n)
			a := assocOf(n, cur.Conference(), m.pairs[m.keys%4])
			if l, ok := m.links[n]; ok {
				a.Link, a.Tag, a.Addr = true, l.Tag, l.Addr
			}
			_, err := m.t.Install(ctx, a)
			switch same := a.Recv.Same(cur.Recv()); {
			case same && !errors.Is(err, ErrSameKeys):
				m.tb.Fatalf("re-key with the keys installed: %v, want ErrSameKeys", err)
			case !same && err != nil:
				m.tb.Fatal(err)
			}
		}
	case 3: // move (a link stays in its conference)
		if n, ok := m.pick(v); ok && m.links[n].ID != idOf(n) {
			if _, err := m.t.SetConference(ctx, idOf(n), ConferenceID(1+w%2)); err != nil && !isConflict(err) {
				m.tb.Fatal(err)
			}
		}
	case 4: // consent taken away or given back (RFC 7675): out of the receivers, still a member
		if n, ok := m.pick(v); ok && m.links[n].ID != idOf(n) { // a link always has consent
			if _, err := m.t.SetConsent(ctx, idOf(n), w&1 == 0); err != nil {
				m.tb.Fatal(err)
			}
			m.consents++
		}
	default: // a burst of packets from one sender under one of 4 SSRCs
		n, ok := m.pick(v)
		if !ok {
			return
		}
		ep := m.ep(n)
		ssrc := uint32(w % 4)
		kind := Kind(v>>7) & 1
		o := m.opener[[2]uint64{ep.Gen(), uint64(ssrc)<<1 | uint64(kind)}]
		if o == nil {
			// A new key starts its indices anywhere: often where an
			// earlier sender of the SSRC was.
			o = &modelOpener{top: uint64(w) << 8, seen: map[uint64]bool{}}
			m.opener[[2]uint64{ep.Gen(), uint64(ssrc)<<1 | uint64(kind)}] = o
		}
		for i := range int(op%16) + 1 {
			idx := o.top + 1
			if (i+int(v))%5 == 0 && o.top > 10 {
				idx = o.top - uint64(i%9) // reordered
			}
			if o.seen[idx] || idx+srtpfast.ReplayWindow <= o.top {
				continue
			}
			m.packet(ep, ssrc, kind, idx)
			o.seen[idx] = true
			o.top = max(o.top, idx)
		}
	}
}

func isConflict(err error) bool { return err != nil && errorsIs(err, ErrSSRCConflict) }

func (m *nonceModel) packet(ep *Endpoint, ssrc uint32, kind Kind, idx uint64) {
	// As a worker does: the largest JoinSeq of the receivers (members
	// without consent are not among them), from the same snapshot.
	snap := m.t.snap.Load()
	var maxJoin uint64
	for _, r := range snap.Receivers(ep) {
		maxJoin = max(maxJoin, r.JoinSeq())
	}
	var (
		cl Claim
		ok bool
	)
	if m.reader != nil {
		cl, ok = m.reader.Admit(ep, ssrc, kind, idx, maxJoin, m.now)
	} else {
		cl, ok = m.t.Admit(ep, ssrc, kind, idx, maxJoin, m.now)
	}
	m.admitted = append(m.admitted, ok)
	if !ok {
		return
	}
	m.pkts++
	if ep.Link() {
		m.linkPkts++
	}
	for _, r := range snap.Receivers(ep) {
		if r.a == ep.a || (ep.Link() && r.Link()) {
			continue
		}
		out, ok := cl.Out(r)
		if !ok {
			continue
		}
		k := [4]uint64{r.Gen(), uint64(ssrc), uint64(kind), out}
		if m.sealed[k] {
			m.tb.Fatalf("receiver key %d sealed SSRC %d %v index %d twice (sender gen %d, index %d)", r.Gen(), ssrc, kind, out, ep.Gen(), idx)
		}
		m.sealed[k] = true
		if out != idx {
			m.deliveredOld++
		}
	}
}

// TestNonceNeverRepeats runs random sequences of the model.
func TestNonceNeverRepeats(t *testing.T) {
	var pkts, old, consents, links int
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		m := newNonceModel(t)
		for range 300 {
			m.step(byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
		}
		pkts += m.pkts
		old += m.deliveredOld
		consents += m.consents
		links += m.linkPkts
	}
	t.Logf("%d packets admitted (%d from links), %d re-based copies, %d consent changes", pkts, links, old, consents)
	if pkts == 0 || old == 0 || consents == 0 || links == 0 {
		t.Fatalf("the model exercised nothing: %d packets (%d from links), %d re-based copies, %d consent changes", pkts, links, old, consents)
	}
}

// TestReaderAdmitMatchesTable runs the model twice in lockstep, admitting
// through Table.Admit and through a Reader's Admit (its claim cache): the
// same packets are admitted and the table counts the same after every
// step, through takeovers, re-keys, removals and moves; and no nonce
// repeats on the Reader's side either.
func TestReaderAdmitMatchesTable(t *testing.T) {
	var hits int
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 2))
		plain, cached := newNonceModel(t), newNonceModel(t)
		cached.reader = cached.t.NewReader()
		for i := range 300 {
			op, v, w := byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
			plain.step(op, v, w)
			cached.step(op, v, w)
			if !slices.Equal(plain.admitted, cached.admitted) {
				t.Fatalf("seed %d step %d: admitted %v, with the Reader %v", seed, i, plain.admitted, cached.admitted)
			}
			if a, b := plain.t.Stats(), cached.t.Stats(); a != b {
				t.Fatalf("seed %d step %d: stats %+v, with the Reader %+v", seed, i, a, b)
			}
		}
		hits += cached.pkts
	}
	if hits == 0 {
		t.Fatal("nothing admitted")
	}
}

// FuzzNonceNeverRepeats lets the fuzzer choose the sequence: three octets
// per operation.
func FuzzNonceNeverRepeats(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 4, 2, 1, 1, 0, 0, 0, 2, 0, 4, 3, 1})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], 0x0004020104810104)
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := newNonceModel(t)
		for i := 0; i+2 < len(ops) && i < 3*400; i += 3 {
			m.step(ops[i], ops[i+1], ops[i+2])
		}
	})
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// netipPeer is the media address of peer Media Distributor n.
func netipPeer(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 255, byte(1 + n)}), 5004)
}
