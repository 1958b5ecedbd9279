package piondtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

func id(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

func TestExternalSessionIDMarshal(t *testing.T) {
	e := &ExternalSessionID{ID: id(20, 'x')}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0, 56, 0, 21, 20}, id(20, 'x')...)
	if !bytes.Equal(b, want) {
		t.Fatalf("Marshal = %x, want %x", b, want)
	}
	var back ExternalSessionID
	if err := back.Unmarshal(b); err != nil || !bytes.Equal(back.ID, e.ID) {
		t.Fatalf("Unmarshal = %q %v", back.ID, err)
	}
	b[5] = 'y'
	if back.ID[0] != 'x' {
		t.Fatal("Unmarshal aliases its input")
	}
	for _, n := range []int{0, 19, 256} {
		if _, err := (&ExternalSessionID{ID: id(n, 'a')}).Marshal(); !errors.Is(err, dtlsmsg.ErrBadExternalSessionID) {
			t.Errorf("Marshal of %d octets: %v", n, err)
		}
	}
	bad := map[string][]byte{
		"short":          {0, 56, 0},
		"other type":     append([]byte{0, 55, 0, 21, 20}, id(20, 'x')...),
		"length":         append([]byte{0, 56, 0, 22, 20}, id(20, 'x')...),
		"id too short":   append([]byte{0, 56, 0, 20, 19}, id(19, 'x')...),
		"id length":      append([]byte{0, 56, 0, 21, 21}, id(20, 'x')...),
		"empty ext data": {0, 56, 0, 0},
	}
	for name, in := range bad {
		if err := new(ExternalSessionID).Unmarshal(in); !errors.Is(err, dtlsmsg.ErrBadExternalSessionID) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ClientHelloHook(id(19, 'a')); !errors.Is(err, dtlsmsg.ErrBadExternalSessionID) {
		t.Errorf("ClientHelloHook with a short id: %v", err)
	}
	if _, err := ServerHelloHook(id(256, 'a')); !errors.Is(err, dtlsmsg.ErrBadExternalSessionID) {
		t.Errorf("ServerHelloHook with a long id: %v", err)
	}
}

// TestPionDropsExtension checks the two facts the design rests on: pion
// marshals a foreign extension.Extension as given, and pion's unmarshal
// drops extension 56 without an error.
func TestPionDropsExtension(t *testing.T) {
	hook, err := ClientHelloHook(id(30, 'c'))
	if err != nil {
		t.Fatal(err)
	}
	orig := handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		CipherSuiteIDs:     []uint16{0xC02B},
		CompressionMethods: []*protocol.CompressionMethod{{ID: 0}},
		Extensions: []extension.Extension{
			&extension.UseSRTP{ProtectionProfiles: []extension.SRTPProtectionProfile{7, 1}},
			&ExternalSessionID{ID: id(20, 'z')}, // replaced by the hook
		},
	}
	msg := hook(orig)
	if len(orig.Extensions) != 2 || orig.Extensions[1].(*ExternalSessionID).ID[0] != 'z' {
		t.Fatal("the hook modified pion's slice")
	}
	raw, err := msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := dtlsmsg.ParseClientHello(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.ExternalSessionID, id(30, 'c')) || !slices.Equal(ch.SRTPProfiles, []uint16{7, 1}) || len(ch.Extensions) != 2 {
		t.Fatalf("parsed %+v", ch)
	}
	var back handshake.MessageClientHello
	if err := back.Unmarshal(raw); err != nil {
		t.Fatalf("pion rejects the extension: %v", err)
	}
	if len(back.Extensions) != 1 || back.Extensions[0].TypeValue() != extension.UseSRTPTypeValue {
		t.Fatalf("pion kept %d extensions", len(back.Extensions))
	}

	shook, err := ServerHelloHook(id(25, 's'))
	if err != nil {
		t.Fatal(err)
	}
	suite := uint16(0xC02B)
	smsg := shook(handshake.MessageServerHello{
		Version:           protocol.Version1_2,
		CipherSuiteID:     &suite,
		CompressionMethod: &protocol.CompressionMethod{ID: 0},
	})
	sraw, err := smsg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := dtlsmsg.ParseServerHello(sraw)
	if err != nil || !bytes.Equal(sh.ExternalSessionID, id(25, 's')) {
		t.Fatalf("ServerHello: %+v %v", sh, err)
	}
	var sback handshake.MessageServerHello
	if err := sback.Unmarshal(sraw); err != nil || len(sback.Extensions) != 0 {
		t.Fatalf("pion ServerHello unmarshal: %v, %d extensions", err, len(sback.Extensions))
	}
}

