package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/ratelog"
)

// KDHandler receives what media distributors send to the key distributor.
// It is implemented by the KD daemon (cmd/keydist), which runs the DTLS
// server side of each association.
//
// Methods are called from the reader goroutine of the tunnel concerned:
// calls for one tunnel are serialized (TunnelUp first, TunnelDown last),
// calls for different tunnels run concurrently. They must not block for
// long; they may call the KDTunnel's Send methods and Close.
type KDHandler interface {
	// TunnelUp reports a new tunnel from an authorized MD, after its valid
	// SupportedProfiles.
	TunnelUp(t *KDTunnel)
	// HandleTunneledDtls delivers a DTLS datagram from an endpoint.
	// m.Message is valid only during the call.
	HandleTunneledDtls(t *KDTunnel, m *TunneledDtls)
	// HandleEndpointDisconnect reports that the MD ended association id.
	HandleEndpointDisconnect(t *KDTunnel, id uuid.UUID)
	// TunnelDown reports that t is closed, with the reason (ErrClosed when
	// closed locally).
	TunnelDown(t *KDTunnel, err error)
}

// KDConfig configures the key distributor side. Zero values mean the
// documented defaults.
type KDConfig struct {
	// TLS is used as server config by Serve and as client config by Dial
	// (ServerName defaults to the host of the dialed address). It must
	// verify the MD's certificate against the MD CA: build it with
	// NewTLSConfig. Required. Whatever it says, a peer without a
	// CA-verified certificate is refused.
	TLS *tls.Config
	// AllowList, when not empty, restricts tunnels to MDs whose certificate
	// matches it (checked after the handshake, before any tunnel message).
	AllowList PeerPolicy
	// SupportedVersions lists the protocol versions accepted in
	// SupportedProfiles (default: Version0 only). The highest is sent in
	// UnsupportedVersion.
	SupportedVersions []uint8
	// HandshakeTimeout bounds connect, TLS handshake and the wait for the
	// first message (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a tunnel on which nothing was received for that
	// long; 0 (the default) disables it (see MDConfig.IdleTimeout).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// TCPUserTimeout is the TCP_USER_TIMEOUT of tunnel sockets
	// (DefaultTCPUserTimeout; negative leaves the kernel default).
	TCPUserTimeout time.Duration
	// BackoffMin, BackoffMax and StableAfter drive reconnects in reverse
	// mode (Dial), as in MDConfig.
	BackoffMin, BackoffMax, StableAfter time.Duration
	// QueueLen is the per-tunnel send queue length (DefaultQueueLen).
	QueueLen int
	// MaxFrame is the largest frame accepted from an MD, header included
	// (default MaxFrameSize, minimum MinFrameLimit).
	MaxFrame int
	// Logger receives lifecycle logs (default slog.Default()).
	Logger *slog.Logger
}

// KD is the key distributor side of the tunnel. Create it with NewKD, accept
// MDs with Serve and/or dial them with Dial, stop everything with Close.
//
// A tunnel exists (and KDHandler.TunnelUp is called) only after the MD's
// certificate was verified against the CA, passed the allow-list, and its
// first message was a valid SupportedProfiles with a supported version.
// Before that nothing is sent except, for an unsupported version,
// UnsupportedVersion. On an established tunnel, a repeated SupportedProfiles
// identical to the first is ignored; a different one (section 5.3 forbids
// changing profiles during a tunnel's life) closes the tunnel, as do
// MediaKeys and UnsupportedVersion, which only a KD may send.
type KD struct {
	cfg     KDConfig
	opts    connOptions
	h       KDHandler
	log     *slog.Logger
	highest uint8
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	tunnels map[*KDTunnel]struct{}
	// rl rate-limits what unauthenticated connections can make us log.
	rl *ratelog.Logger
}

