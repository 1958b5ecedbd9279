package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/tunnel/tunneltest"
)

// testProfiles is what test MDs advertise.
var testProfiles = []ProtectionProfile{ProfileDoubleAEADAES128GCM, ProfileAEADAES128GCM}

const waitLong = 5 * time.Second

// pki holds the certificates of a test deployment: one CA for MDs and KDs,
// and a foreign CA.
type pki struct {
	ca, other *tunneltest.CA
	md, kd    tls.Certificate // issued by ca
	md2       tls.Certificate // issued by ca, another identity
	foreign   tls.Certificate // issued by other
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca := tunneltest.NewCA(t, "mdfast test CA")
	other := tunneltest.NewCA(t, "someone else's CA")
	return &pki{
		ca: ca, other: other,
		md:      ca.Leaf(t, "md1.example"),
		md2:     ca.Leaf(t, "md2.example"),
		kd:      ca.Leaf(t, "kd.example"),
		foreign: other.Leaf(t, "md1.example"),
	}
}

func (p *pki) tls(t testing.TB, cert tls.Certificate, peer PeerPolicy) *tls.Config {
	t.Helper()
	cfg, err := NewTLSConfig(TLSOptions{Certificates: []tls.Certificate{cert}, CAs: p.ca.Pool, Peer: peer})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// logBuf is a concurrency-safe log sink; its content is printed if the test
// fails.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) waitFor(t testing.TB, substr string) {
	t.Helper()
	eventually(t, "log line "+substr, func() bool { return strings.Contains(l.String(), substr) })
}

func testLogger(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLong):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func none[T any](t testing.TB, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	case <-time.After(d):
	}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// --- recording handlers

