package dtls

import (
	"bytes"
	"errors"

	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// TestLossyNetwork: loss, duplication and reordering of datagrams in both
// directions; every run either completes with equal keys on both sides or
// ends with ErrTimeout, and most runs complete.
func TestLossyNetwork(t *testing.T) {
	completed := 0
	const runs = 60
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
		cc.MTU, sc.MTU = 600, 600 // fragment the certificates too
		l := newLink(t, cc, sc)
		var held [][]byte
		heldDir := []bool{}
		l.filter = func(fc bool, d []byte) [][]byte {
			switch x := rng.IntN(10); {
			case x < 3: // lost
				return nil
			case x < 4: // duplicated
				return [][]byte{d, bytes.Clone(d)}
			case x < 6: // delayed past the next one in this direction
				held, heldDir = append(held, d), append(heldDir, fc)
				return nil
			}
			out := [][]byte{d}
			for i := 0; i < len(held); i++ {
				if heldDir[i] == fc {
					out = append(out, held[i])
					held, heldDir = slices.Delete(held, i, i+1), slices.Delete(heldDir, i, i+1)
					i--
				}
			}
			return out
		}
		l.start()
		for steps := 0; steps < 40 && !(l.c.Established() && l.s.Established()) && l.advance(); steps++ {
		}
		switch {
		case l.c.Established() && l.s.Established():
			completed++
			l.exportBoth(112)
			if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, 9)); err != nil {
				t.Fatal(err)
			}
			l.run()
			for steps := 0; steps < 20 && len(ackedSPIs(l.sev)) == 0 && l.advance(); steps++ {
			}
			if len(ackedSPIs(l.sev)) == 1 && len(receivedEKT(l.cev)) != 1 {
				t.Fatalf("seed %d: acknowledged but delivered %d times", seed, len(receivedEKT(l.cev)))
			}
			if n := len(receivedEKT(l.cev)); n > 1 {
				t.Fatalf("seed %d: EKTKey delivered %d times", seed, n)
			}
		default:
			for _, c := range []*Conn{l.c, l.s} {
				if err := c.Err(); err != nil && !errors.Is(err, ErrTimeout) {
					t.Fatalf("seed %d: a lossy network made a side fail with %v", seed, err)
				}
			}
		}
	}
	if completed < runs*2/3 {
		t.Fatalf("only %d of %d lossy handshakes completed", completed, runs)
	}
	t.Logf("%d of %d handshakes completed with 30%% loss, 10%% duplication, 20%% reordering", completed, runs)
}

// TestFragmentation: with the smallest MTU and RSA certificates every
// datagram stays within the MTU, the big messages are fragmented, and
// fragments delivered in reverse order reassemble.
func TestFragmentation(t *testing.T) {
	cc, sc := clientConfig(t, "rsa", "rsa"), serverConfig(t, "rsa", "rsa")
	cc.MTU, sc.MTU = MinMTU, MinMTU
	l := newLink(t, cc, sc)
	fragmented := 0
	l.filter = func(fc bool, d []byte) [][]byte {
		if len(d) > MinMTU {
			t.Fatalf("datagram of %d octets above the MTU", len(d))
		}
		// Split multi-record datagrams into one datagram per record, in
		// reverse order.
		var recs [][]byte
		for rest := d; len(rest) > 0; {
			rec, r, err := dtlsmsg.NextRecord(rest)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rest[:len(rest)-len(r)])
			rest = r
			if rec.Epoch == 0 && rec.ContentType == contentHandshake {
				if h, _, _, _ := dtlsmsg.NextHandshake(rec.Fragment); h.FragmentLength != h.Length {
					fragmented++
				}
			}
		}
		slices.Reverse(recs)
		return recs
	}
	l.start()
	for i := 0; i < 5 && !l.c.Established(); i++ {
		l.advance()
	}
	if !l.c.Established() || !l.s.Established() {
		t.Fatalf("not established: %v %v", closedErr(l.cev), closedErr(l.sev))
	}
	if fragmented < 4 {
		t.Fatalf("only %d fragments seen", fragmented)
	}
	l.exportBoth(56)
}

// TestHoldFinalFlight: the server stops at EventKeysReady with keys
// exportable and nothing sent; client retransmissions meanwhile get no
// answer; ReleaseFinalFlight completes both sides.
func TestHoldFinalFlight(t *testing.T) {
	cc, sc := clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b")
	sc.HoldFinalFlight = true
	l := newLink(t, cc, sc)
	l.start()
	if !hasEvent(l.sev, EventKeysReady) || hasEvent(l.sev, EventHandshakeComplete) || l.c.Established() {
		t.Fatalf("server events %v, client established %v", l.sev, l.c.Established())
	}
	held, err := l.s.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56)
	if err != nil {
		t.Fatal(err)
	}
	if !l.s.Deadline().IsZero() {
		t.Fatal("server timer runs while holding")
	}
	l.advance() // the client retransmits its flight; the server stays silent
	if l.c.Established() || l.s.Established() {
		t.Fatal("established before the release")
	}
	if err := l.s.ReleaseFinalFlight(l.now); err != nil {
		t.Fatal(err)
	}
	l.run()
	c, _ := l.exportBoth(56)
	if !bytes.Equal(c, held) {
		t.Fatal("keys changed across the release")
	}
	if err := l.s.ReleaseFinalFlight(l.now); err == nil {
		t.Fatal("a second release succeeded")
	}
}

