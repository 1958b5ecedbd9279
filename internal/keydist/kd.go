package keydist

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// Defaults for Config.
const (
	DefaultHandshakeTimeout         = 10 * time.Second
	DefaultTunnelGrace              = 30 * time.Second
	DefaultMaxAssociations          = 20000
	DefaultMaxAssociationsPerTunnel = 10000
	DefaultMaxPending               = 2048
	DefaultMaxClientHello           = 8192
	DefaultInboundQueueLength       = 4096
)

// Config configures a KeyDistributor. Zero values mean the defaults.
type Config struct {
	// Certificate is the KD's DTLS certificate (ECDSA P-256: see
	// GenerateCertificate and LoadCertificate). Required.
	Certificate tls.Certificate
	// Registry lists the endpoints allowed to join conferences. Required.
	Registry *Registry
	// Profiles are the SRTP protection profiles the KD negotiates
	// (DefaultProfiles). Unknown profiles are refused.
	Profiles []uint16
	// HandshakeTimeout bounds an association from its first datagram to
	// MediaKeys (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout ends an established association after that long without
	// a datagram from the endpoint. 0 disables it (the default: after the
	// handshake an endpoint has nothing to send to the KD, the MD reports
	// its departure with EndpointDisconnect).
	IdleTimeout time.Duration
	// TunnelGrace is how long an association survives without any live
	// tunnel to its MD before it ends (DefaultTunnelGrace).
	TunnelGrace time.Duration
	// MaxAssociations bounds all associations, pending ones included
	// (DefaultMaxAssociations).
	MaxAssociations int
	// MaxAssociationsPerTunnel bounds the associations started through one
	// tunnel (DefaultMaxAssociationsPerTunnel).
	MaxAssociationsPerTunnel int
	// MaxPending bounds the associations whose ClientHello is still being
	// reassembled (DefaultMaxPending).
	MaxPending int
	// MaxClientHello is the largest ClientHello accepted, in octets
	// (DefaultMaxClientHello).
	MaxClientHello int
	// InboundQueueLength is the number of datagrams queued per KD worker
	// (DefaultInboundQueueLength); more are dropped (DTLS retransmits).
	InboundQueueLength int
	// Workers is the number of goroutines that run the associations' DTLS
	// servers (default GOMAXPROCS). An association always runs on the same
	// worker, in the order its datagrams arrived.
	Workers int
	// MTU is the DTLS MTU towards endpoints (dtls.DefaultMTU, 1200).
	MTU int
	// FlightInterval is the first DTLS retransmission interval
	// (dtls.DefaultRetransmitTimeout, 1s).
	FlightInterval time.Duration
	// EKT keeps each conference's EKT parameter set (RFC 8870): every
	// endpoint that negotiates a double profile (RFC 8723) must offer its
	// cipher and gets the conference's EKTKey after the handshake. Default:
	// a MemoryEKT with its defaults.
	EKT EKTSource
	// RekeyOnJoin makes the KD give a conference a new EKT parameter set
	// when a member joins, as it always does when one leaves (RFC 8871
	// section 4.5.2), so that a newcomer cannot read what was sent before
	// it joined.
	RekeyOnJoin bool
	// Logger receives logs (default slog.Default()). Key material is never
	// logged.
	Logger *slog.Logger
	// Metrics, if not nil, receives the KD's Prometheus collectors.
	Metrics prometheus.Registerer
	// Publisher, if not nil, is told of established associations and
	// their end (KD replicas: Store publishes them for the other replicas'
	// join endpoints).
	Publisher AssociationPublisher
	// Journal is the path of the association journal (journal.go): with
	// it, the endpoints a previous run of the KD keyed can still be
	// revoked after a restart. Empty disables it.
	Journal string
}

// restored is an association of a previous run of the KD, read back from
// the journal: no DTLS state, only what is needed to end it at its MD.
type restored struct {
	e        journalEntry
	lastLive time.Time // when its MD instance last had a live tunnel (or the KD started)
	revoked  bool      // its endpoint left the registry; EndpointDisconnect not sent yet
}

