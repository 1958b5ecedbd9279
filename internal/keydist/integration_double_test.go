package keydist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// ektEndpoint is an endpoint of our DTLS stack that negotiates a double
// profile and EKT with the KD through the relay and the tunnel.
type ektEndpoint struct {
	r        *dtls.PacketRunner
	local    *net.UDPAddr
	material []byte

	mu   sync.Mutex
	keys []*dtls.EKTKey
	sig  chan struct{}
}

func (ep *ektEndpoint) ektKeys() []*dtls.EKTKey {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]*dtls.EKTKey(nil), ep.keys...)
}

// waitKeys waits until the endpoint has n EKTKeys.
func (ep *ektEndpoint) waitKeys(t *testing.T, n int, timeout time.Duration) []*dtls.EKTKey {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if k := ep.ektKeys(); len(k) >= n {
			return k
		}
		select {
		case <-ep.sig:
		case <-deadline:
			t.Fatalf("%d EKTKeys after %v, want %d", len(ep.ektKeys()), timeout, n)
		}
	}
}

// joinDouble registers a new endpoint in conference and runs its
// handshake offering profile first (then AEAD_AES_128_GCM) and ciphers.
func joinDouble(t *testing.T, e *env, conference string, profile uint16, ciphers ...dtls.EKTCipher) (*ektEndpoint, error) {
	t.Helper()
	return joinDoubleVia(t, e.reg, e, conference, profile, ciphers...)
}

