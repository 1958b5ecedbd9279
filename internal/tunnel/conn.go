package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults shared by MDConfig and KDConfig.
const (
	// DefaultQueueLen is the number of messages a tunnel queues for its
	// writer before sends fail with ErrQueueFull.
	DefaultQueueLen = 1024
	// DefaultHandshakeTimeout bounds the TCP connect, the TLS handshake and,
	// on the KD, the wait for the first message.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds one write to the TLS connection: a peer
	// that does not read for this long loses its tunnel.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultTCPUserTimeout is the TCP_USER_TIMEOUT set on every tunnel
	// socket (Linux): how long transmitted data, or keepalive probes, may
	// stay unacknowledged before the kernel aborts the connection. It is
	// short so that a blackholed peer is found in seconds: the MD's
	// /readyz turns 503 once no tunnel is left, and established calls do
	// not depend on the tunnel (their keys stay installed).
	DefaultTCPUserTimeout = 5 * time.Second
	// DefaultKeepAliveIdle, DefaultKeepAliveInterval and
	// DefaultKeepAliveCount configure TCP keepalive on every tunnel socket.
	// The protocol has no ping message, so keepalive probes are what an
	// idle tunnel sends: a peer that vanished is detected after about
	// Idle + Interval*Count (5 s), or when TCP_USER_TIMEOUT is set (Linux),
	// once nothing was received for that long while a probe is out.
	DefaultKeepAliveIdle     = 2 * time.Second
	DefaultKeepAliveInterval = 1 * time.Second
	DefaultKeepAliveCount    = 3
	// DefaultBackoffMin and DefaultBackoffMax bound the reconnect delay.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultStableAfter is how long a connection must stay up for the
	// reconnect backoff to start again from DefaultBackoffMin.
	DefaultStableAfter = 30 * time.Second

	// lingerTimeout bounds how long a connection closed right after a final
	// message (UnsupportedVersion) waits for the peer to close first.
	lingerTimeout = time.Second
	// maxWriteBatch bounds how many queued octets the writer coalesces into
	// one Write (and so into as few TLS records as possible).
	maxWriteBatch = 64 << 10
)

// connOptions is the part of MDConfig and KDConfig the connection machinery
// uses. Zero values are replaced by defaults in fill.
type connOptions struct {
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration // 0: no application idle timeout
	WriteTimeout     time.Duration
	TCPUserTimeout   time.Duration // < 0: leave the kernel default
	QueueLen         int
	MaxFrame         int
	BackoffMin       time.Duration
	BackoffMax       time.Duration
	StableAfter      time.Duration
}

