package cascade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/ratelog"
)

// Table is the part of the key table the Manager writes (a
// *keytable.Table).
type Table interface {
	Install(ctx context.Context, a keytable.Association) (*keytable.Endpoint, error)
	Remove(ctx context.Context, id uuid.UUID) error
}

// LinkCounters are one link association's data-plane counters.
type LinkCounters struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
	// TxDrops and RxDrops are packets the data plane dropped on the link.
	TxDrops, RxDrops uint64
}

// Local is a conference this MD hosts members of.
type Local struct {
	// ID is the conference's ID in the key table.
	ID keytable.ConferenceID
	// Kind is its members' profile kind.
	Kind directory.Kind
}

// Defaults of the zero fields of Config.
const (
	DefaultRetransmitTimeout  = 500 * time.Millisecond
	DefaultMaxRetransmissions = 5
	DefaultHandshakeTimeout   = 20 * time.Second
	DefaultBackoffMin         = time.Second
	DefaultBackoffMax         = 30 * time.Second
)

// Config configures a Manager.
type Config struct {
	// ID is this MD's md-id.
	ID string
	// Conn is the cascade-listen socket; the Manager reads it and closes
	// it when Run returns.
	Conn net.PacketConn
	// Certificate is this MD's cascade certificate and key; its leaf's
	// SHA-256 is what the directory publishes.
	Certificate tls.Certificate
	// Roots is the cascade CA: every peer's chain must verify against it.
	Roots *x509.CertPool
	// Table receives the link associations.
	Table Table
	// LinkStats reads a link association's counters (nil: none).
	LinkStats func(*keytable.Endpoint) LinkCounters
	// RetransmitTimeout and MaxRetransmissions of the DTLS handshake
	// (DefaultRetransmitTimeout, DefaultMaxRetransmissions).
	RetransmitTimeout  time.Duration
	MaxRetransmissions int
	// HandshakeTimeout ends a server association that has not completed
	// its handshake (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay before a client retries a
	// failed handshake (DefaultBackoffMin, DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// Logger (slog.Default when nil).
	Logger *slog.Logger
}

// HandshakeResult says how a link handshake ended.
type HandshakeResult uint8

// Handshake results.
const (
	HandshakeOK      HandshakeResult = iota // keys installed
	HandshakeRefused                        // certificate or fingerprint refused (either side)
	HandshakeTimeout                        // the peer did not answer
	HandshakeFailed                         // any other failure
	numResults
)

func (r HandshakeResult) String() string {
	return [...]string{"ok", "refused", "timeout", "failed"}[r]
}

// PeerStats are the Manager's figures about one peer MD.
type PeerStats struct {
	// Established: a DTLS association with the peer is up.
	Established bool
	// Links is the number of link associations installed (one per
	// shared conference).
	Links int
	// Counters summed over the peer's link associations.
	LinkCounters
}

// Stats are the Manager's figures.
type Stats struct {
	Peers      map[string]PeerStats
	Handshakes [numResults]uint64
	// UnknownSource counts datagrams on the cascade socket from an
	// address that is no peer's.
	UnknownSource uint64
}

// Manager keeps the links of this MD. Its methods are safe for concurrent
// use; Run does the work.
type Manager struct {
	cfg     Config
	log     *ratelog.Logger
	fp      [sha256.Size]byte
	clients *dtls.Config
	servers *dtls.Config

	inMu    sync.Mutex
	view    *directory.View
	local   map[string]Local
	events  []runnerEvent
	hellos  []hello
	wake    chan struct{}
	routes  atomic.Pointer[map[netip.AddrPort]*route]
	unknown atomic.Uint64

	hs      [numResults]atomic.Uint64
	statsMu sync.Mutex
	stats   map[string]*peer // the loop's peers, read under statsMu

	peers map[string]*peer // owned by Run's goroutine
}

// route is where the reader hands a peer's datagrams.
type route struct {
	peer   string
	runner *dtls.Runner // current association (nil: none yet)
	cand   *dtls.Runner // server: a new association in handshake
	accept bool         // server: a ClientHello may start an association
}

type runnerEvent struct {
	peer string
	r    *dtls.Runner
	ev   dtls.Event
}

type hello struct {
	from netip.AddrPort
	b    []byte
}

