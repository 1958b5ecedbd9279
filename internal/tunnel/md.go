package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// MDHandler receives what key distributors send to the media distributor.
// It is implemented by the MD daemon (cmd/mdfast), which installs keys and
// forwards DTLS to endpoints; this package never imports the key table.
//
// Methods are called from the reader goroutine of the tunnel the message
// arrived on: calls for one tunnel are serialized, calls for different
// tunnels run concurrently. They must not block for long.
type MDHandler interface {
	// HandleTunneledDtls delivers a DTLS datagram for the endpoint of
	// association id. dtls is valid only during the call.
	HandleTunneledDtls(id uuid.UUID, dtls []byte)
	// HandleMediaKeys delivers the hop-by-hop keys of an association. mk and
	// its slices are valid only during the call: copy what you keep. The
	// profile is one the MD advertised.
	HandleMediaKeys(mk *MediaKeys)
	// HandleEndpointDisconnect reports that the KD ended association id.
	HandleEndpointDisconnect(id uuid.UUID)
	// TunnelState reports that the MD has at least one (up) or no (!up)
	// live tunnel to peer. Calls for one peer are serialized and
	// alternate. peer is the dialed address, or in reverse mode the KD's
	// identity ("spki:" and its SPKI SHA-256 hex).
	TunnelState(peer string, up bool)
}

// MDConfig configures the media distributor side. Zero values mean the
// documented defaults.
type MDConfig struct {
	// Peers are the KD addresses ("host:port") the MD dials.
	Peers []string
	// TunnelsPerPeer is the number of tunnels kept to each peer (default 1).
	TunnelsPerPeer int
	// Listener, or else Listen (an address), enables reverse mode: the MD
	// accepts tunnels dialed by KDs. It may be combined with Peers. Run
	// closes the listener when it returns.
	Listener net.Listener
	Listen   string
	// TLS is used as client config for dialing (ServerName defaults to the
	// host of the dialed address) and as server config in reverse mode.
	// Build it with NewTLSConfig. Required.
	TLS *tls.Config
	// Profiles are the protection profiles advertised in SupportedProfiles.
	// Required (RFC 9185: at least one). They never change during the life
	// of the MD, as section 5.3 requires.
	Profiles []ProtectionProfile
	// Version is the protocol version sent first (default Version0). It is
	// replaced by the KD's highest_version after an UnsupportedVersion.
	Version uint8
	// BackoffMin and BackoffMax bound the exponential reconnect delay
	// (defaults DefaultBackoffMin, DefaultBackoffMax); StableAfter is how
	// long a tunnel must stay up to reset it (DefaultStableAfter).
	BackoffMin, BackoffMax, StableAfter time.Duration
	// HandshakeTimeout bounds connect and TLS handshake
	// (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a tunnel on which nothing was received for that
	// long. 0 (the default) disables it: the protocol has no ping, so an
	// idle but healthy tunnel is silent, and half-open connections are
	// detected by TCP keepalive and TCP_USER_TIMEOUT instead (see tuneTCP).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// TCPUserTimeout is the TCP_USER_TIMEOUT of tunnel sockets
	// (DefaultTCPUserTimeout; negative leaves the kernel default).
	TCPUserTimeout time.Duration
	// QueueLen is the per-tunnel send queue length (DefaultQueueLen).
	QueueLen int
	// MaxFrame is the largest frame accepted from a KD, header included
	// (default MaxFrameSize, minimum MinFrameLimit). A larger frame closes
	// the tunnel, so lower it only together with the KD's.
	MaxFrame int
	// Logger receives lifecycle logs (default slog.Default()).
	Logger *slog.Logger
	// Instance is announced on every tunnel (see instance.go); NewMD makes
	// one stating InstanceCaps when it is uuid.Nil. It must come from
	// NewInstanceID.
	Instance     uuid.UUID
	InstanceCaps byte
}

// MD is the media distributor side of the tunnel: a pool of tunnels to one
// or more KDs. Create it with NewMD and run it with Run; the Send methods are
// safe for concurrent use.
type MD struct {
	cfg     MDConfig
	opts    connOptions
	h       MDHandler
	log     *slog.Logger
	tlsDial map[string]*tls.Config
	version atomic.Uint32 // the version to send on the next connection
	running atomic.Bool

	mu   sync.RWMutex
	live []*mdTunnel
	pins map[uuid.UUID]*mdTunnel
	rr   int

	stateMu  sync.Mutex // serializes TunnelState calls
	peerLive map[string]int

	nextID          atomic.Uint64
	lostDisconnects atomic.Uint64
}

