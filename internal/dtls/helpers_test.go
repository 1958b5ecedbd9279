package dtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"
)

// Test certificates are made once per process: RSA key generation is slow.
var (
	certOnce  sync.Once
	certCache = map[string]tls.Certificate{}
)

func makeCert(tb testing.TB, key crypto.Signer, cn string) tls.Certificate {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testCert returns a fresh-per-process certificate of kind "p256", "p384",
// "rsa" (2048), "p256b" (a second P-256 identity) or "rsa1024".
func testCert(tb testing.TB, kind string) tls.Certificate {
	tb.Helper()
	certOnce.Do(func() {
		p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p256b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
		r1024, _ := rsa.GenerateKey(rand.Reader, 1024)
		certCache["p256"] = makeCert(tb, p256, "p256")
		certCache["p256b"] = makeCert(tb, p256b, "p256b")
		certCache["p384"] = makeCert(tb, p384, "p384")
		certCache["p521"] = makeCert(tb, p521, "p521")
		certCache["rsa"] = makeCert(tb, r2048, "rsa")
		certCache["rsa1024"] = makeCert(tb, r1024, "rsa1024")
	})
	c, ok := certCache[kind]
	if !ok {
		tb.Fatalf("no test certificate %q", kind)
	}
	return c
}

func fingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

// pinned returns a VerifyPeer that accepts exactly the leaf of cert.
func pinned(cert tls.Certificate) func([][]byte) error {
	return PinSHA256(fingerprint(cert.Certificate[0]))
}

var testTLSID = []byte("0123456789abcdefghijABCDEFGHIJ")
var testKDTLSID = []byte("kdkdkdkdkdkdkdkdkdkdkdkd")

func clientConfig(tb testing.TB, clientCert, serverCert string) *Config {
	cc, sc := testCert(tb, clientCert), testCert(tb, serverCert)
	return &Config{
		Certificate:       cc,
		VerifyPeer:        pinned(sc),
		SRTPProfiles:      []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM},
		ExternalSessionID: testTLSID,
	}
}

func serverConfig(tb testing.TB, serverCert, clientCert string) *Config {
	sc, cc := testCert(tb, serverCert), testCert(tb, clientCert)
	return &Config{
		Certificate:       sc,
		VerifyPeer:        pinned(cc),
		SRTPProfiles:      []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM, SRTPDoubleAES128GCM, SRTPDoubleAES256GCM},
		ExternalSessionID: testKDTLSID,
	}
}

// link connects a client and a server Conn in memory; tests step it by
// hand, so nothing here runs concurrently and time is whatever they say.
type link struct {
	tb     testing.TB
	c, s   *Conn
	now    time.Time
	cev    []Event
	sev    []Event
	toS    [][]byte // in flight client -> server
	toC    [][]byte
	filter func(fromClient bool, d []byte) [][]byte // may drop, alter or multiply
}

func newLink(tb testing.TB, ccfg, scfg *Config) *link {
	tb.Helper()
	c, err := NewClient(ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewServer(scfg, []byte("203.0.113.7:5004"))
	if err != nil {
		tb.Fatal(err)
	}
	return &link{tb: tb, c: c, s: s, now: time.Unix(1_700_000_000, 0)}
}

// collect moves what both Conns produced into flight and the event lists.
func (l *link) collect() {
	for _, d := range l.c.Datagrams() {
		if l.filter != nil {
			l.toS = append(l.toS, l.filter(true, d)...)
		} else {
			l.toS = append(l.toS, d)
		}
	}
	for _, d := range l.s.Datagrams() {
		if l.filter != nil {
			l.toC = append(l.toC, l.filter(false, d)...)
		} else {
			l.toC = append(l.toC, d)
		}
	}
	l.cev = append(l.cev, l.c.Events()...)
	l.sev = append(l.sev, l.s.Events()...)
}

// run delivers datagrams until none is in flight (at most max rounds).
func (l *link) run() {
	l.collect()
	for round := 0; round < 200 && (len(l.toS) > 0 || len(l.toC) > 0); round++ {
		toS, toC := l.toS, l.toC
		l.toS, l.toC = nil, nil
		for _, d := range toS {
			_ = l.s.HandleDatagram(l.now, d)
		}
		for _, d := range toC {
			_ = l.c.HandleDatagram(l.now, d)
		}
		l.collect()
	}
}

// start starts the client and runs the link.
func (l *link) start() {
	if err := l.c.Start(l.now); err != nil {
		l.tb.Fatalf("start: %v", err)
	}
	l.run()
}

// advance moves time to the earliest deadline of either side, fires it and
// runs the link. It reports whether a timer fired.
func (l *link) advance() bool {
	dc, ds := l.c.Deadline(), l.s.Deadline()
	var next time.Time
	switch {
	case !dc.IsZero() && (ds.IsZero() || dc.Before(ds)):
		next = dc
	case !ds.IsZero():
		next = ds
	default:
		return false
	}
	if next.After(l.now) {
		l.now = next
	}
	_ = l.c.HandleTimeout(l.now)
	_ = l.s.HandleTimeout(l.now)
	l.run()
	return true
}

func hasEvent(evs []Event, k EventKind) bool {
	for _, e := range evs {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func closedErr(evs []Event) error {
	for _, e := range evs {
		if e.Kind == EventClosed {
			return e.Err
		}
	}
	return nil
}

// exportBoth exports the DTLS-SRTP keying material on both sides.
func (l *link) exportBoth(n int) (client, server []byte) {
	l.tb.Helper()
	a, err := l.c.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
	if err != nil {
		l.tb.Fatalf("client export: %v", err)
	}
	b, err := l.s.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
	if err != nil {
		l.tb.Fatalf("server export: %v", err)
	}
	if !bytes.Equal(a, b) {
		l.tb.Fatalf("exported keys differ:\nclient %x\nserver %x", a, b)
	}
	return a, b
}

// wantAlert asserts that err is a local or remote fatal alert desc.
func wantAlert(tb testing.TB, err error, desc uint8) {
	tb.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Description != desc {
		tb.Fatalf("error %v, want alert %s", err, alertName(desc))
	}
}
