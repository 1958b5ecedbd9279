package perc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/ekt"
)

// Regressions of what review found in the endpoint's EKT handling.

func ektKeyFor(spi uint16) *dtls.EKTKey {
	return &dtls.EKTKey{Key: bytes.Repeat([]byte{byte(spi)}, 16), MasterSalt: bytes.Repeat([]byte{byte(spi) + 1}, 12), SPI: spi, TTL: 3600}
}

// TestNewestEKTKeyAlwaysWins: a burst of re-keys (members leaving one
// after another) leaves the endpoint switching to the newest EKTKey, never
// dropping it for lack of room, and the switch happens RekeyDelay after
// the first of them.
func TestNewestEKTKeyAlwaysWins(t *testing.T) {
	snd, _, _, _ := pair(t) // SPI 7 current
	start := time.Now()
	for spi := uint16(8); spi <= 20; spi++ {
		snd.addEKTKey(ektKeyFor(spi))
	}
	if snd.sets[20] == nil || snd.pending == nil || snd.pending.spi != 20 || len(snd.sets) > maxEKTSets {
		t.Fatalf("sets %d, pending %+v", len(snd.sets), snd.pending)
	}
	if snd.switch_.After(start.Add(DefaultRekeyDelay + 50*time.Millisecond)) {
		t.Fatalf("the switch moved %v past the first re-key", snd.switch_.Sub(start))
	}
	snd.w.mu.Lock()
	sk, err := snd.sendKeysNow(snd.switch_)
	snd.w.mu.Unlock()
	if err != nil || sk.spi != 20 {
		t.Fatalf("sending under %v, %v", sk, err)
	}
}

// TestSendKeyOutlivesItsSet: the set the endpoint still sends under may
// expire at the others (grace over) before this endpoint switches; its
// FullEKTFields stay sealed under the real EKTKey, never a zeroed one.
func TestSendKeyOutlivesItsSet(t *testing.T) {
	snd, _, pc, _ := pair(t)
	snd.cfg.RekeyDelay, snd.cfg.KeyGrace = 30*time.Millisecond, time.Millisecond
	snd.addEKTKey(ektKeyFor(8))
	time.Sleep(60 * time.Millisecond)
	snd.addEKTKey(ektKeyFor(9)) // set 7 expires; the switch to 8 was due
	if err := snd.WriteRTP(rtpPacket(0xABCD, 1, []byte("secret"))); err != nil {
		t.Fatal(err)
	}
	f := fullField(t, pc.last())
	if _, _, _, err := ekt.OpenKey(make([]byte, 16), f.Ciphertext); err == nil {
		t.Fatal("a FullEKTField unwraps under an all-zero key")
	}
	if f.SPI != 8 {
		t.Fatalf("sending under SPI %d, want 8 (the due switch)", f.SPI)
	}
	if _, _, _, err := ekt.OpenKey(ektKeyFor(8).Key, f.Ciphertext); err != nil {
		t.Fatalf("the FullEKTField does not unwrap under SPI 8's key: %v", err)
	}
}