// tapConn records every datagram written and read by a pion endpoint.
type tapConn struct {
	net.PacketConn
	mu      sync.Mutex
	written [][]byte
	read    [][]byte
}

func (c *tapConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.written = append(c.written, bytes.Clone(p))
	c.mu.Unlock()
	return c.PacketConn.WriteTo(p, addr)
}

func (c *tapConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.mu.Lock()
		c.read = append(c.read, bytes.Clone(p[:n]))
		c.mu.Unlock()
	}
	return n, addr, err
}

func (c *tapConn) snapshot() (written, read [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written), slices.Clone(c.read)
}

// clientHelloFragments counts the ClientHello handshake fragments and the
// datagrams holding them.
func clientHelloFragments(t *testing.T, dgs [][]byte) (frags, datagrams int) {
	t.Helper()
	for _, d := range dgs {
		found := false
		for rest := d; len(rest) > 0; {
			rec, r, err := dtlsmsg.NextRecord(rest)
			if err != nil {
				break
			}
			rest = r
			if rec.ContentType != dtlsmsg.ContentTypeHandshake || rec.Epoch != 0 {
				continue
			}
			for f := rec.Fragment; len(f) > 0; {
				h, _, fr, err := dtlsmsg.NextHandshake(f)
				if err != nil {
					t.Fatalf("pion sent a bad handshake fragment: %v", err)
				}
				f = fr
				if h.Type == dtlsmsg.HandshakeTypeClientHello {
					frags++
					found = true
				}
			}
		}
		if found {
			datagrams++
		}
	}
	return frags, datagrams
}

// TestHandshakeWithPion runs real pion/dtls v3 handshakes over loopback UDP:
// the client inserts external_session_id through ClientHelloHook, the server
// inserts its own through ServerHelloHook, and taps on the client's socket
// feed a Reassembler (what the client sends) and a ServerHelloReassembler
// (what it receives).
func TestHandshakeWithPion(t *testing.T) {
	clientID := []byte("client-tls-id-0123456789abcdef") // 30 octets
	serverID := bytes.Repeat([]byte("K"), 255)
	clientCert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	// A 255-octet id makes the ClientHello longer than the small MTUs, so
	// pion fragments it (pion cuts handshake bodies into MTU-sized pieces
	// and puts each record in its own datagram when they do not fit
	// together).
	longClientID := bytes.Repeat([]byte("E"), 255)
	for _, tc := range []struct {
		name      string
		mtu       int
		id        []byte
		wantFrags bool
	}{
		{"default MTU", 0, clientID, false},
		{"MTU 200", 200, longClientID, true},
		{"MTU 100", 100, clientID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runHandshake(t, tc.mtu, tc.id, serverID, clientCert, serverCert, tc.wantFrags)
		})
	}
}

