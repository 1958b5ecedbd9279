package dtls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// doubleConfigs are a client and server that negotiate a double profile
// with EKT.
func doubleConfigs(t *testing.T, profile uint16, cipher EKTCipher) (*Config, *Config) {
	cc := clientConfig(t, "p256b", "p256")
	cc.SRTPProfiles = []uint16{profile}
	cc.EKTCiphers = []EKTCipher{EKTCipherAESKW256, EKTCipherAESKW128}
	sc := serverConfig(t, "p256", "p256b")
	sc.EKTCiphers = []EKTCipher{cipher}
	return cc, sc
}

func ektKey(cipher EKTCipher, spi uint16) EKTKey {
	k := EKTKey{Key: bytes.Repeat([]byte{byte(spi)}, cipher.KeyLen()), MasterSalt: bytes.Repeat([]byte{0x5a}, 14), SPI: spi, TTL: 86400}
	return k
}

func receivedEKT(evs []Event) []*EKTKey {
	var ks []*EKTKey
	for _, e := range evs {
		if e.Kind == EventEKTKey {
			ks = append(ks, e.EKTKey)
		}
	}
	return ks
}

func ackedSPIs(evs []Event) []uint16 {
	var s []uint16
	for _, e := range evs {
		if e.Kind == EventEKTKeyAcked {
			s = append(s, e.SPI)
		}
	}
	return s
}

// TestDoubleWithEKT: both double profiles with both EKT ciphers; the
// EKTKey arrives once, is acknowledged, and a second one (re-keying)
// follows in order.
func TestDoubleWithEKT(t *testing.T) {
	for _, profile := range []uint16{SRTPDoubleAES128GCM, SRTPDoubleAES256GCM} {
		for _, cipher := range []EKTCipher{EKTCipherAESKW128, EKTCipherAESKW256} {
			t.Run(fmt.Sprintf("%04x/%v", profile, cipher), func(t *testing.T) {
				cc, sc := doubleConfigs(t, profile, cipher)
				l := newLink(t, cc, sc)
				l.start()
				if !l.c.Established() || !l.s.Established() {
					t.Fatalf("not established: %v / %v", closedErr(l.cev), closedErr(l.sev))
				}
				l.exportBoth(srtpMaterialLen[profile])
				cs, _ := l.c.State()
				if cs.SRTPProfile != profile || cs.EKTCipher != cipher {
					t.Fatalf("state %+v", cs)
				}
				for i, spi := range []uint16{7, 8} {
					want := ektKey(cipher, spi)
					if err := l.s.SendEKTKey(l.now, want); err != nil {
						t.Fatal(err)
					}
					l.run()
					got := receivedEKT(l.cev)
					if len(got) != i+1 {
						t.Fatalf("client received %d EKTKeys, want %d", len(got), i+1)
					}
					g := got[i]
					if !bytes.Equal(g.Key, want.Key) || !bytes.Equal(g.MasterSalt, want.MasterSalt) || g.SPI != spi || g.TTL != want.TTL {
						t.Fatalf("received %v, sent %v", g, want)
					}
					if a := ackedSPIs(l.sev); len(a) != i+1 || a[i] != spi {
						t.Fatalf("server acknowledged %v", a)
					}
					if !l.s.Deadline().IsZero() {
						t.Fatal("a timer still runs after the ACK")
					}
					if l.s.ektMsg.body != nil || len(l.s.ektQueue) != 0 {
						t.Fatal("the acknowledged EKTKey is still held")
					}
				}
			})
		}
	}
}

// TestEKTKeyLostThenRetransmitted: the first EKTKey and the first ACK are
// lost; retransmission delivers it exactly once.
func TestEKTKeyLostThenRetransmitted(t *testing.T) {
	cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
	l := newLink(t, cc, sc)
	l.start()
	lostKey, lostACK := false, false
	l.filter = func(fromClient bool, d []byte) [][]byte {
		if !fromClient && !lostKey {
			lostKey = true
			return nil
		}
		if fromClient && d[0] == contentACK && !lostACK {
			lostACK = true
			return nil
		}
		return [][]byte{d}
	}
	if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, 1)); err != nil {
		t.Fatal(err)
	}
	l.run()
	if len(receivedEKT(l.cev)) != 0 {
		t.Fatal("a lost EKTKey arrived")
	}
	l.advance() // retransmission: arrives, its ACK is lost
	l.advance() // again: the client acknowledges again, not delivering twice
	if n := len(receivedEKT(l.cev)); n != 1 {
		t.Fatalf("client delivered the EKTKey %d times", n)
	}
	if a := ackedSPIs(l.sev); len(a) != 1 {
		t.Fatalf("acknowledged %v", a)
	}
}

// TestEKTKeyNeverAcked: an EKTKey without ACK is retransmitted
// MaxRetransmissions times with back-off, then the association ends with
// ErrTimeout.
func TestEKTKeyNeverAcked(t *testing.T) {
	cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
	sc.MaxRetransmissions = 4
	l := newLink(t, cc, sc)
	l.start()
	sent := 0
	l.filter = func(fromClient bool, d []byte) [][]byte {
		if fromClient {
			return nil // the client is gone
		}
		sent++
		return [][]byte{d}
	}
	if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, 1)); err != nil {
		t.Fatal(err)
	}
	l.run()
	start, last := l.now, l.now
	var gaps []int64
	for l.advance() {
		gaps = append(gaps, int64(l.now.Sub(last)/DefaultRetransmitTimeout))
		last = l.now
	}
	if !errors.Is(closedErr(l.sev), ErrTimeout) {
		t.Fatalf("server ended with %v, want ErrTimeout", closedErr(l.sev))
	}
	if sent != 1+4 {
		t.Fatalf("EKTKey sent %d times, want 1 + 4 retransmissions", sent)
	}
	// Back-off: 1, 2, 4, 8 and the final 16 timeout units.
	if fmt.Sprint(gaps) != "[1 2 4 8 16]" {
		t.Fatalf("retransmission gaps %v (units of the first timeout) since %v", gaps, start)
	}
	if _, err := l.s.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 112); err == nil {
		t.Fatal("keys exportable after the association ended")
	}
}

// TestEKTKeySuperseded: keys queued behind the one in flight are replaced
// by the newest: a slow client ends up with the newest key, never an older
// one after it.
func TestEKTKeySuperseded(t *testing.T) {
	cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
	l := newLink(t, cc, sc)
	l.start()
	held := true
	l.filter = func(fc bool, d []byte) [][]byte {
		if held {
			return nil // the client hears nothing for now
		}
		return [][]byte{d}
	}
	for spi := uint16(1); spi <= 5; spi++ {
		if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, spi)); err != nil {
			t.Fatal(err)
		}
	}
	l.run()
	held = false
	for i := 0; i < 6 && len(ackedSPIs(l.sev)) < 2; i++ {
		l.advance()
	}
	var spis []uint16
	for _, k := range receivedEKT(l.cev) {
		spis = append(spis, k.SPI)
	}
	if fmt.Sprint(spis) != "[1 5]" || fmt.Sprint(ackedSPIs(l.sev)) != "[1 5]" {
		t.Fatalf("client received %v, server saw ACKs for %v; want the first (in flight) and the newest", spis, ackedSPIs(l.sev))
	}
}