// peer is one peer MD, owned by Run's goroutine (links' endpoints are read
// by Stats under statsMu).
type peer struct {
	id        string
	alive     directory.Alive
	client    bool
	shared    map[string]Local
	runner    *dtls.Runner
	up        bool // runner's handshake completed
	cand      *dtls.Runner
	since     time.Time // runner started
	candSince time.Time
	links     map[string]*link
	// keyed holds the conferences whose link keys were derived from
	// runner's keying material and installed: their keys are the same
	// every time they are derived from it, so a link for one of them is
	// never installed again over runner (a fresh link association would
	// restart the SRTP index and replay state under used keys).
	keyed    map[string]bool
	retired  LinkCounters // of links removed
	backoff  time.Duration
	retryAt  time.Time
	failures int
}

type link struct {
	id   uuid.UUID
	conf Local
	addr netip.AddrPort
	ep   *keytable.Endpoint
}

// NewManager checks cfg and returns a Manager; Run starts it.
func NewManager(cfg Config) (*Manager, error) {
	if err := directory.CheckID(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.Conn == nil || cfg.Table == nil || cfg.Roots == nil {
		return nil, fmt.Errorf("%w: a socket, a table and the cascade CA are required", ErrConfig)
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, fmt.Errorf("%w: a certificate is required", ErrConfig)
	}
	// Peers check that this MD's certificate names its md-id (verifier):
	// say so now rather than with every handshake refused.
	leaf, err := x509.ParseCertificate(cfg.Certificate.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrConfig, err)
	}
	if err := leaf.VerifyHostname(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: the certificate must name the md-id %q as a DNS name: %w", ErrConfig, cfg.ID, err)
	}
	if cfg.RetransmitTimeout <= 0 {
		cfg.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if cfg.MaxRetransmissions <= 0 {
		cfg.MaxRetransmissions = DefaultMaxRetransmissions
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:   cfg,
		log:   ratelog.New(cfg.Logger, 10*time.Second, 3),
		fp:    sha256.Sum256(cfg.Certificate.Certificate[0]),
		local: map[string]Local{},
		wake:  make(chan struct{}, 1),
		stats: map[string]*peer{},
		peers: map[string]*peer{},
	}
	m.routes.Store(&map[netip.AddrPort]*route{})
	base := dtls.Config{
		Certificate:        cfg.Certificate,
		SRTPProfiles:       []uint16{LinkProfile},
		RetransmitTimeout:  cfg.RetransmitTimeout,
		MaxRetransmissions: cfg.MaxRetransmissions,
		// Settle needs a VerifyPeer; each Conn gets its own (verifier).
		VerifyPeer: func([][]byte) error { return ErrPeerCertificate },
	}
	if m.clients, err = base.Settle(false); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if m.servers, err = base.Settle(true); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return m, nil
}

// Fingerprint returns the SHA-256 of this MD's cascade certificate, for
// its directory entry.
func (m *Manager) Fingerprint() [sha256.Size]byte { return m.fp }

// SetView hands the Manager the directory's current view.
func (m *Manager) SetView(v directory.View) {
	m.inMu.Lock()
	m.view = &v
	m.inMu.Unlock()
	m.poke()
}

// SetLocal hands the Manager the conferences this MD hosts members of.
func (m *Manager) SetLocal(l map[string]Local) {
	m.inMu.Lock()
	m.local = maps.Clone(l)
	m.inMu.Unlock()
	m.poke()
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Stats returns the Manager's figures.
func (m *Manager) Stats() Stats {
	s := Stats{Peers: map[string]PeerStats{}, UnknownSource: m.unknown.Load()}
	for i := range s.Handshakes {
		s.Handshakes[i] = m.hs[i].Load()
	}
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	for id, p := range m.stats {
		ps := PeerStats{Established: p.up, Links: len(p.links), LinkCounters: p.retired}
		for _, l := range p.links {
			if m.cfg.LinkStats != nil && l.ep != nil {
				c := m.cfg.LinkStats(l.ep)
				ps.TxPackets += c.TxPackets
				ps.TxBytes += c.TxBytes
				ps.RxPackets += c.RxPackets
				ps.RxBytes += c.RxBytes
				ps.TxDrops += c.TxDrops
				ps.RxDrops += c.RxDrops
			}
		}
		s.Peers[id] = ps
	}
	return s
}

// Run keeps the links until ctx ends; then it closes every association,
// removes every link association and closes the socket.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(m.read)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			_ = m.cfg.Conn.Close()
			wg.Wait()
			return nil
		case <-m.wake:
		case <-tick.C:
		}
		m.step(ctx)
	}
}

