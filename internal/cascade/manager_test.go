package cascade

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/testutil"
)

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cascade test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &ca{cert: c, key: key, pool: pool}
}

func (c *ca) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeTable records the link associations.
type fakeTable struct {
	mu       sync.Mutex
	assoc    map[uuid.UUID]keytable.Association
	installs int
}

func newFakeTable() *fakeTable { return &fakeTable{assoc: map[uuid.UUID]keytable.Association{}} }

func (f *fakeTable) Install(_ context.Context, a keytable.Association) (*keytable.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.assoc[a.ID] = a
	f.installs++
	return nil, nil
}

func (f *fakeTable) Remove(_ context.Context, id uuid.UUID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.assoc[id]; !ok {
		return keytable.ErrNotFound
	}
	delete(f.assoc, id)
	return nil
}

// byConf returns the links by conference ID.
func (f *fakeTable) byConf() map[keytable.ConferenceID]keytable.Association {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[keytable.ConferenceID]keytable.Association{}
	for _, a := range f.assoc {
		out[a.Conference] = a
	}
	return out
}

// md is one Manager under test.
type md struct {
	id     string
	m      *Manager
	table  *fakeTable
	alive  directory.Alive
	cancel context.CancelFunc
	done   chan struct{}
}

func startMD(t *testing.T, id string, cert tls.Certificate, roots *x509.CertPool, mediaPort uint16) *md {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ft := newFakeTable()
	m, err := NewManager(Config{ID: id, Conn: pc, Certificate: cert, Roots: roots, Table: ft,
		RetransmitTimeout: 100 * time.Millisecond, MaxRetransmissions: 4, HandshakeTimeout: 3 * time.Second,
		BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &md{id: id, m: m, table: ft, cancel: cancel, done: make(chan struct{}),
		alive: directory.Alive{
			Media:       netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), mediaPort),
			Cascade:     pc.LocalAddr().(*net.UDPAddr).AddrPort(),
			Fingerprint: m.Fingerprint(), Started: time.Now(),
		}}
	go func() { defer close(d.done); _ = m.Run(ctx) }()
	t.Cleanup(d.stop)
	return d
}

func (d *md) stop() {
	d.cancel()
	<-d.done
}

// view builds a directory view of mds, each hosting confs.
func view(confs map[string]directory.Kind, mds ...*md) directory.View {
	v := directory.View{Peers: map[string]directory.Peer{}}
	for _, d := range mds {
		v.Peers[d.id] = directory.Peer{ID: d.id, Alive: d.alive, Conferences: confs}
	}
	return v
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	confs = map[string]directory.Kind{"room-d": directory.KindDouble, "room-s": directory.KindSingle}
	// The two MDs number their conferences differently.
	localA = map[string]Local{"room-d": {ID: 1, Kind: directory.KindDouble}, "room-s": {ID: 2, Kind: directory.KindSingle}}
	localB = map[string]Local{"room-d": {ID: 7, Kind: directory.KindDouble}, "room-s": {ID: 3, Kind: directory.KindSingle}}
)

func TestLinksComeUp(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := newCA(t)
	a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
	b := startMD(t, "md-b", c.issue(t, "md-b"), c.pool, 6004)
	v := view(confs, a, b)
	a.m.SetLocal(localA)
	b.m.SetLocal(localB)
	a.m.SetView(v)
	b.m.SetView(v)
	waitFor(t, 5*time.Second, "two links on each side", func() bool {
		return len(a.table.byConf()) == 2 && len(b.table.byConf()) == 2
	})
	la, lb := a.table.byConf(), b.table.byConf()
	for name, conf := range localA {
		x, y := la[conf.ID], lb[localB[name].ID]
		if !x.Link || x.Tag != Tag(name) || x.Addr != b.alive.Media || y.Addr != a.alive.Media || y.Tag != Tag(name) {
			t.Fatalf("%s: link associations %+v / %+v", name, x, y)
		}
		if !opens(t, x.Send, y.Recv) || !opens(t, y.Send, x.Recv) {
			t.Fatalf("%s: the two MDs' link keys differ", name)
		}
		double := conf.Kind == directory.KindDouble
		if x.Send.Profile().IsDouble() != double {
			t.Fatalf("%s: profile %v", name, x.Send.Profile())
		}
	}
	if opens(t, la[1].Send, lb[3].Recv) || opens(t, la[2].Send, lb[7].Recv) {
		t.Fatal("two conferences' links share keys")
	}
	if s := a.m.Stats(); !s.Peers["md-b"].Established || s.Peers["md-b"].Links != 2 || s.Handshakes[HandshakeOK] != 1 {
		t.Fatalf("stats of a: %+v", s)
	}

	// b stops hosting room-s: only that link goes, on both sides.
	v2 := view(confs, a)
	v2.Peers["md-b"] = directory.Peer{ID: "md-b", Alive: b.alive, Conferences: map[string]directory.Kind{"room-d": directory.KindDouble}}
	a.m.SetView(v2)
	b.m.SetView(v2)
	b.m.SetLocal(map[string]Local{"room-d": localB["room-d"]})
	waitFor(t, 5*time.Second, "room-s link removed", func() bool {
		_, okA := a.table.byConf()[2]
		_, okB := b.table.byConf()[3]
		return !okA && !okB && len(a.table.byConf()) == 1
	})

	// b vanishes from the directory (its lease expired): a removes its links.
	a.m.SetView(view(confs, a))
	waitFor(t, 5*time.Second, "links of a vanished peer removed", func() bool { return len(a.table.byConf()) == 0 })
	if _, ok := a.m.Stats().Peers["md-b"]; ok {
		t.Fatal("a vanished peer is still in the stats")
	}
}

