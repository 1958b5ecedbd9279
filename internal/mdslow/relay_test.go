package mdslow

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/slowpkt"
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
	data [][]byte
}

func (f *fakeSender) SendSlow(_ uint16, b []byte, dst netip.AddrPort) error {
	f.mu.Lock()
	f.sent = append(f.sent, dst)
	f.data = append(f.data, bytes.Clone(b))
	f.mu.Unlock()
	return nil
}

// last returns the last datagram sent and forgets everything sent.
func (f *fakeSender) take() (dst []netip.AddrPort, data [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dst, data = f.sent, f.data
	f.sent, f.data = nil, nil
	return dst, data
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

// oneConf places the tls-ids of byTLS in their conference and every other
// endpoint in conference 1 (single-conference mode).
type oneConf struct {
	byTLS map[string]keytable.ConferenceID
}

func (o oneConf) Place(tlsID string, _ netip.AddrPort, _ string) (keytable.ConferenceID, string, bool) {
	if c, ok := o.byTLS[tlsID]; ok {
		return c, "", true
	}
	return 1, "", true
}

// clientHello builds a one-record epoch-0 ClientHello with
// external_session_id tlsID, an all-zero random and no cookie.
func clientHello(t *testing.T, tlsID string) []byte {
	return clientHelloWith(t, tlsID, 0, [32]byte{}, nil)
}

// clientHelloWith builds a one-record epoch-0 ClientHello: message_seq and
// record sequence seq, random, cookie.
func clientHelloWith(t *testing.T, tlsID string, seq int, random [32]byte, cookie []byte) []byte {
	t.Helper()
	var ext []byte // no extension without a tls-id
	if tlsID != "" {
		data, err := dtlsmsg.AppendExternalSessionID(nil, []byte(tlsID))
		if err != nil {
			t.Fatal(err)
		}
		if ext, err = dtlsmsg.AppendExtension(nil, dtlsmsg.ExtensionExternalSessionID, data); err != nil {
			t.Fatal(err)
		}
	}
	var body []byte
	body = append(body, 0xFE, 0xFD)
	body = append(body, random[:]...)
	body = append(body, 0) // session id
	body = append(body, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xC0, 0x2B) // cipher suites
	body = append(body, 1, 0)             // compression
	body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
	body = append(body, ext...)
	hs := []byte{1, 0, 0, 0, 0, byte(seq), 0, 0, 0, 0, 0, 0}
	hs[1], hs[2], hs[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	hs[9], hs[10], hs[11] = hs[1], hs[2], hs[3]
	hs = append(hs, body...)
	rec := []byte{22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, byte(seq), 0, 0}
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
	slow  chan slowpkt.Packet
	now   *time.Time
	mu    *sync.Mutex
}

func newEnv(t *testing.T, lim Limits) *env {
	t.Helper()
	return newEnvWith(t, lim, oneConf{byTLS: map[string]keytable.ConferenceID{"tls-id-mapped-to-conference-7": 7}})
}

// newEnvWith is newEnv with memb as the Membership.
func newEnvWith(t *testing.T, lim Limits, memb Membership) *env {
	t.Helper()
	return newEnvCreds(t, lim, memb, nil)
}

// newEnvCreds is newEnvWith with ICE credentials.
func newEnvCreds(t *testing.T, lim Limits, memb Membership, creds Credentials) *env {
	t.Helper()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	table, err := keytable.New(keytable.Config{MaxAssociations: 16, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{tun: &fakeTunnel{dtls: map[uuid.UUID]int{}}, snd: &fakeSender{}, nb: &fakeNeighbours{}, table: table,
		slow: make(chan slowpkt.Packet, 16), now: &now, mu: &mu}
	e.r, err = New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tunnel: e.tun, Sender: e.snd, Neighbours: e.nb, Table: table, Limits: lim, Now: clock,
		Membership: memb, Credentials: creds})
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

// join runs the cookie exchange a DTLS client does: a ClientHello without
// cookie must get a HelloVerifyRequest back (and leave no state); the
// ClientHello repeating its cookie is sent next. random tells handshakes
// of one endpoint apart.
func (e *env) join(t *testing.T, from, tlsID string, random byte) {
	t.Helper()
	var r [32]byte
	r[0] = random
	before := e.r.Stats()
	e.snd.take()
	e.send(t, from, clientHelloWith(t, tlsID, 0, r, nil))
	dst, data := e.snd.take()
	after := e.r.Stats()
	if len(dst) != 1 || dst[0].String() != from || after.HelloVerify != before.HelloVerify+1 {
		t.Fatalf("cookie-less ClientHello from %s: sent %v, stats %+v", from, dst, after)
	}
	if after.Pending != before.Pending || after.Started != before.Started {
		t.Fatalf("cookie-less ClientHello left state: %+v", after)
	}
	cookie := hvrCookie(t, data[0])
	e.send(t, from, clientHelloWith(t, tlsID, 1, r, cookie))
}

// hvrCookie checks a HelloVerifyRequest datagram and returns its cookie.
func hvrCookie(t *testing.T, b []byte) []byte {
	t.Helper()
	rec, rest, err := dtlsmsg.NextRecord(b)
	if err != nil || len(rest) != 0 || rec.ContentType != dtlsmsg.ContentTypeHandshake || rec.Epoch != 0 || rec.Version != 0xFEFF {
		t.Fatalf("HelloVerifyRequest record %+v %v", rec, err)
	}
	h, body, rest, err := dtlsmsg.NextHandshake(rec.Fragment)
	if err != nil || len(rest) != 0 || h.Type != dtlsmsg.HandshakeTypeHelloVerifyRequest || h.FragmentLength != h.Length {
		t.Fatalf("HelloVerifyRequest message %+v %v", h, err)
	}
	if len(body) < 3 || body[0] != 0xFE || body[1] != 0xFF || int(body[2]) != len(body)-3 {
		t.Fatalf("HelloVerifyRequest body %x", body)
	}
	return body[3:]
}

func (e *env) send(t *testing.T, from string, b []byte) {
	t.Helper()
	e.slow <- slowpkt.Packet{Data: b, From: netip.MustParseAddrPort(from), To: netip.MustParseAddrPort("198.18.0.1:5004")}
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
	e.join(t, ep, "tls-id-mapped-to-conference-7", 1)
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
	if sent, _ := e.snd.take(); len(sent) != 1 || sent[0].String() != ep {
		t.Fatalf("sent %v", sent)
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
	// Its next hop is forgotten too (it was left behind before).
	if c := e.nb.take(); len(c) != 2 || c[1] != "forget 198.18.0.11" {
		t.Fatalf("next-hop calls %v", c)
	}
}

// TestRelayResolvesNextHops: the next hop of an endpoint is resolved when
// the first keys for its address are installed (so its first media packet finds the AF_XDP
// neighbour table warm), and forgotten only when the last association from
// that IP address has ended.
func TestRelayResolvesNextHops(t *testing.T) {
	e := newEnv(t, Limits{})
	var ids []uuid.UUID
	for _, ep := range []string{"198.18.0.11:4000", "198.18.0.11:4002"} { // two endpoints behind one NAT address
		e.join(t, ep, "tls-id-mapped-to-conference-7", 1)
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
	if c := e.nb.take(); len(c) != 1 || c[0] != "resolve 198.18.0.11" { // once per address
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

// established returns an env with one established association from ep.
func established(t *testing.T, ep string, lim ...Limits) (*env, uuid.UUID) {
	t.Helper()
	e := newEnv(t, append(lim, Limits{})[0])
	e.join(t, ep, "some-tls-id-of-twenty-octets", 1)
	l, _ := e.r.Associations(context.Background())
	if len(l) != 1 {
		t.Fatalf("associations %+v", l)
	}
	e.r.HandleMediaKeys(keys(l[0].ID))
	e.sync(t)
	if _, ok := e.table.Get(l[0].ID); !ok {
		t.Fatal("keys not installed")
	}
	e.snd.take()
	return e, l[0].ID
}

// TestRelayIgnoresUnauthenticated: nothing the MD cannot authenticate ends
// an established association. Alerts and protected records go to the KD
// (which can authenticate them); ClientHellos without a valid cookie get a
// HelloVerifyRequest; only the KD's EndpointDisconnect (or idleness) ends.
func TestRelayIgnoresUnauthenticated(t *testing.T) {
	const ep = "198.18.0.11:4000"
	epoch1 := func(ct byte, n int) []byte {
		b := []byte{ct, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, byte(n >> 8), byte(n)}
		for i := range n {
			b = append(b, byte(i*7+3))
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		b     []byte
		toKD  bool // forwarded to the KD
		reply bool // the MD answers (HelloVerifyRequest)
	}{
		{"plaintext close_notify", alert(1, 0), true, false},
		{"plaintext fatal alert", alert(2, 40), true, false},
		{"epoch-1 alert", epoch1(21, 26), true, false},
		{"epoch-1 random application data", epoch1(23, 100), true, false},
		{"epoch-1 random handshake", epoch1(22, 60), true, false},
		{"fresh ClientHello without cookie", clientHelloWith(t, "some-tls-id-of-twenty-octets", 0, [32]byte{9}, nil), false, true},
		{"ClientHello with a forged cookie", clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{9}, make([]byte, cookieLen)), false, true},
		{"ClientHello with a short cookie", clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{9}, []byte{1, 2, 3}), false, true},
		{"truncated datagram", clientHello(t, "some-tls-id-of-twenty-octets")[:13+12+20], true, false},
		{"ClientHello fragment ending before its cookie", shortHelloFragment(), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, id := established(t, ep)
			before := e.tun.dtls[id]
			for range 3 {
				e.send(t, ep, tc.b)
			}
			if _, ok := e.table.Get(id); !ok {
				t.Fatal("association removed")
			}
			if len(e.tun.disc) != 0 {
				t.Fatalf("EndpointDisconnect sent: %v", e.tun.disc)
			}
			if l, _ := e.r.Associations(context.Background()); len(l) != 1 || l[0].ID != id || l[0].State != "established" {
				t.Fatalf("associations %+v", l)
			}
			e.tun.mu.Lock()
			got := e.tun.dtls[id] - before
			e.tun.mu.Unlock()
			if (got == 3) != tc.toKD || (got != 0 && got != 3) {
				t.Fatalf("forwarded %d of 3 to the KD, want toKD=%v", got, tc.toKD)
			}
			if sent, _ := e.snd.take(); (len(sent) == 3) != tc.reply || (len(sent) != 0 && len(sent) != 3) {
				t.Fatalf("answers %v, want reply=%v", sent, tc.reply)
			}
		})
	}
	t.Run("KD disconnect ends it", func(t *testing.T) {
		e, id := established(t, ep)
		e.r.HandleEndpointDisconnect(id)
		e.sync(t)
		if _, ok := e.table.Get(id); ok {
			t.Fatal("still installed")
		}
		if len(e.tun.disc) != 0 {
			t.Fatalf("EndpointDisconnect echoed to the KD: %v", e.tun.disc)
		}
	})
}

// TestRelayRestartedEndpoint: a new handshake from an established 5-tuple
// runs as a successor association; the established one keeps its keys
// until the successor's MediaKeys arrive, and survives a successor that
// never completes.
func TestRelayRestartedEndpoint(t *testing.T) {
	const ep = "198.18.0.11:4000"
	succ := func(t *testing.T, e *env, old uuid.UUID) uuid.UUID {
		t.Helper()
		e.join(t, ep, "some-tls-id-of-twenty-octets", 2)
		l, _ := e.r.Associations(context.Background())
		if len(l) != 2 {
			t.Fatalf("associations %+v", l)
		}
		for _, a := range l {
			if a.ID != old {
				if a.State != "handshake" {
					t.Fatalf("successor %+v", a)
				}
				return a.ID
			}
		}
		t.Fatal("no successor")
		return uuid.Nil
	}
	t.Run("completes", func(t *testing.T) {
		e, old := established(t, ep)
		s := succ(t, e, old)
		if _, ok := e.table.Get(old); !ok {
			t.Fatal("old association removed before the successor has keys")
		}
		// The KD's flight for the successor reaches the endpoint.
		e.r.HandleTunneledDtls(s, []byte{22, 0xFE, 0xFD})
		e.sync(t)
		if sent, _ := e.snd.take(); len(sent) != 1 || sent[0].String() != ep {
			t.Fatalf("sent %v", sent)
		}
		// Plaintext handshake records go to the successor only, protected
		// ones to both.
		e.tun.mu.Lock()
		oldN, sN := e.tun.dtls[old], e.tun.dtls[s]
		e.tun.mu.Unlock()
		e.send(t, ep, []byte{22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0})
		e.send(t, ep, []byte{22, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0})
		e.tun.mu.Lock()
		dOld, dS := e.tun.dtls[old]-oldN, e.tun.dtls[s]-sN
		e.tun.mu.Unlock()
		if dOld != 1 || dS != 2 {
			t.Fatalf("routed old=%d successor=%d, want 1 and 2", dOld, dS)
		}
		e.r.HandleMediaKeys(keys(s))
		e.sync(t)
		if _, ok := e.table.Get(old); ok {
			t.Fatal("old association still installed")
		}
		if got, ok := e.table.Get(s); !ok || got.Addr().String() != ep {
			t.Fatal("successor not installed at the endpoint's address")
		}
		if len(e.tun.disc) != 1 || e.tun.disc[0] != old {
			t.Fatalf("disconnects %v, want the old association's", e.tun.disc)
		}
		if st := e.r.Stats(); st.Replaced != 1 || st.Associations != 1 || st.Pending != 0 {
			t.Fatalf("stats %+v", st)
		}
		// Later datagrams go to the successor.
		e.send(t, ep, alert(1, 0))
		e.tun.mu.Lock()
		defer e.tun.mu.Unlock()
		if e.tun.dtls[s]-sN != 3 {
			t.Fatalf("successor got %d", e.tun.dtls[s]-sN)
		}
	})
	t.Run("never completes", func(t *testing.T) {
		e, old := established(t, ep, Limits{HandshakeTimeout: 5 * time.Second, IdleTimeout: time.Hour})
		s := succ(t, e, old)
		e.mu.Lock()
		*e.now = e.now.Add(6 * time.Second)
		e.mu.Unlock()
		_ = e.r.do(context.Background(), func() { e.r.housekeeping() })
		if l, _ := e.r.Associations(context.Background()); len(l) != 1 || l[0].ID != old {
			t.Fatalf("associations %+v", l)
		}
		if len(e.tun.disc) != 1 || e.tun.disc[0] != s {
			t.Fatalf("disconnects %v, want the successor's", e.tun.disc)
		}
		// The established one still gets its datagrams.
		e.send(t, ep, alert(1, 0))
		if e.tun.dtls[old] < 2 {
			t.Fatalf("old association got %d datagrams", e.tun.dtls[old])
		}
	})
	t.Run("late retransmission of the established ClientHello", func(t *testing.T) {
		e, old := established(t, ep)
		e.join(t, ep, "some-tls-id-of-twenty-octets", 1) // the random of established()
		if l, _ := e.r.Associations(context.Background()); len(l) != 1 || l[0].ID != old {
			t.Fatalf("associations %+v", l)
		}
	})
	t.Run("KD refuses the successor", func(t *testing.T) {
		e, old := established(t, ep)
		s := succ(t, e, old)
		e.r.HandleEndpointDisconnect(s)
		e.sync(t)
		if _, ok := e.table.Get(old); !ok {
			t.Fatal("old association removed")
		}
		if l, _ := e.r.Associations(context.Background()); len(l) != 1 || l[0].ID != old {
			t.Fatalf("associations %+v", l)
		}
	})
}

// shortHelloFragment is a well-formed record holding the first 20 octets of
// a 200-octet ClientHello: too short to show a cookie.
func shortHelloFragment() []byte {
	hs := []byte{1, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 20}
	hs = append(hs, 0xFE, 0xFD)
	hs = append(hs, make([]byte, 18)...)
	rec := []byte{22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs))}
	return append(rec, hs...)
}

func TestRelayBounds(t *testing.T) {
	e := newEnv(t, Limits{MaxPending: 3, NewPerSecond: 1, NewBurst: 2, HandshakeTimeout: 2 * time.Second})
	// Not a ClientHello from an unknown address: dropped.
	e.send(t, "198.18.0.20:1", alert(1, 0))
	// Rate limit per source address: burst 2 (the third and fourth are
	// refused after their cookie exchange).
	for p := range 4 {
		from := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.21"), uint16(100+p)).String()
		e.join(t, from, "some-tls-id-of-twenty-octets", byte(p))
	}
	s := e.r.Stats()
	if s.DropNoAssociation != 1 || s.DropRateLimited != 2 || s.Pending != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Handshake timeout ends the pending ones with EndpointDisconnect.
	e.mu.Lock()
	*e.now = e.now.Add(time.Minute)
	e.mu.Unlock()
	_ = e.r.do(context.Background(), e.r.housekeeping)
	if s := e.r.Stats(); s.Pending != 0 || s.HandshakeTimeouts != 2 || len(e.tun.disc) != 2 {
		t.Fatalf("after timeout: %+v disc=%d", s, len(e.tun.disc))
	}
}

// TestRelayPendingFairness: pending associations are bounded per source
// prefix and in total, and at either bound the prefix holding the most
// pays: a flood from a few prefixes cannot keep another prefix out.
func TestRelayPendingFairness(t *testing.T) {
	e := newEnv(t, Limits{MaxPending: 8, MaxPendingPerPrefix: 4, NewPerSecond: -1})
	pending := func() map[string]int {
		l, _ := e.r.Associations(context.Background())
		m := map[string]int{}
		for _, a := range l {
			if a.State == "handshake" {
				m[slowpkt.SourcePrefix(a.Addr.Addr()).String()]++
			}
		}
		return m
	}
	// One prefix floods: it never holds more than 4.
	for i := range 10 {
		e.join(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(10 + i)}), 1000).String(), "some-tls-id-of-twenty-octets", byte(i))
	}
	if p := pending(); p["198.18.1.0/24"] != 4 || e.r.Stats().Evicted != 6 {
		t.Fatalf("pending %v stats %+v", p, e.r.Stats())
	}
	// A second prefix fills the rest.
	for i := range 4 {
		e.join(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + i)}), 1000).String(), "some-tls-id-of-twenty-octets", byte(i))
	}
	// The total is reached: a newcomer from a third prefix still gets in,
	// at the cost of a larger prefix.
	e.join(t, "198.18.3.10:1000", "some-tls-id-of-twenty-octets", 1)
	p := pending()
	if p["198.18.3.0/24"] != 1 || p["198.18.1.0/24"]+p["198.18.2.0/24"] != 7 {
		t.Fatalf("pending %v", p)
	}
	if s := e.r.Stats(); s.Pending != 8 || s.DropPendingMax != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Flooding prefixes evict each other, never the small one.
	for i := range 20 {
		e.join(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + i)}), 1000).String(), "some-tls-id-of-twenty-octets", byte(i))
	}
	if p := pending(); p["198.18.3.0/24"] != 1 {
		t.Fatalf("newcomer evicted: %v", p)
	}
	// IPv6 prefixes are /64s.
	if got := slowpkt.SourcePrefix(netip.MustParseAddr("2001:db8:0:7:1:2:3:4")).String(); got != "2001:db8::/48" {
		t.Fatalf("prefix %s", got)
	}
	if got := slowpkt.SourcePrefix(netip.MustParseAddr("::ffff:198.18.5.6")).String(); got != "198.18.5.0/24" {
		t.Fatalf("prefix %s", got)
	}
}

