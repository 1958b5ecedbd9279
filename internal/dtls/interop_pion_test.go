package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pion "github.com/pion/dtls/v3"
	pionhs "github.com/pion/dtls/v3/pkg/protocol/handshake"
)

// Interop with pion/dtls v3, the DTLS stack of Go's WebRTC world, over
// loopback UDP: a pion client against our server (RunPacketConn) and our
// client against a pion server, for the AEAD_AES_128_GCM and
// AEAD_AES_256_GCM profiles (pion has no double profiles) with ECDSA P-256
// and RSA 2048 certificates. pion requires a client certificate and the
// extended master secret; both sides export EXTRACTOR-dtls_srtp and the
// material must be equal, both see the same cipher suite and profile, and
// each side's certificate check runs on the other's certificate. Also: a
// pion client answers our HelloVerifyRequest (on by default) with our
// cookie, and a pion server ignores the external_session_id (RFC 8844) our
// client offers beside use_srtp.

// pionProfiles are pion's values of the profiles both stacks implement.
var pionProfiles = map[uint16]pion.SRTPProtectionProfile{
	SRTPAEADAES128GCM: pion.SRTP_AEAD_AES_128_GCM,
	SRTPAEADAES256GCM: pion.SRTP_AEAD_AES_256_GCM,
}

type pionCase struct {
	profile uint16
	cert    string // "p256" or "rsa": both sides
}

func (tc pionCase) String() string {
	return fmt.Sprintf("%s/%s", openSSLProfileNames[tc.profile], tc.cert)
}

func pionCases() []pionCase {
	var cs []pionCase
	for _, p := range []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM} {
		for _, cert := range []string{"p256", "rsa"} {
			cs = append(cs, pionCase{p, cert})
		}
	}
	return cs
}

// pionIdentities returns our certificate and pion's: two P-256
// identities, or the one RSA certificate on both sides (as the OpenSSL
// tests do: RSA keys are slow to make).
func pionIdentities(tb testing.TB, kind string) (ours, theirs tls.Certificate) {
	tb.Helper()
	if kind == "p256" {
		return testCert(tb, "p256"), testCert(tb, "p256b")
	}
	return testCert(tb, kind), testCert(tb, kind)
}

// counted returns a VerifyPeer that accepts exactly the leaf of cert and
// counts its calls in n.
func counted(cert tls.Certificate, n *atomic.Int32) func([][]byte) error {
	verify := pinned(cert)
	return func(chain [][]byte) error {
		n.Add(1)
		return verify(chain)
	}
}

// pionShared are the options of both pion roles: the one profile, EMS
// required, and the peer checked by its fingerprint instead of a chain, as
// WebRTC does.
func pionShared(cert tls.Certificate, verify func([][]byte) error, profile uint16) []pion.Option {
	return []pion.Option{
		pion.WithCertificates(cert),
		pion.WithInsecureSkipVerify(true), // verify checks the fingerprint
		pion.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error { return verify(raw) }),
		pion.WithSRTPProtectionProfiles(pionProfiles[profile]),
		pion.WithExtendedMasterSecret(pion.RequireExtendedMasterSecret),
		pion.WithFlightInterval(200 * time.Millisecond),
	}
}

// pionClientOptions are shared and extra.
func pionClientOptions(shared []pion.Option, extra ...pion.ClientOption) []pion.ClientOption {
	opts := make([]pion.ClientOption, 0, len(shared)+len(extra))
	for _, o := range shared {
		opts = append(opts, o)
	}
	return append(opts, extra...)
}

// pionServerOptions are shared and a client certificate required.
func pionServerOptions(shared []pion.Option) []pion.ServerOption {
	opts := make([]pion.ServerOption, 0, len(shared)+1)
	for _, o := range shared {
		opts = append(opts, o)
	}
	return append(opts, pion.WithClientAuth(pion.RequireAnyClientCert))
}

// ourSide is what our Conn saw when its handshake completed: read on the
// Runner's goroutine, in the onEvent callback, because the peer may close
// right after.
type ourSide struct {
	keys  []byte
	state ConnectionState
	err   error
}

// onComplete returns an onEvent that exports n octets of DTLS-SRTP
// keying material from *c (set before the Runner starts) and its state
// when the handshake completes.
func onComplete(c **Conn, n int, out chan<- ourSide) func(Event) {
	return func(ev Event) {
		if ev.Kind != EventHandshakeComplete {
			return
		}
		var r ourSide
		r.keys, r.err = (*c).ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
		r.state, _ = (*c).State()
		out <- r
	}
}