// joinDoubleVia is joinDouble with the endpoint registered in reg (another
// replica's registry, in the store tests) and its handshake through e.
func joinDoubleVia(t *testing.T, reg *Registry, e *env, conference string, profile uint16, ciphers ...dtls.EKTCipher) (*ektEndpoint, error) {
	t.Helper()
	tlsID := NewTLSID()
	cfg, fp := simClientConfig(t, tlsID, profile, ProfileAEADAES128GCM)
	cfg.EKTCiphers = ciphers
	cfg.VerifyPeer = dtls.PinSHA256(e.kdFP)
	if _, err := reg.AddEndpoint(conference, Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	return joinRegistered(t, e, cfg, profile)
}

// joinRegistered runs the handshake of an endpoint already registered,
// with its client configuration cfg, through e.
func joinRegistered(t *testing.T, e *env, cfg *dtls.Config, profile uint16) (*ektEndpoint, error) {
	t.Helper()
	c, err := dtls.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ep := &ektEndpoint{local: pc.LocalAddr().(*net.UDPAddr), sig: make(chan struct{}, 1)}
	ep.r = dtls.RunPacketConn(pc, e.relay.udp.LocalAddr(), c, func(ev dtls.Event) {
		switch ev.Kind {
		case dtls.EventHandshakeComplete:
			kl, sl, _ := ProfileKeyLengths(profile)
			ep.material, _ = c.ExportKeyingMaterial(exporterLabelDTLSSRTP, nil, 2*(kl+sl))
		case dtls.EventEKTKey:
			ep.mu.Lock()
			ep.keys = append(ep.keys, ev.EKTKey)
			ep.mu.Unlock()
			select {
			case ep.sig <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(func() { _ = ep.r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ep, ep.r.Handshake(ctx)
}

func newEKTEnv(t *testing.T, cipher dtls.EKTCipher, rekeyOnJoin bool) (*env, *MemoryEKT) {
	t.Helper()
	src, err := NewMemoryEKT(MemoryEKTConfig{Cipher: cipher, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{
		mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM, tunnel.ProfileDoubleAEADAES256GCM, tunnel.ProfileAEADAES128GCM},
		cfg:        func(c *Config) { c.EKT, c.RekeyOnJoin = src, rekeyOnJoin },
	})
	return e, src
}

// TestIntegrationDoubleEKT: an endpoint of our DTLS stack negotiates a
// double profile (RFC 8723) and EKT (RFC 8870) with the KD through the
// tunnel. The MD receives only the outer (hop-by-hop) halves of the keys,
// before the KD's Finished; the endpoint receives the conference's EKTKey
// and acknowledges it.
func TestIntegrationDoubleEKT(t *testing.T) {
	for _, tc := range []struct {
		profile uint16
		cipher  dtls.EKTCipher
	}{
		{ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128},
		{ProfileDoubleAES256GCM, dtls.EKTCipherAESKW256},
	} {
		t.Run(fmt.Sprintf("%04x/%v", tc.profile, tc.cipher), func(t *testing.T) {
			e, src := newEKTEnv(t, tc.cipher, false)
			ep, err := joinDouble(t, e, "conf", tc.profile, dtls.EKTCipherAESKW256, dtls.EKTCipherAESKW128)
			if err != nil {
				t.Fatal(err)
			}
			id := e.relay.idFor(ep.local)
			if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return keysOf(ev) != nil }) {
				t.Fatal("no MediaKeys")
			}
			evs := e.relay.events(id)
			mk := keysOf(evs)
			if uint16(mk.Profile) != tc.profile {
				t.Fatalf("MediaKeys profile %v", mk.Profile)
			}
			// Only the outer halves reach the MD.
			km, err := SplitKeyingMaterial(tc.profile, bytes.Clone(ep.material))
			if err != nil {
				t.Fatal(err)
			}
			inner, outer, _ := km.SplitDouble()
			if !bytes.Equal(mk.ClientWriteMasterKey, outer.ClientKey) || !bytes.Equal(mk.ServerWriteMasterKey, outer.ServerKey) ||
				!bytes.Equal(mk.ClientWriteMasterSalt, outer.ClientSalt) || !bytes.Equal(mk.ServerWriteMasterSalt, outer.ServerSalt) {
				t.Fatal("MediaKeys are not the outer halves of the endpoint's keys")
			}
			for _, ev := range evs {
				if ev.kind == "keys" && (bytes.Contains(ev.keys.ClientWriteMasterKey, inner.ClientKey) || bytes.Contains(ev.keys.ServerWriteMasterKey, inner.ServerKey)) {
					t.Fatal("an inner key reached the MD")
				}
			}
			if k, f := orderIndexes(evs); k < 0 || f < 0 || k > f {
				t.Fatalf("MediaKeys at %d, server Finished at %d: MediaKeys must come first", k, f)
			}
			k := ep.waitKeys(t, 1, 5*time.Second)[0]
			want, _ := src.Current("conf")
			if !bytes.Equal(k.Key, want.Key) || !bytes.Equal(k.MasterSalt, want.Salt) || k.SPI != want.SPI || k.TTL < 3590 || k.TTL > 3600 ||
				len(k.Key) != tc.cipher.KeyLen() || len(k.MasterSalt) != e2eSaltLen {
				t.Fatalf("EKTKey %v, want %v", k, &want)
			}
			waitCounter(t, e.kd.m.ektKeysAcked, 1)
		})
	}
}

func waitCounter(t *testing.T, c prometheus.Counter, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(c) < want {
		if time.Now().After(deadline) {
			t.Fatalf("counter %v, want %v", counterValue(c), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIntegrationRekeyOnLeave: three members; when one leaves, the two
// who stay get a new parameter set (new SPI, key and salt) within a
// second; when the last leaves the conference's set is zeroed and gone.
func TestIntegrationRekeyOnLeave(t *testing.T) {
	e, src := newEKTEnv(t, dtls.EKTCipherAESKW128, false)
	var eps []*ektEndpoint
	for range 3 {
		ep, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
		if err != nil {
			t.Fatal(err)
		}
		ep.waitKeys(t, 1, 5*time.Second)
		eps = append(eps, ep)
	}
	first := eps[0].ektKeys()[0]
	for _, ep := range eps[1:] {
		if k := ep.ektKeys()[0]; !bytes.Equal(k.Key, first.Key) || k.SPI != first.SPI {
			t.Fatal("members of one conference got different EKT parameter sets")
		}
	}
	_ = eps[0].r.Close() // close_notify: the KD ends the association
	start := time.Now()
	for _, ep := range eps[1:] {
		k := ep.waitKeys(t, 2, time.Second)[1]
		if k.SPI == first.SPI || bytes.Equal(k.Key, first.Key) || bytes.Equal(k.MasterSalt, first.MasterSalt) {
			t.Fatalf("re-key kept spi %d / key / salt", k.SPI)
		}
	}
	t.Logf("remaining members re-keyed %v after the leave", time.Since(start))
	if got := len(eps[0].ektKeys()); got != 1 {
		t.Fatalf("the member who left received %d EKTKeys", got)
	}
	cur, _ := src.Current("conf")
	if cur.SPI != eps[1].ektKeys()[1].SPI {
		t.Fatal("the source's current set is not the one sent")
	}
	cur.zero()
	_ = eps[1].r.Close()
	eps[2].waitKeys(t, 3, time.Second)
	_ = eps[2].r.Close()
	waitNoAssociations(t, e.kd)
	if n := src.Conferences(); n != 0 {
		t.Fatalf("%d conferences keep EKT state after everyone left", n)
	}
}

// TestIntegrationRekeyOnJoin: with RekeyOnJoin a newcomer's arrival gives
// everyone a new parameter set, the newcomer included.
func TestIntegrationRekeyOnJoin(t *testing.T) {
	e, _ := newEKTEnv(t, dtls.EKTCipherAESKW128, true)
	a, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	ka := a.waitKeys(t, 1, 5*time.Second)[0]
	b, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	kb := b.waitKeys(t, 1, 5*time.Second)[0]
	ka2 := a.waitKeys(t, 2, 5*time.Second)[1]
	if kb.SPI == ka.SPI || ka2.SPI != kb.SPI || !bytes.Equal(ka2.Key, kb.Key) {
		t.Fatalf("spis: first %d, newcomer %d, first after join %d", ka.SPI, kb.SPI, ka2.SPI)
	}
}

// TestIntegrationDoubleWithoutEKT: an endpoint offering a double profile
// without the KD's EKT cipher gets its single profile if it offers one,
// and is refused otherwise.
func TestIntegrationDoubleWithoutEKT(t *testing.T) {
	e, _ := newEKTEnv(t, dtls.EKTCipherAESKW128, false)
	ep, err := joinDouble(t, e, "conf", ProfileDoubleAES128GCM, dtls.EKTCipherAESKW256)
	if err != nil {
		t.Fatal(err)
	}
	var st dtls.ConnectionState
	_ = ep.r.Do(func(c *dtls.Conn) { st, _ = c.State() })
	if st.SRTPProfile != ProfileAEADAES128GCM || st.EKTCipher != 0 {
		t.Fatalf("negotiated %04x with EKT %v", st.SRTPProfile, st.EKTCipher)
	}

	tlsID := NewTLSID()
	cfg, fp := simClientConfig(t, tlsID, ProfileDoubleAES128GCM)
	if _, err := e.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	c, _ := dtls.NewClient(cfg)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := dtls.RunPacketConn(pc, e.relay.udp.LocalAddr(), c, nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Handshake(ctx)
	var ae *dtls.AlertError
	if !errors.As(err, &ae) || !ae.Remote || ae.Description != dtls.AlertHandshakeFailure {
		t.Fatalf("handshake: %v, want handshake_failure from the KD", err)
	}
	waitCounter(t, e.kd.m.handshakes.WithLabelValues(reasonNoEKTCipher), 1)
}
