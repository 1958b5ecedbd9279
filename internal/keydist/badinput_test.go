package keydist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// fakeTunnel records what the KD sends, in order.
type fakeTunnel struct {
	id, peer string
	instance uuid.UUID
	unsent   []uuid.UUID
	mu       sync.Mutex
	sent     []event
}

func (f *fakeTunnel) ID() string          { return f.id }
func (f *fakeTunnel) Peer() string        { return f.peer }
func (f *fakeTunnel) Instance() uuid.UUID { return f.instance }

func (f *fakeTunnel) UnsentDisconnects() []uuid.UUID { return f.unsent }
func (f *fakeTunnel) Profiles() []tunnel.ProtectionProfile {
	return []tunnel.ProtectionProfile{tunnel.ProfileAEADAES128GCM}
}
func (f *fakeTunnel) SendTunneledDtls(id uuid.UUID, b []byte) error {
	f.add(event{kind: "dtls", id: id, dtls: bytes.Clone(b)})
	return nil
}
func (f *fakeTunnel) SendEndpointDisconnect(id uuid.UUID) error {
	f.add(event{kind: "disconnect", id: id})
	return nil
}
func (f *fakeTunnel) SendMediaKeys(_ context.Context, mk *tunnel.MediaKeys) error {
	f.add(event{kind: "keys", id: mk.AssociationID})
	return nil
}
func (f *fakeTunnel) add(e event) {
	f.mu.Lock()
	f.sent = append(f.sent, e)
	f.mu.Unlock()
}
func (f *fakeTunnel) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.sent {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// record builds a DTLS 1.2 record.
func record(ct byte, epoch uint16, body []byte) []byte {
	b := []byte{ct, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, byte(len(body) >> 8), byte(len(body))}
	return append(b, body...)
}

const contentAlert = 21

// simClient is an endpoint of our DTLS stack talking to a KD through a
// fakeTunnel: the test steps it with drive.
type simClient struct {
	t    *testing.T
	kd   *KeyDistributor
	ft   *fakeTunnel
	id   uuid.UUID
	c    *dtls.Conn
	seen int // fakeTunnel events already looked at
	evs  []dtls.Event
	// filter may rewrite or drop (nil) what the client sends.
	filter func([]byte) []byte
}

func newSimClient(t *testing.T, kd *KeyDistributor, ft *fakeTunnel, cfg *dtls.Config) *simClient {
	t.Helper()
	cfg.RetransmitTimeout = 50 * time.Millisecond
	c, err := dtls.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &simClient{t: t, kd: kd, ft: ft, id: uuid.New(), c: c}
}

// simClientConfig is a client with a fresh certificate offering profiles.
func simClientConfig(t *testing.T, tlsID string, profiles ...uint16) (*dtls.Config, Fingerprint) {
	t.Helper()
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &dtls.Config{Certificate: cert, SRTPProfiles: profiles, VerifyPeer: func([][]byte) error { return nil }}
	if tlsID != "" {
		cfg.ExternalSessionID = []byte(tlsID)
	}
	return cfg, CertFingerprint(cert)
}

// drive runs the client until it is established or ended, or timeout.
func (s *simClient) drive(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	if err := s.c.Start(time.Now()); err != nil {
		s.t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		for _, d := range s.c.Datagrams() {
			if s.filter != nil {
				if d = s.filter(d); d == nil {
					continue
				}
			}
			s.kd.handleTunneledDtls(s.ft, s.id, d)
		}
		s.evs = append(s.evs, s.c.Events()...)
		if s.c.Err() != nil || s.c.Established() {
			return
		}
		s.ft.mu.Lock()
		var in [][]byte
		for ; s.seen < len(s.ft.sent); s.seen++ {
			if e := s.ft.sent[s.seen]; e.id == s.id && e.kind == "dtls" {
				in = append(in, e.dtls)
			}
		}
		s.ft.mu.Unlock()
		now := time.Now()
		for _, d := range in {
			_ = s.c.HandleDatagram(now, d)
		}
		_ = s.c.HandleTimeout(now)
		if len(in) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// alertReceived returns the alert that ended the client, 0 if none.
func (s *simClient) alertReceived() uint8 {
	var ae *dtls.AlertError
	if errors.As(s.c.Err(), &ae) && ae.Remote {
		return ae.Description
	}
	return 0
}

func newTestKD(t *testing.T, reg *Registry) (*KeyDistributor, *prometheus.Registry) {
	t.Helper()
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pr := prometheus.NewRegistry()
	kd, err := New(Config{Certificate: cert, Registry: reg, Logger: discardLogger(), Metrics: pr, MaxPending: 8,
		HandshakeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kd.Close() })
	return kd, pr
}

// TestBadInput: datagrams that cannot start an association leave no
// state; ClientHellos the registry or the profiles refuse end with the
// right alert and EndpointDisconnect, without MediaKeys.
func TestBadInput(t *testing.T) {
	t.Run("no association", func(t *testing.T) {
		reg := NewRegistry()
		for _, tc := range []struct {
			name string
			d    []byte
		}{
			{"garbage", bytes.Repeat([]byte{0xff}, 100)},
			{"empty", nil},
			{"not a client hello", record(contentHandshake, 0, append([]byte{2}, make([]byte, 40)...))},
			{"epoch 1 record", record(contentHandshake, 1, append([]byte{1}, make([]byte, 40)...))},
			{"alert", record(contentAlert, 0, []byte{2, 40})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				kd, _ := newTestKD(t, reg)
				ft := &fakeTunnel{id: "t1", peer: "md1"}
				kd.tunnelUp(ft)
				kd.handleTunneledDtls(ft, uuid.New(), tc.d)
				if got := counterValue(kd.m.drops.WithLabelValues(reasonUnknownAssociation)); got != 1 {
					t.Fatalf("drop counter = %v", got)
				}
				if kd.NumAssociations() != 0 || len(ft.sent) != 0 {
					t.Fatalf("state or answer: %d associations, %d messages", kd.NumAssociations(), len(ft.sent))
				}
			})
		}
	})
	t.Run("malformed ClientHello: answered statelessly or not at all", func(t *testing.T) {
		reg := NewRegistry()
		kd, _ := newTestKD(t, reg)
		ft := &fakeTunnel{id: "t1", peer: "md1"}
		kd.tunnelUp(ft)
		cfg, _ := simClientConfig(t, NewTLSID(), 7)
		sc := newSimClient(t, kd, ft, cfg)
		_ = sc.c.Start(time.Now())
		ch := sc.c.Datagrams()[0]
		for _, d := range [][]byte{ch[:30], append(bytes.Clone(ch[:len(ch)-1]), ch[len(ch)-1]^1)} {
			kd.handleTunneledDtls(ft, uuid.New(), d)
		}
		waitNoAssociations(t, kd)
		if ft.count("keys") != 0 || ft.count("disconnect") != 0 {
			t.Fatalf("keys %d disconnects %d", ft.count("keys"), ft.count("disconnect"))
		}
	})
	known := NewTLSID()
	legacyFree := NewRegistry()
	knownCfg, knownFP := simClientConfig(t, known, 7)
	_, _ = legacyFree.AddEndpoint("c", Endpoint{TLSID: known, Fingerprint: knownFP})
	for _, tc := range []struct {
		name   string
		cfg    func() *dtls.Config
		reason string
		alert  uint8
	}{
		{"unknown tls-id", func() *dtls.Config { c, _ := simClientConfig(t, NewTLSID(), 7); return c }, reasonUnknownTLSID, dtls.AlertAccessDenied},
		{"no tls-id, no legacy conference", func() *dtls.Config { c, _ := simClientConfig(t, "", 7); return c }, reasonMissingTLSID, dtls.AlertAccessDenied},
		{"no common profile", func() *dtls.Config { c, _ := simClientConfig(t, known, 1); return c }, reasonNoCommonProfile, dtls.AlertHandshakeFailure},
		{"right tls-id, wrong certificate", func() *dtls.Config { c, _ := simClientConfig(t, known, 7); return c }, reasonFingerprint, dtls.AlertBadCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kd, _ := newTestKD(t, legacyFree)
			ft := &fakeTunnel{id: "t1", peer: "md1"}
			kd.tunnelUp(ft)
			sc := newSimClient(t, kd, ft, tc.cfg())
			sc.drive(5 * time.Second)
			if got := sc.alertReceived(); got != tc.alert {
				t.Fatalf("client ended with %v, want alert %d", sc.c.Err(), tc.alert)
			}
			waitNoAssociations(t, kd)
			if ft.count("keys") != 0 || ft.count("disconnect") != 1 {
				t.Fatalf("keys %d disconnects %d", ft.count("keys"), ft.count("disconnect"))
			}
			if got := counterValue(kd.m.handshakes.WithLabelValues(tc.reason)); got != 1 {
				t.Fatalf("handshakes{result=%s} = %v", tc.reason, got)
			}
		})
	}
	t.Run("fragmented, duplicated, reordered: accepted", func(t *testing.T) {
		kd, _ := newTestKD(t, legacyFree)
		ft := &fakeTunnel{id: "t1", peer: "md1"}
		kd.tunnelUp(ft)
		cfg := *knownCfg
		cfg.MTU = dtls.MinMTU
		sc := newSimClient(t, kd, ft, &cfg)
		var held []byte
		sc.filter = func(d []byte) []byte {
			// Each datagram is delayed until the next one, which then
			// arrives first; every datagram arrives twice.
			prev := held
			held = d
			if prev != nil {
				sc.kd.handleTunneledDtls(sc.ft, sc.id, d)
				return prev
			}
			return nil
		}
		sc.drive(5 * time.Second)
		if !sc.c.Established() {
			t.Fatalf("client: %v", sc.c.Err())
		}
		if ft.count("keys") != 1 {
			t.Fatalf("MediaKeys sent %d times", ft.count("keys"))
		}
	})
}

// TestClientHelloFlood: ClientHellos without cookies, for unknown
// conferences, cost a HelloVerifyRequest each and leave no state; the
// limit of pending (fragmented) ClientHellos holds.
func TestClientHelloFlood(t *testing.T) {
	reg := NewRegistry()
	kd, _ := newTestKD(t, reg)
	ft := &fakeTunnel{id: "t1", peer: "md1"}
	kd.tunnelUp(ft)
	before := runtime.NumGoroutine()
	cfg, _ := simClientConfig(t, NewTLSID(), 7)
	c, _ := dtls.NewClient(cfg)
	_ = c.Start(time.Now())
	ch := c.Datagrams()[0]
	// Faster than the workers: each is answered, or refused at the
	// pending limit (8) while the others are processed.
	for range 1000 {
		kd.handleTunneledDtls(ft, uuid.New(), ch)
	}
	waitNoAssociations(t, kd)
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Fatalf("goroutines %d -> %d", before, g)
	}
	hvr, refused := counterValue(kd.m.helloVerify), counterValue(kd.m.drops.WithLabelValues(reasonLimitPending))
	if hvr+refused != 1000 || float64(ft.count("dtls")) != hvr || hvr < 8 {
		t.Fatalf("%v HelloVerifyRequests (%d sent) and %v refused for 1000 ClientHellos", hvr, ft.count("dtls"), refused)
	}
	// At the pace of the workers, every one is answered: a
	// HelloVerifyRequest holds no pending slot.
	for i := range 200 {
		kd.handleTunneledDtls(ft, uuid.New(), ch)
		for kd.NumAssociations() != 0 {
			time.Sleep(100 * time.Microsecond)
		}
		if got := counterValue(kd.m.helloVerify); got != hvr+float64(i+1) {
			t.Fatalf("ClientHello %d: %v stateless answers, want %v", i, got, hvr+float64(i+1))
		}
	}
	kd.m.drops.Reset()
	// Fragment floods: first fragments only, bounded by MaxPending (8).
	frag := fragment(ch, 30)
	for range 100 {
		kd.handleTunneledDtls(ft, uuid.New(), frag)
	}
	if n := kd.NumAssociations(); n != 8 {
		t.Fatalf("%d pending associations, want the limit 8", n)
	}
	if got := counterValue(kd.m.drops.WithLabelValues(reasonLimitPending)); got != 92 {
		t.Fatalf("limit drops = %v", got)
	}
	waitNoAssociations(t, kd) // the janitor ends them at the handshake timeout
}