// NewKD checks cfg and returns a KD.
func NewKD(cfg KDConfig, h KDHandler) (*KD, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil KDHandler", ErrInvalidConfig)
	}
	if cfg.TLS == nil {
		return nil, fmt.Errorf("%w: KDConfig.TLS is required (the tunnel is mutually authenticated)", ErrInvalidConfig)
	}
	if len(cfg.SupportedVersions) == 0 {
		cfg.SupportedVersions = []uint8{Version0}
	}
	cfg.SupportedVersions = slices.Clone(cfg.SupportedVersions)
	cfg.AllowList = PeerPolicy{SPKI: slices.Clone(cfg.AllowList.SPKI), Names: slices.Clone(cfg.AllowList.Names)}
	k := &KD{
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
		h:       h,
		log:     logger(cfg.Logger).With("component", "tunnel-kd"),
		highest: slices.Max(cfg.SupportedVersions),
		tunnels: make(map[*KDTunnel]struct{}),
	}
	k.rl = ratelog.New(k.log, 10*time.Second, 10)
	if err := k.opts.fill(); err != nil {
		return nil, err
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	return k, nil
}

// Close closes every tunnel, stops Serve and Dial loops and waits for all
// their goroutines. It is idempotent.
func (k *KD) Close() error {
	k.mu.Lock()
	k.closed = true
	ts := make([]*KDTunnel, 0, len(k.tunnels))
	for t := range k.tunnels {
		ts = append(ts, t)
	}
	k.mu.Unlock()
	k.cancel()
	for _, t := range ts {
		t.c.close(ErrClosed)
	}
	k.wg.Wait()
	return nil
}

// goTracked runs f in a goroutine owned by the KD (waited for by Close). It
// returns false if the KD is closed.
func (k *KD) goTracked(f func()) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.wg.Go(f)
	return true
}

// Tunnels returns the live tunnels.
func (k *KD) Tunnels() []*KDTunnel {
	k.mu.Lock()
	defer k.mu.Unlock()
	ts := make([]*KDTunnel, 0, len(k.tunnels))
	for t := range k.tunnels {
		ts = append(ts, t)
	}
	return ts
}

// Serve accepts MD connections on ln until ctx is done or Close is called,
// then closes ln and the tunnels it accepted and returns nil once their
// goroutines have ended. It returns an error if ln fails for another reason,
// and ErrClosed if the KD is already closed. Serve owns ln from the call on.
func (k *KD) Serve(ctx context.Context, ln net.Listener) error {
	if k.ctx.Err() != nil {
		_ = ln.Close()
		return fmt.Errorf("tunnel: KD serve: %w", ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopKD := context.AfterFunc(k.ctx, cancel)
	defer stopKD()
	stopLn := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stopLn()
	var local sync.WaitGroup
	defer local.Wait()
	attempt := 0
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tunnel: KD accept: %w", err)
			}
			d := backoffDelay(attempt, 5*time.Millisecond, time.Second)
			attempt++
			k.log.Warn("accept failed", "err", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return nil
			}
			continue
		}
		attempt = 0
		local.Add(1)
		if !k.goTracked(func() {
			defer local.Done()
			_, _ = k.session(ctx, raw, tls.Server(raw, k.cfg.TLS))
		}) {
			local.Done()
			_ = raw.Close()
			return nil
		}
	}
}

// Dial keeps a tunnel to the MD at addr up (reverse mode: the KD dials the
// MD), reconnecting with backoff, until ctx is done or Close is called. It
// returns at once; the loop runs in a goroutine owned by the KD. It returns
// ErrClosed if the KD is closed.
func (k *KD) Dial(ctx context.Context, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: KD dial address %q: %w", ErrInvalidConfig, addr, err)
	}
	cfg := tlsForDial(k.cfg.TLS, addr)
	ok := k.goTracked(func() {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(k.ctx, cancel)
		defer stop()
		log := k.log.With("peer", addr)
		attempt := 0
		for ctx.Err() == nil {
			var up time.Duration
			dl := net.Dialer{Timeout: k.opts.HandshakeTimeout, KeepAlive: -1}
			raw, err := dl.DialContext(ctx, "tcp", addr)
			if err == nil {
				up, err = k.session(ctx, raw, tls.Client(raw, cfg))
			}
			if ctx.Err() != nil {
				return
			}
			if up >= k.opts.StableAfter {
				attempt = 0
			}
			d := backoffDelay(attempt, k.opts.BackoffMin, k.opts.BackoffMax)
			attempt++
			log.Warn("reverse tunnel to media distributor down", "err", err, "up", up.Round(time.Millisecond), "retry_in", d)
			if !sleepCtx(ctx, d) {
				return
			}
		}
	})
	if !ok {
		return ErrClosed
	}
	return nil
}