func (o *connOptions) fill() error {
	switch {
	case o.HandshakeTimeout < 0, o.IdleTimeout < 0, o.WriteTimeout < 0, o.QueueLen < 0,
		o.BackoffMin < 0, o.BackoffMax < 0, o.StableAfter < 0:
		return fmt.Errorf("%w: negative duration or length", ErrInvalidConfig)
	case o.MaxFrame != 0 && (o.MaxFrame < MinFrameLimit || o.MaxFrame > MaxFrameSize):
		return fmt.Errorf("%w: MaxFrame %d outside %d..%d", ErrInvalidConfig, o.MaxFrame, MinFrameLimit, MaxFrameSize)
	}
	o.HandshakeTimeout = cmpOr(o.HandshakeTimeout, DefaultHandshakeTimeout)
	o.WriteTimeout = cmpOr(o.WriteTimeout, DefaultWriteTimeout)
	o.TCPUserTimeout = cmpOr(o.TCPUserTimeout, DefaultTCPUserTimeout)
	o.QueueLen = cmpOr(o.QueueLen, DefaultQueueLen)
	o.MaxFrame = cmpOr(o.MaxFrame, MaxFrameSize)
	o.BackoffMin = cmpOr(o.BackoffMin, DefaultBackoffMin)
	o.BackoffMax = cmpOr(o.BackoffMax, DefaultBackoffMax)
	o.StableAfter = cmpOr(o.StableAfter, DefaultStableAfter)
	if o.BackoffMax < o.BackoffMin {
		return fmt.Errorf("%w: BackoffMax %v below BackoffMin %v", ErrInvalidConfig, o.BackoffMax, o.BackoffMin)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// backoffDelay returns the delay before reconnect attempt n (0-based):
// exponential growth from lo, capped at hi, with full jitter (uniform in
// [0, ceiling]) so that many MDs losing the same KD do not reconnect in step.
func backoffDelay(n int, lo, hi time.Duration) time.Duration {
	ceil := hi
	if n < 62 {
		if c := lo << n; c > 0 && c < hi {
			ceil = c
		}
	}
	return rand.N(ceil + 1)
}

// sleepCtx waits for d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tuneTCP turns on TCP keepalive and sets TCP_USER_TIMEOUT on a tunnel
// socket. The protocol has no ping message, so liveness of an idle tunnel is
// left to the kernel: keepalive probes detect a peer that vanished while the
// tunnel was idle, TCP_USER_TIMEOUT one that stopped acknowledging data we
// sent (a half-open connection with data in flight), which keepalive alone
// would not catch because probes are not sent while data is outstanding.
// Either way the next read or write fails and the tunnel is torn down.
// Connections that are not *net.TCPConn (tests, pipes) are left alone.
func tuneTCP(c net.Conn, userTimeout time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetKeepAliveConfig(net.KeepAliveConfig{
		Enable:   true,
		Idle:     DefaultKeepAliveIdle,
		Interval: DefaultKeepAliveInterval,
		Count:    DefaultKeepAliveCount,
	}); err != nil {
		return fmt.Errorf("tunnel: set TCP keepalive: %w", err)
	}
	if userTimeout <= 0 {
		return nil
	}
	if err := setUserTimeout(tc, userTimeout); err != nil {
		return fmt.Errorf("tunnel: set TCP_USER_TIMEOUT: %w", err)
	}
	return nil
}

// outMsg is one encoded message waiting for the writer.
type outMsg struct {
	buf       []byte
	sensitive bool         // holds key material: zeroed once written or dropped
	state     atomic.Int32 // msgQueued, msgTaken or msgCancelled
	done      chan error   // nil, or buffered(1): the write's outcome
}

const (
	msgQueued int32 = iota
	msgTaken
	msgCancelled
)

func (m *outMsg) finish(err error) {
	if m.sensitive {
		clear(m.buf)
	}
	if m.done != nil {
		m.done <- err
	}
}

// tconn is one tunnel connection: the TLS conn, its frame reader and the
// writer goroutine with its bounded queue. Its owner (the MD or KD session
// goroutine) runs readLoop and, when it returns, calls close and wait.
type tconn struct {
	tc   *tls.Conn
	raw  net.Conn
	opts *connOptions
	fr   *FrameReader
	dec  Decoder

	q          chan *outMsg
	ctlMu      sync.Mutex
	ctl        []byte        // control messages (EndpointDisconnect), written before q
	ctlReady   chan struct{} // buffered(1): ctl is not empty
	done       chan struct{} // closed by close
	writerDone chan struct{} // closed when the writer goroutine has ended
	once       sync.Once
	reason     error // first close reason; written once before done is closed
	started    bool
}

func newConn(tc *tls.Conn, raw net.Conn, opts *connOptions) *tconn {
	return &tconn{
		tc:         tc,
		raw:        raw,
		opts:       opts,
		fr:         NewFrameReader(tc, opts.MaxFrame),
		q:          make(chan *outMsg, opts.QueueLen),
		ctlReady:   make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// close records reason (the first one wins) and closes the socket, which
// ends the reader and the writer. It never blocks on the network: no TLS
// close_notify is sent (messages are self-delimiting, so a truncation is
// seen as io.ErrUnexpectedEOF by the peer anyway).
func (c *tconn) close(reason error) {
	c.once.Do(func() {
		if reason == nil {
			reason = ErrClosed
		}
		c.reason = reason
		close(c.done)
		_ = c.raw.Close()
	})
}

// closed reports whether close has been called.
func (c *tconn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// err returns the close reason, or nil while open.
func (c *tconn) err() error {
	if !c.closed() {
		return nil
	}
	return c.reason
}

// writeNow writes buf synchronously. It is used only before startWriter, for
// the first message of a connection, and for UnsupportedVersion.
func (c *tconn) writeNow(buf []byte) error {
	if err := c.tc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := c.tc.Write(buf); err != nil {
		return fmt.Errorf("write %s: %w", MsgType(buf[0]), err)
	}
	return nil
}

// writeThenClose writes a final message, then closes gracefully: TLS
// close_notify, TCP FIN, and a bounded wait for the peer to close, so that
// the message is not lost to a TCP reset caused by unread data.
func (c *tconn) writeThenClose(buf []byte, reason error) {
	if err := c.writeNow(buf); err == nil {
		_ = c.tc.CloseWrite()
		if tcp, ok := c.raw.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
		_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, 1<<20))
	}
	c.close(reason)
}

// startWriter starts the writer goroutine. It ends when the connection is
// closed; wait waits for it.
func (c *tconn) startWriter() {
	c.started = true
	go c.writeLoop()
}

// wait waits for the writer goroutine to end. Call it after close.
func (c *tconn) wait() {
	if c.started {
		<-c.writerDone
	}
}

// enqueue queues m for the writer without blocking: ErrQueueFull when the
// queue is full, ErrClosed when the connection is closed.
func (c *tconn) enqueue(m *outMsg) error {
	if c.closed() {
		return ErrClosed
	}
	select {
	case c.q <- m:
		return nil
	default:
		return ErrQueueFull
	}
}

// maxControlBacklog bounds the control messages waiting for the writer:
// about 50,000 EndpointDisconnects, more than the associations a tunnel
// carries, so that only a writer stuck for good can fill it.
const maxControlBacklog = 1 << 20

// enqueueControl queues an encoded control message (EndpointDisconnect).
// Control messages have their own lane, written ahead of the queue, so a
// queue full of DTLS datagrams never drops one: ErrQueueFull only past
// maxControlBacklog, ErrClosed when the connection is closed.
func (c *tconn) enqueueControl(buf []byte) error {
	if c.closed() {
		return ErrClosed
	}
	c.ctlMu.Lock()
	if len(c.ctl)+len(buf) > maxControlBacklog {
		c.ctlMu.Unlock()
		return ErrQueueFull
	}
	c.ctl = append(c.ctl, buf...)
	c.ctlMu.Unlock()
	select {
	case c.ctlReady <- struct{}{}:
	default:
	}
	return nil
}

// takeControl appends the queued control messages to dst and empties the
// lane.
func (c *tconn) takeControl(dst []byte) []byte {
	c.ctlMu.Lock()
	dst = append(dst, c.ctl...)
	c.ctl = c.ctl[:0]
	c.ctlMu.Unlock()
	return dst
}

// unsentDisconnects returns the association ids of the EndpointDisconnects
// the connection did not write; call it once the writer has ended (after
// wait). The owner resends them on another tunnel, or counts them lost.
func (c *tconn) unsentDisconnects() []uuid.UUID {
	b := c.takeControl(nil)
	var ids []uuid.UUID
	fr := NewFrameReader(bytes.NewReader(b), 0)
	for {
		frame, err := fr.Next()
		if err != nil {
			return ids
		}
		if m, err := Decode(frame); err == nil {
			if d, ok := m.(*EndpointDisconnect); ok && !IsInstanceID(d.AssociationID) {
				ids = append(ids, d.AssociationID)
			}
		}
	}
}

// controlBacklog returns the octets of control messages not yet written.
func (c *tconn) controlBacklog() int {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	return len(c.ctl)
}

// await waits for the outcome of a message queued with a done channel. If ctx
// ends or the connection closes before the writer took the message, the
// message is cancelled (and zeroed if sensitive); once taken, the write is
// waited for (it is bounded by WriteTimeout).
func (c *tconn) await(ctx context.Context, m *outMsg) error {
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		if m.state.CompareAndSwap(msgQueued, msgCancelled) {
			m.finish(ctx.Err())
			return ctx.Err()
		}
	case <-c.done:
		if m.state.CompareAndSwap(msgQueued, msgCancelled) {
			m.finish(ErrClosed)
			return ErrClosed
		}
	}
	return <-m.done
}

func (c *tconn) writeLoop() {
	defer close(c.writerDone)
	defer c.drain()
	var (
		batch []byte
		taken []*outMsg
	)
	for {
		var m *outMsg
		select {
		case <-c.done:
			return
		case m = <-c.q:
		case <-c.ctlReady:
		}
		batch, taken = c.takeControl(batch[:0]), taken[:0]
		ctlLen := len(batch)
		sensitive := false
		for m != nil {
			if m.state.CompareAndSwap(msgQueued, msgTaken) {
				batch = append(batch, m.buf...)
				taken = append(taken, m)
				sensitive = sensitive || m.sensitive
			}
			m = nil
			if len(batch) < maxWriteBatch {
				select {
				case m = <-c.q:
				default:
				}
			}
		}
		if len(taken) == 0 && ctlLen == 0 {
			continue
		}
		err := c.tc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if err == nil {
			_, err = c.tc.Write(batch)
		}
		if err != nil && ctlLen > 0 {
			// Not written: back to the lane, for the owner to resend
			// on another tunnel (unsentControl).
			c.ctlMu.Lock()
			c.ctl = append(append(make([]byte, 0, ctlLen+len(c.ctl)), batch[:ctlLen]...), c.ctl...)
			c.ctlMu.Unlock()
		}
		if sensitive {
			clear(batch)
		}
		if err != nil {
			err = fmt.Errorf("write: %w", err)
		}
		for i, tm := range taken {
			tm.finish(err)
			taken[i] = nil
		}
		if err != nil {
			c.close(err)
			return
		}
		if cap(batch) > 4*maxWriteBatch {
			batch = nil
		}
	}
}

// drain fails every message still queued once the writer stops.
func (c *tconn) drain() {
	for {
		select {
		case m := <-c.q:
			if m.state.CompareAndSwap(msgQueued, msgCancelled) {
				m.finish(ErrClosed)
			}
		default:
			return
		}
	}
}

// readLoop reads frames until an error and hands each to fn. It returns the
// reason the loop ended: the close reason if the connection was closed
// locally, ErrIdleTimeout (wrapped) when nothing arrived for IdleTimeout,
// fn's error, or the read error.
func (c *tconn) readLoop(fn func(frame []byte) error) error {
	for {
		var dl time.Time
		if c.opts.IdleTimeout > 0 {
			dl = time.Now().Add(c.opts.IdleTimeout)
		}
		if err := c.tc.SetReadDeadline(dl); err != nil {
			return c.readErr(fmt.Errorf("set read deadline: %w", err))
		}
		frame, err := c.fr.Next()
		if err != nil {
			return c.readErr(err)
		}
		if err := fn(frame); err != nil {
			return err
		}
	}
}

func (c *tconn) readErr(err error) error {
	if c.closed() {
		return c.reason
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: nothing received for %v", ErrIdleTimeout, c.opts.IdleTimeout)
	}
	if errors.Is(err, ErrFrameTooLarge) {
		return err
	}
	return fmt.Errorf("read: %w", err)
}

// logger returns l or slog.Default().
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// tlsForDial returns cfg with ServerName set from addr when cfg has none.
func tlsForDial(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// handshake runs the TLS handshake within timeout and checks that the peer
// is mutually authenticated and allowed by policy.
func handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration, policy *PeerPolicy) (*tls.ConnectionState, error) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	if _, err := verifyPeer(cs, policy); err != nil {
		return nil, err
	}
	return &cs, nil
}

// peerIdentity names an authenticated peer: "spki:" and the hex SPKI
// SHA-256 fingerprint of its leaf certificate.
func peerIdentity(cs *tls.ConnectionState) string {
	return "spki:" + SPKIOf(cs.PeerCertificates[0]).String()
}