// tunnelConn is what the KD needs of a tunnel; *tunnel.KDTunnel implements
// it (tests use fakes).
type tunnelConn interface {
	ID() string
	Peer() string
	Profiles() []tunnel.ProtectionProfile
	// Instance is the MD instance announced on the tunnel (uuid.Nil if
	// none: an MD without that extension).
	Instance() uuid.UUID
	// UnsentDisconnects are the EndpointDisconnects accepted but not
	// written when the tunnel closed (valid from TunnelDown on).
	UnsentDisconnects() []uuid.UUID
	SendTunneledDtls(id uuid.UUID, dtls []byte) error
	SendEndpointDisconnect(id uuid.UUID) error
	SendMediaKeys(ctx context.Context, mk *tunnel.MediaKeys) error
}

// assocKey identifies an association: the MD's verified identity and the
// association id it chose. One MD cannot name another MD's associations.
type assocKey struct {
	peer string
	id   uuid.UUID
}

// peerState is the set of live tunnels of one MD identity.
type peerState struct {
	tunnels   []tunnelConn
	downSince time.Time
	// instDown records when the last tunnel of an announced MD instance
	// went down; an instance that announces again is removed.
	instDown map[uuid.UUID]time.Time
}

// instanceLive reports whether a live tunnel of p carries instance inst.
func (p *peerState) instanceLive(inst uuid.UUID) bool {
	for _, t := range p.tunnels {
		if t.Instance() == inst {
			return true
		}
	}
	return false
}

// tunnelFor returns a live tunnel of p for an association of MD instance
// inst, preferring the newest: one of the same instance, or any when the
// instance is unknown (uuid.Nil). The tunnels of another instance lead to
// another process, which does not know the association.
func (p *peerState) tunnelFor(inst uuid.UUID) tunnelConn {
	for i := len(p.tunnels) - 1; i >= 0; i-- {
		if t := p.tunnels[i]; inst == uuid.Nil || t.Instance() == inst {
			return t
		}
	}
	return nil
}

// KeyDistributor runs the DTLS server side of every association relayed by
// Media Distributors and implements tunnel.KDHandler. Create it with New,
// pass it to tunnel.NewKD, stop it with Close.
type KeyDistributor struct {
	cfg      Config
	log      *slog.Logger
	rl       *rateLog
	m        *metrics
	profiles []uint16
	fp       Fingerprint

	dtlsConfig *dtls.Config // settled once; each association copies it with its hooks
	ttlCheck   time.Time    // janitor: next look at the EKT parameter sets' age
	work       []chan job   // one queue per worker

	orphanRetries       int           // orphanRetries (tests shorten it)
	orphanRetryInterval time.Duration // orphanRetryInterval (tests shorten it)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	members   map[string]*ektConference // conference -> members holding its EKTKey
	assocs    map[assocKey]*association
	perTunnel map[string]int
	pending   int
	peers     map[string]*peerState
	restored  map[assocKey]*restored
	orphans   map[assocKey]*orphanJob // vanished replicas' associations to end (orphans.go)
	journal   *journal                // nil without Config.Journal
}

var _ tunnel.KDHandler = (*KeyDistributor)(nil)