// FlushControl waits until every live tunnel has written the
// EndpointDisconnects queued on it, or ctx ends, and returns how many were
// still unwritten (0: all of them reached the TLS connections). A daemon
// that stops calls it before closing its tunnels, instead of hoping a
// pause is long enough.
func (m *MD) FlushControl(ctx context.Context) int {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		backlog := 0
		m.mu.RLock()
		for _, t := range m.live {
			if !t.c.closed() {
				backlog += t.c.controlBacklog()
			}
		}
		m.mu.RUnlock()
		if backlog == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return backlog / disconnectLen
		case <-tick.C:
		}
	}
}

// disconnectLen is the encoded length of an EndpointDisconnect.
var disconnectLen = func() int {
	b, _ := AppendMessage(nil, &EndpointDisconnect{AssociationID: uuid.New()})
	return len(b)
}()

// LostDisconnects returns how many EndpointDisconnects could not be sent:
// their tunnel closed before writing them and no other tunnel was up.
func (m *MD) LostDisconnects() uint64 { return m.lostDisconnects.Load() }

// mdTunnel is one live tunnel of the MD's pool.
type mdTunnel struct {
	c    *tconn
	peer string
	id   uint64
	pins map[uuid.UUID]struct{} // guarded by MD.mu
}

// NewMD checks cfg and returns an MD. Nothing is dialed until Run.
func NewMD(cfg MDConfig, h MDHandler) (*MD, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil MDHandler", ErrInvalidConfig)
	}
	if cfg.TLS == nil {
		return nil, fmt.Errorf("%w: MDConfig.TLS is required (the tunnel is mutually authenticated)", ErrInvalidConfig)
	}
	if len(cfg.Profiles) == 0 {
		return nil, fmt.Errorf("%w: MDConfig.Profiles is empty", ErrInvalidConfig)
	}
	if len(cfg.Profiles) > maxProfiles {
		return nil, fmt.Errorf("%w: %d profiles do not fit a SupportedProfiles", ErrInvalidConfig, len(cfg.Profiles))
	}
	if len(cfg.Peers) == 0 && cfg.Listener == nil && cfg.Listen == "" {
		return nil, fmt.Errorf("%w: no Peers to dial and no Listener/Listen for reverse mode", ErrInvalidConfig)
	}
	if cfg.TunnelsPerPeer < 0 {
		return nil, fmt.Errorf("%w: negative TunnelsPerPeer", ErrInvalidConfig)
	}
	if cfg.Instance == uuid.Nil {
		id, err := NewInstanceID(cfg.InstanceCaps)
		if err != nil {
			return nil, err
		}
		cfg.Instance = id
	} else if !IsInstanceID(cfg.Instance) {
		return nil, fmt.Errorf("%w: Instance %v is not an instance id", ErrInvalidConfig, cfg.Instance)
	}
	cfg.TunnelsPerPeer = cmpOr(cfg.TunnelsPerPeer, 1)
	cfg.Profiles = slices.Clone(cfg.Profiles)
	cfg.Peers = slices.Clone(cfg.Peers)
	m := &MD{
		cfg: cfg,
		opts: connOptions{
			HandshakeTimeout: cfg.HandshakeTimeout,
			IdleTimeout:      cfg.IdleTimeout,
			WriteTimeout:     cfg.WriteTimeout,
			TCPUserTimeout:   cfg.TCPUserTimeout,
			QueueLen:         cfg.QueueLen,
			MaxFrame:         cfg.MaxFrame,
			BackoffMin:       cfg.BackoffMin,
			BackoffMax:       cfg.BackoffMax,
			StableAfter:      cfg.StableAfter,
		},
		h:        h,
		log:      logger(cfg.Logger).With("component", "tunnel-md"),
		tlsDial:  make(map[string]*tls.Config),
		pins:     make(map[uuid.UUID]*mdTunnel),
		peerLive: make(map[string]int),
	}
	if err := m.opts.fill(); err != nil {
		return nil, err
	}
	for _, p := range cfg.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("%w: peer %q: %w", ErrInvalidConfig, p, err)
		}
		m.tlsDial[p] = tlsForDial(cfg.TLS, p)
	}
	m.version.Store(uint32(cfg.Version))
	return m, nil
}