// TestRelaySTUNBudget: STUN requests are answered within a per-source
// budget only.
func TestRelaySTUNBudget(t *testing.T) {
	e := newEnv(t, Limits{})
	e.r.cfg.Credentials = creds{"mdufrag": "md-password-0123456789"}
	bad := request("mdufrag:epufrag", "not-the-password-00000")
	good := request("mdufrag:epufrag", "md-password-0123456789")
	// Spoofed junk from the endpoint's address: answered within the
	// source's budget only.
	for range stunBurst + 10 {
		e.send(t, "198.18.0.30:6000", bad)
	}
	st := e.r.Stats()
	if st.STUNRateLimited != 10 || st.STUNRejected != stunBurst {
		t.Fatalf("stats %+v", st)
	}
	// The endpoint's own checks are still answered: they authenticate.
	for range stunBurst + 10 {
		e.send(t, "198.18.0.30:5000", good)
	}
	if st := e.r.Stats(); st.STUNAnswered != stunBurst+10 || st.STUNRateLimited != 10 {
		t.Fatalf("authenticated checks refused: %+v", st)
	}
	// Another source has its own budget.
	e.send(t, "198.18.0.31:5000", bad)
	if st := e.r.Stats(); st.STUNRateLimited != 10 || st.STUNRejected != stunBurst+1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayTriage: the priority lane gets what comes from a 5-tuple with an
// association and ClientHellos carrying a cookie; a flood of cookie-less
// ClientHellos and STUN from unknown sources does not.
func TestRelayTriage(t *testing.T) {
	const ep = "198.18.0.11:4000"
	e, _ := established(t, ep)
	known, unknown := netip.MustParseAddrPort(ep), netip.MustParseAddrPort("198.19.3.4:5000")
	stun := request("mdufrag:epufrag", "md-password-0123456789")
	for _, tc := range []struct {
		name string
		b    []byte
		from netip.AddrPort
		want bool
	}{
		{"alert from an association", alert(2, 40), known, true},
		{"STUN consent check from an association", stun, known, true},
		{"cookie-less ClientHello from an association", clientHello(t, "some-tls-id-of-twenty-octets"), known, true},
		{"cookie-less ClientHello from elsewhere", clientHello(t, "some-tls-id-of-twenty-octets"), unknown, false},
		{"ClientHello with a forged cookie from elsewhere", clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{1}, []byte{1, 2, 3}), unknown, false},
		{"ClientHello with another source's cookie", clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{1}, cookieFor(t, e, known, 1)), unknown, false},
		{"ClientHello with its own cookie from elsewhere", clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{1}, cookieFor(t, e, unknown, 1)), unknown, true},
		{"STUN from elsewhere", stun, unknown, false},
		{"alert from elsewhere", alert(2, 40), unknown, false},
		{"empty", nil, unknown, false},
	} {
		if got := e.r.Triage(tc.b, tc.from, mdAddr); got != tc.want {
			t.Errorf("%s: Triage = %v, want %v", tc.name, got, tc.want)
		}
	}
	junk, forged := alert(2, 40), clientHelloWith(t, "some-tls-id-of-twenty-octets", 1, [32]byte{1}, make([]byte, cookieLen))
	for _, b := range [][]byte{junk, forged} {
		if n := testing.AllocsPerRun(100, func() { e.r.Triage(b, unknown, mdAddr) }); n != 0 {
			t.Errorf("Triage allocates %v times", n)
		}
	}
	// Once the association ends, its 5-tuple is no longer known.
	l, _ := e.r.Associations(context.Background())
	e.r.HandleEndpointDisconnect(l[0].ID)
	e.sync(t)
	if e.r.Triage(alert(2, 40), known, mdAddr) {
		t.Error("an ended association's 5-tuple still has priority")
	}
}

