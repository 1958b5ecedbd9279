package dtls

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	pion "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/transport/v5/deadline"
)

// Our stack against pion/dtls v3 in the same run: the cost of a full
// handshake, and what an established server association keeps (heap and
// goroutines). Both run in memory: ours through the link helper (one
// goroutine steps both Conns), pion through memPipe, a datagram pipe with
// no socket. Both sides are configured alike: ECDSA P-256 certificates on
// both ends, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 over X25519,
// AEAD_AES_128_GCM, a client certificate required, the extended master
// secret required, the peer checked by fingerprint, and the
// HelloVerifyRequest cookie exchange on both (the default of both servers:
// pion's InsecureSkipVerifyHello is false).

// benchConfigs are our settled client and server Configs for the
// comparison; one pair serves every association.
func benchConfigs(tb testing.TB, g Group) (client, server *Config) {
	tb.Helper()
	cc, sc := testCert(tb, "p256"), testCert(tb, "p256b")
	common := Config{
		CipherSuites: []uint16{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		Groups:       []Group{g},
		SRTPProfiles: []uint16{SRTPAEADAES128GCM},
	}
	ccfg, scfg := common, common
	ccfg.Certificate, ccfg.VerifyPeer = cc, pinned(sc)
	scfg.Certificate, scfg.VerifyPeer = sc, pinned(cc)
	client, err := ccfg.Settle(false)
	if err != nil {
		tb.Fatal(err)
	}
	server, err = scfg.Settle(true)
	if err != nil {
		tb.Fatal(err)
	}
	return client, server
}

// ourAssociation runs one handshake of ours in memory and returns the
// link.
func ourAssociation(tb testing.TB, ccfg, scfg *Config) *link {
	l := newLink(tb, ccfg, scfg)
	l.start()
	if !hasEvent(l.cev, EventHandshakeComplete) || !hasEvent(l.sev, EventHandshakeComplete) {
		tb.Fatalf("not complete: client %v (%v) server %v (%v)", l.cev, closedErr(l.cev), l.sev, closedErr(l.sev))
	}
	return l
}

// memAddr is the address of both ends of a memPipe.
type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// memConn is one end of an in-memory datagram pipe, a net.PacketConn for
// pion: a write never blocks (a full queue drops the datagram, as UDP may),
// a read honours the read deadline pion uses to stop its reader, and
// closing one end leaves the other open.
type memConn struct {
	in, out   chan []byte
	closed    chan struct{}
	closeOnce sync.Once
	rd        *deadline.Deadline
}

// memPipeQueue is how many datagrams wait in each direction: more than any
// flight of these handshakes.
const memPipeQueue = 16

func memPipe() (a, b *memConn) {
	ab, ba := make(chan []byte, memPipeQueue), make(chan []byte, memPipeQueue)
	a = &memConn{in: ba, out: ab, closed: make(chan struct{}), rd: deadline.New()}
	b = &memConn{in: ab, out: ba, closed: make(chan struct{}), rd: deadline.New()}
	return a, b
}

func (c *memConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case d := <-c.in:
		return copy(p, d), memAddr{}, nil
	}
}

