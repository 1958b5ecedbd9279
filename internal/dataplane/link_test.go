package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Several Media Distributors in one process: each a real key table and a
// worker on an in-memory port; mesh.run carries what a worker sends to
// another MD's media address into that MD's port (from the sender's
// address) and collects what it sends to endpoints.

type md struct {
	addr netip.AddrPort
	kt   *keytable.Table
	port *fakePort
	w    *Worker
}

type mesh struct {
	t   testing.TB
	mds []*md
	// got is what endpoints received, by address, since the last take.
	got map[netip.AddrPort][][]byte
	// hops counts the datagrams carried from one MD to another, by pair.
	hops map[[2]int]int
	rnd  *rand.Rand
}

const (
	linkConf = keytable.ConferenceID(14)
	// linkContest is the SSRC claim contest of the test MDs: short, so
	// that a takeover takes a short sleep.
	linkContest = 20 * time.Millisecond
)

func newMesh(t testing.TB, n int) *mesh {
	m := &mesh{t: t, got: map[netip.AddrPort][][]byte{}, hops: map[[2]int]int{}, rnd: rand.New(rand.NewPCG(14, 8871))}
	for i := range n {
		kt, err := keytable.New(keytable.Config{ClaimContest: linkContest})
		if err != nil {
			t.Fatal(err)
		}
		port := newFakePort(256, 256)
		port.local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 100, byte(1 + i)}), 5004)
		r := KeyTable{T: kt}.NewReader()
		w := NewWorker(i, port, r, WorkerConfig{})
		t.Cleanup(r.(*ktReader).Close)
		m.mds = append(m.mds, &md{addr: port.local, kt: kt, port: port, w: w})
	}
	return m
}

func (m *mesh) keys(p srtpfast.Profile) *srtpfast.Keys {
	key, salt := make([]byte, p.HBHKeyLen()), make([]byte, 12)
	for _, b := range [][]byte{key, salt} {
		for i := range b {
			b[i] = byte(m.rnd.Uint32())
		}
	}
	k, err := srtpfast.NewKeys(p, key, salt, nil)
	if err != nil {
		m.t.Fatal(err)
	}
	return k
}

// link installs the link between MDs a and b for the conference (two link
// associations with the hop keys of each direction) and returns their IDs
// on a and on b.
func (m *mesh) link(a, b int, p srtpfast.Profile, tag uint32) (onA, onB uuid.UUID) {
	ab, ba := m.keys(p), m.keys(p)
	onA, onB = uuid.New(), uuid.New()
	for _, x := range []struct {
		on   *md
		id   uuid.UUID
		peer *md
		r, s *srtpfast.Keys
	}{{m.mds[a], onA, m.mds[b], ba, ab}, {m.mds[b], onB, m.mds[a], ab, ba}} {
		if _, err := x.on.kt.Install(context.Background(), keytable.Association{
			ID: x.id, Addr: x.peer.addr, Conference: linkConf, Recv: x.r, Send: x.s, Link: true, Tag: tag,
		}); err != nil {
			m.t.Fatal(err)
		}
	}
	return onA, onB
}

// join installs an endpoint's keys on MD i.
func (m *mesh) join(i int, p *Peer) uuid.UUID {
	id := uuid.New()
	if _, err := m.mds[i].kt.Install(context.Background(), keytable.Association{
		ID: id, Addr: p.Addr, Conference: linkConf, Recv: p.Recv, Send: p.Send,
	}); err != nil {
		m.t.Fatal(err)
	}
	return id
}

func (m *mesh) mdAt(a netip.AddrPort) int {
	for i, x := range m.mds {
		if x.addr == a {
			return i
		}
	}
	return -1
}

// send pushes a datagram from src into MD i and runs the mesh until
// nothing moves.
func (m *mesh) send(i int, b []byte, src netip.AddrPort) {
	m.mds[i].port.push(b, src)
	m.run()
}

func (m *mesh) run() {
	for moved := true; moved; {
		moved = false
		for i, x := range m.mds {
			if x.port.head == x.port.tail {
				continue
			}
			moved = true
			if err := x.w.poll(); err != nil {
				m.t.Fatal(err)
			}
			bufs, dsts := x.port.sent()
			x.port.reset()
			for k, b := range bufs {
				if j := m.mdAt(dsts[k]); j >= 0 {
					m.hops[[2]int{i, j}]++
					m.mds[j].port.push(b, x.addr)
					continue
				}
				m.got[dsts[k]] = append(m.got[dsts[k]], bytes.Clone(b))
			}
		}
	}
}

