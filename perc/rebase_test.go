package perc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// TestRebasedSSRC: a receiver heard a sender under SSRC 0x5555 up to outer
// ROC 3; the sender leaves and another (a rejoin: a new end-to-end key)
// starts the same SSRC over at ROC 0. The Media Distributor gives the
// receiver the new stream above the old one (outer SEQ rewritten, ROC 3,
// the original SEQ in the OHB, as mdfast's worker does with
// srtpfast.RewriteDouble). The receiver must open the inner layer under
// the sender's own ROC 0, learnt from the FullEKTField, not the outer one.
func TestRebasedSSRC(t *testing.T) {
	old, rcv, pc, got := pair(t)
	old.cfg.FullEKTInterval = time.Nanosecond
	now := time.Now()
	seq := uint16(0)
	for range 8 { // 7 jumps of 30,000: ROC 3
		if err := old.WriteRTP(rtpPacket(0x5555, seq, []byte("old"))); err != nil {
			t.Fatal(err)
		}
		rcv.receiveDouble(bytes.Clone(pc.last()), now)
		seq += 30000
	}
	if n := len(*got); n != 8 || (*got)[7].ROC != 3 {
		t.Fatalf("old stream: %d delivered, stats %+v", n, rcv.Stats())
	}
	top := uint64(3)<<16 | uint64(seq-30000)

	// The rejoin: same hop-by-hop keys, a new end-to-end key under the
	// conference's next EKTKey (the KD re-keys when members change).
	snd, _, spc, _ := pair(t)
	snd.cfg.FullEKTInterval = time.Nanosecond
	next := func() *ektSet {
		return &ektSet{spi: 8, seq: 2, key: bytes.Repeat([]byte{9}, 16), salt: bytes.Repeat([]byte{4}, 12), ttl: time.Now().Add(time.Hour)}
	}
	snd.sets, snd.setSeq = map[uint16]*ektSet{8: next()}, 2
	var err error
	if snd.send, err = snd.newSendKeys(snd.sets[8]); err != nil {
		t.Fatal(err)
	}
	rcv.sets[8], rcv.setSeq = next(), 2
	var sc double.Scratch
	base := top + 512 - 100
	for i := range uint16(20) {
		if err := snd.WriteRTP(rtpPacket(0x5555, 100+i, []byte("rejoined"))); err != nil {
			t.Fatal(err)
		}
		pkt := bytes.Clone(spc.last())
		n, _, err := ekt.FieldLen(pkt)
		if err != nil {
			t.Fatal(err)
		}
		field, b := pkt[len(pkt)-n:], pkt[:len(pkt)-n]
		// The MD: open the outer layer, rewrite SEQ (OHB records the
		// original), seal the outer layer under the new index.
		full, plain, err := double.OpenOuter(&sc, snd.dout, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		open := append(bytes.Clone(b[:full]), plain...)
		out := uint64(100+i) + base
		ln, err := srtpfast.RewriteDouble(append(open, 0, 0, 0)[:len(open)], srtpfast.Rewrite{SetSeq: true, Seq: uint16(out)})
		if err != nil {
			t.Fatal(err)
		}
		open = open[:ln]
		if binary.BigEndian.Uint16(open[2:]) == 100+i {
			t.Fatal("SEQ not rewritten")
		}
		wire := double.SealOuter(&sc, old.dout, nil, open[:full], open[full:], uint32(out>>16))
		rcv.receiveDouble(append(wire, field...), now)
	}
	if n := len(*got); n != 28 {
		t.Fatalf("rejoined stream: %d of 20 delivered, stats %+v", n-8, rcv.Stats())
	}
	for i, p := range (*got)[8:] {
		if p.Seq != 100+uint16(i) || p.ROC != 0 || string(p.Payload) != "rejoined" {
			t.Fatalf("packet %d: seq %d roc %d payload %q", i, p.Seq, p.ROC, p.Payload)
		}
	}
}

// TestSSRCCollision: a packet from another participant under an SSRC this
// Session sends is a collision (RFC 3550 section 8.2): dropped, reported
// once, and the SSRC refused for writing from then on; other SSRCs are
// unaffected.
func TestSSRCCollision(t *testing.T) {
	other, me, pc, got := pair(t)
	var collided []uint32
	me.cfg.OnSSRCCollision = func(ssrc uint32) { collided = append(collided, ssrc) }
	me.pc = &capturePC{}
	me.dout = other.dout
	me.sets, me.setSeq = other.sets, other.setSeq
	me.w.streams = map[uint32]*outStream{}
	var err error
	if me.send, err = me.newSendKeys(me.sets[7]); err != nil {
		t.Fatal(err)
	}
	if err := me.WriteRTP(rtpPacket(0x7777, 1, []byte("mine"))); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Another sender's stream: delivered.
	if err := other.WriteRTP(rtpPacket(0x1111, 1, []byte("theirs"))); err != nil {
		t.Fatal(err)
	}
	me.receiveDouble(bytes.Clone(pc.last()), now)
	if len(*got) != 1 || len(collided) != 0 {
		t.Fatalf("delivered %d, collisions %v", len(*got), collided)
	}
	if n := testing.AllocsPerRun(100, func() { me.checkCollision(0x1111) }); n != 0 {
		t.Fatalf("checkCollision allocates %v times", n)
	}
	// The other sender uses our SSRC: a collision, reported once.
	for seq := range uint16(3) {
		if err := other.WriteRTP(rtpPacket(0x7777, 10+seq, []byte("squat"))); err != nil {
			t.Fatal(err)
		}
		me.receiveDouble(bytes.Clone(pc.last()), now)
	}
	if len(*got) != 1 || len(collided) != 1 || collided[0] != 0x7777 || me.Stats().SSRCCollisions != 1 {
		t.Fatalf("delivered %d, collisions %v, stats %+v", len(*got), collided, me.Stats())
	}
	if err := me.WriteRTP(rtpPacket(0x7777, 2, []byte("mine"))); !errors.Is(err, ErrSSRCCollision) {
		t.Fatalf("WriteRTP under the collided SSRC: %v", err)
	}
	if err := me.WriteRTCP(rtcpPacket(0x7777)); !errors.Is(err, ErrSSRCCollision) {
		t.Fatalf("WriteRTCP under the collided SSRC: %v", err)
	}
	if err := me.WriteRTP(rtpPacket(0x7778, 2, []byte("moved"))); err != nil {
		t.Fatalf("WriteRTP under a new SSRC: %v", err)
	}
}

// rtcpPacket is a minimal RTCP receiver report from ssrc.
func rtcpPacket(ssrc uint32) []byte {
	b := []byte{0x80, 201, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}
