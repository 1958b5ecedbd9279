package perc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/tunnel"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rtpPacket makes a plaintext RTP packet with a header extension and a
// recognisable payload.
func rtpPacket(ssrc uint32, seq uint16, payload []byte) []byte {
	h := []byte{0x90, 111, byte(seq >> 8), byte(seq), 0, 0, 0x10, 0, 0, 0, 0, 0,
		0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0} // one-byte extension, 4 octets
	binary.BigEndian.PutUint32(h[8:], ssrc)
	return append(h, payload...)
}

func payload(ssrc uint32, i int) []byte {
	return []byte(fmt.Sprintf("payload %08x #%04d ...........................", ssrc, i))
}

// sendAll makes every member send n packets on its own SSRC and waits
// until each other member received them all.
func sendAll(t *testing.T, ms []*member, ssrcs []uint32, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		for j, m := range ms {
			if err := m.s.WriteRTP(rtpPacket(ssrcs[j], uint16(i), payload(ssrcs[j], i))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing := 0
		for j, m := range ms {
			for k := range ms {
				if k != j {
					missing += from + n - len(m.payloads(ssrcs[k]))
				}
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d packets missing", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrivateConference: three endpoints in double mode with EKT through a
// Media Distributor that keeps everything it ever saw. Every receiver gets
// every payload octet for octet; the MD, with all the MediaKeys it
// received, opens the outer layer of every packet and the inner layer of
// none, and no MediaKeys carried an inner half.
func TestPrivateConference(t *testing.T) {
	for _, profile := range []uint16{ProfileDoubleAES128GCM, ProfileDoubleAES256GCM} {
		t.Run(fmt.Sprintf("%04x", profile), func(t *testing.T) {
			c := newConference(t)
			ssrcs := []uint32{0x1111, 0x2222, 0x3333}
			var ms []*member
			for range ssrcs {
				m, err := c.join("room", func(cfg *Config) { cfg.Profiles = []uint16{profile} })
				if err != nil {
					t.Fatal(err)
				}
				if m.s.Profile() != profile {
					t.Fatalf("negotiated %04x", m.s.Profile())
				}
				ms = append(ms, m)
			}
			sendAll(t, ms, ssrcs, 0, 50)
			for j, m := range ms {
				for k := range ms {
					if k == j {
						continue
					}
					for i, p := range m.payloads(ssrcs[k]) {
						if !bytes.Equal(p, payload(ssrcs[k], i)) {
							t.Fatalf("member %d got %q from %d, sent %q", j, p, k, payload(ssrcs[k], i))
						}
					}
				}
				if st := m.s.Stats(); st.DropInner+st.DropOuter+st.DropNoKey+st.DropEKTAuth != 0 || st.FullEKTSent < 3 {
					t.Fatalf("member %d: %+v", j, st)
				}
			}
			opened, inner := c.md.curious(t)
			if opened != 3*50 || inner != 0 {
				t.Fatalf("the MD opened the outer layer of %d packets (want 150) and the inner layer of %d (want 0)", opened, inner)
			}
		})
	}
}

// outerOff removes the outer layer of b with the client_write keys of k
// (what the MD does) and returns the original header, the inner
// ciphertext and the ROC; ok false if those keys do not open b.
func outerOff(k tunnel.MediaKeys, b []byte) (synth, ct []byte, roc uint32, ok bool) {
	recv, err := srtpfast.NewKeys(srtpfast.Profile(k.Profile), k.ClientWriteMasterKey, k.ClientWriteMasterSalt, nil)
	if err != nil {
		return nil, nil, 0, false
	}
	buf := bytes.Clone(b)
	info, err := srtpfast.NewOpener(recv, 4).OpenRTP(buf)
	if err != nil {
		return nil, nil, 0, false
	}
	o, end, err := double.ParseOHB(buf[info.HeaderLen:info.Len])
	if err != nil {
		return nil, nil, 0, false
	}
	var sc double.Scratch
	return bytes.Clone(double.OriginalHeader(&sc, buf, o)), buf[info.HeaderLen : info.HeaderLen+end], info.ROC, true
}

// curious tries, with every key the MD received, to read the packets it
// forwarded: the outer layer with the sender's hop-by-hop keys (it can),
// then the inner layer and the EKT tags with every key and salt it holds,
// as key or as salt, of either length (it must fail). It also checks that
// no MediaKeys carried a key as long as a whole double master key.
func (m *curiousMD) curious(t *testing.T) (opened, inner int) {
	t.Helper()
	m.mu.Lock()
	keys, seen := append(m.keys[:0:0], m.keys...), append(m.seen[:0:0], m.seen...)
	m.mu.Unlock()
	var mats [][]byte
	for _, k := range keys {
		p := srtpfast.Profile(k.Profile)
		if len(k.ClientWriteMasterKey) != p.HBHKeyLen() || len(k.ServerWriteMasterKey) != p.HBHKeyLen() {
			t.Fatalf("MediaKeys for %v carries a %d-octet key: more than the hop-by-hop half", p, len(k.ClientWriteMasterKey))
		}
		mats = append(mats, k.ClientWriteMasterKey, k.ServerWriteMasterKey, k.ClientWriteMasterSalt, k.ServerWriteMasterSalt)
	}
	var candidates []*double.Session
	for _, key := range mats {
		for _, salt := range mats {
			if (len(key) == 16 || len(key) == 32) && len(salt) == double.SaltLen {
				if k, err := double.NewSession(key, salt); err == nil {
					candidates = append(candidates, k)
				}
			}
		}
	}
	var sc double.Scratch
	for _, pkt := range seen {
		n, _, err := ekt.FieldLen(pkt)
		if err != nil {
			continue
		}
		field, b := pkt[len(pkt)-n:], pkt[:len(pkt)-n]
		if f, err := ekt.ParseFull(field); err == nil {
			for _, kek := range mats {
				if len(kek) == 16 || len(kek) == 32 {
					if _, _, _, err := ekt.OpenKey(kek, f.Ciphertext); err == nil {
						t.Fatal("the MD unwrapped an EKT tag")
					}
				}
			}
		}
		for _, k := range keys {
			synth, ct, roc, ok := outerOff(k, b)
			if !ok {
				continue
			}
			opened++
			for _, ck := range candidates {
				if _, err := double.OpenInner(&sc, ck, synth, bytes.Clone(ct), roc); err == nil {
					inner++
				}
			}
		}
	}
	return opened, inner
}

// TestRekeyOnLeave: a member leaves mid-conference. The two who stay get
// a new EKTKey, switch their own end-to-end keys after RekeyDelay, and keep
// receiving each other with no loss and no authentication failure; the
// member who left, with every key it ever held, cannot open what was sent
// after the switch.
func TestRekeyOnLeave(t *testing.T) {
	c := newConference(t)
	ssrcs := []uint32{0xA, 0xB, 0xC}
	var ms []*member
	for range ssrcs {
		m, err := c.join("room", nil)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	sendAll(t, ms, ssrcs, 0, 20)
	a, b, cc := ms[0], ms[1], ms[2]
	spi0, ok := a.s.EKTSPI()
	for _, m := range ms {
		if spi, has := m.s.EKTSPI(); !ok || !has || spi != spi0 {
			t.Fatalf("members' EKT SPIs before the leave: %d %v, want one SPI", spi, has)
		}
	}

	// What b knows, kept before it leaves (Close zeroes it).
	b.s.mu.Lock()
	var bEKT [][]byte
	for _, set := range b.s.sets {
		bEKT = append(bEKT, bytes.Clone(set.key))
	}
	b.s.mu.Unlock()
	// b's reader goroutine owns rx: stop it first by closing.
	_ = b.s.r.Close()
	var bE2E []*double.Session
	for _, snd := range b.s.rx.senders {
		for _, k := range snd.keys {
			bE2E = append(bE2E, k.keys)
		}
	}
	_ = b.s.Close()

	// a and c keep sending to each other through the re-key.
	rest, restSSRC := []*member{a, cc}, []uint32{ssrcs[0], ssrcs[2]}
	start := time.Now()
	i := 20
	for a.s.Stats().Rekeys == 0 || cc.s.Stats().Rekeys == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no re-key: %+v / %+v", a.s.Stats(), cc.s.Stats())
		}
		sendAll(t, rest, restSSRC, i, 5)
		i += 5
	}
	t.Logf("both switched %v after the leave", time.Since(start))
	if sa, _ := a.s.EKTSPI(); sa == spi0 {
		t.Errorf("EKTSPI still %d after the re-key", sa)
	} else if sc, _ := cc.s.EKTSPI(); sc != sa {
		t.Errorf("EKTSPI after the re-key: %d and %d, want one", sa, sc)
	}
	c.md.mu.Lock()
	from := len(c.md.seen)
	c.md.mu.Unlock()
	time.Sleep(DefaultFullEKTInterval + 20*time.Millisecond) // the next packets repeat the FullEKTField
	sendAll(t, rest, restSSRC, i, 30)
	for j, m := range rest {
		st := m.s.Stats()
		if st.DropInner+st.DropOuter+st.DropNoKey+st.DropUnknownSPI+st.DropEKTAuth != 0 || st.EKTKeys != 2 {
			t.Fatalf("member %d after the re-key: %+v", j, st)
		}
	}
	// b, with everything it held, against what was sent after the switch.
	c.md.mu.Lock()
	after := append([][]byte(nil), c.md.seen[from:]...)
	keys := append(c.md.keys[:0:0], c.md.keys...)
	c.md.mu.Unlock()
	var sc double.Scratch
	fullTags, opened := 0, 0
	for _, pkt := range after {
		n, _, _ := ekt.FieldLen(pkt)
		if f, err := ekt.ParseFull(pkt[len(pkt)-n:]); err == nil {
			fullTags++
			for _, kek := range bEKT {
				if _, _, _, err := ekt.OpenKey(kek, f.Ciphertext); err == nil {
					t.Fatal("the member who left unwrapped a tag sent after the re-key")
				}
			}
		}
		// The outer layer off with the MD's keys (a stronger attacker than
		// b), then b's end-to-end keys on the inner layer.
		for _, k := range keys {
			synth, ct, roc, ok := outerOff(k, pkt[:len(pkt)-n])
			if !ok {
				continue
			}
			for _, ek := range bE2E {
				if _, err := double.OpenInner(&sc, ek, synth, bytes.Clone(ct), roc); err == nil {
					opened++
				}
			}
		}
	}
	if len(after) == 0 || fullTags == 0 || opened != 0 {
		t.Fatalf("%d packets after the switch, %d FullEKTFields: b opened %d", len(after), fullTags, opened)
	}
}

// TestLegacyMode: endpoints that offer only AEAD_AES_128_GCM, where the
// MD announces it, run plain SRTP (the MD holds their whole keys) without
// EKT; one that offers double first gets double.
func TestLegacyMode(t *testing.T) {
	c := newConference(t)
	legacy := func(cfg *Config) { cfg.Profiles = []uint16{ProfileAES128GCM} }
	a, err := c.join("old-room", legacy)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.join("old-room", legacy)
	if err != nil {
		t.Fatal(err)
	}
	if a.s.Profile() != ProfileAES128GCM {
		t.Fatalf("negotiated %04x", a.s.Profile())
	}
	sendAll(t, []*member{a, b}, []uint32{1, 2}, 0, 10)
	if st := a.s.Stats(); st.FullEKTSent != 0 || st.EKTKeys != 0 {
		t.Fatalf("EKT in legacy mode: %+v", st)
	}
	// An endpoint offering double first and legacy second gets double.
	d, err := c.join("room", func(cfg *Config) { cfg.Profiles = []uint16{ProfileDoubleAES128GCM, ProfileAES128GCM} })
	if err != nil {
		t.Fatal(err)
	}
	if d.s.Profile() != ProfileDoubleAES128GCM {
		t.Fatalf("negotiated %04x", d.s.Profile())
	}
}