// Run dials every peer (and accepts KDs in reverse mode) and keeps the
// tunnels up, reconnecting with backoff, until ctx is done. It returns only
// after every goroutine it started has ended and every tunnel is closed:
// nil after ctx is done, or an error if it could not start. Run may be
// called once.
func (m *MD) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return fmt.Errorf("tunnel: MD.Run called twice: %w", ErrClosed)
	}
	ln := m.cfg.Listener
	if ln == nil && m.cfg.Listen != "" {
		var err error
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", m.cfg.Listen); err != nil {
			return fmt.Errorf("tunnel: MD listen on %s: %w", m.cfg.Listen, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range m.cfg.Peers {
		for slot := range m.cfg.TunnelsPerPeer {
			wg.Go(func() { m.dialLoop(ctx, p, slot) })
		}
	}
	if ln != nil {
		stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
		defer stop()
		wg.Go(func() { m.acceptLoop(ctx, ln, &wg) })
	}
	<-ctx.Done()
	wg.Wait()
	if ln != nil {
		_ = ln.Close()
	}
	return nil
}

// Up returns the number of live tunnels (for a readiness probe).
func (m *MD) Up() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.live)
}

// Instance returns the instance id announced on every tunnel.
func (m *MD) Instance() uuid.UUID { return m.cfg.Instance }

// Version returns the protocol version the MD sends on its next connection.
func (m *MD) Version() uint8 { return uint8(m.version.Load()) }

// SendTunneledDtls queues a DTLS datagram from the endpoint of association
// id for the KD. The association is pinned to one live tunnel on first use
// (the least loaded) and stays there while that tunnel lives; if it fails,
// the next send re-pins it to another live tunnel. dtls is copied. Errors:
// ErrNoTunnel, ErrQueueFull (the pinned tunnel is congested; the message was
// dropped), or an encoding error (ErrNotSendable for an empty message,
// ErrFrameTooLarge).
func (m *MD) SendTunneledDtls(id uuid.UUID, dtls []byte) error {
	buf, err := AppendMessage(make([]byte, 0, HeaderLen+uuidLen+2+len(dtls)), &TunneledDtls{AssociationID: id, Message: dtls})
	if err != nil {
		return err
	}
	return m.sendOn(id, buf, true, "TunneledDtls")
}

// SendEndpointDisconnect tells the KD that association id has ended, on the
// tunnel it is pinned to (or any live tunnel), and unpins it.
func (m *MD) SendEndpointDisconnect(id uuid.UUID) error {
	buf, err := AppendMessage(nil, &EndpointDisconnect{AssociationID: id})
	if err != nil {
		return err
	}
	defer m.unpin(id)
	return m.sendOn(id, buf, false, "EndpointDisconnect")
}

// sendControl reports whether buf goes on the control lane (see
// enqueueControl): EndpointDisconnect must not be lost to a full queue.
func sendControl(buf []byte) bool { return MsgType(buf[0]) == MsgEndpointDisconnect }

// sendOn enqueues the encoded message buf on the tunnel association id is
// pinned to (pinning it first when pin is true). When that tunnel dies
// under the send, the association is unpinned and the send retried on
// another live tunnel, up to three times.
func (m *MD) sendOn(id uuid.UUID, buf []byte, pin bool, what string) error {
	for range 3 {
		t, err := m.tunnelFor(id, pin)
		if err != nil {
			return err
		}
		if sendControl(buf) {
			err = t.c.enqueueControl(buf)
		} else {
			err = t.c.enqueue(&outMsg{buf: buf})
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrClosed) {
			return fmt.Errorf("tunnel: send %s via %s: %w", what, t.peer, err)
		}
		m.unpin(id)
	}
	return fmt.Errorf("tunnel: send %s: %w", what, ErrNoTunnel)
}