// step applies what arrived: runner events, ClientHellos, the view.
func (m *Manager) step(ctx context.Context) {
	m.inMu.Lock()
	evs, hellos := m.events, m.hellos
	m.events, m.hellos = nil, nil
	view, local := m.view, m.local
	m.inMu.Unlock()
	for _, e := range evs {
		m.handleEvent(ctx, e)
	}
	if view != nil {
		m.reconcile(ctx, view, local)
	}
	for _, h := range hellos {
		m.handleHello(h)
	}
	m.publishRoutes()
}

// reconcile makes the peers and their links match the view.
func (m *Manager) reconcile(ctx context.Context, v *directory.View, local map[string]Local) {
	now := time.Now()
	seen := map[string]bool{}
	for id, dp := range v.Peers {
		if id == m.cfg.ID {
			continue
		}
		shared := map[string]Local{}
		for conf, l := range local {
			k, ok := dp.Conferences[conf]
			if !ok {
				continue
			}
			if k != l.Kind {
				m.log.Log(slog.LevelWarn, "cascade-kind", "cascade: a peer hosts a conference with another profile kind; no link for it",
					"peer", id, "conference", conf, "local", l.Kind, "peer_kind", k)
				continue
			}
			shared[conf] = l
		}
		if len(shared) == 0 {
			continue
		}
		seen[id] = true
		p := m.peers[id]
		if p != nil && !p.alive.Equal(dp.Alive) {
			m.cfg.Logger.Info("cascade: peer restarted or moved; new association", "peer", id)
			m.closeAssoc(p)
			p.alive = dp.Alive
			p.backoff, p.retryAt = 0, time.Time{}
		}
		if p == nil {
			p = &peer{id: id, alive: dp.Alive, client: m.cfg.ID < id, links: map[string]*link{}}
			m.setPeer(id, p)
		}
		p.shared = shared
		m.syncLinks(ctx, p)
		m.expireHandshakes(p, now)
		if p.client && p.runner == nil && !now.Before(p.retryAt) {
			m.dial(p)
		}
	}
	for id, p := range m.peers {
		if !seen[id] {
			m.cfg.Logger.Info("cascade: no conference shared with the peer any more, or it is gone; links removed", "peer", id)
			m.closeAssoc(p)
			m.removeLinks(ctx, p, nil)
			m.setPeer(id, nil)
		}
	}
}

func (m *Manager) setPeer(id string, p *peer) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	if p == nil {
		delete(m.peers, id)
		delete(m.stats, id)
		return
	}
	m.peers[id] = p
	m.stats[id] = p
}

// syncLinks installs links for shared conferences that lack one (when the
// association is up) and removes those no longer shared.
func (m *Manager) syncLinks(ctx context.Context, p *peer) {
	m.removeLinks(ctx, p, p.shared)
	if !p.up {
		return
	}
	var missing []string
	reused := false
	for conf, l := range p.shared {
		if ln, ok := p.links[conf]; !ok || ln.conf != l {
			missing = append(missing, conf)
			reused = reused || p.keyed[conf]
		}
	}
	if reused {
		// This association already keyed a link of one of them (removed
		// since, or of another table ID or kind): the same keys again
		// would repeat (key, SSRC, index) and accept replays. A new
		// association re-keys every link.
		m.cfg.Logger.Info("cascade: a conference's link comes back; new association for fresh keys", "peer", p.id)
		m.closeAssoc(p)
		p.backoff, p.retryAt = 0, time.Time{}
		return
	}
	if len(missing) > 0 {
		m.installLinks(ctx, p, p.runner, missing)
	}
}