func TestRestartedPeerGetsNewAssociation(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := newCA(t)
	a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
	certB := c.issue(t, "md-b")
	b := startMD(t, "md-b", certB, c.pool, 6004)
	a.m.SetLocal(localA)
	b.m.SetLocal(localB)
	v := view(confs, a, b)
	a.m.SetView(v)
	b.m.SetView(v)
	waitFor(t, 5*time.Second, "links up", func() bool { return len(a.table.byConf()) == 2 && len(b.table.byConf()) == 2 })
	before := a.table.byConf()

	// b restarts: same certificate, new incarnation, new port.
	b.stop()
	b2 := startMD(t, "md-b", certB, c.pool, 6004)
	b2.m.SetLocal(localB)
	v = view(confs, a, b2)
	a.m.SetView(v)
	b2.m.SetView(v)
	waitFor(t, 5*time.Second, "links re-keyed", func() bool {
		now := a.table.byConf()
		return len(now) == 2 && len(b2.table.byConf()) == 2 && now[1].Send != before[1].Send && now[2].Send != before[2].Send
	})
	after, lb := a.table.byConf(), b2.table.byConf()
	for id, x := range after {
		if x.ID != before[id].ID {
			t.Fatalf("conference %d: re-key changed the link ID", id)
		}
		if opens(t, before[id].Send, x.Recv) {
			t.Fatalf("conference %d: old keys still open", id)
		}
	}
	if !opens(t, after[1].Send, lb[7].Recv) || !opens(t, lb[3].Send, after[2].Recv) {
		t.Fatal("keys after the restart differ between the MDs")
	}
	if n := a.m.Stats().Handshakes[HandshakeOK]; n != 2 {
		t.Fatalf("%d successful handshakes, want 2", n)
	}
}