// TestEndToEndReplay: the MD re-seals an inner ciphertext it forwarded
// before under fresh outer SEQs, naming the original SEQ in the OHB
// (RFC 8871 section 8.2.2's "yes" for a "no"): delivered once.
func TestEndToEndReplay(t *testing.T) {
	snd, rcv, pc, got := pair(t)
	now := time.Now()
	if err := snd.WriteRTP(rtpPacket(0x3333, 5, []byte("yes"))); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(pc.last())
	rcv.receiveDouble(bytes.Clone(orig), now)
	var sc double.Scratch
	n, _, _ := ekt.FieldLen(orig)
	b := bytes.Clone(orig[:len(orig)-n])
	full, plain, err := double.OpenOuter(&sc, snd.dout, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	innerCT := bytes.Clone(plain[:len(plain)-1])
	for _, seq := range []uint16{100, 101, 102} {
		hdr := bytes.Clone(b[:full])
		binary.BigEndian.PutUint16(hdr[2:], seq)
		ohb := append(bytes.Clone(innerCT), 0x00, 0x05, 0x01) // original SEQ 5
		rcv.receiveDouble(append(double.SealOuter(&sc, snd.dout, nil, hdr, ohb, 0), 0x00), now)
	}
	if len(*got) != 1 || rcv.Stats().DropReplay != 3 {
		t.Fatalf("delivered %d times, %d replays counted", len(*got), rcv.Stats().DropReplay)
	}
}

// TestLateJoinerAfterWrap: a receiver that starts hearing a sender after
// its SEQ wrapped (ROC 1) opens it: the FullEKTField gives the ROC.
func TestLateJoinerAfterWrap(t *testing.T) {
	snd, rcv, pc, got := pair(t)
	snd.cfg.FullEKTInterval = time.Nanosecond
	for _, seq := range []uint16{65000, 65535, 0, 1} { // ROC 0 -> 1
		if err := snd.WriteRTP(rtpPacket(0x4444, seq, []byte("wrapped"))); err != nil {
			t.Fatal(err)
		}
	}
	rcv.receiveDouble(bytes.Clone(pc.last()), time.Now()) // the first packet it sees: ROC 1
	if len(*got) != 1 || (*got)[0].ROC != 1 {
		t.Fatalf("delivered %d, stats %+v", len(*got), rcv.Stats())
	}
}

// TestStaleSPIKeyRefused: a key under a parameter set older than one the
// sender already moved to (only a member who left still holds it) is not
// installed, and the sender's real key keeps working.
func TestStaleSPIKeyRefused(t *testing.T) {
	snd, rcv, pc, got := pair(t)
	snd.cfg.FullEKTInterval = time.Nanosecond
	const victim = 0x1111
	now := time.Now()
	send := func(seq uint16, p string) []byte {
		if err := snd.WriteRTP(rtpPacket(victim, seq, []byte(p))); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(pc.last())
	}
	rcv.receiveDouble(send(1, "under 7"), now)
	snd.addEKTKey(ektKeyFor(8))
	rcv.addEKTKey(ektKeyFor(8))
	snd.w.mu.Lock()
	_, _ = snd.sendKeysNow(time.Now().Add(time.Second))
	snd.w.mu.Unlock()
	rcv.receiveDouble(send(2, "under 8"), now)
	// A forged FullEKTField under SPI 7, epoch 1, for the victim's SSRC.
	ct, _ := ekt.SealKey(bytes.Repeat([]byte{3}, 16), bytes.Repeat([]byte{0xF0}, 16), victim, 0)
	fld, _ := ekt.AppendFull(nil, ekt.Full{Ciphertext: ct, SPI: 7, Epoch: 1})
	before := rcv.Stats().EKTEpoch
	rcv.receiveDouble(withField(send(3, "carrier"), fld), now)
	if rcv.Stats().EKTEpoch != before+1 || rcv.rx.senders[victim].keys[0].spi != 8 {
		t.Fatalf("a key under the superseded SPI 7 was installed: %+v", rcv.Stats())
	}
	n := len(*got)
	rcv.receiveDouble(send(4, "still 8"), now.Add(time.Minute))
	if len(*got) != n+1 {
		t.Fatal("the sender's real key stopped working")
	}
}

// TestSeqMustIncrease: a repeated, older, or far-jumping SEQ is refused
// rather than sealed under an (SSRC, ROC, SEQ) already used.
func TestSeqMustIncrease(t *testing.T) {
	snd, _, _, _ := pair(t)
	for _, seq := range []uint16{40000, 40001, 65535, 0} {
		if err := snd.WriteRTP(rtpPacket(0x2222, seq, []byte("x"))); err != nil {
			t.Fatalf("SEQ %d: %v", seq, err)
		}
	}
	for _, seq := range []uint16{0, 65535, 40000, 0 + 0x8000} {
		if err := snd.WriteRTP(rtpPacket(0x2222, seq, []byte("x"))); !errors.Is(err, ErrSeqNotIncreasing) {
			t.Fatalf("SEQ %d: %v, want ErrSeqNotIncreasing", seq, err)
		}
	}
}

// TestEKTKeyTTL: past its ekt_ttl the EKTKey is used neither to send
// (WriteRTP fails) nor to learn or use others' keys.
func TestEKTKeyTTL(t *testing.T) {
	snd, rcv, pc, got := pair(t)
	if err := snd.WriteRTP(rtpPacket(0x5555, 1, []byte("in time"))); err != nil {
		t.Fatal(err)
	}
	pkt := bytes.Clone(pc.last())
	later := time.Now().Add(2 * time.Hour) // the sets' TTL is an hour
	rcv.receiveDouble(bytes.Clone(pkt), later)
	if len(*got) != 0 || rcv.Stats().DropUnknownSPI != 1 {
		t.Fatalf("a key under an expired EKTKey was learnt: %+v", rcv.Stats())
	}
	snd.mu.Lock()
	snd.send.ttl = time.Now().Add(-time.Second)
	snd.mu.Unlock()
	if err := snd.WriteRTP(rtpPacket(0x5555, 2, []byte("late"))); !errors.Is(err, ErrEKTKeyExpired) {
		t.Fatalf("WriteRTP after the TTL: %v", err)
	}
}

// TestSendersEvicted: the senders table evicts a sender silent for longer
// than KeyGrace rather than refusing new ones for ever.
func TestSendersEvicted(t *testing.T) {
	snd, rcv, pc, got := pair(t) // MaxSenders 4
	now := time.Now()
	for i := range 4 {
		_ = snd.WriteRTP(rtpPacket(uint32(0x9000+i), 1, []byte("x")))
		rcv.receiveDouble(bytes.Clone(pc.last()), now)
	}
	_ = snd.WriteRTP(rtpPacket(0xBEEF, 1, []byte("now")))
	rcv.receiveDouble(bytes.Clone(pc.last()), now)
	if len(*got) != 4 {
		t.Fatal("a fifth sender was taken while the four are live")
	}
	_ = snd.WriteRTP(rtpPacket(0xBEEF, 2, []byte("later")))
	rcv.receiveDouble(bytes.Clone(pc.last()), now.Add(time.Minute))
	if len(*got) != 5 || len(rcv.rx.senders) != 4 {
		t.Fatalf("delivered %d, senders %d", len(*got), len(rcv.rx.senders))
	}
}

// FuzzReceivePastOuter: like FuzzReceiveDouble, but the input is sealed
// with the hop-by-hop key first (as the MD can), so that the OHB, the EKT
// processing and the inner layer are reached.
func FuzzReceivePastOuter(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789"), []byte{0}, uint8(0), uint16(1))
	f.Add(bytes.Repeat([]byte{1}, 40), []byte{0x02}, uint8(3), uint16(2))
	f.Fuzz(func(t *testing.T, plain, field []byte, cc uint8, seq uint16) {
		snd, rcv, _, got := pair(t)
		hdr := rtpPacket(0x77, seq, nil)[:12]
		hdr[0] = 0x80 | cc&0x0f
		hdr = append(hdr, make([]byte, 4*int(cc&0x0f))...)
		var sc double.Scratch
		pkt := double.SealOuter(&sc, snd.dout, nil, hdr, plain, 0)
		rcv.receiveDouble(append(pkt, field...), time.Now())
		if len(*got) != 0 {
			t.Fatal("delivered a packet no end-to-end key sealed")
		}
	})
}
