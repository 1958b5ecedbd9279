package keytable

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// newKeys builds AEAD_AES_128_GCM keys whose master key is derived from n.
func newKeys(tb testing.TB, n int) *srtpfast.Keys {
	tb.Helper()
	key := make([]byte, 16)
	binary.BigEndian.PutUint64(key, uint64(n)+1)
	salt := make([]byte, 12)
	binary.BigEndian.PutUint32(salt, uint32(n)^0x5a5a5a5a)
	k, err := srtpfast.NewKeys(srtpfast.ProfileAEADAES128GCM, key, salt, nil)
	if err != nil {
		tb.Fatalf("NewKeys: %v", err)
	}
	return k
}

// idOf returns a deterministic association ID for n.
func idOf(n int) uuid.UUID {
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[8:], uint64(n)+1)
	id[6] = 0x40 // version 4
	id[8] |= 0x80
	return id
}

// addrOf returns a unique transport address in 198.18.0.0/15 for n.
func addrOf(n int) netip.AddrPort {
	ip := [4]byte{198, 18 + byte(n>>24&1), byte(n >> 16), byte(n >> 8)}
	return netip.AddrPortFrom(netip.AddrFrom4(ip), 10000+uint16(n&0xff))
}

func newTable(tb testing.TB, cfg Config) *Table {
	tb.Helper()
	t, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return t
}

type keyPair struct{ recv, send *srtpfast.Keys }

func newPair(tb testing.TB, n int) keyPair {
	return keyPair{newKeys(tb, 2*n), newKeys(tb, 2*n+1)}
}

func assocOf(n int, conf ConferenceID, p keyPair) Association {
	return Association{ID: idOf(n), Addr: addrOf(n), Conference: conf, Recv: p.recv, Send: p.send}
}

// bulkInstall installs n associations (IDs and addresses from idOf/addrOf
// starting at first) in one published change, for large benchmark tables.
// confSize members per conference; every association shares p.
func bulkInstall(tb testing.TB, t *Table, first, n, confSize int, p keyPair) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	x := newTxn(t.snap.Load())
	for i := first; i < first+n; i++ {
		if len(t.byID) >= t.cfg.MaxAssociations {
			tb.Fatalf("bulkInstall: table full at %d", i)
		}
		t.insertLocked(x, assocOf(i, ConferenceID(i/confSize), p))
	}
	t.publish(x)
}

// send admits one packet of ep under ssrc with SRTP index idx, as a worker
// does, for every member of ep's conference, at the table's clock.
func send(tb testing.TB, t *Table, ep *Endpoint, ssrc uint32, idx uint64) (Claim, bool) {
	tb.Helper()
	return admitAt(t, ep, ssrc, KindRTP, idx, t.cfg.Now().UnixNano())
}

// sendAt sends *idx at now and advances *idx.
func sendAt(tb testing.TB, t *Table, ep *Endpoint, ssrc uint32, idx *uint64, now int64) (Claim, bool) {
	tb.Helper()
	*idx++
	return admitAt(t, ep, ssrc, KindRTP, *idx-1, now)
}

func admitAt(t *Table, ep *Endpoint, ssrc uint32, kind Kind, idx uint64, now int64) (Claim, bool) {
	var maxJoin uint64
	for _, m := range t.snap.Load().Conference(ep.Conference()) {
		maxJoin = max(maxJoin, m.JoinSeq())
	}
	return t.Admit(ep, ssrc, kind, idx, maxJoin, now)
}
