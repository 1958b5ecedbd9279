package endpointsim

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/identity"
)

// kdOnLoopback is a pion/dtls server standing in for the MD and KD: it
// accepts one client at client and returns its exported SRTP keys.
func kdOnLoopback(t *testing.T, client net.Addr) (net.PacketConn, identity.Fingerprint, <-chan []byte) {
	t.Helper()
	cert, err := identity.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	keys := make(chan []byte, 1)
	go func() {
		defer close(keys)
		c, err := dtls.ServerWithOptions(pc, client, dtls.WithCertificates(cert),
			dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM), dtls.WithClientAuth(dtls.RequireAnyClientCert))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c.HandshakeContext(ctx) != nil {
			return
		}
		st, _ := c.ConnectionState()
		m, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(KeyLen+SaltLen))
		if err == nil {
			keys <- m
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc, identity.CertFingerprint(cert), keys
}

func TestHandshake(t *testing.T) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var media [][]byte
	srv, fp, keys := kdOnLoopback(t, udp.LocalAddr())
	c := Dial(udp, srv.LocalAddr().(*net.UDPAddr).AddrPort(), func(b []byte) {
		mu.Lock()
		media = append(media, append([]byte(nil), b...))
		mu.Unlock()
	})
	defer c.Close()
	id, err := NewIdentity(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Handshake(context.Background(), HandshakeConfig{Identity: id, KDFingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	want := <-keys
	k := s.Keys
	got := bytes.Join([][]byte{k.ClientKey, k.ServerKey, k.ClientSalt, k.ServerSalt}, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("keys %x, server exported %x", got, want)
	}
	if s.Duration <= 0 || k.Profile != ProfileAEADAES128GCM {
		t.Fatalf("duration %v, profile %v", s.Duration, k.Profile)
	}
	// What the endpoint seals, the other side's server_write... here its
	// client_write: open it with a context on the same keys.
	tx, err := k.SendContext()
	if err != nil {
		t.Fatal(err)
	}
	rx, err := (&Keys{Profile: k.Profile, ServerKey: k.ClientKey, ServerSalt: k.ClientSalt}).ReceiveContext()
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 7, SequenceNumber: 1}, Payload: []byte("media")}).Marshal()
	enc, err := tx.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := rx.DecryptRTP(nil, enc, nil); err != nil || !bytes.Equal(dec, pkt) {
		t.Fatalf("round trip: %v", err)
	}
	// Media reaching the socket goes to the media function.
	if _, err := srv.WriteTo(enc, udp.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(media)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("media not handed on")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !bytes.Equal(media[0], enc) {
		t.Fatalf("media %x, sent %x", media[0], enc)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeWrongKD(t *testing.T) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, fp, _ := kdOnLoopback(t, udp.LocalAddr())
	fp[0] ^= 1
	c := Dial(udp, srv.LocalAddr().(*net.UDPAddr).AddrPort(), nil)
	defer c.Close()
	id, err := NewIdentity(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Handshake(context.Background(), HandshakeConfig{Identity: id, KDFingerprint: fp, Timeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("handshake with the wrong KD: %v", err)
	}
}

// TestHandshakeCancel: a KD that never answers; cancelling the context
// ends the handshake (pion's reader is woken through the read deadline).
func TestHandshakeCancel(t *testing.T) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c := Dial(udp, silent.LocalAddr().(*net.UDPAddr).AddrPort(), nil)
	defer c.Close()
	id, err := NewIdentity(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Handshake(ctx, HandshakeConfig{Identity: id}); err == nil {
		t.Fatal("handshake with nobody succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("handshake took %v to give up", d)
	}
}