// session runs one connection: handshake and authorization, first message,
// then the tunnel until it ends. up is how long the tunnel was up.
func (k *KD) session(ctx context.Context, raw net.Conn, tc *tls.Conn) (time.Duration, error) {
	remote := raw.RemoteAddr().String()
	log := k.log.With("remote", remote)
	if err := tuneTCP(raw, k.opts.TCPUserTimeout); err != nil {
		log.Warn("cannot tune tunnel socket", "err", err)
	}
	// 1. Mutual authentication and authorization, before any tunnel
	//    message is read or written (sections 5.2, 5.4, 9).
	cs, err := handshake(ctx, tc, k.opts.HandshakeTimeout, &k.cfg.AllowList)
	if err != nil {
		_ = raw.Close()
		k.rl.Log(slog.LevelWarn, "refused", "refused media distributor", "remote", remote, "err", err)
		return 0, err
	}
	c := newConn(tc, raw, &k.opts)
	stop := context.AfterFunc(ctx, func() { c.close(ErrClosed) })
	defer stop()

	// 2. The first message must be SupportedProfiles with a version we
	//    support (sections 5.3, 5.5).
	sp, err := k.firstMessage(c)
	if err != nil {
		k.rl.Log(slog.LevelWarn, "not up", "closing tunnel before it was up", "remote", remote, "err", err)
		c.close(err)
		return 0, err
	}
	t := &KDTunnel{
		id:       uuid.NewString(),
		peer:     peerIdentity(cs),
		cert:     cs.PeerCertificates[0],
		remote:   remote,
		profiles: slices.Clone(sp.Profiles),
		version:  sp.Version,
		c:        c,
	}
	log = log.With("tunnel", t.id, "peer", t.peer)
	if len(t.profiles) == 0 {
		log.Warn("media distributor advertised no protection profile (allowed by draft -05, not by RFC 9185)")
	}
	c.startWriter()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		c.close(ErrClosed)
		c.wait()
		return 0, ErrClosed
	}
	k.tunnels[t] = struct{}{}
	k.mu.Unlock()

	// 3. The tunnel is up.
	log.Info("tunnel up", "tls_version", tls.VersionName(cs.Version), "protocol_version", t.version, "profiles", t.profiles)
	start := time.Now()
	k.h.TunnelUp(t)
	err = c.readLoop(func(frame []byte) error { return k.dispatch(t, frame, log) })
	c.close(err)
	c.wait()
	t.unsent = c.unsentDisconnects()
	k.mu.Lock()
	delete(k.tunnels, t)
	k.mu.Unlock()
	reason := c.err()
	switch {
	case errors.Is(reason, ErrClosed):
		log.Info("tunnel closed")
	case errors.Is(reason, ErrProtocol), errors.Is(reason, ErrFrameTooLarge), isDecodeErr(reason):
		log.Error("closing tunnel: malformed or unexpected message from media distributor", "err", reason)
	default:
		log.Warn("tunnel lost", "err", reason)
	}
	k.h.TunnelDown(t, reason)
	return max(time.Since(start), time.Nanosecond), reason
}