// New checks cfg and returns a running KeyDistributor (its janitor
// goroutine runs until Close).
func New(cfg Config) (*KeyDistributor, error) {
	if len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil {
		return nil, errors.New("keydist: Config.Certificate is required")
	}
	if cfg.Registry == nil {
		return nil, errors.New("keydist: Config.Registry is required")
	}
	profiles := cfg.Profiles
	if len(profiles) == 0 {
		profiles = DefaultProfiles
	}
	for _, p := range profiles {
		if !ProfileNegotiable(p) {
			return nil, fmt.Errorf("keydist: profile 0x%04x: %w", p, ErrUnknownProfile)
		}
	}
	cfg.HandshakeTimeout = cmp0(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.TunnelGrace = cmp0(cfg.TunnelGrace, DefaultTunnelGrace)
	cfg.MaxAssociations = cmp0(cfg.MaxAssociations, DefaultMaxAssociations)
	cfg.MaxAssociationsPerTunnel = cmp0(cfg.MaxAssociationsPerTunnel, DefaultMaxAssociationsPerTunnel)
	cfg.MaxPending = cmp0(cfg.MaxPending, DefaultMaxPending)
	cfg.MaxClientHello = cmp0(cfg.MaxClientHello, DefaultMaxClientHello)
	cfg.InboundQueueLength = cmp0(cfg.InboundQueueLength, DefaultInboundQueueLength)
	cfg.Workers = cmp0(cfg.Workers, runtime.GOMAXPROCS(0))
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.EKT == nil {
		m, err := NewMemoryEKT(MemoryEKTConfig{})
		if err != nil {
			return nil, err
		}
		cfg.EKT = m
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("keydist: register metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &KeyDistributor{
		work:      make([]chan job, cfg.Workers),
		cfg:       cfg,
		log:       cfg.Logger,
		rl:        newRateLog(cfg.Logger, 10*time.Second, 10),
		m:         m,
		profiles:  slices.Clone(profiles),
		fp:        CertFingerprint(cfg.Certificate),
		ctx:       ctx,
		cancel:    cancel,
		assocs:    map[assocKey]*association{},
		members:   map[string]*ektConference{},
		perTunnel: map[string]int{},
		peers:     map[string]*peerState{},
		restored:  map[assocKey]*restored{},
		orphans:   map[assocKey]*orphanJob{},

		orphanRetries:       orphanRetries,
		orphanRetryInterval: orphanRetryInterval,
	}
	if cfg.Journal != "" {
		j, entries, err := openJournal(cfg.Journal)
		if err != nil {
			cancel()
			return nil, err
		}
		k.journal = j
		now := time.Now()
		for _, e := range entries {
			k.restored[assocKey{peer: e.MD, id: e.ID}] = &restored{e: e, lastLive: now}
		}
		if len(entries) > 0 {
			k.log.Info("restored the associations of the previous run from the journal", "associations", len(entries), "journal", cfg.Journal)
		}
	}
	// One DTLS configuration for every association; each adds its own
	// hooks. Profiles are chosen by the ClientHello hook.
	dc := &dtls.Config{
		Certificate: cfg.Certificate,
		VerifyPeer:  func([][]byte) error { return errors.New("no association") },
		ClientHello: func(*dtls.ClientHelloInfo) (dtls.ServerSelection, error) {
			return dtls.ServerSelection{}, errors.New("no association")
		},
		HoldFinalFlight:     true,
		MTU:                 cfg.MTU,
		RetransmitTimeout:   cfg.FlightInterval,
		MaxHandshakeMessage: cfg.MaxClientHello,
		CountDrop:           m.dtlsDrop,
	}
	dc.EKTCiphers = []dtls.EKTCipher{cfg.EKT.Cipher()}
	if k.dtlsConfig, err = dc.Settle(true); err != nil {
		cancel()
		return nil, fmt.Errorf("keydist: %w", err)
	}
	for i := range k.work {
		k.work[i] = make(chan job, cfg.InboundQueueLength)
		k.wg.Go(func() { k.worker(k.work[i]) })
	}
	if n, ok := cfg.EKT.(ektNotifier); ok {
		n.setNotify(k.ektChanged)
	}
	if o, ok := cfg.EKT.(orphanSource); ok {
		o.setRekeyed(k.orphansRekeyed)
	}
	cfg.Registry.Subscribe(k.revalidate)
	k.wg.Add(1)
	go k.janitor()
	return k, nil
}

// job is one datagram for an association, or its timer (b nil).
type job struct {
	a *association
	b []byte
}

// worker runs the DTLS servers of the associations hashed to it.
func (k *KeyDistributor) worker(q chan job) {
	for {
		select {
		case <-k.ctx.Done():
			return
		case j := <-q:
			if j.b == nil {
				j.a.handleTimeout()
			} else {
				j.a.handleDatagram(j.b)
			}
		}
	}
}

// enqueue hands a datagram (b, copied by the caller) or a timer expiry
// (b nil) to the association's worker. A full queue drops a datagram
// (DTLS retransmits); a timer expiry waits for room.
func (k *KeyDistributor) enqueue(a *association, b []byte) {
	q := k.work[int(binary.BigEndian.Uint32(a.key.id[12:]))%len(k.work)]
	if b == nil {
		select {
		case q <- job{a: a}:
		case <-k.ctx.Done():
		}
		return
	}
	select {
	case q <- job{a: a, b: b}:
	default:
		k.m.drops.WithLabelValues(reasonQueueFull).Inc()
	}
}

func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Fingerprint returns the SHA-256 fingerprint of the KD's DTLS certificate
// (for the a=fingerprint attribute of the SDP the signalling sends to
// endpoints).
func (k *KeyDistributor) Fingerprint() Fingerprint { return k.fp }

// Close ends every association (sending EndpointDisconnect while tunnels
// are still up) and stops every goroutine of the KD. It waits for them.
func (k *KeyDistributor) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	all := make([]*association, 0, len(k.assocs))
	for _, a := range k.assocs {
		all = append(all, a)
	}
	k.mu.Unlock()
	for _, a := range all {
		a.terminate(reasonShutdown, 0, true)
	}
	k.cancel()
	k.wg.Wait()
	if k.journal != nil {
		// Restored associations stay in the journal: the next run still
		// answers for them.
		if err := k.journal.close(); err != nil {
			k.log.Warn("closing the association journal", "err", err)
		}
	}
	return nil
}

// --- restored associations (journal.go)

func (k *KeyDistributor) journalAdd(a *association, m *Match) {
	if k.journal == nil {
		return
	}
	err := k.journal.add(journalEntry{MD: a.key.peer, ID: a.key.id, Instance: a.instance, Conference: m.Conference,
		TLSID: m.Endpoint.TLSID, FP: m.Endpoint.Fingerprint, Legacy: m.Legacy, Since: a.created})
	if err != nil {
		k.rl.Log(slog.LevelError, "journal", "association journal", "err", err)
	}
}

func (k *KeyDistributor) journalRemove(key assocKey) {
	if k.journal == nil {
		return
	}
	if err := k.journal.remove(key.peer, key.id); err != nil {
		k.rl.Log(slog.LevelError, "journal", "association journal", "err", err)
	}
}

// dropRestoredLocked forgets a restored association. Called with k.mu held.
func (k *KeyDistributor) dropRestoredLocked(key assocKey, reason string) {
	if _, ok := k.restored[key]; !ok {
		return
	}
	delete(k.restored, key)
	k.m.ended.WithLabelValues(reason).Inc()
	k.journalRemove(key)
}

// sendRestoredDisconnects ends, at their MDs, the revoked restored
// associations whose MD instance has a live tunnel. Called with k.mu held;
// sending does not block (the tunnel's control lane).
func (k *KeyDistributor) sendRestoredDisconnectsLocked() {
	for key, r := range k.restored {
		if !r.revoked {
			continue
		}
		p := k.peers[key.peer]
		if p == nil {
			continue
		}
		t := p.tunnelFor(r.e.Instance)
		if t == nil {
			continue
		}
		if err := t.SendEndpointDisconnect(key.id); err != nil {
			continue
		}
		k.m.disconnectsOut.Inc()
		k.log.Info("association of a previous run ended: endpoint no longer registered",
			"md", key.peer, "association", key.id, "conference", r.e.Conference, "tls_id", r.e.TLSID)
		k.dropRestoredLocked(key, reasonRemoved)
	}
}

// TunnelUp implements tunnel.KDHandler.
func (k *KeyDistributor) TunnelUp(t *tunnel.KDTunnel) { k.tunnelUp(t) }

// TunnelDown implements tunnel.KDHandler.
func (k *KeyDistributor) TunnelDown(t *tunnel.KDTunnel, err error) { k.tunnelDown(t, err) }

// TunnelAnnounced implements tunnel.InstanceHandler: an MD instance
// announced itself on t. The associations of this MD identity that belong
// to another instance with no live tunnel left are those of a process that
// is gone (it restarted): they end now, instead of living on until
// TunnelGrace (which a quick restart would keep resetting) or forever.
func (k *KeyDistributor) TunnelAnnounced(t *tunnel.KDTunnel) { k.tunnelAnnounced(t) }

func (k *KeyDistributor) tunnelAnnounced(t tunnelConn) {
	inst := t.Instance()
	var dead []*association
	k.mu.Lock()
	if p := k.peers[t.Peer()]; p != nil {
		delete(p.instDown, inst)
		for key, a := range k.assocs {
			if key.peer == t.Peer() && a.instance != uuid.Nil && a.instance != inst && !p.instanceLive(a.instance) {
				dead = append(dead, a)
			}
		}
		// Restored associations are not ended by another instance's
		// announcement: after a KD restart no instance has announced yet,
		// and the one that owns them may simply come later. sweep ends
		// those whose instance stays away for TunnelGrace.
		now := time.Now()
		for key, r := range k.restored {
			if key.peer == t.Peer() && r.e.Instance == inst {
				r.lastLive = now
			}
		}
		k.sendRestoredDisconnectsLocked()
	}
	k.mu.Unlock()
	if len(dead) > 0 {
		k.log.Info("media distributor restarted: ending the associations of its previous instance",
			"md", t.Peer(), "instance", inst, "associations", len(dead))
	}
	for _, a := range dead {
		a.terminate(reasonMDRestarted, 0, false)
	}
}

// HandleTunneledDtls implements tunnel.KDHandler.
func (k *KeyDistributor) HandleTunneledDtls(t *tunnel.KDTunnel, m *tunnel.TunneledDtls) {
	k.handleTunneledDtls(t, m.AssociationID, m.Message)
}

// HandleEndpointDisconnect implements tunnel.KDHandler.
func (k *KeyDistributor) HandleEndpointDisconnect(t *tunnel.KDTunnel, id uuid.UUID) {
	k.handleEndpointDisconnect(t, id)
}

func (k *KeyDistributor) tunnelUp(t tunnelConn) {
	k.mu.Lock()
	p := k.peers[t.Peer()]
	if p == nil {
		p = &peerState{}
		k.peers[t.Peer()] = p
	}
	p.tunnels = append(p.tunnels, t)
	p.downSince = time.Time{}
	k.mu.Unlock()
	k.m.tunnels.Inc()
	// internal/tunnel logs "tunnel up" (with the same tunnel id): once.
	k.log.Debug("tunnel registered", "tunnel", t.ID(), "md", t.Peer())
}

func (k *KeyDistributor) tunnelDown(t tunnelConn, err error) {
	type move struct {
		a    *association
		next tunnelConn
	}
	var moves []move
	k.mu.Lock()
	p := k.peers[t.Peer()]
	if p != nil {
		p.tunnels = slices.DeleteFunc(p.tunnels, func(x tunnelConn) bool { return x == t })
		if len(p.tunnels) == 0 {
			p.downSince = time.Now()
		}
		if inst := t.Instance(); inst != uuid.Nil && !p.instanceLive(inst) {
			if p.instDown == nil {
				p.instDown = make(map[uuid.UUID]time.Time)
			}
			p.instDown[inst] = time.Now()
		}
	}
	peerHasAssocs := false
	for key, a := range k.assocs {
		if key.peer != t.Peer() {
			continue
		}
		peerHasAssocs = true
		if a.onTunnel(t) {
			var next tunnelConn
			if p != nil {
				next = p.tunnelFor(a.instance)
			}
			moves = append(moves, move{a, next})
		}
	}
	if p != nil && len(p.tunnels) == 0 && !peerHasAssocs {
		delete(k.peers, t.Peer())
	}
	k.mu.Unlock()
	for _, m := range moves {
		m.a.replaceTunnel(t, m.next)
	}
	// EndpointDisconnects the tunnel took and did not write: on another
	// tunnel of the same MD instance, or counted lost.
	for _, id := range t.UnsentDisconnects() {
		if nt := k.liveTunnel(t.Peer(), t.Instance()); nt != nil && nt.SendEndpointDisconnect(id) == nil {
			continue
		}
		k.m.disconnectsLost.Inc()
	}
	k.m.tunnels.Dec()
	k.log.Info("tunnel down", "tunnel", t.ID(), "md", t.Peer(), "err", err, "associations_moved", len(moves))
}

// liveTunnel returns a live tunnel of MD peer for an association of MD
// instance inst (see peerState.tunnelFor).
func (k *KeyDistributor) liveTunnel(peer string, inst uuid.UUID) tunnelConn {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := k.peers[peer]; p != nil {
		return p.tunnelFor(inst)
	}
	return nil
}

func (k *KeyDistributor) drop(reason string, t tunnelConn, id uuid.UUID, err error) {
	k.m.drops.WithLabelValues(reason).Inc()
	args := []any{"md", t.Peer(), "tunnel", t.ID(), "association", id}
	if err != nil {
		args = append(args, "err", err)
	}
	k.rl.Log(slog.LevelWarn, reason, "dropped tunneled DTLS datagram", args...)
}

func (k *KeyDistributor) handleTunneledDtls(t tunnelConn, id uuid.UUID, b []byte) {
	k.m.rxDatagrams.Inc()
	key := assocKey{peer: t.Peer(), id: id}
	k.mu.Lock()
	a := k.assocs[key]
	if a == nil {
		if k.closed {
			k.mu.Unlock()
			return
		}
		if !startsClientHello(b) {
			k.mu.Unlock()
			k.drop(reasonUnknownAssociation, t, id, nil)
			return
		}
		var reason string
		switch {
		case len(k.assocs) >= k.cfg.MaxAssociations:
			reason = reasonLimitTotal
		case k.perTunnel[t.ID()] >= k.cfg.MaxAssociationsPerTunnel:
			reason = reasonLimitTunnel
		case k.pending >= k.cfg.MaxPending:
			reason = reasonLimitPending
		}
		if reason != "" {
			k.mu.Unlock()
			k.drop(reason, t, id, nil)
			k.m.handshakes.WithLabelValues(reason).Inc()
			if err := t.SendEndpointDisconnect(id); err == nil {
				k.m.disconnectsOut.Inc()
			}
			return
		}
		var err error
		if a, err = newAssociation(k, key, t); err != nil {
			k.mu.Unlock()
			k.drop(reasonHandshakeFailed, t, id, err)
			return
		}
		k.assocs[key] = a
		k.perTunnel[t.ID()]++
		k.pending++
		k.m.associations.WithLabelValues(statePending.String()).Inc()
	}
	k.mu.Unlock()
	a.setTunnel(t)
	k.enqueue(a, bytes.Clone(b))
}

func (k *KeyDistributor) handleEndpointDisconnect(t tunnelConn, id uuid.UUID) {
	k.m.disconnectsIn.Inc()
	k.mu.Lock()
	key := assocKey{peer: t.Peer(), id: id}
	a := k.assocs[key]
	if a == nil {
		if _, ok := k.restored[key]; ok {
			k.dropRestoredLocked(key, reasonMDDisconnect)
			k.mu.Unlock()
			return
		}
	}
	k.mu.Unlock()
	if a == nil && k.orphanLeft(t.Peer(), id) {
		return
	}
	if a == nil {
		k.m.drops.WithLabelValues(reasonClosedMD).Inc()
		k.rl.Log(slog.LevelDebug, reasonClosedMD, "EndpointDisconnect for an unknown association", "md", t.Peer(), "association", id)
		return
	}
	a.terminate(reasonMDDisconnect, 0, false)
}

// forget removes a from the tables. It returns false if a was not there.
func (k *KeyDistributor) forget(a *association, st assocState) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.assocs[a.key] != a {
		return false
	}
	delete(k.assocs, a.key)
	if n := k.perTunnel[a.firstTunnel] - 1; n > 0 {
		k.perTunnel[a.firstTunnel] = n
	} else {
		delete(k.perTunnel, a.firstTunnel)
	}
	if st == statePending {
		k.pending--
	}
	if p := k.peers[a.key.peer]; p != nil && len(p.tunnels) == 0 {
		still := false
		for key := range k.assocs {
			if key.peer == a.key.peer {
				still = true
				break
			}
		}
		if !still {
			delete(k.peers, a.key.peer)
		}
	}
	k.m.associations.WithLabelValues(st.String()).Dec()
	return true
}

