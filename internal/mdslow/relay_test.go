package mdslow

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/tunnel"
)

type fakeTunnel struct {
	mu    sync.Mutex
	dtls  map[uuid.UUID]int
	disc  []uuid.UUID
	order []uuid.UUID
}

func (f *fakeTunnel) SendTunneledDtls(id uuid.UUID, _ []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dtls[id] == 0 {
		f.order = append(f.order, id)
	}
	f.dtls[id]++
	return nil
}

func (f *fakeTunnel) SendEndpointDisconnect(id uuid.UUID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disc = append(f.disc, id)
	return nil
}

type fakeSender struct {
	mu   sync.Mutex
	sent []netip.AddrPort
}

func (f *fakeSender) SendSlow(_ uint16, _ []byte, dst netip.AddrPort) error {
	f.mu.Lock()
	f.sent = append(f.sent, dst)
	f.mu.Unlock()
	return nil
}

// fakeNeighbours records Resolve and Forget calls.
type fakeNeighbours struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeNeighbours) Resolve(a netip.Addr) {
	f.mu.Lock()
	f.calls = append(f.calls, "resolve "+a.String())
	f.mu.Unlock()
}
func (f *fakeNeighbours) Forget(a netip.Addr) {
	f.mu.Lock()
	f.calls = append(f.calls, "forget "+a.String())
	f.mu.Unlock()
}

func (f *fakeNeighbours) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

type oneConf struct {
	byTLS map[string]keytable.ConferenceID
}

func (o oneConf) Conference(tlsID string, _ netip.AddrPort) keytable.ConferenceID {
	if c, ok := o.byTLS[tlsID]; ok {
		return c
	}
	return 1
}

