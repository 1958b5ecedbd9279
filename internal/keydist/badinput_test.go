package keydist

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// fakeTunnel records what the KD sends, in order.
type fakeTunnel struct {
	id, peer string
	mu       sync.Mutex
	sent     []event
}

func (f *fakeTunnel) ID() string   { return f.id }
func (f *fakeTunnel) Peer() string { return f.peer }
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

// clientHello builds a ClientHello handshake message (header + body).
func clientHello(t testing.TB, tlsID string, profiles []uint16) []byte {
	t.Helper()
	body := []byte{0xfe, 0xfd}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0)                   // cookie
	body = append(body, 0, 2, 0xc0, 0x2b)    // cipher suites
	body = append(body, 1, 0)                // compression
	var ext []byte
	if tlsID != "" {
		d, _ := dtlsmsg.AppendExternalSessionID(nil, []byte(tlsID))
		ext, _ = dtlsmsg.AppendExtension(ext, 56, d)
	}
	if profiles != nil {
		d, _ := dtlsmsg.AppendUseSRTP(nil, profiles, nil)
		ext, _ = dtlsmsg.AppendExtension(ext, 14, d)
	}
	body = append(body, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)
	n := len(body)
	h := []byte{1, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}
	return append(h, body...)
}

// fragments splits a handshake message into records of at most size body
// octets each.
func fragments(msg []byte, size int) [][]byte {
	body := msg[12:]
	var out [][]byte
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		h := bytes.Clone(msg[:12])
		h[6], h[7], h[8] = 0, byte(off>>8), byte(off)
		l := end - off
		h[9], h[10], h[11] = 0, byte(l>>8), byte(l)
		r := record(contentHandshake, 0, append(h, body[off:end]...))
		r[10] = byte(len(out) + 1) // distinct record sequence numbers, as a real endpoint sends
		out = append(out, r)
	}
	return out
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

func TestBadInput(t *testing.T) {
	reg := NewRegistry()
	known := NewTLSID()
	_, _ = reg.AddEndpoint("c", Endpoint{TLSID: known, Fingerprint: testFP(1)})
	ch := clientHello(t, known, []uint16{7})
	unknownCH := clientHello(t, NewTLSID(), []uint16{7})
	frags := fragments(ch, 40)
	for _, tc := range []struct {
		name        string
		datagrams   [][]byte
		dropReason  string
		disconnects int
		pion        bool // a DTLS server was started
	}{
		{"garbage", [][]byte{bytes.Repeat([]byte{0xff}, 100)}, reasonUnknownAssociation, 0, false},
		{"empty", [][]byte{{}}, reasonUnknownAssociation, 0, false},
		{"truncated record", [][]byte{record(contentHandshake, 0, ch)[:30]}, reasonBadClientHello, 1, false},
		{"not a client hello", [][]byte{record(contentHandshake, 0, append([]byte{2}, ch[1:]...))}, reasonUnknownAssociation, 0, false},
		{"epoch 1 record", [][]byte{record(contentHandshake, 1, ch)}, reasonUnknownAssociation, 0, false},
		{"alert", [][]byte{record(contentAlert, 0, []byte{2, 40})}, reasonUnknownAssociation, 0, false},
		{"unknown tls-id", [][]byte{record(contentHandshake, 0, unknownCH)}, "", 1, false},
		{"no tls-id, no legacy conference", [][]byte{record(contentHandshake, 0, clientHello(t, "", []uint16{7}))}, "", 1, false},
		{"no use_srtp", [][]byte{record(contentHandshake, 0, clientHello(t, known, nil))}, "", 1, false},
		{"no common profile", [][]byte{record(contentHandshake, 0, clientHello(t, known, []uint16{1}))}, "", 1, false},
		{"bad fragment overlap", [][]byte{frags[0], func() []byte {
			f := bytes.Clone(frags[0])
			f[len(f)-1] ^= 1
			return f
		}()}, reasonBadClientHello, 1, false},
		{"fragmented, replayed, reordered: accepted", append(append([][]byte{frags[2], frags[0]}, frags...), frags[1]), "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kd, pr := newTestKD(t, reg)
			ft := &fakeTunnel{id: "t1", peer: "md1"}
			kd.tunnelUp(ft)
			id := uuid.New()
			for _, d := range tc.datagrams {
				kd.handleTunneledDtls(ft, id, d)
			}
			if tc.dropReason != "" {
				if got := counterValue(kd.m.drops.WithLabelValues(tc.dropReason)); got < 1 {
					t.Fatalf("drop counter %s = %v", tc.dropReason, got)
				}
			}
			if got := ft.count("disconnect"); got != tc.disconnects {
				t.Fatalf("EndpointDisconnect sent %d times, want %d", got, tc.disconnects)
			}
			if got := ft.count("keys"); got != 0 {
				t.Fatal("MediaKeys sent")
			}
			if tc.pion {
				if kd.NumAssociations() != 1 {
					t.Fatal("no association for a valid ClientHello")
				}
				// The server answered (HelloVerifyRequest) through the tunnel;
				// the handshake then times out and the state goes away.
				waitNoAssociations(t, kd)
				if ft.count("dtls") == 0 || ft.count("disconnect") != 1 {
					t.Fatalf("dtls %d, disconnects %d", ft.count("dtls"), ft.count("disconnect"))
				}
				return
			}
			if kd.NumAssociations() != 0 {
				t.Fatalf("state left behind: %+v", kd.Associations())
			}
			_ = pr
		})
	}
}

// TestClientHelloFlood sends complete ClientHellos for unknown conferences:
// no DTLS server is started, no state remains, the limit of pending
// (fragmented) ClientHellos holds.
func TestClientHelloFlood(t *testing.T) {
	reg := NewRegistry()
	kd, _ := newTestKD(t, reg)
	ft := &fakeTunnel{id: "t1", peer: "md1"}
	kd.tunnelUp(ft)
	before := runtime.NumGoroutine()
	for range 1000 {
		kd.handleTunneledDtls(ft, uuid.New(), record(contentHandshake, 0, clientHello(t, NewTLSID(), []uint16{7})))
	}
	if n := kd.NumAssociations(); n != 0 {
		t.Fatalf("%d associations after a flood of unknown tls-ids", n)
	}
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Fatalf("goroutines %d -> %d: DTLS servers started for unknown tls-ids", before, g)
	}
	// Fragment floods: first fragments only, bounded by MaxPending (8).
	frag := fragments(clientHello(t, NewTLSID(), []uint16{7}), 30)[0]
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

// Another MD cannot reach an association by guessing its id.
func TestAssociationIsolation(t *testing.T) {
	reg := NewRegistry()
	known := NewTLSID()
	_, _ = reg.AddEndpoint("c", Endpoint{TLSID: known, Fingerprint: testFP(1)})
	kd, _ := newTestKD(t, reg)
	a, b := &fakeTunnel{id: "t1", peer: "md1"}, &fakeTunnel{id: "t2", peer: "md2"}
	kd.tunnelUp(a)
	kd.tunnelUp(b)
	id := uuid.New()
	kd.handleTunneledDtls(a, id, record(contentHandshake, 0, clientHello(t, known, []uint16{7})))
	kd.handleEndpointDisconnect(b, id)
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