// firstMessage reads and checks the first message within HandshakeTimeout.
// On an unsupported version it sends UnsupportedVersion and closes.
func (k *KD) firstMessage(c *tconn) (*SupportedProfiles, error) {
	if err := c.tc.SetReadDeadline(time.Now().Add(k.opts.HandshakeTimeout)); err != nil {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	frame, err := c.fr.Next()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.closed() {
			// Not the idle timeout (which may be off): the handshake
			// timeout of the first message.
			return nil, fmt.Errorf("waiting for SupportedProfiles: none within %v: %w", k.opts.HandshakeTimeout, err)
		}
		return nil, fmt.Errorf("waiting for SupportedProfiles: %w", c.readErr(err))
	}
	if t := MsgType(frame[0]); t != MsgSupportedProfiles {
		return nil, fmt.Errorf("%w: first message is %s, not SupportedProfiles", ErrProtocol, t)
	}
	if len(frame) > HeaderLen && !slices.Contains(k.cfg.SupportedVersions, frame[HeaderLen]) {
		// Section 5.5: discard the message (whatever the rest of a newer
		// version's body holds), answer UnsupportedVersion, close.
		v := frame[HeaderLen]
		buf, _ := AppendMessage(nil, &UnsupportedVersion{HighestVersion: k.highest})
		err := fmt.Errorf("%w: media distributor sent version %d, highest supported %d", ErrProtocol, v, k.highest)
		c.writeThenClose(buf, err)
		return nil, err
	}
	msg, err := c.dec.Decode(frame)
	if err != nil {
		return nil, fmt.Errorf("malformed SupportedProfiles: %w", err)
	}
	return msg.(*SupportedProfiles), nil
}

// dispatch handles one frame on an established tunnel.
func (k *KD) dispatch(t *KDTunnel, frame []byte, log *slog.Logger) error {
	msg, err := t.c.dec.Decode(frame)
	if err != nil {
		return fmt.Errorf("malformed message from media distributor: %w", err)
	}
	switch msg := msg.(type) {
	case *TunneledDtls:
		k.h.HandleTunneledDtls(t, msg)
	case *EndpointDisconnect:
		if IsInstanceID(msg.AssociationID) {
			// An MD instance announcement (instance.go), once per tunnel.
			if !t.instance.CompareAndSwap(nil, &msg.AssociationID) {
				if *t.instance.Load() != msg.AssociationID {
					return fmt.Errorf("%w: media distributor instance changed on an established tunnel", ErrProtocol)
				}
				return nil
			}
			log.Debug("media distributor announced its instance", "instance", msg.AssociationID)
			if h, ok := k.h.(InstanceHandler); ok {
				h.TunnelAnnounced(t)
			}
			return nil
		}
		k.h.HandleEndpointDisconnect(t, msg.AssociationID)
	case *SupportedProfiles:
		// The MD must keep the same profiles for the life of the tunnel
		// (section 5.3) and uses one version per tunnel (5.5). A repeat
		// of the same SupportedProfiles is harmless and ignored; any
		// change is a protocol violation.
		if msg.Version != t.version || !slices.Equal(msg.Profiles, t.profiles) {
			return fmt.Errorf("%w: SupportedProfiles changed on an established tunnel", ErrProtocol)
		}
		log.Debug("ignoring repeated identical SupportedProfiles")
	default:
		return fmt.Errorf("%w: %s must not be sent by a media distributor", ErrProtocol, msg.Type())
	}
	return nil
}

// KDTunnel is one established tunnel on the KD side. Its methods are safe
// for concurrent use.
type KDTunnel struct {
	id       string
	peer     string
	cert     *x509.Certificate
	remote   string
	profiles []ProtectionProfile
	version  uint8
	c        *tconn
	instance atomic.Pointer[uuid.UUID]
	unsent   []uuid.UUID // set before TunnelDown
}

// UnsentDisconnects returns the EndpointDisconnects the tunnel accepted but
// could not write before it closed; valid from TunnelDown on. The handler
// resends them on another tunnel to the same MD instance.
func (t *KDTunnel) UnsentDisconnects() []uuid.UUID { return t.unsent }

// InstanceHandler is implemented by a KDHandler that wants to know the MD
// instance announced on a tunnel (instance.go). TunnelAnnounced is called
// once per tunnel that announces, after TunnelUp, before any later message
// of that tunnel is delivered.
type InstanceHandler interface {
	TunnelAnnounced(t *KDTunnel)
}

// Instance returns the MD instance announced on this tunnel, uuid.Nil if
// none was (an MD without the extension, or not yet).
func (t *KDTunnel) Instance() uuid.UUID {
	if p := t.instance.Load(); p != nil {
		return *p
	}
	return uuid.Nil
}

// ID returns a random identifier of this tunnel (unique per connection).
func (t *KDTunnel) ID() string { return t.id }