// removeLinks removes p's links whose conference is not in keep.
func (m *Manager) removeLinks(ctx context.Context, p *peer, keep map[string]Local) {
	for conf, l := range p.links {
		if _, ok := keep[conf]; ok {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := m.cfg.Table.Remove(tctx, l.id)
		cancel()
		if err != nil && !errors.Is(err, keytable.ErrNotFound) {
			m.log.Log(slog.LevelError, "cascade-remove", "cascade: remove link association", "peer", p.id, "conference", conf, "err", err)
		}
		m.statsMu.Lock()
		m.retire(p, l)
		delete(p.links, conf)
		m.statsMu.Unlock()
	}
}

// installLinks derives and installs (or re-keys) the links of confs over
// the established association r.
func (m *Manager) installLinks(ctx context.Context, p *peer, r *dtls.Runner, confs []string) {
	var ekm []byte
	var xerr error
	if err := r.Do(func(c *dtls.Conn) { ekm, xerr = c.ExportKeyingMaterial(ExporterLabel, nil, ExportLen) }); err != nil {
		xerr = err
	}
	defer clear(ekm)
	if xerr != nil {
		m.log.Log(slog.LevelError, "cascade-export", "cascade: export keying material", "peer", p.id, "err", xerr)
		return
	}
	slices.Sort(confs)
	for _, conf := range confs {
		l := p.shared[conf]
		send, recv, err := DeriveKeys(ekm, p.client, conf, l.Kind == directory.KindDouble)
		if err != nil {
			m.log.Log(slog.LevelError, "cascade-derive", "cascade: derive link keys", "peer", p.id, "err", err)
			continue
		}
		ln := p.links[conf]
		if ln == nil {
			ln = &link{id: uuid.New()}
		} else if ln.conf.ID != l.ID || ln.addr != p.alive.Media {
			// The conference's table ID or the peer's media address
			// changed: a new association.
			tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = m.cfg.Table.Remove(tctx, ln.id)
			cancel()
			m.statsMu.Lock()
			m.retire(p, ln)
			m.statsMu.Unlock()
			ln = &link{id: uuid.New()}
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ep, err := m.cfg.Table.Install(tctx, keytable.Association{
			ID: ln.id, Addr: p.alive.Media, Conference: l.ID, Recv: recv, Send: send, Link: true, Tag: Tag(conf),
		})
		cancel()
		if err != nil {
			m.log.Log(slog.LevelError, "cascade-install", "cascade: install link association", "peer", p.id, "conference", conf, "err", err)
			continue
		}
		m.statsMu.Lock()
		ln.conf, ln.ep, ln.addr = l, ep, p.alive.Media
		p.links[conf] = ln
		m.statsMu.Unlock()
		if p.keyed == nil {
			p.keyed = map[string]bool{}
		}
		p.keyed[conf] = true
	}
}

// retire adds a removed link's counters to its peer's totals, so that the
// peer's counters never go back. Under statsMu.
func (m *Manager) retire(p *peer, l *link) {
	if m.cfg.LinkStats == nil || l.ep == nil {
		return
	}
	c := m.cfg.LinkStats(l.ep)
	p.retired.TxPackets += c.TxPackets
	p.retired.TxBytes += c.TxBytes
	p.retired.RxPackets += c.RxPackets
	p.retired.RxBytes += c.RxBytes
	p.retired.TxDrops += c.TxDrops
	p.retired.RxDrops += c.RxDrops
}

// verifier is the VerifyPeer of an association with p: the chain must
// verify against the cascade CA and the leaf must have the fingerprint p
// published.
func (m *Manager) verifier(id string, want [sha256.Size]byte) func([][]byte) error {
	return func(chain [][]byte) error {
		if len(chain) == 0 {
			return fmt.Errorf("%w: peer %s sent no certificate", ErrPeerCertificate, id)
		}
		got := sha256.Sum256(chain[0])
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return fmt.Errorf("%w: peer %s: the certificate's fingerprint is not the one in its directory entry", ErrPeerCertificate, id)
		}
		certs := make([]*x509.Certificate, 0, len(chain))
		for _, der := range chain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("%w: peer %s: %w", ErrPeerCertificate, id, err)
			}
			certs = append(certs, c)
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		// The certificate must name the md-id (a DNS name): the
		// fingerprint alone binds it to whatever directory entry holds
		// it, and an MD with any certificate of the CA that could write
		// another MD's entry would take that MD's links over.
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: m.cfg.Roots, Intermediates: inter, DNSName: id,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("%w: peer %s: %w", ErrPeerCertificate, id, err)
		}
		return nil
	}
}