// setState moves a between the pending/handshaking/established gauges.
func (k *KeyDistributor) moved(from, to assocState) {
	k.mu.Lock()
	if from == statePending {
		k.pending--
	}
	k.mu.Unlock()
	k.m.associations.WithLabelValues(from.String()).Dec()
	k.m.associations.WithLabelValues(to.String()).Inc()
}

// revalidate ends the associations whose registry entry is gone (admin API
// removal, file reload). Called by the Registry after every change.
func (k *KeyDistributor) revalidate() {
	snap := k.cfg.Registry.current()
	k.mu.Lock()
	all := make([]*association, 0, len(k.assocs))
	for _, a := range k.assocs {
		all = append(all, a)
	}
	for _, r := range k.restored {
		m := Match{Conference: r.e.Conference, Endpoint: Endpoint{TLSID: r.e.TLSID, Fingerprint: r.e.FP}, Legacy: r.e.Legacy}
		if !snap.stillValid(&m) {
			r.revoked = true
		}
	}
	k.sendRestoredDisconnectsLocked()
	k.mu.Unlock()
	for _, a := range all {
		if !a.stillRegistered(snap) {
			a.terminate(reasonRemoved, dtls.AlertAccessDenied, true)
		}
	}
}

// janitor ends pending associations past the handshake timeout, idle
// established ones, and those whose MD has had no tunnel for TunnelGrace.
func (k *KeyDistributor) janitor() {
	defer k.wg.Done()
	period := min(time.Second, k.cfg.HandshakeTimeout/4, k.cfg.TunnelGrace/4)
	if k.cfg.IdleTimeout > 0 {
		period = min(period, k.cfg.IdleTimeout/4)
	}
	period = max(period, 10*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case now := <-tick.C:
			k.sweep(now)
		}
	}
}