func (c *memConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case c.out <- append([]byte(nil), p...):
	default:
	}
	return len(p), nil
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return memAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { c.rd.Set(t); return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { c.rd.Set(t); return nil }
func (c *memConn) SetWriteDeadline(_ time.Time) error { return nil }

// memListener hands pion's listener the server end of each memPipe, so
// that all pion server Conns share one Config, as ours share one settled
// Config.
type memListener struct {
	conns  chan net.PacketConn
	closed chan struct{}
	once   sync.Once
}

func (l *memListener) Accept() (net.PacketConn, net.Addr, error) {
	select {
	case pc := <-l.conns:
		return pc, memAddr{}, nil
	case <-l.closed:
		return nil, nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }

// pionStack makes pion associations in memory with the configuration of
// benchConfigs.
type pionStack struct {
	ml     *memListener
	ln     net.Listener
	client []pion.ClientOption
}

func newPionStack(tb testing.TB, curve elliptic.Curve) *pionStack {
	tb.Helper()
	cc, sc := testCert(tb, "p256"), testCert(tb, "p256b")
	common := func(cert, peer tls.Certificate) []pion.Option {
		opts := pionShared(cert, pinned(peer), SRTPAEADAES128GCM)
		return append(opts,
			pion.WithCipherSuites(pion.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
			pion.WithEllipticCurves(curve),
		)
	}
	ml := &memListener{conns: make(chan net.PacketConn, 1), closed: make(chan struct{})}
	ln, err := pion.NewListenerWithOptions(ml, pionServerOptions(common(sc, cc))...)
	if err != nil {
		tb.Fatal(err)
	}
	return &pionStack{ml: ml, ln: ln, client: pionClientOptions(common(cc, sc))}
}

// associate runs one pion handshake; the client is on a, the server on
// the other end of the pipe.
func (p *pionStack) associate(ctx context.Context) (cli, srv *pion.Conn, a *memConn, err error) {
	a, b := memPipe()
	p.ml.conns <- b
	nc, err := p.ln.Accept()
	if err != nil {
		return nil, nil, nil, err
	}
	srv = nc.(*pion.Conn)
	sdone := make(chan error, 1)
	go func() { sdone <- srv.HandshakeContext(ctx) }()
	cli, err = pion.ClientWithOptions(a, memAddr{}, p.client...)
	if err == nil {
		err = cli.HandshakeContext(ctx)
	}
	if serr := <-sdone; err == nil {
		err = serr
	}
	if err != nil {
		_ = srv.Close()
		if cli != nil {
			_ = cli.Close()
		}
		return nil, nil, nil, err
	}
	return cli, srv, a, nil
}

func (p *pionStack) close() { _ = p.ln.Close() }

// BenchmarkHandshake measures full handshakes, client and server both
// ours or both pion's, with the configuration above. pion's client and
// server run on goroutines of their own and may use two cores; ours are
// stepped by one goroutine (compare with -cpu 1 too).
func BenchmarkHandshake(b *testing.B) {
	for _, g := range []struct {
		name string
		ours Group
		pion elliptic.Curve
	}{{"x25519", GroupX25519, elliptic.X25519}, {"p256", GroupP256, elliptic.P256}} {
		b.Run(g.name+"/ours", func(b *testing.B) {
			settle()
			ccfg, scfg := benchConfigs(b, g.ours)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				l := ourAssociation(b, ccfg, scfg)
				l.c.Close(l.now)
				l.s.Close(l.now)
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "handshakes/s")
		})
		b.Run(g.name+"/floor", func(b *testing.B) {
			settle()
			benchCryptoFloor(b, g.ours)
		})
		b.Run(g.name+"/pion", func(b *testing.B) {
			settle()
			p := newPionStack(b, g.pion)
			defer p.close()
			ctx := context.Background()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				cli, srv, _, err := p.associate(ctx)
				if err != nil {
					b.Fatal(err)
				}
				_ = cli.Close()
				_ = srv.Close()
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// benchCryptoFloor performs the public-key operations of one mutually
// authenticated ECDHE-ECDSA handshake and nothing else: both ephemeral key
// pairs and both shared secrets of group g, the server's ServerKeyExchange
// signature and the client's CertificateVerify with P-256 keys, and the
// two verifications. No DTLS stack built on Go's standard crypto can do a
// handshake in less; ours and pion's per-handshake times minus this floor
// are each stack's own work.
func benchCryptoFloor(b *testing.B, g Group) {
	curve, _ := curveOf(g)
	cc, sc := testCert(b, "p256"), testCert(b, "p256b")
	cpub, err := peerLeafKey(cc.Certificate)
	if err != nil {
		b.Fatal(err)
	}
	spub, err := peerLeafKey(sc.Certificate)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 200)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		ce, err1 := curve.GenerateKey(rand.Reader)
		se, err2 := curve.GenerateKey(rand.Reader)
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		_, err1 = ce.ECDH(se.PublicKey())
		_, err2 = se.ECDH(ce.PublicKey())
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		for _, side := range []struct {
			key crypto.Signer
			pub crypto.PublicKey
		}{{sc.PrivateKey.(crypto.Signer), spub}, {cc.PrivateKey.(crypto.Signer), cpub}} {
			sig, err := sign(side.key, ECDSAWithP256AndSHA256, msg)
			if err != nil {
				b.Fatal(err)
			}
			if err := verify(side.pub, ECDSAWithP256AndSHA256, sig, msg); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "handshakes/s")
}

// settle lets the goroutines a previous benchmark left behind (pion's
// closed Conns wind down on their own) finish and collects their garbage,
// so that no benchmark pays for the one before it.
func settle() {
	settledGoroutines()
	runtime.GC()
}

// memory is the live heap and the goroutine stacks after a full
// collection.
func memory() (heap, stacks float64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc), float64(m.StackInuse)
}

// settledGoroutines waits until the number of goroutines stops changing
// (goroutines of closed pion Conns wind down on their own) and returns it.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for stable := 0; stable < 5; {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, stable = m, 0
		} else {
			stable++
		}
	}
	return n
}

// perAssociation is what one established server association keeps.
type perAssociation struct {
	heap       float64 // bytes of live heap
	stacks     float64 // bytes of goroutine stacks (not in heap)
	goroutines float64
}

// TestMemoryPerAssociation establishes memAssociations server associations
// with each stack, keeps the server Conns, drops the clients, and measures
// the live heap and the goroutines each server association keeps. Our
// Conns are driven without goroutines (as the Key Distributor drives
// them); pion's need theirs. pion's server Conns are counted without
// their memPipe (measured apart and subtracted), so its figure is only
// pion's own. Slow: run with MDFAST_DTLS_MEM=1.
func TestMemoryPerAssociation(t *testing.T) {
	if os.Getenv("MDFAST_DTLS_MEM") != "1" {
		t.Skip("set MDFAST_DTLS_MEM=1 to measure the memory per association (slow)")
	}
	const n = memAssociations
	ours := oursPerAssociation(t, n)
	theirs := pionPerAssociation(t, n)
	t.Logf("ours: %d server associations, %.0f heap bytes, %.3f goroutines (%.0f stack bytes) each", n, ours.heap, ours.goroutines, ours.stacks)
	t.Logf("pion: %d server associations, %.0f heap bytes, %.3f goroutines (%.0f stack bytes) each (memPipe excluded)", n, theirs.heap, theirs.goroutines, theirs.stacks)
	t.Logf("memory per DTLS server association (N=%d): ours %.0f heap B, %.3f goroutines; pion/dtls v3 %.0f heap B + %.0f stack B, %.3f goroutines; pion/ours heap %.1fx",
		n, ours.heap, ours.goroutines, theirs.heap, theirs.stacks, theirs.goroutines, theirs.heap/ours.heap)
	if ours.goroutines != 0 {
		t.Errorf("ours keeps %.3f goroutines per association, want 0", ours.goroutines)
	}
	if ours.heap*4 >= theirs.heap {
		t.Errorf("ours keeps %.0f heap bytes per association, want less than a quarter of pion's %.0f", ours.heap, theirs.heap)
	}
}

// memAssociations is how many associations TestMemoryPerAssociation
// establishes with each stack: 10,000 of pion's take about 11 s on two
// cores (ours about 4 s), so both run the full number.
const memAssociations = 10_000

func oursPerAssociation(t *testing.T, n int) perAssociation {
	ccfg, scfg := benchConfigs(t, GroupX25519)
	servers := make([]*Conn, 0, n)
	g0 := settledGoroutines()
	h0, s0 := memory()
	for range n {
		servers = append(servers, ourAssociation(t, ccfg, scfg).s)
	}
	g1 := settledGoroutines()
	h1, s1 := memory()
	runtime.KeepAlive(servers)
	return perAssociation{heap: (h1 - h0) / float64(n), stacks: (s1 - s0) / float64(n), goroutines: float64(g1-g0) / float64(n)}
}

func pionPerAssociation(t *testing.T, n int) perAssociation {
	// The pipes alone: the server end of each, as a pion server Conn keeps
	// it.
	ends := make([]*memConn, 0, n)
	p0, _ := memory()
	for range n {
		_, b := memPipe()
		ends = append(ends, b)
	}
	p1, _ := memory()
	pipe := (p1 - p0) / float64(n)
	runtime.KeepAlive(ends)
	ends = nil

	p := newPionStack(t, elliptic.X25519)
	defer p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	servers := make([]*pion.Conn, 0, n)
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
		settledGoroutines()
	}()
	g0 := settledGoroutines()
	h0, s0 := memory()
	start := time.Now()
	for range n {
		cli, srv, a, err := p.associate(ctx)
		if err != nil {
			t.Fatalf("pion association %d: %v", len(servers), err)
		}
		// Close the client's end first, so that no close_notify reaches
		// the server.
		_ = a.Close()
		if err := cli.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("pion client close: %v", err)
		}
		servers = append(servers, srv)
	}
	g1 := settledGoroutines()
	h1, s1 := memory()
	t.Logf("pion: %d associations in %v; memPipe server end %.0f heap bytes each (subtracted)", n, time.Since(start).Round(time.Millisecond), pipe)
	runtime.KeepAlive(servers)
	return perAssociation{heap: (h1-h0)/float64(n) - pipe, stacks: (s1 - s0) / float64(n), goroutines: float64(g1-g0) / float64(n)}
}