func (m *Manager) connConfig(p *peer, server bool) *dtls.Config {
	base := m.clients
	if server {
		base = m.servers
	}
	c := *base // settled: the copy keeps its role
	c.VerifyPeer = m.verifier(p.id, p.alive.Fingerprint)
	return &c
}

func (m *Manager) send(to netip.AddrPort) func([]byte) error {
	return func(b []byte) error {
		_, err := m.cfg.Conn.WriteTo(b, net.UDPAddrFromAddrPort(to))
		return err
	}
}

func (m *Manager) onEvent(id string, r **dtls.Runner) func(dtls.Event) {
	return func(ev dtls.Event) {
		if ev.EKTKey != nil {
			ev.EKTKey.Zero() // links carry no EKT
		}
		m.inMu.Lock()
		m.events = append(m.events, runnerEvent{peer: id, r: *r, ev: ev})
		m.inMu.Unlock()
		m.poke()
	}
}

// dial starts a client association with p.
func (m *Manager) dial(p *peer) {
	c, err := dtls.NewClient(m.connConfig(p, false))
	if err != nil {
		m.log.Log(slog.LevelError, "cascade-dial", "cascade: new DTLS client", "err", err)
		return
	}
	var r *dtls.Runner
	holder := new(*dtls.Runner)
	m.inMu.Lock() // events of r wait until r is known
	r = dtls.NewRunner(c, m.send(p.alive.Cascade), m.onEvent(p.id, holder))
	*holder = r
	m.inMu.Unlock()
	m.statsMu.Lock()
	p.runner, p.up, p.since = r, false, time.Now()
	m.statsMu.Unlock()
}

// handleHello starts a server association (or a candidate beside an
// established one) for a ClientHello from a peer's cascade address.
func (m *Manager) handleHello(h hello) {
	var p *peer
	for _, q := range m.peers {
		if !q.client && q.alive.Cascade == h.from {
			p = q
			break
		}
	}
	if p == nil || p.cand != nil || (p.runner != nil && !p.up) {
		return
	}
	c, err := dtls.NewServer(m.connConfig(p, true), h.from.Addr().AsSlice())
	if err != nil {
		m.log.Log(slog.LevelError, "cascade-accept", "cascade: new DTLS server", "err", err)
		return
	}
	holder := new(*dtls.Runner)
	m.inMu.Lock()
	r := dtls.NewRunner(c, m.send(h.from), m.onEvent(p.id, holder))
	*holder = r
	m.inMu.Unlock()
	r.Deliver(h.b)
	m.statsMu.Lock()
	if p.runner == nil {
		p.runner, p.up, p.since = r, false, time.Now()
	} else {
		p.cand, p.candSince = r, time.Now()
	}
	m.statsMu.Unlock()
}

// handleEvent acts on an association's event.
func (m *Manager) handleEvent(ctx context.Context, e runnerEvent) {
	p := m.peers[e.peer]
	if p == nil || (e.r != p.runner && e.r != p.cand) {
		if e.ev.Kind == dtls.EventHandshakeComplete || e.ev.Kind == dtls.EventClosed {
			go e.r.Close() // a stale association
		}
		return
	}
	switch e.ev.Kind {
	case dtls.EventHandshakeComplete:
		m.hs[HandshakeOK].Add(1)
		m.statsMu.Lock()
		if e.r == p.cand {
			if old := p.runner; old != nil {
				go old.Close()
			}
			p.runner, p.cand = p.cand, nil
		}
		p.up = true
		m.statsMu.Unlock()
		p.keyed = map[string]bool{}
		p.backoff, p.failures = 0, 0
		m.cfg.Logger.Info("cascade: link association up", "peer", p.id, "client", p.client, "conferences", len(p.shared))
		// A new association re-keys every link.
		m.installLinks(ctx, p, p.runner, slices.Collect(maps.Keys(p.shared)))
	case dtls.EventClosed:
		res := HandshakeFailed
		var ae *dtls.AlertError
		switch {
		case errors.Is(e.ev.Err, ErrPeerCertificate), errors.As(e.ev.Err, &ae) && (ae.Description == dtls.AlertBadCertificate || ae.Description == dtls.AlertCertificateUnknown):
			res = HandshakeRefused
		case errors.Is(e.ev.Err, dtls.ErrTimeout):
			res = HandshakeTimeout
		}
		wasUp := e.r == p.runner && p.up
		if !wasUp {
			m.hs[res].Add(1)
		}
		m.log.Log(slog.LevelWarn, "cascade-closed", "cascade: link association ended", "peer", p.id, "established", wasUp, "err", e.ev.Err)
		go e.r.Close()
		if e.r == p.cand {
			m.statsMu.Lock()
			p.cand = nil
			m.statsMu.Unlock()
			return
		}
		// Links keep their keys until a new association re-keys them:
		// the peer's media needs no DTLS.
		m.statsMu.Lock()
		p.runner, p.up = nil, false
		m.statsMu.Unlock()
		if p.client {
			if p.backoff == 0 {
				p.backoff = m.cfg.BackoffMin
			} else {
				p.backoff = min(2*p.backoff, m.cfg.BackoffMax)
			}
			p.failures++
			p.retryAt = time.Now().Add(p.backoff)
		}
	}
}