type sweepItem struct {
	a      *association
	reason string
}

func (k *KeyDistributor) sweep(now time.Time) {
	var ends []sweepItem
	k.mu.Lock()
	for key, a := range k.assocs {
		st := a.getState()
		switch {
		case st != stateEstablished && now.Sub(a.created) > k.cfg.HandshakeTimeout:
			ends = append(ends, sweepItem{a, reasonHandshakeTimeout})
		case st == stateEstablished && k.cfg.IdleTimeout > 0 && now.Sub(a.lastActivity()) > k.cfg.IdleTimeout:
			ends = append(ends, sweepItem{a, reasonIdleTimeout})
		default:
			p := k.peers[key.peer]
			if p == nil {
				break
			}
			if a.instance != uuid.Nil {
				// Its MD instance has had no tunnel for TunnelGrace.
				if since, down := p.instDown[a.instance]; down && now.Sub(since) > k.cfg.TunnelGrace {
					ends = append(ends, sweepItem{a, reasonTunnelLost})
				}
			} else if len(p.tunnels) == 0 && now.Sub(p.downSince) > k.cfg.TunnelGrace {
				ends = append(ends, sweepItem{a, reasonTunnelLost})
			}
		}
	}
	for key, r := range k.restored {
		if p := k.peers[key.peer]; p != nil && p.instanceLive(r.e.Instance) {
			r.lastLive = now
		} else if now.Sub(r.lastLive) > k.cfg.TunnelGrace {
			if r.revoked {
				// Its MD never came back to hear it: counted, not silent.
				k.m.disconnectsLost.Inc()
			}
			k.dropRestoredLocked(key, reasonTunnelLost)
		}
	}
	k.sendRestoredDisconnectsLocked()
	k.mu.Unlock()
	k.endOrphans(now, true)
	for _, e := range ends {
		desc := uint8(0)
		if e.reason == reasonHandshakeTimeout {
			desc = dtls.AlertHandshakeFailure
		}
		e.a.terminate(e.reason, desc, true)
	}
	if now.After(k.ttlCheck) {
		k.ttlCheck = now.Add(ttlCheckInterval)
		k.renewEKT(now, false)
	} else {
		k.renewEKT(now, true)
	}
}