// put records an event without ever blocking the tunnel's reader: a test
// that stops reading events must fail on its own assertion, not hang the
// shutdown.
func put[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

type dtlsEvent struct {
	tunnel string // KD side: tunnel id
	id     uuid.UUID
	data   []byte
}

type stateEvent struct {
	peer string
	up   bool
}

type mdRec struct {
	dtls  chan dtlsEvent
	keys  chan MediaKeys
	disc  chan uuid.UUID
	state chan stateEvent
}

func newMDRec() *mdRec {
	return &mdRec{dtls: make(chan dtlsEvent, 4096), keys: make(chan MediaKeys, 64), disc: make(chan uuid.UUID, 64), state: make(chan stateEvent, 1024)}
}

func (r *mdRec) HandleTunneledDtls(id uuid.UUID, dtls []byte) {
	put(r.dtls, dtlsEvent{id: id, data: bytes.Clone(dtls)})
}

func (r *mdRec) HandleMediaKeys(mk *MediaKeys) {
	c := *mk
	c.MKI, c.ClientWriteMasterKey, c.ServerWriteMasterKey = bytes.Clone(mk.MKI), bytes.Clone(mk.ClientWriteMasterKey), bytes.Clone(mk.ServerWriteMasterKey)
	c.ClientWriteMasterSalt, c.ServerWriteMasterSalt = bytes.Clone(mk.ClientWriteMasterSalt), bytes.Clone(mk.ServerWriteMasterSalt)
	put(r.keys, c)
}

func (r *mdRec) HandleEndpointDisconnect(id uuid.UUID) { put(r.disc, id) }
func (r *mdRec) TunnelState(peer string, up bool)      { put(r.state, stateEvent{peer, up}) }

type downEvent struct {
	t   *KDTunnel
	err error
}

type kdRec struct {
	up   chan *KDTunnel
	dtls chan dtlsEvent
	disc chan uuid.UUID
	down chan downEvent
}

func newKDRec() *kdRec {
	return &kdRec{up: make(chan *KDTunnel, 1024), dtls: make(chan dtlsEvent, 4096), disc: make(chan uuid.UUID, 64), down: make(chan downEvent, 1024)}
}

func (r *kdRec) TunnelUp(t *KDTunnel) { put(r.up, t) }
func (r *kdRec) HandleTunneledDtls(t *KDTunnel, m *TunneledDtls) {
	put(r.dtls, dtlsEvent{tunnel: t.ID(), id: m.AssociationID, data: bytes.Clone(m.Message)})
}
func (r *kdRec) HandleEndpointDisconnect(_ *KDTunnel, id uuid.UUID) { put(r.disc, id) }
func (r *kdRec) TunnelDown(t *KDTunnel, err error)                  { put(r.down, downEvent{t, err}) }

// --- starting the real sides

// startKD serves a KD on ln until the test ends.
func startKD(t testing.TB, p *pki, cfg KDConfig, ln net.Listener) (*KD, *kdRec, *logBuf) {
	t.Helper()
	rec := newKDRec()
	var lb *logBuf
	cfg.Logger, lb = testLogger(t)
	if cfg.TLS == nil {
		cfg.TLS = p.tls(t, p.kd, PeerPolicy{})
	}
	cfg.HandshakeTimeout = cmpOr(cfg.HandshakeTimeout, 2*time.Second)
	cfg.BackoffMin = cmpOr(cfg.BackoffMin, 10*time.Millisecond)
	cfg.BackoffMax = cmpOr(cfg.BackoffMax, 100*time.Millisecond)
	k, err := NewKD(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if ln != nil {
		go func() { done <- k.Serve(context.Background(), ln) }()
	} else {
		done <- nil
	}
	t.Cleanup(func() {
		_ = k.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return k, rec, lb
}

// startMD runs an MD until the test ends (or stop is called).
func startMD(t testing.TB, p *pki, cfg MDConfig) (m *MD, rec *mdRec, lb *logBuf, stop func()) {
	t.Helper()
	rec = newMDRec()
	cfg.Logger, lb = testLogger(t)
	if cfg.TLS == nil {
		cfg.TLS = p.tls(t, p.md, PeerPolicy{})
	}
	if cfg.Profiles == nil {
		cfg.Profiles = testProfiles
	}
	cfg.HandshakeTimeout = cmpOr(cfg.HandshakeTimeout, 2*time.Second)
	cfg.BackoffMin = cmpOr(cfg.BackoffMin, 10*time.Millisecond)
	cfg.BackoffMax = cmpOr(cfg.BackoffMax, 100*time.Millisecond)
	m, err := NewMD(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return m, rec, lb, stop
}

// --- raw peers, speaking the protocol by hand

// rawServer accepts TLS connections and hands them over after the handshake.
type rawServer struct {
	ln    net.Listener
	conns chan *tls.Conn
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []net.Conn
}

func newRawServer(t testing.TB, cfg *tls.Config) *rawServer {
	t.Helper()
	s := &rawServer{ln: listen(t), conns: make(chan *tls.Conn, 16)}
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.all = append(s.all, c)
			s.mu.Unlock()
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(waitLong))
			if err := tc.Handshake(); err != nil {
				_ = c.Close()
				continue
			}
			_ = tc.SetDeadline(time.Time{})
			s.conns <- tc
		}
	})
	t.Cleanup(func() {
		_ = s.ln.Close()
		s.wg.Wait()
		s.mu.Lock()
		for _, c := range s.all {
			_ = c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// rawDial connects to addr with cert (none if nil) and runs the handshake.
func rawDial(t testing.TB, p *pki, addr string, cert *tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := net.DialTimeout("tcp", addr, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(waitLong))
	err = tc.Handshake()
	_ = tc.SetDeadline(time.Time{})
	return tc, err
}

func writeMsg(t testing.TB, w io.Writer, m Message) {
	t.Helper()
	b, err := AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatalf("write %s: %v", m.Type(), err)
	}
}

func writeRaw(t testing.TB, w io.Writer, hexs string) {
	t.Helper()
	if _, err := w.Write(mustHex(t, hexs)); err != nil {
		t.Fatal(err)
	}
}

// readMsg reads one frame from c and decodes it.
func readMsg(t testing.TB, c net.Conn) Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	frame, err := NewFrameReader(c, 0).Next()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	m, err := Decode(bytes.Clone(frame))
	if err != nil {
		t.Fatalf("decode %x: %v", frame, err)
	}
	return m
}

// readAllUntilClosed returns everything the peer sends until it closes the
// connection (or the read fails).
func readAllUntilClosed(t testing.TB, c net.Conn) ([]byte, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLong))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("peer did not close the connection: read %x", b)
	}
	return b, err
}

var supportedProfilesMsg = &SupportedProfiles{Version: 0, Profiles: testProfiles}