// Peer returns the MD's identity derived from its verified certificate:
// "spki:" and the hex SHA-256 of its SubjectPublicKeyInfo. Several tunnels
// from one MD share it, so associations can be keyed per MD identity rather
// than per tunnel.
func (t *KDTunnel) Peer() string { return t.peer }

// PeerCertificate returns the MD's verified leaf certificate.
func (t *KDTunnel) PeerCertificate() *x509.Certificate { return t.cert }

// RemoteAddr returns the MD's network address.
func (t *KDTunnel) RemoteAddr() string { return t.remote }

// Profiles returns a copy of the protection profiles the MD advertised.
func (t *KDTunnel) Profiles() []ProtectionProfile { return slices.Clone(t.profiles) }

// Version returns the protocol version of the tunnel.
func (t *KDTunnel) Version() uint8 { return t.version }

// Done returns a channel closed when the tunnel is closed.
func (t *KDTunnel) Done() <-chan struct{} { return t.c.done }

// Close closes the tunnel. TunnelDown follows from the tunnel's reader
// goroutine. It does not wait and may be called from a handler.
func (t *KDTunnel) Close() error {
	t.c.close(ErrClosed)
	return nil
}

// SendTunneledDtls queues a DTLS datagram for the endpoint of association
// id. dtls is copied. It returns ErrQueueFull if the tunnel is congested and
// ErrClosed if it is closed.
func (t *KDTunnel) SendTunneledDtls(id uuid.UUID, dtls []byte) error {
	buf, err := AppendMessage(make([]byte, 0, HeaderLen+uuidLen+2+len(dtls)), &TunneledDtls{AssociationID: id, Message: dtls})
	if err != nil {
		return err
	}
	if err := t.c.enqueue(&outMsg{buf: buf}); err != nil {
		return fmt.Errorf("tunnel: send %s on tunnel %s: %w", MsgType(buf[0]), t.id, err)
	}
	return nil
}

// SendEndpointDisconnect tells the MD that association id has ended. It
// goes out ahead of queued DTLS datagrams and is not refused because the
// queue is full (see enqueueControl); it fails only on a closed tunnel.
func (t *KDTunnel) SendEndpointDisconnect(id uuid.UUID) error {
	buf, err := AppendMessage(nil, &EndpointDisconnect{AssociationID: id})
	if err != nil {
		return err
	}
	if err := t.c.enqueueControl(buf); err != nil {
		return fmt.Errorf("tunnel: send %s on tunnel %s: %w", MsgType(buf[0]), t.id, err)
	}
	return nil
}

// SendMediaKeys sends the hop-by-hop keys of an association and returns only
// once they have been written to the TLS connection (or failed), so that the
// caller can then release its DTLS Finished flight: section 5.4 requires
// MediaKeys before the KD's Finished reaches the endpoint. The encoded copy
// of the keys is zeroed after the write; mk itself is left to the caller.
// mk.Profile must be one the MD advertised (ErrProfileNotOffered). If ctx
// ends before the message was handed to the connection, it is dropped and
// ctx's error returned; once handed over, the write is waited for (it is
// bounded by WriteTimeout).
func (t *KDTunnel) SendMediaKeys(ctx context.Context, mk *MediaKeys) error {
	_, err := t.sendMediaKeys(ctx, mk)
	return err
}

func (t *KDTunnel) sendMediaKeys(ctx context.Context, mk *MediaKeys) ([]byte, error) {
	if !slices.Contains(t.profiles, mk.Profile) {
		return nil, fmt.Errorf("tunnel: send MediaKeys with %s: %w", mk.Profile, ErrProfileNotOffered)
	}
	buf, err := AppendMessage(nil, mk)
	if err != nil {
		return nil, err
	}
	m := &outMsg{buf: buf, sensitive: true, done: make(chan error, 1)}
	if err := t.c.enqueue(m); err != nil {
		clear(buf)
		return buf, fmt.Errorf("tunnel: send MediaKeys: %w", err)
	}
	if err := t.c.await(ctx, m); err != nil {
		return buf, fmt.Errorf("tunnel: send MediaKeys: %w", err)
	}
	return buf, nil
}