// ttlCheckInterval is how often the janitor looks for EKT parameter sets
// near the end of their lifetime.
const ttlCheckInterval = 10 * time.Second

// renewEKT re-keys every conference whose EKT parameter set has used three
// quarters of its TTL: an EKTKey must not be used past it (RFC 8870
// section 5.2.2).
//
// With onlyDue it only retries the re-keys that failed (rekeyDue: the
// store was unreachable when a member left).
func (k *KeyDistributor) renewEKT(now time.Time, onlyDue bool) {
	k.mu.Lock()
	confs := make(map[string]*ektConference, len(k.members))
	for c, conf := range k.members {
		confs[c] = conf
	}
	k.mu.Unlock()
	for c, conf := range confs {
		if onlyDue && !conf.needsRekey() {
			continue
		}
		conf.mu.Lock()
		var flush []*association
		if len(conf.members) > 0 && conf.rekeyDue {
			flush = k.rekeyLocked(c, conf)
		} else if len(conf.members) > 0 && !onlyDue {
			if p, err := k.cfg.EKT.Current(c); err == nil {
				due := now.Sub(p.Created) > p.TTL*3/4
				p.zero()
				if due {
					flush = k.rekeyLocked(c, conf)
				}
			}
		}
		conf.mu.Unlock()
		for _, o := range flush {
			o.flush()
		}
	}
}