func runHandshake(t *testing.T, mtu int, clientID, serverID []byte, clientCert, serverCert tls.Certificate, wantFrags bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cudp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sudp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		cudp.Close()
		t.Fatal(err)
	}
	tap := &tapConn{PacketConn: cudp}

	chook, err := ClientHelloHook(clientID)
	if err != nil {
		t.Fatal(err)
	}
	shook, err := ServerHelloHook(serverID)
	if err != nil {
		t.Fatal(err)
	}
	profiles := []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80}
	copts := []dtls.ClientOption{
		dtls.WithCertificates(clientCert),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithSRTPProtectionProfiles(profiles...),
		dtls.WithClientHelloMessageHook(chook),
	}
	sopts := []dtls.ServerOption{
		dtls.WithCertificates(serverCert),
		dtls.WithClientAuth(dtls.RequireAnyClientCert),
		// pion's server picks the first of its own profiles the client offers.
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithServerHelloMessageHook(shook),
	}
	if mtu > 0 {
		copts = append(copts, dtls.WithMTU(mtu))
		sopts = append(sopts, dtls.WithMTU(mtu))
	}
	client, err := dtls.ClientWithOptions(tap, sudp.LocalAddr(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	server, err := dtls.ServerWithOptions(sudp, cudp.LocalAddr(), sopts...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, c := range []*dtls.Conn{client, server} {
		wg.Go(func() { errs <- c.HandshakeContext(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	defer func() {
		_ = client.Close()
		_ = server.Close()
		_ = cudp.Close()
		_ = sudp.Close()
	}()
	if p, ok := client.SelectedSRTPProtectionProfile(); !ok || p != dtls.SRTP_AEAD_AES_128_GCM {
		t.Fatalf("negotiated profile %v %v", p, ok)
	}

	written, read := tap.snapshot()
	frags, dgs := clientHelloFragments(t, written)
	largest := 0
	for _, d := range written {
		largest = max(largest, len(d))
	}
	t.Logf("MTU %d: %d client datagrams (largest %d octets); ClientHello in %d fragments over %d datagrams",
		mtu, len(written), largest, frags, dgs)
	if wantFrags && frags <= 2 {
		t.Fatalf("pion did not fragment the ClientHello (%d fragments for two ClientHellos)", frags)
	}

	// The MD/KD side: every datagram the client sent, in order.
	r := dtlsmsg.NewReassembler(0)
	var hellos []*dtlsmsg.ClientHello
	for i, d := range written {
		ch, err := r.Feed(d)
		if err != nil {
			t.Fatalf("client datagram %d: %v", i, err)
		}
		if ch != nil {
			hellos = append(hellos, ch)
		}
	}
	// pion's server sends a HelloVerifyRequest by default: two ClientHellos.
	if len(hellos) != 2 || hellos[0].MessageSeq != 0 || hellos[1].MessageSeq != 1 ||
		hellos[0].Cookie != nil || hellos[1].Cookie == nil {
		t.Fatalf("yielded %d ClientHellos: %+v", len(hellos), hellos)
	}
	for _, ch := range hellos {
		if !ch.HasExternalSessionID || !bytes.Equal(ch.ExternalSessionID, clientID) {
			t.Errorf("message_seq %d: external_session_id %q", ch.MessageSeq, ch.ExternalSessionID)
		}
		if !ch.HasUseSRTP || !slices.Equal(ch.SRTPProfiles, []uint16{0x0007, 0x0001}) || ch.SRTPMKI != nil {
			t.Errorf("message_seq %d: use_srtp %v %x", ch.MessageSeq, ch.SRTPProfiles, ch.SRTPMKI)
		}
	}

	// The client side: the server's value from the ServerHello.
	sr := dtlsmsg.NewServerHelloReassembler(0)
	var sh *dtlsmsg.ServerHello
	for i, d := range read {
		got, err := sr.Feed(d)
		if err != nil {
			t.Fatalf("server datagram %d: %v", i, err)
		}
		if got != nil {
			if sh != nil {
				t.Fatal("two ServerHellos")
			}
			sh = got
		}
	}
	if sh == nil || !bytes.Equal(sh.ExternalSessionID, serverID) || !slices.Equal(sh.SRTPProfiles, []uint16{0x0007}) {
		t.Fatalf("ServerHello %+v", sh)
	}

	// Shuffled and repeated, the client's datagrams still give the same
	// last ClientHello.
	r.Reset()
	shuffled := slices.Clone(written)
	slices.Reverse(shuffled)
	shuffled = append(shuffled, written...)
	var last *dtlsmsg.ClientHello
	for _, d := range shuffled {
		if ch, err := r.Feed(d); err == nil && ch != nil {
			last = ch
		}
	}
	if last == nil || last.MessageSeq != 1 || !bytes.Equal(last.ExternalSessionID, clientID) {
		t.Fatalf("reversed feed: %+v", last)
	}
}