// take returns and forgets what the endpoint at a received.
func (m *mesh) take(a netip.AddrPort) [][]byte {
	g := m.got[a]
	delete(m.got, a)
	return g
}

func (m *mesh) stats(i int) Stats { m.mds[i].w.publish(); return m.mds[i].w.Stats() }

func (m *mesh) linkStats(i int, id uuid.UUID) keytable.LinkStats {
	ep, ok := m.mds[i].kt.Get(id)
	if !ok {
		m.t.Fatalf("link %v not on MD %d", id, i)
	}
	return ep.LinkStats()
}

// openAny opens a double packet at e trying the outer ROCs a re-based SEQ
// may have; origROC is the sender's.
func openAny(e *doubleEndpoint, b []byte, origROC uint32) (inner, synth, payload []byte, outerROC uint32, err error) {
	for roc := range uint32(4) {
		inner, synth, payload, err = e.open(b, roc, origROC)
		if err == nil {
			return inner, synth, payload, roc, nil
		}
	}
	return nil, nil, nil, 0, err
}

// TestLinkDouble: three MDs in a chain MD0 — MD1 — MD2 (no link MD0 —
// MD2), one double + EKT conference (DOUBLE_AEAD_AES_128_GCM, the link
// keys double-profile keys whose outer half is the hop key): A and E on
// MD0, B on MD1, D on MD2.
//
//   - A's packets reach E (local) and B (one hop) with the inner layer,
//     the original header and the EKTField octet for octet; D gets
//     nothing (MD1 never forwards what came from a link to a link), and
//     B's packets reach all three.
//   - Per-link counters: each packet crosses MD0→MD1 once; MD1→MD2
//     carries nothing of A's.
//   - SRTCP crosses the link (the tag after the packet).
//   - Drops: no tag, an unknown tag, a spoofed packet with a valid tag,
//     15 CSRCs (the link copy only).
//   - The OHB rule across two hops: re-based on MD0 and again on MD1, the
//     packet reaches B with the OHB holding A's original SEQ.
func TestLinkDouble(t *testing.T) {
	const p = srtpfast.ProfileDoubleAEADAES128GCM
	const tag = 0x7a6c_0e14
	m := newMesh(t, 3)
	eps := newDoubleConference(t, p, newMemTable(), 5)
	a, e, b, d, f := eps[0], eps[1], eps[2], eps[3], eps[4]
	aID := m.join(0, a.peer)
	m.join(0, e.peer)
	m.join(1, b.peer)
	m.join(1, f.peer)
	m.join(2, d.peer)
	l01, l10 := m.link(0, 1, p, tag)
	l12, l21 := m.link(1, 2, p, tag)
	_ = l21

	fields := ektFields(t)
	type sentPkt struct {
		orig, inner, field []byte
		roc                uint32
	}
	sendA := func(k int) sentPkt {
		orig, roc := a.nextRTP(k, 40+13*k)
		a.ektField = fields[k%len(fields)]
		wire, inner := a.seal(t, orig, roc, -1)
		m.send(0, wire, a.peer.Addr)
		return sentPkt{orig, inner, a.ektField, roc}
	}
	check := func(who string, r *doubleEndpoint, got []byte, s sentPkt) (outerROC uint32) {
		t.Helper()
		if _, field, err := splitEKT(got); err != nil || !bytes.Equal(field, s.field) {
			t.Fatalf("%s: EKTField %x, sent %x (%v)", who, field, s.field, err)
		}
		inner, synth, payload, roc, err := openAny(r, got, s.roc)
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		_, full, _ := double.HeaderLens(s.orig)
		if !bytes.Equal(inner, s.inner) || !bytes.Equal(synth, synthHeader(s.orig)) || !bytes.Equal(payload, s.orig[full:]) {
			t.Fatalf("%s: inner layer, original header or payload not recovered octet for octet", who)
		}
		return roc
	}

	const n = 12 // A's SEQ wraps: ROC 0 -> 1
	for k := range n {
		s := sendA(k)
		for _, r := range []struct {
			name string
			e    *doubleEndpoint
		}{{"E on MD0", e}, {"B on MD1", b}} {
			got := m.take(r.e.peer.Addr)
			if len(got) != 1 {
				t.Fatalf("packet %d: %s got %d copies", k, r.name, len(got))
			}
			_, full, _ := double.HeaderLens(s.orig)
			if !bytes.Equal(got[0][:full], s.orig[:full]) {
				t.Fatalf("packet %d: %s: header % x, sent % x (the tag CSRC must be gone)", k, r.name, got[0][:full], s.orig[:full])
			}
			check(r.name, r.e, got[0], s)
		}
		if got := m.take(d.peer.Addr); len(got) != 0 {
			t.Fatalf("packet %d reached D on MD2 through two links", k)
		}
	}
	if m.hops[[2]int{0, 1}] != n || m.hops[[2]int{1, 2}] != 0 || m.hops[[2]int{1, 0}] != 0 {
		t.Fatalf("hops %v, want %d on 0→1 and none back or onward", m.hops, n)
	}
	ls01, ls10 := m.linkStats(0, l01), m.linkStats(1, l10)
	if ls01.TxPackets != n || ls10.RxPackets != n || ls01.TxBytes != ls10.RxBytes || ls01.TxBytes == 0 {
		t.Fatalf("link counters: MD0 %+v, MD1 %+v", ls01, ls10)
	}
	if ls := m.linkStats(1, l12); ls.TxPackets != 0 {
		t.Fatalf("MD1 sent %d of A's packets on to MD2", ls.TxPackets)
	}
	if s := m.stats(0); s[LinkTx] != n {
		t.Fatalf("MD0 link_tx %d, want %d", s[LinkTx], n)
	}
	if s := m.stats(1); s[LinkRx] != n || s.Drops() != 0 {
		t.Fatalf("MD1 link_rx %d, drops %s", s[LinkRx], nonZero(&s))
	}

	// B (on MD1) reaches A and E through the link and D through the other.
	for k := range 3 {
		orig, roc := b.nextRTP(k, 50)
		b.ektField = fields[k%len(fields)]
		wire, inner := b.seal(t, orig, roc, -1)
		m.send(1, wire, b.peer.Addr)
		for _, r := range []*doubleEndpoint{a, e, d} {
			got := m.take(r.peer.Addr)
			if len(got) != 1 {
				t.Fatalf("B's packet %d: %d copies at %v", k, len(got), r.peer.Addr)
			}
			check("from B", r, got[0], sentPkt{orig, inner, b.ektField, roc})
		}
	}

	// SRTCP over the link: outer-only, the tag after the packet.
	sr := rtcp.SenderReport{SSRC: a.ssrc, NTPTime: 1 << 40, RTPTime: 1234, PacketCount: 7, OctetCount: 700}
	plain, err := sr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := a.rtcpUp.EncryptRTCP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.send(0, enc, a.peer.Addr)
	for _, r := range []*doubleEndpoint{e, b} {
		got := m.take(r.peer.Addr)
		if len(got) != 1 {
			t.Fatalf("SRTCP: %d copies at %v", len(got), r.peer.Addr)
		}
		dec, err := r.rtcpDown.DecryptRTCP(nil, got[0], nil)
		if err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("SRTCP at %v: %v", r.peer.Addr, err)
		}
	}
	if got := m.take(d.peer.Addr); len(got) != 0 {
		t.Fatal("SRTCP reached D through two links")
	}

	// Drops at MD1 for what comes from MD0's address.
	before := m.stats(1)
	beforeLink := m.linkStats(1, l10)
	noTag := []byte{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4}
	m.send(1, noTag, m.mds[0].addr)
	forged := []byte{0x81, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}
	m.send(1, forged, m.mds[0].addr)
	// A valid-looking packet: a real one from A, tag and all, with a bit
	// of its outer tag flipped, as an attacker spoofing MD0's address
	// could send.
	orig, roc := a.nextRTP(3, 40)
	a.ektField = fields[0] // ShortEKTField
	wire, _ := a.seal(t, orig, roc, -1)
	m.send(0, wire, a.peer.Addr)
	if len(m.take(b.peer.Addr)) != 1 || len(m.take(e.peer.Addr)) != 1 {
		t.Fatal("the packet to spoof did not arrive")
	}
	// Capture what MD0 sends on the link for the next packet, then
	// replay it and a tampered copy from MD0's address.
	orig, roc = a.nextRTP(4, 40)
	wire, inner := a.seal(t, orig, roc, -1)
	m.mds[0].port.push(wire, a.peer.Addr)
	if err := m.mds[0].w.poll(); err != nil {
		t.Fatal(err)
	}
	bufs, dsts := m.mds[0].port.sent()
	var onLink []byte
	for i, x := range bufs {
		if dsts[i] == m.mds[1].addr {
			onLink = bytes.Clone(x)
		}
	}
	m.mds[0].port.reset()
	m.take(e.peer.Addr)
	if onLink == nil {
		t.Fatal("nothing sent on the link")
	}
	if tg, _ := rtpLinkTag(onLink); tg != tag {
		t.Fatalf("tag on the wire %#x, want %#x", tg, tag)
	}
	spoof := bytes.Clone(onLink)
	spoof[len(spoof)-1-1] ^= 1 // in the outer tag (before the 1-octet ShortEKTField)
	m.send(1, spoof, m.mds[0].addr)
	if got := m.take(b.peer.Addr); len(got) != 0 {
		t.Fatal("a spoofed packet was forwarded")
	}
	m.send(1, onLink, m.mds[0].addr) // the genuine one still opens
	got := m.take(b.peer.Addr)
	if len(got) != 1 {
		t.Fatalf("the genuine packet after the spoofed one: %d copies", len(got))
	}
	check("after spoof", b, got[0], sentPkt{orig, inner, a.ektField, roc})
	m.send(1, onLink, m.mds[0].addr) // a replay
	if len(m.take(b.peer.Addr)) != 0 {
		t.Fatal("a replayed link packet was forwarded")
	}
	after := m.stats(1)
	for _, c := range []struct {
		c    Counter
		want uint64
	}{{DropLinkNoTag, 1}, {DropLinkUnknownTag, 1}, {DropAuth, 1}, {DropReplay, 1}} {
		if got := after[c.c] - before[c.c]; got != c.want {
			t.Errorf("MD1 %s: %d, want %d", c.c, got, c.want)
		}
	}
	if ls := m.linkStats(1, l10); ls.RxDrops-beforeLink.RxDrops != 2 || ls.RxPackets-beforeLink.RxPackets != 2 {
		t.Errorf("MD1 link: %+v, before %+v: want 2 more drops (spoof, replay) and 2 more packets", ls, beforeLink)
	}

	// 15 CSRCs: E still gets it, the link copy is dropped and counted.
	beforeTx := m.linkStats(0, l01)
	big, roc := a.nextRTP(0, 20)
	big = append(big[:0:0], big...)
	big[0] |= 0x0f
	big = append(big[:12], append(bytes.Repeat([]byte{0xcc}, 60), big[12:]...)...)
	wire, _ = a.seal(t, big, roc, -1)
	m.send(0, wire, a.peer.Addr)
	if len(m.take(e.peer.Addr)) != 1 || len(m.take(b.peer.Addr)) != 0 {
		t.Fatal("15 CSRCs: want E served and nothing on the link")
	}
	if s := m.stats(0); s[DropLinkCSRCFull] != 1 {
		t.Errorf("MD0 drop_link_csrc_full = %d", s[DropLinkCSRCFull])
	}
	if ls := m.linkStats(0, l01); ls.TxDrops-beforeTx.TxDrops != 1 || ls.TxPackets != beforeTx.TxPackets {
		t.Errorf("MD0 link after CC=15: %+v, before %+v", ls, beforeTx)
	}

	// The OHB across two hops. Re-keying A on MD0 (its indices start
	// over) starts a new claim on its SSRC, re-based for the link, which
	// was sent it: MD0 rewrites SEQ and records A's in the OHB. Then F,
	// on MD1, takes the SSRC over from the silent link there, and the
	// link takes it back when A sends again: a new claim on MD1, re-based
	// for B, who was sent the SSRC under both earlier ones. MD1 rewrites
	// SEQ again; B must still find A's original SEQ in the OHB.
	if _, err := m.mds[0].kt.Install(context.Background(), keytable.Association{
		ID: aID, Addr: a.peer.Addr, Conference: linkConf, Recv: a.newUp(t, p, 1), Send: a.peer.Send,
	}); err != nil {
		t.Fatal(err)
	}
	a.seq, a.roc = 1000, 0 // new HBH keys, a new Opener on MD0: the index starts over (never used before under this E2E key)
	rebased := func() [2]uint64 { return [2]uint64{m.stats(0)[Rebased], m.stats(1)[Rebased]} }
	viaB := func(phase string, k int) {
		t.Helper()
		s := sendA(k)
		got := m.take(b.peer.Addr)
		if len(got) != 1 {
			t.Fatalf("%s %d: %d copies at B", phase, k, len(got))
		}
		check(phase+" at B", b, got[0], s)
		origSeq := binary.BigEndian.Uint16(s.orig[2:])
		if seq := binary.BigEndian.Uint16(got[0][2:]); seq == origSeq {
			t.Fatalf("%s %d: SEQ %d not rewritten", phase, k, seq)
		}
		if gotSeq := ohbSeqAt(t, b, got[0]); gotSeq != origSeq {
			t.Fatalf("%s %d: OHB SEQ %d, want A's original %d", phase, k, gotSeq, origSeq)
		}
		if got := m.take(e.peer.Addr); len(got) != 1 {
			t.Fatalf("%s %d: E got %d", phase, k, len(got))
		}
	}
	r0 := rebased()
	for k := range 3 {
		viaB("re-based on MD0", k)
	}
	if r := rebased(); r[0]-r0[0] != 6 || r[1] != r0[1] {
		t.Fatalf("re-based copies: MD0 %d, MD1 %d; want 6 on MD0 (the link and E), none on MD1", r[0]-r0[0], r[1]-r0[1])
	}
	time.Sleep(2 * linkContest)
	f.ssrc, f.seq, f.roc = a.ssrc, 30000, 0 // F takes A's SSRC on MD1
	orig, roc = f.nextRTP(0, 30)
	wire, _ = f.seal(t, orig, roc, -1)
	m.send(1, wire, f.peer.Addr)
	if len(m.take(b.peer.Addr)) != 1 {
		t.Fatal("F's takeover did not reach B")
	}
	m.take(e.peer.Addr)
	time.Sleep(2 * linkContest)
	r0 = rebased()
	for k := range 3 {
		viaB("re-based on MD0 and MD1", k)
	}
	if r := rebased(); r[0]-r0[0] != 6 || r[1]-r0[1] != 3 {
		t.Fatalf("re-based copies: MD0 %d, MD1 %d; want 6 on MD0 and 3 on MD1 (B)", r[0]-r0[0], r[1]-r0[1])
	}
}