func TestServerReplacesAssociationOnNewClientHello(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := newCA(t)
	certA := c.issue(t, "md-a")
	a := startMD(t, "md-a", certA, c.pool, 5004)
	b := startMD(t, "md-b", c.issue(t, "md-b"), c.pool, 6004)
	a.m.SetLocal(localA)
	b.m.SetLocal(localB)
	v := view(confs, a, b)
	a.m.SetView(v)
	b.m.SetView(v)
	waitFor(t, 5*time.Second, "links up", func() bool { return len(b.table.byConf()) == 2 })
	before := b.table.byConf()
	// a (the client) restarts on the same socket address before the
	// directory says so: b's established server association must be
	// replaced only once the new handshake completes.
	addr := a.alive.Cascade
	a.stop()
	pc, err := net.ListenPacket("udp4", addr.String())
	if err != nil {
		t.Skipf("cannot rebind %v: %v", addr, err)
	}
	ft := newFakeTable()
	m2, err := NewManager(Config{ID: "md-a", Conn: pc, Certificate: certA, Roots: c.pool, Table: ft,
		RetransmitTimeout: 100 * time.Millisecond, BackoffMin: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	m2.SetLocal(localA)
	m2.SetView(v) // same alive entry: b sees no change in the directory
	waitFor(t, 5*time.Second, "b re-keyed by the new ClientHello", func() bool {
		now := b.table.byConf()
		return len(ft.byConf()) == 2 && len(now) == 2 && now[7].Recv != before[7].Recv
	})
	if !opens(t, ft.byConf()[1].Send, b.table.byConf()[7].Recv) {
		t.Fatal("keys differ after the replacement")
	}
}

func TestRefusedPeers(t *testing.T) {
	testutil.CheckGoroutines(t)
	c, other := newCA(t), newCA(t)
	cases := []struct {
		name string
		// certB is b's certificate; fpB overrides the fingerprint a sees.
		certB tls.Certificate
		badFP bool
	}{
		{"certificate of another CA", other.issue(t, "md-b"), false},
		{"fingerprint not the published one", c.issue(t, "md-b"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
			b := startMD(t, "md-b", tc.certB, c.pool, 6004)
			a.m.SetLocal(localA)
			b.m.SetLocal(localB)
			va := view(confs, a, b)
			if tc.badFP {
				p := va.Peers["md-b"]
				p.Alive.Fingerprint[0] ^= 1
				va.Peers["md-b"] = p
			}
			a.m.SetView(va)
			b.m.SetView(view(confs, a, b))
			waitFor(t, 5*time.Second, "handshake refused", func() bool { return a.m.Stats().Handshakes[HandshakeRefused] > 0 })
			time.Sleep(300 * time.Millisecond)
			if len(a.table.byConf()) != 0 || len(b.table.byConf()) != 0 {
				t.Fatalf("links installed with a refused peer: %v / %v", a.table.byConf(), b.table.byConf())
			}
			if a.m.Stats().Handshakes[HandshakeOK] != 0 {
				t.Fatal("a handshake with a refused peer succeeded")
			}
		})
	}
}

func TestUnknownSourceDropped(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := newCA(t)
	a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
	a.m.SetLocal(localA)
	a.m.SetView(view(confs, a))
	s, err := net.Dial("udp4", a.alive.Cascade.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hello := make([]byte, 100)
	hello[0], hello[13] = 22, 1
	for range 10 {
		_, _ = s.Write(hello)
	}
	waitFor(t, 2*time.Second, "datagrams from strangers counted", func() bool { return a.m.Stats().UnknownSource == 10 })
	if len(a.m.Stats().Peers) != 0 {
		t.Fatal("a stranger became a peer")
	}
}

// A conference that stops being shared and comes back over the same
// association must not get its old link keys again: a fresh link
// association restarts the SRTP index and the replay window, so the same
// keys would repeat (key, SSRC, index) and accept replayed packets.
func TestReturningConferenceGetsFreshKeys(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := newCA(t)
	a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
	b := startMD(t, "md-b", c.issue(t, "md-b"), c.pool, 6004)
	a.m.SetLocal(localA)
	b.m.SetLocal(localB)
	v := view(confs, a, b)
	a.m.SetView(v)
	b.m.SetView(v)
	waitFor(t, 5*time.Second, "links up", func() bool { return len(a.table.byConf()) == 2 && len(b.table.byConf()) == 2 })
	before := a.table.byConf()

	// b stops hosting room-s...
	v2 := view(confs, a)
	v2.Peers["md-b"] = directory.Peer{ID: "md-b", Alive: b.alive, Conferences: map[string]directory.Kind{"room-d": directory.KindDouble}}
	b.m.SetLocal(map[string]Local{"room-d": localB["room-d"]})
	a.m.SetView(v2)
	b.m.SetView(v2)
	waitFor(t, 5*time.Second, "room-s link removed", func() bool {
		_, okA := a.table.byConf()[2]
		_, okB := b.table.byConf()[3]
		return !okA && !okB
	})
	// ...and hosts it again.
	b.m.SetLocal(localB)
	a.m.SetView(v)
	b.m.SetView(v)
	waitFor(t, 5*time.Second, "room-s link back", func() bool {
		_, okA := a.table.byConf()[2]
		_, okB := b.table.byConf()[3]
		return okA && okB
	})
	waitFor(t, 5*time.Second, "keys agree", func() bool {
		la, lb := a.table.byConf(), b.table.byConf()
		return len(la) == 2 && len(lb) == 2 && opens(t, la[2].Send, lb[3].Recv) && opens(t, la[1].Send, lb[7].Recv)
	})
	if opens(t, before[2].Send, b.table.byConf()[3].Recv) {
		t.Fatal("room-s came back with the link keys it had before")
	}
}

// TestCertificateNamesMDID: an MD's cascade certificate must name its
// md-id. NewManager refuses its own that does not; a peer's that does not
// is refused even with the fingerprint of the peer's directory entry and
// a chain to the cascade CA (an MD holding any certificate of the CA, able
// to write another MD's entry, would otherwise take that MD's links).
func TestCertificateNamesMDID(t *testing.T) {
	c := newCA(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := NewManager(Config{ID: "md-b", Conn: pc, Certificate: c.issue(t, "md-x"), Roots: c.pool, Table: newFakeTable()}); !errors.Is(err, ErrConfig) {
		t.Fatalf("NewManager with a certificate for md-x as md-b: %v, want ErrConfig", err)
	}
	a := startMD(t, "md-a", c.issue(t, "md-a"), c.pool, 5004)
	for _, tc := range []struct {
		cert tls.Certificate
		ok   bool
	}{{c.issue(t, "md-b"), true}, {c.issue(t, "md-x"), false}} {
		err := a.m.verifier("md-b", sha256.Sum256(tc.cert.Certificate[0]))(tc.cert.Certificate)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrPeerCertificate)) {
			t.Errorf("peer md-b presenting a certificate (want accepted: %v): %v", tc.ok, err)
		}
	}
}
