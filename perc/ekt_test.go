package perc

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// capturePC is a net.PacketConn that keeps what is written to it.
type capturePC struct {
	net.PacketConn
	mu  sync.Mutex
	out [][]byte
}

func (c *capturePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, bytes.Clone(b))
	c.mu.Unlock()
	return len(b), nil
}

func (c *capturePC) last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out[len(c.out)-1]
}

// pair is a sending and a receiving Session sharing one hop-by-hop key
// (as if the MD forwarded without re-sealing) and one EKT parameter set,
// with no network: for unit tests of the EKT processing.
func pair(t testing.TB) (snd, rcv *Session, pc *capturePC, got *[]RTPPacket) {
	t.Helper()
	hbh, err := srtpfast.NewKeys(srtpfast.ProfileDoubleAEADAES128GCM, bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 12), nil)
	if err != nil {
		t.Fatal(err)
	}
	set := func() *ektSet {
		return &ektSet{spi: 7, seq: 1, key: bytes.Repeat([]byte{3}, 16), salt: bytes.Repeat([]byte{4}, 12), ttl: time.Now().Add(time.Hour)}
	}
	cfg := Config{RekeyDelay: DefaultRekeyDelay, KeyGrace: DefaultKeyGrace, FullEKTInterval: DefaultFullEKTInterval, MaxSenders: 4}
	pc = &capturePC{}
	dout, err := double.NewSession(bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 12))
	if err != nil {
		t.Fatal(err)
	}
	snd = &Session{cfg: cfg, pc: pc, double: true, keyLen: 16, dout: dout,
		sets: map[uint16]*ektSet{7: set()}, setSeq: 1, ready: make(chan struct{})}
	snd.w.streams = map[uint32]*outStream{}
	snd.send, err = snd.newSendKeys(snd.sets[7])
	if err != nil {
		t.Fatal(err)
	}
	got = &[]RTPPacket{}
	rcfg := cfg
	rcfg.OnRTP = func(p RTPPacket) {
		*got = append(*got, RTPPacket{Header: bytes.Clone(p.Header), Payload: bytes.Clone(p.Payload), SSRC: p.SSRC, Seq: p.Seq, ROC: p.ROC})
	}
	rcv = &Session{cfg: rcfg, double: true, keyLen: 16, in: srtpfast.NewOpener(hbh, 8),
		sets: map[uint16]*ektSet{7: set()}, setSeq: 1, ready: make(chan struct{})}
	rcv.rx.senders = map[uint32]*inSender{}
	return snd, rcv, pc, got
}

// withField replaces the EKTField of a sent packet.
func withField(pkt, field []byte) []byte {
	n, _, _ := ekt.FieldLen(pkt)
	return append(bytes.Clone(pkt[:len(pkt)-n]), field...)
}

func fullField(t testing.TB, pkt []byte) ekt.Full {
	n, _, _ := ekt.FieldLen(pkt)
	f, err := ekt.ParseFull(pkt[len(pkt)-n:])
	if err != nil {
		t.Fatalf("not a FullEKTField: %v", err)
	}
	f.Ciphertext = bytes.Clone(f.Ciphertext)
	return f
}