// mdAddr is the MD's media address in these tests.
var mdAddr = netip.MustParseAddrPort("198.18.0.1:5004")

// cookieFor runs the first half of the cookie exchange from from and
// returns the cookie the MD answered with.
func cookieFor(t *testing.T, e *env, from netip.AddrPort, random byte) []byte {
	t.Helper()
	e.snd.take()
	e.send(t, from.String(), clientHelloWith(t, "some-tls-id-of-twenty-octets", 0, [32]byte{random}, nil))
	_, data := e.snd.take()
	if len(data) != 1 {
		t.Fatalf("no HelloVerifyRequest to %s", from)
	}
	return hvrCookie(t, data[0])
}

// TestRelayAssociationBudget: an association (here a pending one, which an
// outsider gets by completing the cookie exchange from its own address)
// relays at most its budget of datagrams to the KD; the others' are not
// affected.
func TestRelayAssociationBudget(t *testing.T) {
	e := newEnv(t, Limits{})
	e.join(t, "198.18.7.1:4000", "some-tls-id-of-twenty-octets", 1)
	e.join(t, "198.18.7.2:4000", "some-tls-id-of-twenty-octets", 2)
	l, _ := e.r.Associations(context.Background())
	if len(l) != 2 {
		t.Fatalf("associations %+v", l)
	}
	junk := []byte{23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4}
	for range 2 * toKDBurst {
		e.send(t, "198.18.7.1:4000", junk)
	}
	st := e.r.Stats()
	if st.DropAssocBudget != toKDBurst+1 { // the ClientHello took one token
		t.Fatalf("stats %+v", st)
	}
	before := st.DTLSToKD
	e.send(t, "198.18.7.2:4000", junk)
	if st := e.r.Stats(); st.DTLSToKD != before+1 {
		t.Fatalf("another association's datagram not relayed: %+v", st)
	}
}

