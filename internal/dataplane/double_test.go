package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// The endpoint side of RFC 8723 for the worker tests is internal/double,
// written with crypto/cipher directly: neither layer an endpoint applies or
// removes goes through srtpfast. Only the key table (the MD's side) holds
// srtpfast Keys, and only the outer (HBH) halves.

func deriveGCM(t testing.TB, masterKey, masterSalt []byte) *double.Session {
	t.Helper()
	s, err := double.NewSession(masterKey, masterSalt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// synthHeader is the header the inner transform authenticates (RFC 8723
// section 5.1): the fixed header with its CSRCs, X = 0, no extension.
func synthHeader(pkt []byte) []byte {
	fixed, _, _ := double.HeaderLens(pkt)
	s := append([]byte(nil), pkt[:fixed]...)
	s[0] &^= 0x10
	return s
}

// doubleEndpoint is one endpoint of a double (RFC 8723) conference.
type doubleEndpoint struct {
	peer *Peer
	e2e  *double.Session // inner: the conference's end-to-end key
	up   *double.Session // outer client_write: endpoint -> MD
	down *double.Session // outer server_write: MD -> endpoint
	// RTCP is outer-only, plain RFC 7714 SRTCP: pion/srtp with the outer
	// halves.
	rtcpUp, rtcpDown *srtp.Context
	ssrc             uint32
	seq              uint16
	roc              uint32
	ektField         []byte // appended by seal; nil: a ShortEKTField
}

// newDoubleConference makes n endpoints of profile p in one conference of
// tbl. Every endpoint's full double master keys (2*HBHKeyLen octets, salt
// 24) carry the conference's E2E key and salt in their first halves and the
// endpoint's own HBH key and salt in their second halves; the table gets
// only the second halves.
func newDoubleConference(t testing.TB, p srtpfast.Profile, tbl *memTable, n int) []*doubleEndpoint {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(p), 8723))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	kl := p.HBHKeyLen()
	e2eKey, e2eSalt := rnd(kl), rnd(12)
	pionProfile := srtp.ProtectionProfileAeadAes128Gcm
	if kl == 32 {
		pionProfile = srtp.ProtectionProfileAeadAes256Gcm
	}
	eps := make([]*doubleEndpoint, n)
	for i := range eps {
		// client_write (endpoint -> MD) and server_write (MD -> endpoint).
		ck, cs := append(append([]byte(nil), e2eKey...), rnd(kl)...), append(append([]byte(nil), e2eSalt...), rnd(12)...)
		sk, ss := append(append([]byte(nil), e2eKey...), rnd(kl)...), append(append([]byte(nil), e2eSalt...), rnd(12)...)
		recv, err := srtpfast.NewKeys(p, ck[kl:], cs[12:], nil)
		if err != nil {
			t.Fatal(err)
		}
		send, err := srtpfast.NewKeys(p, sk[kl:], ss[12:], nil)
		if err != nil {
			t.Fatal(err)
		}
		up, err := srtp.CreateContext(ck[kl:], cs[12:], pionProfile)
		if err != nil {
			t.Fatal(err)
		}
		down, err := srtp.CreateContext(sk[kl:], ss[12:], pionProfile)
		if err != nil {
			t.Fatal(err)
		}
		id := uint64(i + 1)
		e := &doubleEndpoint{
			peer: &Peer{ID: id, Gen: 1, Recv: recv, Send: send, Seen: new(seen),
				Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}), 40000)},
			e2e:    deriveGCM(t, ck[:kl], cs[:12]),
			up:     deriveGCM(t, ck[kl:], cs[12:]),
			down:   deriveGCM(t, sk[kl:], ss[12:]),
			rtcpUp: up, rtcpDown: down,
			ssrc: 0x8723_0000 + uint32(id), seq: 65530, // wraps: ROC 0 -> 1
		}
		eps[i] = e
		tbl.add(e.peer)
	}
	return eps
}