// pionSide exports n octets of DTLS-SRTP keying material from a pion Conn
// whose handshake completed, with what else it negotiated.
func pionSide(t *testing.T, pc *pion.Conn, n int) pionView {
	t.Helper()
	st, ok := pc.ConnectionState()
	if !ok {
		t.Fatal("pion: no connection state after the handshake")
	}
	keys, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
	if err != nil {
		t.Fatalf("pion export: %v", err)
	}
	profile, ok := pc.SelectedSRTPProtectionProfile()
	if !ok {
		t.Fatal("pion: no SRTP profile selected")
	}
	return pionView{keys: keys, suite: uint16(st.CipherSuiteID), profile: profile, peer: st.PeerCertificates}
}

// pionView is what the pion side saw.
type pionView struct {
	keys    []byte
	suite   uint16
	profile pion.SRTPProtectionProfile
	peer    [][]byte
}

// compareSides checks that both sides agree on the keys, the cipher suite
// (ECDHE_RSA with an RSA certificate) and the profile, and that each saw
// the other's certificate.
func compareSides(t *testing.T, tc pionCase, ours ourSide, ourCert, pionCert tls.Certificate,
	theirs pionView, ourChecks, pionChecks int32) {
	t.Helper()
	if ours.err != nil {
		t.Fatalf("our export: %v", ours.err)
	}
	if len(ours.keys) != srtpMaterialLen[tc.profile] || !bytes.Equal(ours.keys, theirs.keys) {
		t.Fatalf("exported keying material differs:\nours %x\npion %x", ours.keys, theirs.keys)
	}
	if s, _ := suiteByID(ours.state.CipherSuite); ours.state.CipherSuite != theirs.suite || s.rsa != (tc.cert == "rsa") {
		t.Fatalf("cipher suites: ours %#04x, pion %#04x", ours.state.CipherSuite, theirs.suite)
	}
	if ours.state.SRTPProfile != tc.profile || uint16(theirs.profile) != tc.profile {
		t.Fatalf("profiles: ours %#04x, pion %#04x, want %#04x", ours.state.SRTPProfile, uint16(theirs.profile), tc.profile)
	}
	if ourChecks == 0 || len(ours.state.PeerCertificates) == 0 || !bytes.Equal(ours.state.PeerCertificates[0], pionCert.Certificate[0]) {
		t.Fatalf("our VerifyPeer ran %d times; we saw %d certificates, not pion's", ourChecks, len(ours.state.PeerCertificates))
	}
	if pionChecks == 0 || len(theirs.peer) == 0 || !bytes.Equal(theirs.peer[0], ourCert.Certificate[0]) {
		t.Fatalf("pion's VerifyPeerCertificate ran %d times; it saw %d certificates, not ours", pionChecks, len(theirs.peer))
	}
}

// pionClientRun is the outcome of a pion client against our server.
type pionClientRun struct {
	ours       ourSide
	theirs     pionView
	ourChecks  int32
	pionChecks int32
	hellos     []pionhs.MessageClientHello // what pion sent, cookies included
}