// TestEKTBadInput: EKT tags with an unknown SPI, a wrong length, a
// truncated ciphertext, an epoch going backwards, an SSRC that is not the
// packet's: counted drops, no crash, never a key replaced.
func TestEKTBadInput(t *testing.T) {
	snd, rcv, pc, got := pair(t)
	const ssrc = 0x5151
	send := func(seq uint16) []byte {
		if err := snd.WriteRTP(rtpPacket(ssrc, seq, []byte("hello"))); err != nil {
			t.Fatal(err)
		}
		return pc.last()
	}
	now := time.Now()
	first := send(1) // a FullEKTField: the key is learnt
	rcv.receiveDouble(bytes.Clone(first), now)
	if len(*got) != 1 || !bytes.Equal((*got)[0].Payload, []byte("hello")) {
		t.Fatalf("valid packet: %d delivered", len(*got))
	}
	key := bytes.Clone(rcv.rx.senders[ssrc].keys[0].master)
	good := fullField(t, send(2))

	other := *snd.send
	other.master = bytes.Repeat([]byte{0xEE}, 16) // a key an attacker would like installed
	otherCT, _ := ekt.SealKey(snd.sets[7].key, other.master, ssrc, 0)
	wrongSSRC, _ := ekt.SealKey(snd.sets[7].key, snd.send.master, ssrc+1, 0)
	mk := func(f ekt.Full) []byte { b, _ := ekt.AppendFull(nil, f); return b }
	cases := []struct {
		name    string
		field   []byte
		counter func(Stats) uint64
		deliver bool
	}{
		{"unknown SPI", mk(ekt.Full{Ciphertext: good.Ciphertext, SPI: 8}), func(s Stats) uint64 { return s.DropUnknownSPI }, false},
		{"length below a FullEKTField's", func() []byte { b := mk(good); b[len(b)-3], b[len(b)-2] = 0, 5; return b }(), func(s Stats) uint64 { return s.DropEKTField }, false},
		{"length past the packet", func() []byte { b := mk(good); b[len(b)-3], b[len(b)-2] = 0xFF, 0; return b }(), func(s Stats) uint64 { return s.DropEKTField }, false},
		{"truncated ciphertext", mk(ekt.Full{Ciphertext: good.Ciphertext[:len(good.Ciphertext)-8], SPI: 7}), func(s Stats) uint64 { return s.DropEKTAuth }, false},
		{"flipped ciphertext", func() []byte { f := good; f.Ciphertext = bytes.Clone(f.Ciphertext); f.Ciphertext[3] ^= 1; return mk(f) }(), func(s Stats) uint64 { return s.DropEKTAuth }, false},
		{"same epoch, another key", mk(ekt.Full{Ciphertext: otherCT, SPI: 7}), func(s Stats) uint64 { return s.EKTEpoch }, true},
		{"SSRC not the packet's", mk(ekt.Full{Ciphertext: wrongSSRC, SPI: 7}), func(s Stats) uint64 { return s.EKTWrongSSRC }, true},
		{"reserved type", []byte{1}, func(s Stats) uint64 { return s.DropEKTField }, false},
	}
	for i, tc := range cases {
		before := tc.counter(rcv.Stats())
		n := len(*got)
		rcv.receiveDouble(withField(send(uint16(10+i)), tc.field), now)
		if tc.counter(rcv.Stats()) != before+1 {
			t.Fatalf("%s: not counted: %+v", tc.name, rcv.Stats())
		}
		if delivered := len(*got) > n; delivered != tc.deliver {
			t.Fatalf("%s: delivered %v, want %v", tc.name, delivered, tc.deliver)
		}
		if k := rcv.rx.senders[ssrc].keys; len(k) != 1 || !bytes.Equal(k[0].master, key) {
			t.Fatalf("%s: the sender's key was replaced", tc.name)
		}
	}
	// An epoch going backwards: a key under epoch 2, then one under 1.
	e2, _ := ekt.SealKey(snd.sets[7].key, bytes.Repeat([]byte{0x22}, 16), ssrc, 0)
	rcv.receiveDouble(withField(send(30), mk(ekt.Full{Ciphertext: e2, SPI: 7, Epoch: 2})), now)
	if k := rcv.rx.senders[ssrc].keys; len(k) != 2 || !bytes.Equal(k[0].master, bytes.Repeat([]byte{0x22}, 16)) {
		t.Fatal("a newer epoch did not install its key")
	}
	before := rcv.Stats().EKTEpoch
	rcv.receiveDouble(withField(send(31), mk(ekt.Full{Ciphertext: otherCT, SPI: 7, Epoch: 1})), now)
	if rcv.Stats().EKTEpoch != before+1 || !bytes.Equal(rcv.rx.senders[ssrc].keys[0].master, bytes.Repeat([]byte{0x22}, 16)) {
		t.Fatal("an older epoch was accepted")
	}
}

// TestFullEKTFieldSchedule: the first three packets of a stream carry a
// FullEKTField, then ShortEKTFields until FullEKTInterval has passed.
func TestFullEKTFieldSchedule(t *testing.T) {
	snd, _, pc, _ := pair(t)
	snd.cfg.FullEKTInterval = time.Hour
	var kinds []byte
	for seq := range uint16(6) {
		if err := snd.WriteRTP(rtpPacket(9, seq, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		_, typ, _ := ekt.FieldLen(pc.last())
		kinds = append(kinds, typ)
	}
	if !bytes.Equal(kinds, []byte{2, 2, 2, 0, 0, 0}) {
		t.Fatalf("EKTField types %v", kinds)
	}
	// The FullEKTField carries this endpoint's key for its SSRC and ROC.
	f := fullField(t, pc.out[0])
	k, ssrc, roc, err := ekt.OpenKey(snd.sets[7].key, f.Ciphertext)
	if err != nil || !bytes.Equal(k, snd.send.master) || ssrc != 9 || roc != 0 || f.SPI != 7 {
		t.Fatalf("tag: %x %d %d %v", k, ssrc, roc, err)
	}
	// SEQ wraps: the ROC in the tag follows.
	snd.cfg.FullEKTInterval = time.Nanosecond
	for _, seq := range []uint16{0x8000, 0xFFFF, 0x0000} {
		if err := snd.WriteRTP(rtpPacket(9, seq, []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	f = fullField(t, pc.last())
	if _, _, roc, _ = ekt.OpenKey(snd.sets[7].key, f.Ciphertext); roc != 1 {
		t.Fatalf("ROC after the wrap: %d", roc)
	}
}

func FuzzReceiveDouble(f *testing.F) {
	snd, _, pc, _ := pair(f)
	for seq := range uint16(4) {
		_ = snd.WriteRTP(rtpPacket(0x77, seq, []byte("seed")))
		f.Add(pc.last())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, rcv, _, got := pair(t)
		rcv.receiveDouble(b, time.Now())
		if len(b) < 12 {
			return
		}
		// Whatever was delivered was sealed by the pair's sender: its
		// payload is "seed".
		for _, p := range *got {
			if !bytes.Equal(p.Payload, []byte("seed")) {
				t.Fatalf("delivered %q", p.Payload)
			}
		}
		for ssrc, snd := range rcv.rx.senders {
			if ssrc != binary.BigEndian.Uint32(b[8:]) || len(snd.keys) > maxKeysPerSender {
				t.Fatalf("state for SSRC %x with %d keys", ssrc, len(snd.keys))
			}
		}
	})
}