// ohbSeqAt opens the outer layer of got at e and returns the SEQ the OHB
// records (fails if it records none).
func ohbSeqAt(t *testing.T, e *doubleEndpoint, got []byte) uint16 {
	t.Helper()
	pkt, _, err := splitEKT(got)
	if err != nil {
		t.Fatal(err)
	}
	var sc double.Scratch
	for roc := range uint32(4) {
		_, plain, err := double.OpenOuter(&sc, e.down, bytes.Clone(pkt), roc)
		if err != nil {
			continue
		}
		o, _, err := double.ParseOHB(plain)
		if err != nil {
			t.Fatal(err)
		}
		if !o.HasSeq {
			t.Fatal("the OHB records no SEQ")
		}
		return o.Seq
	}
	t.Fatal("outer layer does not open")
	return 0
}

// TestLinkSingle: the same hop for an AEAD_AES_128_GCM conference, with
// pion/srtp endpoints: A and E on MD0, B on MD1, D on MD2, links MD0 —
// MD1 — MD2. The links are set up only after A's stream has wrapped its
// SEQ (ROC 1): MD1 must still open it (the link's ROC starts at 0) and B
// gets A's packets with the header, CSRCs and SEQ octet for octet. D gets
// nothing of A's; B's packets reach everyone; SRTCP crosses; the tag and
// CC=15 drops are counted.
func TestLinkSingle(t *testing.T) {
	const p = srtpfast.ProfileAEADAES128GCM
	const tag = 0x51a9_1e01
	m := newMesh(t, 3)
	r := rand.New(rand.NewPCG(1, 2))
	var eps []*endpoint
	for i := range 4 {
		eps = append(eps, newEndpoint(t, r, uint64(i+1), netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}), 40000)))
	}
	a, e, b, d := eps[0], eps[1], eps[2], eps[3]
	m.join(0, a.peer)
	m.join(0, e.peer)
	m.join(1, b.peer)
	m.join(2, d.peer)

	next := func(s *endpoint, k, cc int) (plain, wire []byte) {
		t.Helper()
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: s.seq, Timestamp: uint32(k) * 960, SSRC: s.ssrc, Marker: k%5 == 0}
		for c := range cc {
			h.CSRC = append(h.CSRC, 0xc0_000000+uint32(c))
		}
		if k%3 == 1 {
			if err := h.SetExtension(1, []byte{0xaa, byte(k)}); err != nil {
				t.Fatal(err)
			}
		}
		s.seq++
		pkt := rtp.Packet{Header: h, Payload: bytes.Repeat([]byte{byte(k)}, 20+k)}
		plain, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		wire, err = s.enc.EncryptRTP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return plain, wire
	}
	expect := func(what string, plain []byte, to ...*endpoint) {
		t.Helper()
		for _, x := range to {
			got := m.take(x.peer.Addr)
			if len(got) != 1 {
				t.Fatalf("%s: %d copies at %v", what, len(got), x.peer.Addr)
			}
			dec, err := x.dec.DecryptRTP(nil, got[0], nil)
			if err != nil {
				t.Fatalf("%s at %v: %v", what, x.peer.Addr, err)
			}
			if !bytes.Equal(dec, plain) {
				t.Fatalf("%s at %v: got\n% x\nwant\n% x", what, x.peer.Addr, dec, plain)
			}
		}
	}
	for k := range 8 { // ROC 0 → 1, no link yet
		plain, wire := next(a, k, k%3)
		m.send(0, wire, a.peer.Addr)
		expect("before the links", plain, e)
	}
	l01, l10 := m.link(0, 1, p, tag)
	m.link(1, 2, p, tag)
	for k := range 10 {
		plain, wire := next(a, k, k%4)
		m.send(0, wire, a.peer.Addr)
		expect("A's packet", plain, e, b)
		if got := m.take(d.peer.Addr); len(got) != 0 {
			t.Fatal("A's packet reached MD2 through two links")
		}
	}
	if ls0, ls1 := m.linkStats(0, l01), m.linkStats(1, l10); ls0.TxPackets != 10 || ls1.RxPackets != 10 || ls0.TxBytes != ls1.RxBytes {
		t.Fatalf("link counters: MD0 %+v, MD1 %+v", ls0, ls1)
	}
	for k := range 3 {
		plain, wire := next(b, k, 1)
		m.send(1, wire, b.peer.Addr)
		expect("B's packet", plain, a, e, d)
	}

	// SRTCP both ways over the link.
	for _, s := range []struct {
		md   int
		from *endpoint
		to   []*endpoint
	}{{0, a, []*endpoint{e, b}}, {1, b, []*endpoint{a, e, d}}} {
		rr := rtcp.ReceiverReport{SSRC: s.from.ssrc, Reports: []rtcp.ReceptionReport{{SSRC: 0x99, LastSequenceNumber: 7}}}
		plain, err := rr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		wire, err := s.from.enc.EncryptRTCP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.send(s.md, wire, s.from.peer.Addr)
		for _, x := range s.to {
			got := m.take(x.peer.Addr)
			if len(got) != 1 {
				t.Fatalf("SRTCP from %v: %d copies at %v", s.from.peer.Addr, len(got), x.peer.Addr)
			}
			if dec, err := x.dec.DecryptRTCP(nil, got[0], nil); err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("SRTCP from %v at %v: %v", s.from.peer.Addr, x.peer.Addr, err)
			}
		}
	}
	if got := m.take(d.peer.Addr); len(got) != 0 {
		t.Fatal("A's SRTCP reached MD2 through two links")
	}

	// CC=15: E served, the link copy dropped and counted.
	plain, wire := next(a, 0, 15)
	m.send(0, wire, a.peer.Addr)
	expect("15 CSRCs", plain, e)
	if got := m.take(b.peer.Addr); len(got) != 0 {
		t.Fatal("a packet with 15 CSRCs went on the link")
	}
	if s := m.stats(0); s[DropLinkCSRCFull] != 1 {
		t.Errorf("drop_link_csrc_full %d", s[DropLinkCSRCFull])
	}
	if ls := m.linkStats(0, l01); ls.TxDrops != 1 {
		t.Errorf("link TxDrops %d", ls.TxDrops)
	}
	// The SRTCP tag: an unknown one, and none at all.
	before := m.stats(1)
	m.send(1, []byte{0x80, 201, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef}, m.mds[0].addr)
	m.send(1, []byte{0x80, 201, 0, 1, 0, 0, 0}, m.mds[0].addr)
	after := m.stats(1)
	if after[DropLinkUnknownTag]-before[DropLinkUnknownTag] != 1 || after[DropLinkNoTag]-before[DropLinkNoTag] != 1 {
		t.Errorf("SRTCP tag drops: %s", nonZero(&after))
	}
	// Both MDs dropped nothing else.
	for i := range 2 {
		s := m.stats(i)
		s[DropLinkCSRCFull], s[DropLinkUnknownTag], s[DropLinkNoTag] = 0, 0, 0
		if s.Drops() != 0 {
			t.Errorf("MD%d drops: %s", i, nonZero(&s))
		}
	}
}

