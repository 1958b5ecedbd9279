package keydist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// staticEKT is an EKTSource with one fixed key per cipher, for tests.
type staticEKT struct{ spi uint16 }

func (staticEKT) EKTCiphers() []dtls.EKTCipher {
	return []dtls.EKTCipher{dtls.EKTCipherAESKW128, dtls.EKTCipherAESKW256}
}

func (s staticEKT) EKTKey(conference string, c dtls.EKTCipher) (dtls.EKTKey, error) {
	if conference != "conf" {
		return dtls.EKTKey{}, errors.New("unknown conference")
	}
	return dtls.EKTKey{Key: bytes.Repeat([]byte{byte(c)}, c.KeyLen()), MasterSalt: bytes.Repeat([]byte{0xAA}, 12), SPI: s.spi, TTL: 3600}, nil
}

// TestIntegrationDoubleEKT: an endpoint of our DTLS stack negotiates a
// double profile (RFC 8723) and EKT (RFC 8870) with the KD through the
// tunnel. The MD receives only the outer (hop-by-hop) halves of the keys,
// before the KD's Finished; the endpoint receives the conference's EKTKey
// and acknowledges it.
func TestIntegrationDoubleEKT(t *testing.T) {
	e := newEnv(t, envOpts{
		mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM, tunnel.ProfileDoubleAEADAES256GCM, tunnel.ProfileAEADAES128GCM},
		cfg:        func(c *Config) { c.EKT = staticEKT{spi: 0x1234} },
	})
	for _, tc := range []struct {
		profile uint16
		cipher  dtls.EKTCipher
	}{
		{ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128},
		{ProfileDoubleAES256GCM, dtls.EKTCipherAESKW256},
	} {
		t.Run(fmt.Sprintf("%04x/%v", tc.profile, tc.cipher), func(t *testing.T) {
			tlsID := NewTLSID()
			cfg, fp := simClientConfig(t, tlsID, tc.profile, ProfileAEADAES128GCM)
			cfg.EKTCiphers = []dtls.EKTCipher{tc.cipher}
			kdFP := e.kdFP
			cfg.VerifyPeer = func(chain [][]byte) error {
				if CertificateFingerprint(chain[0]) != kdFP {
					return errors.New("KD fingerprint mismatch")
				}
				return nil
			}
			if _, err := e.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
				t.Fatal(err)
			}
			c, err := dtls.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			acked := counterValue(e.kd.m.ektKeysAcked)
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			var material []byte
			ekt := make(chan *dtls.EKTKey, 1)
			r := dtls.RunPacketConn(pc, e.relay.udp.LocalAddr(), c, func(ev dtls.Event) {
				switch ev.Kind {
				case dtls.EventHandshakeComplete:
					kl, sl, _ := ProfileKeyLengths(tc.profile)
					material, _ = c.ExportKeyingMaterial(exporterLabelDTLSSRTP, nil, 2*(kl+sl))
				case dtls.EventEKTKey:
					ekt <- ev.EKTKey
				}
			})
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.Handshake(ctx); err != nil {
				t.Fatal(err)
			}
			id := e.relay.idFor(pc.LocalAddr().(*net.UDPAddr))
			if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return keysOf(ev) != nil }) {
				t.Fatal("no MediaKeys")
			}
			evs := e.relay.events(id)
			mk := keysOf(evs)
			if uint16(mk.Profile) != tc.profile {
				t.Fatalf("MediaKeys profile %v", mk.Profile)
			}
			// Only the outer halves reach the MD.
			km, err := SplitKeyingMaterial(tc.profile, bytes.Clone(material))
			if err != nil {
				t.Fatal(err)
			}
			inner, outer, _ := km.SplitDouble()
			if !bytes.Equal(mk.ClientWriteMasterKey, outer.ClientKey) || !bytes.Equal(mk.ServerWriteMasterKey, outer.ServerKey) ||
				!bytes.Equal(mk.ClientWriteMasterSalt, outer.ClientSalt) || !bytes.Equal(mk.ServerWriteMasterSalt, outer.ServerSalt) {
				t.Fatal("MediaKeys are not the outer halves of the endpoint's keys")
			}
			for _, secret := range [][]byte{inner.ClientKey, inner.ServerKey} {
				for _, ev := range evs {
					if ev.kind == "keys" && (bytes.Contains(ev.keys.ClientWriteMasterKey, secret) || bytes.Contains(ev.keys.ServerWriteMasterKey, secret)) {
						t.Fatal("an inner key reached the MD")
					}
				}
			}
			if k, f := orderIndexes(evs); k < 0 || f < 0 || k > f {
				t.Fatalf("MediaKeys at %d, server Finished at %d: MediaKeys must come first", k, f)
			}
			select {
			case k := <-ekt:
				want, _ := staticEKT{spi: 0x1234}.EKTKey("conf", tc.cipher)
				if !bytes.Equal(k.Key, want.Key) || !bytes.Equal(k.MasterSalt, want.MasterSalt) || k.SPI != 0x1234 || k.TTL != 3600 {
					t.Fatalf("EKTKey %v, want %v", k, want)
				}
			case <-ctx.Done():
				t.Fatal("no EKTKey")
			}
			deadline := time.Now().Add(5 * time.Second)
			for counterValue(e.kd.m.ektKeysAcked) < acked+1 {
				if time.Now().After(deadline) {
					t.Fatal("the KD never saw the ACK")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestIntegrationDoubleWithoutEKTRefused: with EKT configured, an endpoint
// offering only a double profile and no EKT cipher is refused.
func TestIntegrationDoubleWithoutEKTRefused(t *testing.T) {
	e := newEnv(t, envOpts{
		mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM},
		cfg:        func(c *Config) { c.EKT = staticEKT{spi: 1} },
	})
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
	if got := counterValue(e.kd.m.handshakes.WithLabelValues(reasonNoEKTCipher)); got != 1 {
		t.Fatalf("handshakes{result=%s} = %v", reasonNoEKTCipher, got)
	}
}