// TestRelayFragmentedSuccessorHello: an established endpoint that restarts
// its DTLS with a ClientHello in two fragments gets a successor whose
// tls-id (and so conference) comes from the whole ClientHello.
func TestRelayFragmentedSuccessorHello(t *testing.T) {
	const ep = "198.18.0.11:4000"
	e, old := established(t, ep)
	var r [32]byte
	r[0] = 2
	cookie := cookieFor(t, e, netip.MustParseAddrPort(ep), 2)
	whole := clientHelloWith(t, "tls-id-mapped-to-conference-7", 1, r, cookie)
	body := whole[13+12:]
	cut := 2 + 32 + 1 + 1 + len(cookie) + 4 // past the cookie: the first fragment is admitted
	frag := func(off, n int) []byte {
		hs := []byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		hs[1], hs[2], hs[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		hs[6], hs[7], hs[8] = byte(off>>16), byte(off>>8), byte(off)
		hs[9], hs[10], hs[11] = byte(n>>16), byte(n>>8), byte(n)
		hs = append(hs, body[off:off+n]...)
		rec := []byte{22, 0xFE, 0xFF, 0, 0, 0, 0, 0, 0, 0, byte(1 + off), byte(len(hs) >> 8), byte(len(hs))}
		return append(rec, hs...)
	}
	e.send(t, ep, frag(0, cut))
	e.send(t, ep, frag(cut, len(body)-cut))
	l, _ := e.r.Associations(context.Background())
	var succ *AssociationInfo
	for i := range l {
		if l[i].ID != old {
			succ = &l[i]
		}
	}
	if succ == nil || succ.TLSID != "tls-id-mapped-to-conference-7" {
		t.Fatalf("successor %+v", succ)
	}
	e.r.HandleMediaKeys(keys(succ.ID))
	e.sync(t)
	if got, ok := e.table.Get(succ.ID); !ok || got.Conference() != 7 {
		t.Fatalf("successor installed in %v (ok %v), want conference 7", got, ok)
	}
}

// fastTable is a key table that only counts, to measure the relay alone.
type fastTable struct{ n int }

func (f *fastTable) Install(context.Context, keytable.Association) (*keytable.Endpoint, error) {
	f.n++
	return nil, nil
}
func (f *fastTable) Remove(context.Context, uuid.UUID) error { f.n--; return nil }
func (f *fastTable) SetConference(context.Context, uuid.UUID, keytable.ConferenceID) (*keytable.Endpoint, error) {
	return nil, nil
}
func (f *fastTable) ExpireIdle(context.Context, time.Duration) ([]uuid.UUID, error) { return nil, nil }
func (f *fastTable) SetAddr(context.Context, uuid.UUID, netip.AddrPort) (*keytable.Endpoint, error) {
	return nil, nil
}
func (f *fastTable) SetConsent(context.Context, uuid.UUID, bool) (*keytable.Endpoint, error) {
	return nil, nil
}

// TestShutdown65536: stopping the relay with 65,536 established
// associations sends one EndpointDisconnect each and takes O(n): measured,
// and bounded at 5 s (it used to remove them one by one from the key table
// and scan every association for each, minutes at this size).
func TestShutdown65536(t *testing.T) {
	const n = 65536
	tun := &fakeTunnel{dtls: map[uuid.UUID]int{}}
	r, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tunnel: tun, Sender: &fakeSender{},
		Neighbours: &fakeNeighbours{}, Table: &fastTable{}, Membership: oneConf{},
		Limits: Limits{MaxPending: 2 * n, MaxPendingPerPrefix: 2 * n, NewPerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, make(chan slowpkt.Packet)) }()
	if err := r.do(context.Background(), func() {
		for i := range n {
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 4000)
			a := r.admit(r.now(), slowpkt.Packet{From: from, To: mdAddr}, &helloHead{random: make([]byte, 32)})
			if a == nil {
				t.Errorf("association %d not admitted", i)
				return
			}
			r.install(a, keys(a.id))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Associations != n {
		t.Fatalf("%d associations established", st.Associations)
	}
	start := time.Now()
	cancel()
	<-done
	took := time.Since(start)
	t.Logf("shutdown with %d associations: %v", n, took)
	if len(tun.disc) != n {
		t.Fatalf("%d EndpointDisconnects sent, want %d", len(tun.disc), n)
	}
	if took > 5*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
}