// TestLinkZeroAllocs: sending on a link (tag CSRC, SRTCP trailer, per-link
// counters) and receiving from one (tag read, link lookup, strip) allocate
// nothing per packet once the link's Opener and claims exist.
func TestLinkZeroAllocs(t *testing.T) {
	for _, isRTCP := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtcp=%v", isRTCP), func(t *testing.T) {
			m := newMesh(t, 2)
			r := rand.New(rand.NewPCG(3, 4))
			a := newEndpoint(t, r, 1, netip.MustParseAddrPort("198.18.1.10:40000"))
			b := newEndpoint(t, r, 2, netip.MustParseAddrPort("198.18.1.11:40000"))
			m.join(0, a.peer)
			m.join(1, b.peer)
			l01, l10 := m.link(0, 1, srtpfast.ProfileAEADAES128GCM, 0x1234)
			const runs = 200
			pkts := make([][]byte, runs+2)
			for i := range pkts {
				if isRTCP {
					_, pkts[i] = a.sealRTCP(t)
				} else {
					_, pkts[i] = a.sealRTP(t, 160)
				}
			}
			m.send(0, pkts[0], a.peer.Addr) // warm up both MDs
			if len(m.take(b.peer.Addr)) != 1 {
				t.Fatal("warm-up packet not delivered")
			}
			onLink := make([][]byte, runs+2)
			for i := range onLink {
				onLink[i] = make([]byte, 0, 2048)
			}
			md0, md1 := m.mds[0], m.mds[1]
			i := 1
			tx := testing.AllocsPerRun(runs, func() {
				md0.port.reset()
				md0.port.push(pkts[i], a.peer.Addr)
				_ = md0.w.poll()
				if md0.port.ntx == 1 { // not port.sent(): it allocates
					onLink[i] = append(onLink[i][:0], md0.port.txBuf[0][:md0.port.txLen[0]]...)
				}
				i++
			})
			j := 1
			rx := testing.AllocsPerRun(runs, func() {
				md1.port.reset()
				md1.port.push(onLink[j], md0.addr)
				_ = md1.w.poll()
				j++
			})
			if tx != 0 || rx != 0 {
				t.Fatalf("allocations per packet: %v sending on the link, %v receiving from it", tx, rx)
			}
			s0, s1 := m.stats(0), m.stats(1)
			if s0[LinkTx] != runs+2 || s1[LinkRx] != runs+2 || s0.Drops() != 0 || s1.Drops() != 0 {
				t.Fatalf("MD0 %s; MD1 %s", nonZero(&s0), nonZero(&s1))
			}
			if ls0, ls1 := m.linkStats(0, l01), m.linkStats(1, l10); ls0.TxPackets != runs+2 || ls1.RxPackets != runs+2 {
				t.Fatalf("link counters %+v, %+v", ls0, ls1)
			}
		})
	}
}