// runPionClient runs a pion client against our server (HelloVerifyRequest
// unless disableHVR) on loopback UDP.
func runPionClient(t *testing.T, tc pionCase, disableHVR bool) pionClientRun {
	t.Helper()
	ourCert, pionCert := pionIdentities(t, tc.cert)
	n := srtpMaterialLen[tc.profile]
	var run pionClientRun
	var ourChecks, pionChecks atomic.Int32
	scfg := &Config{
		Certificate:        ourCert,
		VerifyPeer:         counted(pionCert, &ourChecks),
		SRTPProfiles:       []uint16{tc.profile},
		DisableHelloVerify: disableHVR,
	}
	s, err := NewServer(scfg, []byte("pion"))
	if err != nil {
		t.Fatal(err)
	}
	spc := localUDP(t)
	done := make(chan ourSide, 1)
	r := RunPacketConn(spc, nil, s, onComplete(&s, n, done))
	defer r.Close()

	hellos := make(chan pionhs.MessageClientHello, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := pion.ClientWithOptions(localUDP(t), spc.LocalAddr(), pionClientOptions(
		pionShared(pionCert, counted(ourCert, &pionChecks), tc.profile),
		pion.WithClientHelloMessageHook(func(h pionhs.MessageClientHello) pionhs.Message {
			select {
			case hellos <- h:
			default:
			}
			return &h
		}),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.HandshakeContext(ctx); err != nil {
		t.Fatalf("pion client: %v (our server: %v)", err, r.Err())
	}
	if err := r.Handshake(ctx); err != nil {
		t.Fatalf("our server: %v", err)
	}
	run.ours = <-done
	run.theirs = pionSide(t, pc, n)
	run.ourChecks, run.pionChecks = ourChecks.Load(), pionChecks.Load()
	for len(hellos) > 0 {
		run.hellos = append(run.hellos, <-hellos)
	}
	return run
}

func TestPionClientAgainstOurServer(t *testing.T) {
	for _, tc := range pionCases() {
		t.Run(tc.String(), func(t *testing.T) {
			ourCert, pionCert := pionIdentities(t, tc.cert)
			run := runPionClient(t, tc, false)
			compareSides(t, tc, run.ours, ourCert, pionCert, run.theirs, run.ourChecks, run.pionChecks)
		})
	}
}

// TestPionClientHelloVerify checks that a pion client answers our
// HelloVerifyRequest (on by default) with our cookie, and goes straight to
// the ServerHello when we send none.
func TestPionClientHelloVerify(t *testing.T) {
	tc := pionCase{SRTPAEADAES128GCM, "p256"}
	ourCert, pionCert := pionIdentities(t, tc.cert)
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableHelloVerify=%v", disable), func(t *testing.T) {
			run := runPionClient(t, tc, disable)
			compareSides(t, tc, run.ours, ourCert, pionCert, run.theirs, run.ourChecks, run.pionChecks)
			withCookie := 0
			for _, h := range run.hellos {
				if len(h.Cookie) > 0 {
					withCookie++
				}
			}
			switch {
			case !disable && withCookie == 0:
				t.Fatalf("pion sent %d ClientHellos, none with our cookie", len(run.hellos))
			case disable && withCookie > 0:
				t.Fatalf("pion sent a cookie we never made (%d ClientHellos)", len(run.hellos))
			}
		})
	}
}

// runOurClient runs our client (configured by ccfg, without Certificate,
// VerifyPeer and SRTPProfiles, which it fills) against a pion server on
// loopback UDP and compares both sides.
func runOurClient(t *testing.T, tc pionCase, ccfg Config) ConnectionState {
	t.Helper()
	ourCert, pionCert := pionIdentities(t, tc.cert)
	n := srtpMaterialLen[tc.profile]
	var ourChecks, pionChecks atomic.Int32
	cpc, spc := localUDP(t), localUDP(t)
	ps, err := pion.ServerWithOptions(spc, cpc.LocalAddr(), pionServerOptions(
		pionShared(pionCert, counted(ourCert, &pionChecks), tc.profile))...)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pionDone := make(chan error, 1)
	go func() { pionDone <- ps.HandshakeContext(ctx) }()

	ccfg.Certificate = ourCert
	ccfg.VerifyPeer = counted(pionCert, &ourChecks)
	ccfg.SRTPProfiles = []uint16{tc.profile}
	ccfg.RetransmitTimeout = 200 * time.Millisecond
	c, err := NewClient(&ccfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan ourSide, 1)
	r := RunPacketConn(cpc, spc.LocalAddr(), c, onComplete(&c, n, done))
	defer r.Close()
	if err := r.Handshake(ctx); err != nil {
		t.Fatalf("our client: %v", err)
	}
	if err := <-pionDone; err != nil {
		t.Fatalf("pion server: %v", err)
	}
	ours := <-done
	compareSides(t, tc, ours, ourCert, pionCert, pionSide(t, ps, n), ourChecks.Load(), pionChecks.Load())
	return ours.state
}

func TestOurClientAgainstPionServer(t *testing.T) {
	for _, tc := range pionCases() {
		t.Run(tc.String(), func(t *testing.T) {
			runOurClient(t, tc, Config{})
		})
	}
}

// TestOurClientExternalSessionIDAgainstPion: pion does not implement
// external_session_id (RFC 8844); it must ignore our offer and complete,
// and we must see no answer.
func TestOurClientExternalSessionIDAgainstPion(t *testing.T) {
	for _, tc := range []pionCase{{SRTPAEADAES128GCM, "p256"}, {SRTPAEADAES256GCM, "p256"}} {
		t.Run(tc.String(), func(t *testing.T) {
			st := runOurClient(t, tc, Config{ExternalSessionID: testTLSID})
			if st.PeerExternalSessionID != nil {
				t.Fatalf("pion answered external_session_id %x", st.PeerExternalSessionID)
			}
		})
	}
}