// tunnelFor returns the live tunnel association id is pinned to, pinning it
// to the least loaded live tunnel if needed (pin false: pick without
// pinning).
func (m *MD) tunnelFor(id uuid.UUID, pin bool) (*mdTunnel, error) {
	m.mu.RLock()
	t := m.pins[id]
	m.mu.RUnlock()
	if t != nil && !t.c.closed() {
		return t, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t = m.pins[id]; t != nil {
		if !t.c.closed() {
			return t, nil
		}
		delete(t.pins, id)
		delete(m.pins, id)
	}
	var best *mdTunnel
	n := len(m.live)
	m.rr++
	for i := range n {
		c := m.live[(m.rr+i)%n]
		if c.c.closed() {
			continue
		}
		if best == nil || len(c.pins) < len(best.pins) {
			best = c
		}
	}
	if best == nil {
		return nil, ErrNoTunnel
	}
	if pin {
		best.pins[id] = struct{}{}
		m.pins[id] = best
	}
	return best, nil
}

func (m *MD) unpin(id uuid.UUID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.pins[id]; t != nil {
		delete(t.pins, id)
		delete(m.pins, id)
	}
}

func (m *MD) addTunnel(t *mdTunnel) {
	m.mu.Lock()
	m.live = append(m.live, t)
	m.mu.Unlock()
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	m.peerLive[t.peer]++
	if m.peerLive[t.peer] == 1 {
		m.h.TunnelState(t.peer, true)
	}
}

// removeTunnel takes t out of the pool and unpins its associations; their
// next send picks another live tunnel.
func (m *MD) removeTunnel(t *mdTunnel) {
	m.mu.Lock()
	m.live = slices.DeleteFunc(m.live, func(x *mdTunnel) bool { return x == t })
	for id := range t.pins {
		if m.pins[id] == t {
			delete(m.pins, id)
		}
	}
	clear(t.pins)
	m.mu.Unlock()
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	m.peerLive[t.peer]--
	if m.peerLive[t.peer] == 0 {
		delete(m.peerLive, t.peer)
		m.h.TunnelState(t.peer, false)
	}
}

// dialLoop keeps one tunnel to addr up until ctx is done.
func (m *MD) dialLoop(ctx context.Context, addr string, slot int) {
	log := m.log.With("peer", addr, "slot", slot)
	attempt := 0
	for ctx.Err() == nil {
		up, err := m.dialOnce(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if up >= m.opts.StableAfter {
			attempt = 0
		}
		d := backoffDelay(attempt, m.opts.BackoffMin, m.opts.BackoffMax)
		attempt++
		if up > 0 {
			log.Warn("tunnel to key distributor lost", "err", err, "up", up.Round(time.Millisecond), "retry_in", d)
		} else {
			log.Warn("cannot establish tunnel to key distributor", "err", err, "attempt", attempt, "retry_in", d)
		}
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// dialOnce dials addr and runs one tunnel session. up is how long the tunnel
// was live (0 if it never was).
func (m *MD) dialOnce(ctx context.Context, addr string) (time.Duration, error) {
	d := net.Dialer{Timeout: m.opts.HandshakeTimeout, KeepAlive: -1}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", addr, err)
	}
	return m.session(ctx, raw, tls.Client(raw, m.tlsDial[addr]), addr)
}

// acceptLoop accepts KD connections in reverse mode.
func (m *MD) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	attempt := 0
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				m.log.Error("reverse-mode listener closed; no longer accepting key distributors", "err", err)
				return
			}
			d := backoffDelay(attempt, 5*time.Millisecond, time.Second)
			attempt++
			m.log.Warn("accept failed", "err", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		attempt = 0
		wg.Go(func() {
			_, err := m.session(ctx, raw, tls.Server(raw, m.cfg.TLS), "")
			if ctx.Err() == nil {
				m.log.Warn("reverse tunnel from key distributor ended", "remote", raw.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// session runs one connection from the TLS handshake to its end: it sends
// SupportedProfiles before anything else, joins the pool, reads until the
// tunnel fails, and leaves the pool. peer "" means: name the peer by its
// certificate.
func (m *MD) session(ctx context.Context, raw net.Conn, tc *tls.Conn, peer string) (time.Duration, error) {
	if err := tuneTCP(raw, m.opts.TCPUserTimeout); err != nil {
		m.log.Warn("cannot tune tunnel socket", "err", err)
	}
	cs, err := handshake(ctx, tc, m.opts.HandshakeTimeout, nil)
	if err != nil {
		_ = raw.Close()
		return 0, err
	}
	if peer == "" {
		peer = peerIdentity(cs)
	}
	c := newConn(tc, raw, &m.opts)
	stop := context.AfterFunc(ctx, func() { c.close(ErrClosed) })
	defer stop()

	sent := m.Version()
	first, err := AppendMessage(nil, &SupportedProfiles{Version: sent, Profiles: m.cfg.Profiles})
	if err == nil {
		first, err = AppendMessage(first, &EndpointDisconnect{AssociationID: m.cfg.Instance})
	}
	if err != nil {
		c.close(err)
		return 0, err
	}
	if err := c.writeNow(first); err != nil {
		c.close(err)
		return 0, err
	}
	c.startWriter()
	t := &mdTunnel{c: c, peer: peer, id: m.nextID.Add(1), pins: make(map[uuid.UUID]struct{})}
	log := m.log.With("peer", peer, "tunnel", t.id, "remote", raw.RemoteAddr().String())
	log.Info("tunnel up", "tls_version", tls.VersionName(cs.Version), "protocol_version", sent)
	start := time.Now()
	m.addTunnel(t)
	err = c.readLoop(func(frame []byte) error { return m.dispatch(c, sent, frame, log) })
	c.close(err)
	c.wait()
	m.removeTunnel(t)
	// EndpointDisconnects the tunnel accepted and did not write go out on
	// another live tunnel, or are counted lost.
	lost := 0
	for _, id := range c.unsentDisconnects() {
		if m.SendEndpointDisconnect(id) != nil {
			lost++
		}
	}
	if lost > 0 {
		m.lostDisconnects.Add(uint64(lost))
		log.Warn("EndpointDisconnects lost with the tunnel: no other tunnel is up", "count", lost)
	}
	up := time.Since(start)
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrFrameTooLarge) || isDecodeErr(err) {
		log.Error("closing tunnel: malformed or unexpected message from key distributor", "err", err)
	}
	return max(up, time.Nanosecond), err
}

func isDecodeErr(err error) bool {
	var de *DecodeError
	return errors.As(err, &de)
}

// dispatch handles one frame from a KD.
func (m *MD) dispatch(c *tconn, sent uint8, frame []byte, log *slog.Logger) error {
	// Section 5.5: UnsupportedVersion is recognised from its first octets,
	// whatever the rest of a newer version's body holds.
	if MsgType(frame[0]) == MsgUnsupportedVersion && len(frame) > HeaderLen {
		uv := &UnsupportedVersionError{Sent: sent, Highest: frame[HeaderLen]}
		if uv.Highest > Version0 {
			// Section 5.5 says to use that version on the next attempt;
			// this MD cannot speak one newer than it implements, so it
			// keeps its own and says why the tunnel cannot come up.
			log.Error("key distributor requires a newer tunnel protocol version than this media distributor implements",
				"sent", uv.Sent, "highest", uv.Highest, "implemented", Version0)
			return uv
		}
		m.version.Store(uint32(uv.Highest))
		log.Warn("key distributor does not support our protocol version; will reconnect with its highest version",
			"sent", uv.Sent, "highest", uv.Highest)
		return uv
	}
	msg, err := c.dec.Decode(frame)
	if err != nil {
		return fmt.Errorf("malformed message from key distributor: %w", err)
	}
	switch msg := msg.(type) {
	case *TunneledDtls:
		m.h.HandleTunneledDtls(msg.AssociationID, msg.Message)
	case *MediaKeys:
		if !slices.Contains(m.cfg.Profiles, msg.Profile) {
			// Keys the MD cannot use: a KD bug that affects one
			// association, not the tunnel. Drop them, loudly.
			log.Error("dropping MediaKeys with a protection profile we did not offer",
				"association", msg.AssociationID, "profile", msg.Profile)
			return nil
		}
		m.h.HandleMediaKeys(msg)
	case *EndpointDisconnect:
		if IsInstanceID(msg.AssociationID) {
			log.Debug("key distributor announced its instance", "instance", msg.AssociationID)
			return nil
		}
		m.unpin(msg.AssociationID)
		m.h.HandleEndpointDisconnect(msg.AssociationID)
	default:
		return fmt.Errorf("%w: %s must not be sent by a key distributor", ErrProtocol, msg.Type())
	}
	return nil
}