// expireHandshakes ends a server association still in handshake after
// HandshakeTimeout: a server waiting after its HelloVerifyRequest keeps no
// timer of its own.
func (m *Manager) expireHandshakes(p *peer, now time.Time) {
	if p.cand != nil && now.Sub(p.candSince) > m.cfg.HandshakeTimeout {
		go p.cand.Close()
		m.statsMu.Lock()
		p.cand = nil
		m.statsMu.Unlock()
		m.hs[HandshakeTimeout].Add(1)
	}
	if !p.client && p.runner != nil && !p.up && now.Sub(p.since) > m.cfg.HandshakeTimeout {
		go p.runner.Close()
		m.statsMu.Lock()
		p.runner = nil
		m.statsMu.Unlock()
		m.hs[HandshakeTimeout].Add(1)
	}
}

// closeAssoc ends p's associations (not its links).
func (m *Manager) closeAssoc(p *peer) {
	for _, r := range []*dtls.Runner{p.runner, p.cand} {
		if r != nil {
			go r.Close()
		}
	}
	m.statsMu.Lock()
	p.runner, p.cand, p.up = nil, nil, false
	m.statsMu.Unlock()
}

func (m *Manager) shutdown() {
	var wg sync.WaitGroup
	for id, p := range m.peers {
		for _, r := range []*dtls.Runner{p.runner, p.cand} {
			if r != nil {
				wg.Go(func() { _ = r.Close() })
			}
		}
		m.removeLinks(context.Background(), p, nil)
		m.setPeer(id, nil)
	}
	wg.Wait()
}

// publishRoutes gives the reader the addresses it may accept.
func (m *Manager) publishRoutes() {
	rt := make(map[netip.AddrPort]*route, len(m.peers))
	for id, p := range m.peers {
		rt[p.alive.Cascade] = &route{peer: id, runner: p.runner, cand: p.cand, accept: !p.client}
	}
	m.routes.Store(&rt)
}

// isClientHello reports whether b starts with a plaintext (epoch 0)
// handshake record carrying a ClientHello.
func isClientHello(b []byte) bool {
	// record: type(1) version(2) epoch(2) seq(6) length(2); handshake type(1)
	return len(b) > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 1
}

// read hands datagrams from known peers to their associations.
func (m *Manager) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := m.cfg.Conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Anything else (ENOBUFS, an ICMP error queued on the
			// socket) is the socket's, not the end of the links: log it
			// (rate-limited) and keep reading, without spinning.
			m.log.Log(slog.LevelError, "cascade-read", "cascade: read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		rt := (*m.routes.Load())[ap]
		if rt == nil {
			m.unknown.Add(1)
			continue
		}
		b := buf[:n]
		if rt.runner != nil {
			rt.runner.Deliver(b)
		}
		if rt.cand != nil {
			rt.cand.Deliver(b)
		}
		if rt.accept && rt.cand == nil && isClientHello(b) && (rt.runner == nil || m.established(rt.peer)) {
			m.inMu.Lock()
			if len(m.hellos) < 16 {
				m.hellos = append(m.hellos, hello{from: ap, b: bytes.Clone(b)})
			}
			m.inMu.Unlock()
			m.poke()
		}
	}
}

// established reads whether peer id's association is up (reader side).
func (m *Manager) established(id string) bool {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	p := m.stats[id]
	return p != nil && p.up
}