// needsRekey reports rekeyDue (it takes the conference's lock).
func (c *ektConference) needsRekey() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rekeyDue
}

// AssociationInfo describes one live association (admin API).
type AssociationInfo struct {
	// MD is the identity of the media distributor that relays it.
	MD string `json:"md"`
	// ID is the association id.
	ID uuid.UUID `json:"association_id"`
	// State is pending, handshaking or established, or restored: an
	// association of a previous run of the KD read back from the journal
	// (no DTLS state; the KD can still end it at its MD).
	State string `json:"state"`
	// Conference is the matched conference ("" before the match).
	Conference string `json:"conference,omitempty"`
	// TLSID is the endpoint's tls-id ("" for a legacy endpoint).
	TLSID string `json:"tls_id,omitempty"`
	// Fingerprint is the endpoint's certificate fingerprint, once known.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Profile is the negotiated SRTP protection profile, once known.
	Profile string `json:"profile,omitempty"`
	// Since is when the first datagram arrived.
	Since time.Time `json:"since"`
}

// Associations lists the live associations.
func (k *KeyDistributor) Associations() []AssociationInfo {
	k.mu.Lock()
	all := make([]*association, 0, len(k.assocs))
	for _, a := range k.assocs {
		all = append(all, a)
	}
	out := make([]AssociationInfo, 0, len(all)+len(k.restored))
	for _, r := range k.restored {
		in := AssociationInfo{MD: r.e.MD, ID: r.e.ID, State: "restored", Conference: r.e.Conference,
			TLSID: r.e.TLSID, Fingerprint: r.e.FP.String(), Since: r.e.Since}
		out = append(out, in)
	}
	k.mu.Unlock()
	for _, a := range all {
		out = append(out, a.info())
	}
	slices.SortFunc(out, func(x, y AssociationInfo) int { return x.Since.Compare(y.Since) })
	return out
}

// NumAssociations returns the number of live associations (all states).
func (k *KeyDistributor) NumAssociations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.assocs)
}