// TestLinkOpenerKept: an idle endpoint's Opener is swept after
// OpenerIdle, a link's only once the link is removed (a fresh one would
// start the peer's streams at ROC 0).
func TestLinkOpenerKept(t *testing.T) {
	m := newMesh(t, 2)
	r := rand.New(rand.NewPCG(7, 8))
	a := newEndpoint(t, r, 1, netip.MustParseAddrPort("198.18.1.10:40000"))
	b := newEndpoint(t, r, 2, netip.MustParseAddrPort("198.18.1.11:40000"))
	m.join(0, a.peer)
	m.join(1, b.peer)
	_, l10 := m.link(0, 1, srtpfast.ProfileAEADAES128GCM, 0x0e1d)
	for _, s := range []struct {
		md int
		e  *endpoint
	}{{0, a}, {1, b}} {
		_, w := s.e.sealRTP(t, 20)
		m.send(s.md, w, s.e.peer.Addr)
	}
	w := m.mds[1].w
	if len(w.openers) != 2 {
		t.Fatalf("MD1 holds %d Openers, want B's and the link's", len(w.openers))
	}
	w.SetOpenerIdle(time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	w.sweep(time.Now().UnixNano())
	if len(w.openers) != 1 {
		t.Fatalf("after the sweep MD1 holds %d Openers, want the link's only", len(w.openers))
	}
	for _, e := range w.openers {
		if !e.peer.Link {
			t.Fatal("the Opener kept is not the link's")
		}
	}
	if err := m.mds[1].kt.Remove(context.Background(), l10); err != nil {
		t.Fatal(err)
	}
	w.sweep(time.Now().UnixNano())
	if len(w.openers) != 0 {
		t.Fatalf("a removed link's Opener was kept")
	}
}

// BenchmarkLinkHop compares, in one run, the worker's cost per packet for
// one copy to a local member with one copy on a link (tx: the tag CSRC
// inserted, sealed in place), and for a packet from an endpoint with one
// from a link (rx: tag read, link lookup, tag stripped), each forwarded
// to one local member. Bytes are the sender's SRTP packet. Every ring of
// 1024 packets the worker's Openers are dropped (the same indices come
// again; the key table's claims are unchanged, so every copy takes the
// same path).
func BenchmarkLinkHop(b *testing.B) {
	for _, size := range []int{160, 1200} {
		for _, c := range []string{"tx/local", "tx/link", "rx/endpoint", "rx/link"} {
			b.Run(fmt.Sprintf("%s/%dB", c, size), func(b *testing.B) { benchLinkHop(b, c, size) })
		}
	}
}

func benchLinkHop(b *testing.B, c string, size int) {
	const ring, batch = 1024, 64
	m := newMesh(b, 2)
	for _, x := range m.mds {
		x.port = newFakePort(ring, batch*2)
		x.port.local = x.addr
		r := KeyTable{T: x.kt}.NewReader()
		b.Cleanup(r.(*ktReader).Close)
		x.w = NewWorker(0, x.port, r, WorkerConfig{BatchSize: batch})
	}
	r := rand.New(rand.NewPCG(9, 10))
	a := newEndpoint(b, r, 1, netip.MustParseAddrPort("198.18.1.10:40000")) // sender on MD0
	e := newEndpoint(b, r, 2, netip.MustParseAddrPort("198.18.1.11:40000")) // local member on MD0 (tx/local)
	d := newEndpoint(b, r, 3, netip.MustParseAddrPort("198.18.1.12:40000")) // member on MD1
	s := newEndpoint(b, r, 4, netip.MustParseAddrPort("198.18.1.13:40000")) // sender on MD1 (rx/endpoint)
	m.join(0, a.peer)
	switch c {
	case "tx/local":
		m.join(0, e.peer)
	case "rx/endpoint":
		m.join(1, s.peer)
		m.join(1, d.peer)
	default:
		m.join(1, d.peer)
		m.link(0, 1, srtpfast.ProfileAEADAES128GCM, 0xbe4c)
	}
	from, md := a, m.mds[0]
	if c == "rx/endpoint" {
		from, md = s, m.mds[1]
	}
	pkts := make([][]byte, ring)
	for i := range pkts {
		_, pkts[i] = from.sealRTP(b, size-12-16)
	}
	src := from.peer.Addr
	if c == "rx/link" {
		// What MD0 sends on the link for the same packets.
		md0 := m.mds[0]
		for i, p := range pkts {
			md0.port.reset()
			md0.port.push(p, a.peer.Addr)
			_ = md0.w.poll()
			if md0.port.ntx != 1 {
				b.Fatal("nothing on the link")
			}
			pkts[i] = bytes.Clone(md0.port.txBuf[0][:md0.port.txLen[0]])
		}
		md, src = m.mds[1], md0.addr
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		k := min(batch, b.N-i)
		for j := range k {
			p := (i + j) % ring
			if p == 0 && i+j > 0 {
				clear(md.w.openers)
				md.w.recent = [recentOpeners]recentOpener{}
			}
			md.port.push(pkts[p], src)
		}
		md.port.reset()
		_ = md.w.poll()
		i += k
	}
	b.StopTimer()
	md.w.publish()
	if st := md.w.Stats(); st.Drops() != 0 || st[Forwarded] == 0 {
		b.Fatalf("%s", nonZero(&st))
	}
}