// fragment returns the first fragment (n octets of body) of the
// single-record, single-message datagram d.
func fragment(d []byte, n int) []byte {
	h := bytes.Clone(d[13 : 13+12])
	h[6], h[7], h[8] = 0, 0, 0
	h[9], h[10], h[11] = 0, byte(n>>8), byte(n)
	r := bytes.Clone(d[:13])
	r[11], r[12] = byte((12+n)>>8), byte(12+n)
	return append(append(r, h...), d[25:25+n]...)
}

// Another MD cannot reach an association by guessing its id.
func TestAssociationIsolation(t *testing.T) {
	reg := NewRegistry()
	kd, _ := newTestKD(t, reg)
	a, b := &fakeTunnel{id: "t1", peer: "md1"}, &fakeTunnel{id: "t2", peer: "md2"}
	kd.tunnelUp(a)
	kd.tunnelUp(b)
	cfg, _ := simClientConfig(t, NewTLSID(), 7)
	c, _ := dtls.NewClient(cfg)
	_ = c.Start(time.Now())
	id := uuid.New()
	kd.handleTunneledDtls(a, id, fragment(c.Datagrams()[0], 30)) // pending: reassembling
	kd.handleEndpointDisconnect(b, id)
	time.Sleep(20 * time.Millisecond)
	if kd.NumAssociations() != 1 {
		t.Fatal("another MD ended the association")
	}
	kd.handleEndpointDisconnect(a, id)
	waitNoAssociations(t, kd)
}

func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		// Leak check: every goroutine of the KD, the tunnel and pion ends.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > before+2 {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			os.Stderr.Write(buf[:n])
			os.Stderr.WriteString("goroutine leak\n")
			code = 1
		}
	}
	os.Exit(code)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