// TestFinalFlightLost: the server's final flight is lost; the client's
// retransmission makes the server send it again.
func TestFinalFlightLost(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	dropped := false
	l.filter = func(fc bool, d []byte) [][]byte {
		if !fc && !dropped && bytes.Contains(d, []byte{contentChangeCipherSpec, 0xfe, 0xfd}) {
			dropped = true
			return nil
		}
		return [][]byte{d}
	}
	l.start()
	if !dropped || l.c.Established() || !l.s.Established() {
		t.Fatalf("dropped %v client %v server %v", dropped, l.c.Established(), l.s.Established())
	}
	l.advance()
	if !l.c.Established() {
		t.Fatalf("client not established after retransmission: %v", closedErr(l.cev))
	}
	l.exportBoth(56)
}

func TestClose(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	l.start()
	l.c.Close(l.now)
	l.run()
	if !errors.Is(l.s.Err(), ErrPeerClosed) || !errors.Is(l.c.Err(), ErrClosed) {
		t.Fatalf("server %v client %v", l.s.Err(), l.c.Err())
	}
	if l.c.master != nil || l.s.master != nil || l.c.readCipher != nil || l.s.writeCipher != nil {
		t.Fatal("secrets left after close")
	}
	if err := l.s.HandleDatagram(l.now, []byte{22, 0xfe, 0xfd}); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("HandleDatagram after close: %v", err)
	}
}

func TestExportLabels(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	l.start()
	for _, label := range reservedLabels {
		if _, err := l.c.ExportKeyingMaterial(label, nil, 16); err == nil {
			t.Errorf("exported with the reserved label %q", label)
		}
	}
	// A context changes the output (RFC 5705 section 4).
	a, _ := l.c.ExportKeyingMaterial("EXPERIMENTAL-x", nil, 32)
	b, _ := l.c.ExportKeyingMaterial("EXPERIMENTAL-x", []byte{}, 32)
	if bytes.Equal(a, b) {
		t.Fatal("no context and an empty context export the same")
	}
}

func TestConfigChecks(t *testing.T) {
	good := func() *Config { return clientConfig(t, "p256b", "p256") }
	cases := map[string]func(*Config){
		"no certificate":       func(c *Config) { c.Certificate.Certificate = nil },
		"no VerifyPeer":        func(c *Config) { c.VerifyPeer = nil },
		"P-521 key":            func(c *Config) { c.Certificate = testCert(t, "p521") },
		"RSA 1024":             func(c *Config) { c.Certificate = testCert(t, "rsa1024") },
		"unknown suite":        func(c *Config) { c.CipherSuites = []uint16{0x002F} },
		"unknown group":        func(c *Config) { c.Groups = []Group{25} },
		"no profiles":          func(c *Config) { c.SRTPProfiles = nil },
		"unknown profile":      func(c *Config) { c.SRTPProfiles = []uint16{0x0003} },
		"short tls-id":         func(c *Config) { c.ExternalSessionID = []byte("short") },
		"unknown EKT cipher":   func(c *Config) { c.EKTCiphers = []EKTCipher{3} },
		"EKT with MKI":         func(c *Config) { c.EKTCiphers = []EKTCipher{1}; c.SRTPMKI = []byte{1} },
		"MTU too small":        func(c *Config) { c.MTU = MinMTU - 1 },
		"MKI of more than 255": func(c *Config) { c.SRTPMKI = make([]byte, 256) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			c := good()
			f(c)
			if _, err := NewClient(c); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewClient: %v, want ErrConfig", err)
			}
		})
	}
	if _, err := NewClient(good()); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerOverUDP: the Runner drives both sides over loopback sockets,
// with the timers real.
func TestRunnerOverUDP(t *testing.T) {
	cc, sc := doubleConfigs(t, SRTPDoubleAES256GCM, EKTCipherAESKW256)
	s, _ := NewServer(sc, []byte("loopback"))
	spc := localUDP(t)
	keys := make(chan *EKTKey, 1)
	sr := RunPacketConn(spc, nil, s, nil)
	defer sr.Close()
	c, _ := NewClient(cc)
	cr := RunPacketConn(localUDP(t), spc.LocalAddr(), c, func(ev Event) {
		if ev.Kind == EventEKTKey {
			keys <- ev.EKTKey
		}
	})
	defer cr.Close()
	ctx := t.Context()
	if err := cr.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sr.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	var sendErr error
	_ = sr.Do(func(c *Conn) { sendErr = c.SendEKTKey(time.Now(), ektKey(EKTCipherAESKW256, 77)) })
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	select {
	case k := <-keys:
		if k.SPI != 77 {
			t.Fatalf("EKTKey %v", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EKTKey")
	}
	_ = cr.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(sr.Err(), ErrPeerClosed) {
		if time.Now().After(deadline) {
			t.Fatalf("server did not see close_notify: %v", sr.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}

}