// clientHello builds a one-record epoch-0 ClientHello with
// external_session_id tlsID.
func clientHello(t *testing.T, tlsID string) []byte {
	t.Helper()
	data, err := dtlsmsg.AppendExternalSessionID(nil, []byte(tlsID))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := dtlsmsg.AppendExtension(nil, dtlsmsg.ExtensionExternalSessionID, data)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	body = append(body, 0xFE, 0xFD)
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0)                   // cookie
	body = append(body, 0, 2, 0xC0, 0x2B)    // cipher suites
	body = append(body, 1, 0)                // compression
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)
	hs := []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	hs[1], hs[2], hs[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	hs[9], hs[10], hs[11] = hs[1], hs[2], hs[3]
	hs = append(hs, body...)
	rec := []byte{22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(rec[11:], uint16(len(hs)))
	return append(rec, hs...)
}

func alert(level, desc byte) []byte {
	return []byte{21, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, level, desc}
}

type env struct {
	r     *Relay
	tun   *fakeTunnel
	snd   *fakeSender
	nb    *fakeNeighbours
	table *keytable.Table
	slow  chan dataplane.SlowPacket
	now   *time.Time
	mu    *sync.Mutex
}

func newEnv(t *testing.T, lim Limits) *env {
	t.Helper()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	table, err := keytable.New(keytable.Config{MaxAssociations: 16, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{tun: &fakeTunnel{dtls: map[uuid.UUID]int{}}, snd: &fakeSender{}, nb: &fakeNeighbours{}, table: table,
		slow: make(chan dataplane.SlowPacket, 16), now: &now, mu: &mu}
	e.r, err = New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tunnel: e.tun, Sender: e.snd, Neighbours: e.nb, Table: table, Limits: lim, Now: clock,
		Membership: oneConf{byTLS: map[string]keytable.ConferenceID{"tls-id-mapped-to-conference-7": 7}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.r.Run(ctx, e.slow) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// sync waits until the relay processed everything queued before: the
// relay's select picks among ready channels at random, so a plain round
// trip through its control channel is no barrier; the control function
// drains the slow-path and event queues on the relay's own goroutine.
func (e *env) sync(t *testing.T) {
	t.Helper()
	err := e.r.do(context.Background(), func() {
		for len(e.slow) > 0 || len(e.r.events) > 0 {
			select {
			case p := <-e.slow:
				e.r.handlePacket(p)
			case ev := <-e.r.events:
				e.r.handleEvent(ev)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) send(t *testing.T, from string, b []byte) {
	t.Helper()
	e.slow <- dataplane.SlowPacket{Data: b, From: netip.MustParseAddrPort(from), To: netip.MustParseAddrPort("198.18.0.1:5004")}
	e.sync(t)
}

func keys(id uuid.UUID) *tunnel.MediaKeys {
	return &tunnel.MediaKeys{AssociationID: id, Profile: tunnel.ProfileAEADAES128GCM,
		ClientWriteMasterKey: make([]byte, 16), ServerWriteMasterKey: make([]byte, 16),
		ClientWriteMasterSalt: make([]byte, 12), ServerWriteMasterSalt: make([]byte, 12)}
}

func TestRelayLifecycle(t *testing.T) {
	e := newEnv(t, Limits{IdleTimeout: 5 * time.Second})
	ep := "198.18.0.11:4000"
	e.send(t, ep, clientHello(t, "tls-id-mapped-to-conference-7"))
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 || l[0].TLSID != "tls-id-mapped-to-conference-7" || l[0].State != "handshake" {
		t.Fatalf("associations %+v", l)
	}
	id := l[0].ID
	if id.Version() != 4 {
		t.Fatalf("association id %v is not a v4 UUID", id)
	}
	// DTLS from the KD goes back to the endpoint.
	e.r.HandleTunneledDtls(id, []byte{22, 0xFE, 0xFD})
	e.sync(t)
	if len(e.snd.sent) != 1 || e.snd.sent[0].String() != ep {
		t.Fatalf("sent %v", e.snd.sent)
	}
	// MediaKeys install the endpoint in the mapped conference.
	e.r.HandleMediaKeys(keys(id))
	e.sync(t)
	got, ok := e.table.Get(id)
	if !ok || got.Conference() != 7 || got.Addr().String() != ep {
		t.Fatalf("table entry %v %v", got, ok)
	}
	if s := e.r.Stats(); s.Associations != 1 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Idle: removed and EndpointDisconnect sent.
	e.mu.Lock()
	*e.now = e.now.Add(time.Minute)
	e.mu.Unlock()
	_ = e.r.do(context.Background(), e.r.housekeeping)
	if _, ok := e.table.Get(id); ok {
		t.Fatal("idle association still installed")
	}
	if len(e.tun.disc) != 1 || e.tun.disc[0] != id {
		t.Fatalf("disconnects %v", e.tun.disc)
	}
}

// TestRelayResolvesNextHops: the next hop of an endpoint is resolved when
// its keys are installed (so its first media packet finds the AF_XDP
// neighbour table warm), and forgotten only when the last association from
// that IP address has ended.
func TestRelayResolvesNextHops(t *testing.T) {
	e := newEnv(t, Limits{})
	var ids []uuid.UUID
	for _, ep := range []string{"198.18.0.11:4000", "198.18.0.11:4002"} { // two endpoints behind one NAT address
		e.send(t, ep, clientHello(t, "tls-id-mapped-to-conference-7"))
		l, _ := e.r.Associations(context.Background())
		for _, a := range l {
			if a.Addr.String() == ep {
				ids = append(ids, a.ID)
			}
		}
	}
	if len(ids) != 2 {
		t.Fatalf("associations %v", ids)
	}
	if c := e.nb.take(); len(c) != 0 {
		t.Fatalf("next hop touched before keys: %v", c)
	}
	for _, id := range ids {
		e.r.HandleMediaKeys(keys(id))
	}
	e.sync(t)
	if c := e.nb.take(); len(c) != 2 || c[0] != "resolve 198.18.0.11" || c[1] != "resolve 198.18.0.11" {
		t.Fatalf("calls after install: %v", c)
	}
	e.r.HandleEndpointDisconnect(ids[0])
	e.sync(t)
	if c := e.nb.take(); len(c) != 0 {
		t.Fatalf("next hop forgotten while another association uses it: %v", c)
	}
	e.r.HandleEndpointDisconnect(ids[1])
	e.sync(t)
	if c := e.nb.take(); len(c) != 1 || c[0] != "forget 198.18.0.11" {
		t.Fatalf("calls after the last removal: %v", c)
	}
}

func TestRelayEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(e *env, id uuid.UUID)
		notify bool
	}{
		{"close_notify", func(e *env, _ uuid.UUID) { e.slow <- pkt(alert(1, 0)) }, true},
		{"fatal alert", func(e *env, _ uuid.UUID) { e.slow <- pkt(alert(2, 40)) }, true},
		{"encrypted alert", func(e *env, _ uuid.UUID) {
			a := alert(1, 0)
			a[4] = 1 // epoch 1
			e.slow <- pkt(a)
		}, true},
		{"KD disconnect", func(e *env, id uuid.UUID) { e.r.HandleEndpointDisconnect(id) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Limits{})
			e.send(t, "198.18.0.11:4000", clientHello(t, "some-tls-id-of-twenty-octets"))
			l, _ := e.r.Associations(context.Background())
			id := l[0].ID
			e.r.HandleMediaKeys(keys(id))
			e.sync(t)
			tc.end(e, id)
			e.sync(t)
			if _, ok := e.table.Get(id); ok {
				t.Fatal("still installed")
			}
			if got := len(e.tun.disc) == 1; got != tc.notify {
				t.Fatalf("disconnects %v, want notify=%v", e.tun.disc, tc.notify)
			}
		})
	}
}

func pkt(b []byte) dataplane.SlowPacket {
	return dataplane.SlowPacket{Data: b, From: netip.MustParseAddrPort("198.18.0.11:4000"), To: netip.MustParseAddrPort("198.18.0.1:5004")}
}

func TestRelayBounds(t *testing.T) {
	e := newEnv(t, Limits{MaxPending: 3, NewPerSecond: 1, NewBurst: 2, HandshakeTimeout: 2 * time.Second})
	// Not a ClientHello from an unknown address: dropped.
	e.send(t, "198.18.0.20:1", alert(1, 0))
	// Rate limit per source address: burst 2.
	for p := range 4 {
		e.send(t, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.21"), uint16(100+p)).String(), clientHello(t, "some-tls-id-of-twenty-octets"))
	}
	// MaxPending 3: one more from another source passes, the next does not.
	e.send(t, "198.18.0.22:1", clientHello(t, "some-tls-id-of-twenty-octets"))
	e.send(t, "198.18.0.23:1", clientHello(t, "some-tls-id-of-twenty-octets"))
	s := e.r.Stats()
	if s.DropNoAssociation != 1 || s.DropRateLimited != 2 || s.DropPendingMax != 1 || s.Pending != 3 {
		t.Fatalf("stats %+v", s)
	}
	// Handshake timeout ends the pending ones with EndpointDisconnect.
	e.mu.Lock()
	*e.now = e.now.Add(time.Minute)
	e.mu.Unlock()
	_ = e.r.do(context.Background(), e.r.housekeeping)
	if s := e.r.Stats(); s.Pending != 0 || s.HandshakeTimeouts != 3 || len(e.tun.disc) != 3 {
		t.Fatalf("after timeout: %+v disc=%d", s, len(e.tun.disc))
	}
}