// newUp gives the endpoint new outer client_write keys (endpoint -> MD),
// as a new DTLS handshake would, and returns the MD's half: a re-key must
// bring new keys (the key table refuses the installed ones).
func (e *doubleEndpoint) newUp(t testing.TB, p srtpfast.Profile, seed uint64) *srtpfast.Keys {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 5764))
	k, salt := make([]byte, p.HBHKeyLen()), make([]byte, 12)
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	for i := range salt {
		salt[i] = byte(r.Uint32())
	}
	recv, err := srtpfast.NewKeys(p, k, salt, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.up = deriveGCM(t, k, salt)
	pp := srtp.ProtectionProfileAeadAes128Gcm
	if len(k) == 32 {
		pp = srtp.ProtectionProfileAeadAes256Gcm
	}
	if e.rtcpUp, err = srtp.CreateContext(k, salt, pp); err != nil {
		t.Fatal(err)
	}
	e.peer.Recv = recv
	return recv
}

// nextRTP returns the endpoint's next plaintext RTP packet, with CSRCs,
// a header extension and the marker set on some, and its ROC.
func (e *doubleEndpoint) nextRTP(k, n int) (pkt []byte, roc uint32) {
	cc := byte(k % 3)
	ext := k%4 == 1
	b0 := 0x80 | cc
	if ext {
		b0 |= 0x10
	}
	b1 := byte(96 + k%5)
	if k%6 == 0 {
		b1 |= 0x80
	}
	pkt = []byte{b0, b1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(pkt[2:], e.seq)
	binary.BigEndian.PutUint32(pkt[4:], uint32(e.seq)*960)
	binary.BigEndian.PutUint32(pkt[8:], e.ssrc)
	for c := range cc {
		pkt = binary.BigEndian.AppendUint32(pkt, 0xc5c0_0000+uint32(c))
	}
	if ext {
		// RFC 8285 one-byte form: id 1, 3 octets, padded to a word.
		pkt = append(pkt, 0xbe, 0xde, 0, 1, 0x12, 0xaa, 0xbb, 0xcc)
	}
	for i := range n {
		pkt = append(pkt, byte(i)^byte(e.seq)^byte(k))
	}
	roc = e.roc
	e.seq++
	if e.seq == 0 {
		e.roc++
	}
	return pkt, roc
}

// seal is RFC 8723 section 5.1 at the sending endpoint: the inner
// transform over the synthetic packet with the E2E key, an empty OHB, then
// the outer transform over the whole header and (inner ciphertext | inner
// tag | OHB) with the endpoint's own HBH key. tamperInner, when >= 0, flips
// that bit of (inner ciphertext | inner tag) before the outer transform. It
// returns the packet and the inner ciphertext and tag.
func (e *doubleEndpoint) seal(t testing.TB, pkt []byte, roc uint32, tamperInner int) (wire, inner []byte) {
	t.Helper()
	_, full, ok := double.HeaderLens(pkt)
	if !ok {
		t.Fatal("bad test packet")
	}
	var sc double.Scratch
	inner, err := double.SealInner(&sc, e.e2e, nil, pkt, roc)
	if err != nil {
		t.Fatal(err)
	}
	if tamperInner >= 0 {
		inner[tamperInner/8] ^= 1 << (tamperInner % 8)
	}
	plain := append(bytes.Clone(inner), 0x00) // OHB: nothing changed
	wire = double.SealOuter(&sc, e.up, nil, pkt[:full], plain, roc)
	// RFC 8870 section 4.1: every double-profile SRTP packet ends in an
	// EKTField (ShortEKTField unless the test chose another).
	field := e.ektField
	if field == nil {
		field = ekt.AppendShort(nil)
	}
	return append(wire, field...), inner
}

// ektFields are the EKTFields the test sends, one per kind: Short, Full,
// and an extension (type 64) the MD must skip by its length.
func ektFields(t testing.TB) [][]byte {
	full, err := ekt.AppendFull(nil, ekt.Full{Ciphertext: bytes.Repeat([]byte{0xE7}, 40), SPI: 0x0102, Epoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{ekt.AppendShort(nil), full, append(bytes.Repeat([]byte{0x45}, 9), 0, 12, 64)}
}

// splitEKT takes the EKTField off a received packet.
func splitEKT(pkt []byte) (srtp, field []byte, err error) {
	n, _, err := ekt.FieldLen(pkt)
	if err != nil {
		return nil, nil, err
	}
	return pkt[:len(pkt)-n], pkt[len(pkt)-n:], nil
}

var errInner = double.ErrInner

// open is RFC 8723 section 5.3 at the receiving endpoint: the outer
// transform with its own server_write HBH key (roc is the ROC of the SEQ it
// sees), the OHB applied to rebuild the original header, then the inner
// transform with the E2E key under origROC. It returns the inner ciphertext
// and tag as received, the rebuilt synthetic header and the payload; err is
// errInner when only the inner layer failed.
func (e *doubleEndpoint) open(pkt []byte, roc, origROC uint32) (inner, synth, payload []byte, err error) {
	pkt, _, err = splitEKT(pkt)
	if err != nil {
		return nil, nil, nil, err
	}
	var sc double.Scratch
	_, plain, err := double.OpenOuter(&sc, e.down, bytes.Clone(pkt), roc)
	if err != nil {
		return nil, nil, nil, err
	}
	o, end, err := double.ParseOHB(plain)
	if err != nil {
		return nil, nil, nil, err
	}
	inner = bytes.Clone(plain[:end])
	synth = bytes.Clone(double.OriginalHeader(&sc, pkt, o))
	payload, err = double.OpenInner(&sc, e.e2e, synth, plain[:end], origROC)
	if err != nil {
		return inner, synth, nil, errInner
	}
	return inner, synth, payload, nil
}

// TestForwardDouble forwards RFC 8723 double packets through the worker in a
// conference of three endpoints that share an E2E key and each have their own
// HBH keys (the only ones the table holds). Every receiver removes the outer
// layer with its own server_write key and the inner one with the E2E key and
// gets the sender's header and payload back; the inner ciphertext arrives
// byte for byte as the sender made it. A bit flipped in the inner layer
// passes the MD (it cannot tell) and fails at the receivers; a bit flipped
// in the outer tag is dropped and counted by the worker. RTCP, outer-only
// SRTCP, is checked with pion/srtp.
func TestForwardDouble(t *testing.T) {
	for _, p := range []srtpfast.Profile{srtpfast.ProfileDoubleAEADAES128GCM, srtpfast.ProfileDoubleAEADAES256GCM} {
		t.Run(p.String(), func(t *testing.T) { testForwardDouble(t, p) })
	}
}

func testForwardDouble(t *testing.T, p srtpfast.Profile) {
	tbl := newMemTable()
	eps := newDoubleConference(t, p, tbl, 3)
	port := newFakePort(64, 64)
	w := NewWorker(0, port, tbl.NewReader(), WorkerConfig{})
	poll := func() {
		t.Helper()
		if err := w.poll(); err != nil {
			t.Fatal(err)
		}
	}
	// relay sends wire from sender s through the worker and returns what
	// each other endpoint received, by index.
	relay := func(s int, wire []byte) map[int][]byte {
		t.Helper()
		port.reset()
		port.push(wire, eps[s].peer.Addr)
		poll()
		bufs, dsts := port.sent()
		got := map[int][]byte{}
		for i, b := range bufs {
			r := -1
			for j, e := range eps {
				if e.peer.Addr == dsts[i] {
					r = j
				}
			}
			if r < 0 || r == s || got[r] != nil {
				t.Fatalf("datagram %d to %s: not one copy per receiver", i, dsts[i])
			}
			got[r] = append([]byte(nil), b...)
		}
		return got
	}

	var forwarded uint64
	fields := ektFields(t)
	for k := range 12 { // each sender's SEQ wraps: ROC 0 -> 1
		for s, snd := range eps {
			orig, roc := snd.nextRTP(k, 30+17*k)
			snd.ektField = fields[k%len(fields)]
			wire, inner := snd.seal(t, orig, roc, -1)
			got := relay(s, wire)
			if len(got) != len(eps)-1 {
				t.Fatalf("packet %d from %d: %d copies, want %d", k, s, len(got), len(eps)-1)
			}
			for r, b := range got {
				if _, field, err := splitEKT(b); err != nil || !bytes.Equal(field, snd.ektField) {
					t.Fatalf("packet %d from %d at %d: EKTField %x, sent %x (%v)", k, s, r, field, snd.ektField, err)
				}
			}
			forwarded++
			_, full, _ := double.HeaderLens(orig)
			for r, b := range got {
				if bytes.Equal(b, wire) {
					t.Fatalf("packet %d from %d: sent to %d without a new outer layer", k, s, r)
				}
				// No SEQ rewrite: the receiver's ROC is the sender's.
				gotInner, synth, payload, err := eps[r].open(b, roc, roc)
				if err != nil {
					t.Fatalf("packet %d from %d at %d: %v", k, s, r, err)
				}
				if !bytes.Equal(b[:full], orig[:full]) {
					t.Fatalf("packet %d from %d at %d: header changed:\n got % x\nwant % x", k, s, r, b[:full], orig[:full])
				}
				if !bytes.Equal(synth, synthHeader(orig)) || !bytes.Equal(payload, orig[full:]) {
					t.Fatalf("packet %d from %d at %d: original header or payload not recovered", k, s, r)
				}
				if !bytes.Equal(gotInner, inner) {
					t.Fatalf("packet %d from %d at %d: inner ciphertext changed by the MD", k, s, r)
				}
			}
		}
	}

	// RTCP: outer-only SRTCP (RFC 7714) under the HBH keys.
	for s, snd := range eps {
		sr := rtcp.SenderReport{SSRC: snd.ssrc, NTPTime: 1 << 40, RTPTime: 1234, PacketCount: 7, OctetCount: 700}
		plain, err := sr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		enc, err := snd.rtcpUp.EncryptRTCP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := relay(s, enc)
		if len(got) != len(eps)-1 {
			t.Fatalf("RTCP from %d: %d copies", s, len(got))
		}
		forwarded++
		for r, b := range got {
			dec, err := eps[r].rtcpDown.DecryptRTCP(nil, b, nil)
			if err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("RTCP from %d at %d: %v", s, r, err)
			}
		}
	}

	// A bit flipped in the inner ciphertext, then in the inner tag: the
	// outer layer is intact, so the MD forwards; each receiver's outer
	// layer opens, its inner check fails.
	snd := eps[0]
	for _, where := range []string{"inner ciphertext", "inner tag"} {
		orig, roc := snd.nextRTP(0, 40)
		_, full, _ := double.HeaderLens(orig)
		bit := 8*5 + 3 // payload octet 5
		if where == "inner tag" {
			bit = 8*(len(orig)-full) + 8*7 + 1 // tag octet 7
		}
		wire, inner := snd.seal(t, orig, roc, bit)
		got := relay(0, wire)
		if len(got) != len(eps)-1 {
			t.Fatalf("%s flipped: %d copies, want %d (the MD cannot tell)", where, len(got), len(eps)-1)
		}
		forwarded++
		for r, b := range got {
			gotInner, _, _, err := eps[r].open(b, roc, roc)
			if !errors.Is(err, errInner) {
				t.Fatalf("%s flipped: receiver %d: err %v, want the inner check to fail", where, r, err)
			}
			if !bytes.Equal(gotInner, inner) {
				t.Fatalf("%s flipped: receiver %d: inner ciphertext changed by the MD", where, r)
			}
		}
	}

	// A bit flipped in the outer tag: dropped and counted, nothing sent.
	// The same packet intact is then forwarded: the bad one used up nothing.
	orig, roc := snd.nextRTP(1, 40)
	_, full, _ := double.HeaderLens(orig)
	snd.ektField = nil
	wire, _ := snd.seal(t, orig, roc, -1)
	bad := append([]byte(nil), wire...)
	bad[len(bad)-1-5] ^= 0x10 // in the outer tag, before the ShortEKTField
	if got := relay(0, bad); len(got) != 0 {
		t.Fatalf("outer tag flipped: %d copies sent", len(got))
	}
	if st := w.Stats(); st[DropAuth] != 1 {
		t.Fatalf("outer tag flipped: drop_auth %d; stats %s", st[DropAuth], nonZero(&st))
	}
	got := relay(0, wire)
	if len(got) != len(eps)-1 {
		t.Fatalf("intact packet after a bad one: %d copies", len(got))
	}
	forwarded++
	for r, b := range got {
		if _, _, payload, err := eps[r].open(b, roc, roc); err != nil || !bytes.Equal(payload, orig[full:]) {
			t.Fatalf("intact packet after a bad one: receiver %d: %v", r, err)
		}
	}

	// A packet without a valid EKTField: no field (it ends in the outer
	// tag), a reserved type, a Full field whose length runs past the
	// packet. Dropped and counted, nothing sent.
	for name, mangle := range map[string]func([]byte) []byte{
		"no EKTField":     func(w []byte) []byte { return w[:len(w)-1] },
		"reserved type 1": func(w []byte) []byte { w[len(w)-1] = 1; return w },
		"length past the packet": func(w []byte) []byte {
			return append(w[:len(w)-1], 0xFF, 0xF0, ekt.TypeFull)
		},
	} {
		orig, roc := snd.nextRTP(1, 40)
		wire, _ := snd.seal(t, orig, roc, -1)
		if got := relay(0, mangle(wire)); len(got) != 0 {
			t.Fatalf("%s: %d copies sent", name, len(got))
		}
	}
	st := w.Stats()
	if st[DropEKTField] != 3 {
		t.Fatalf("drop_ekt_field %d, want 3: %s", st[DropEKTField], nonZero(&st))
	}
	if st[Forwarded] != forwarded || st[TxPackets] != 2*forwarded || st.Drops() != 4 {
		t.Fatalf("forwarded %d tx %d drops %d, want %d, %d, 4: %s",
			st[Forwarded], st[TxPackets], st.Drops(), forwarded, 2*forwarded, nonZero(&st))
	}
}

// TestForwardDoubleEKTAllocs: forwarding a double packet with a
// FullEKTField allocates nothing.
func TestForwardDoubleEKTAllocs(t *testing.T) {
	tbl := newMemTable()
	eps := newDoubleConference(t, srtpfast.ProfileDoubleAEADAES128GCM, tbl, 3)
	port := newFakePort(64, 64)
	w := NewWorker(0, port, tbl.NewReader(), WorkerConfig{})
	eps[0].ektField = ektFields(t)[1]
	const runs = 200
	pkts := make([][]byte, runs+2) // AllocsPerRun calls once more to warm up
	for i := range pkts {
		orig, roc := eps[0].nextRTP(i, 160)
		pkts[i], _ = eps[0].seal(t, orig, roc, -1)
	}
	port.push(pkts[0], eps[0].peer.Addr)
	_ = w.poll()
	i := 1
	allocs := testing.AllocsPerRun(runs, func() {
		port.reset()
		port.push(pkts[i], eps[0].peer.Addr)
		i++
		_ = w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
	if st := w.Stats(); st[Forwarded] != runs+2 || st.Drops() != 0 {
		t.Fatalf("forwarded %d drops %d: %s", st[Forwarded], st.Drops(), nonZero(&st))
	}
}

// outerAuthentic reports whether pkt (without its EKTField) opens under
// the endpoint's client_write outer key with ROC 0 or 1.
func (e *doubleEndpoint) outerAuthentic(pkt []byte) bool {
	var sc double.Scratch
	for roc := range uint32(2) {
		if _, _, err := double.OpenOuter(&sc, e.up, bytes.Clone(pkt), roc); err == nil {
			return true
		}
	}
	return false
}
