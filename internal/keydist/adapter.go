package keydist

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/pion/transport/v5/deadline"
)

// DTLS record header fields (RFC 6347 section 4.1).
const (
	recordHeaderLen           = 13
	contentChangeCipherSpec   = 20
	contentAlert              = 21
	contentHandshake          = 22
	handshakeTypeClientHello  = 1
	handshakeHeaderLen        = 12
	maxHeldDatagrams          = 32
	defaultInboundQueueLength = 32
	maxTunneledDatagram       = 1<<16 - 1
)

// assocAddr is the net.Addr of an association: pion needs a remote address;
// the association id is the only one there is.
type assocAddr uuid.UUID

func (assocAddr) Network() string  { return "perc-tunnel" }
func (a assocAddr) String() string { return uuid.UUID(a).String() }

// dgramConn adapts one association to the net.PacketConn pion/dtls reads
// and writes. Inbound datagrams (TunneledDtls payloads) are queued by
// deliver; outbound ones go to send, except that while the handshake is
// running every datagram that carries a ChangeCipherSpec or a record of
// epoch 1 or above (the server's final flight: ChangeCipherSpec, Finished)
// is held until release. That is how MediaKeys reaches the MD before the
// KD's Finished reaches the endpoint (draft section 5.4).
type dgramConn struct {
	addr   assocAddr
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	rd     *deadline.Deadline

	// send hands an outgoing datagram to the tunnel (which copies it).
	send func([]byte) error
	// dropped counts inbound datagrams dropped because the queue was full.
	dropped func()

	mu      sync.Mutex
	holding bool
	held    [][]byte
}

func newDgramConn(id uuid.UUID, queueLen int, send func([]byte) error, dropped func()) *dgramConn {
	if queueLen <= 0 {
		queueLen = defaultInboundQueueLength
	}
	return &dgramConn{
		addr:    assocAddr(id),
		in:      make(chan []byte, queueLen),
		closed:  make(chan struct{}),
		rd:      deadline.New(),
		send:    send,
		dropped: dropped,
		holding: true,
	}
}

// deliver queues a copy of an inbound datagram; it never blocks (a full
// queue drops the datagram: DTLS retransmits).
func (c *dgramConn) deliver(b []byte) bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	d := make([]byte, len(b))
	copy(d, b)
	select {
	case c.in <- d:
		return true
	default:
		if c.dropped != nil {
			c.dropped()
		}
		return false
	}
}

// ReadFrom implements net.PacketConn.
func (c *dgramConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case d := <-c.in:
		n := copy(p, d)
		return n, c.addr, nil
	}
}

// WriteTo implements net.PacketConn.
func (c *dgramConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding && startsNewEpoch(p) {
		if len(c.held) < maxHeldDatagrams {
			c.held = append(c.held, append([]byte(nil), p...))
		}
		return len(p), nil
	}
	if err := c.send(p); err != nil {
		// A datagram that cannot reach the MD is lost like a UDP datagram;
		// DTLS retransmission copes, the lifecycle code ends the
		// association if the MD stays unreachable.
		return len(p), nil //nolint:nilerr // datagram semantics
	}
	return len(p), nil
}

// release stops holding and sends the held datagrams, in order, before any
// datagram written after it.
func (c *dgramConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	for _, d := range c.held {
		_ = c.send(d)
	}
	c.held = nil
}

// discard drops the held datagrams for good: the endpoint never gets the
// KD's Finished.
func (c *dgramConn) discard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.held {
		clear(d)
	}
	c.held = nil
}

// Close implements net.PacketConn.
func (c *dgramConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.discard()
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *dgramConn) LocalAddr() net.Addr { return c.addr }

// SetDeadline implements net.PacketConn.
func (c *dgramConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *dgramConn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn. Writes never block.
func (c *dgramConn) SetWriteDeadline(time.Time) error { return nil }

// startsNewEpoch reports whether a datagram written by the DTLS server
// carries a ChangeCipherSpec or a record of epoch 1 or above. A datagram that
// does not parse as records is treated as carrying one (held, not leaked).
func startsNewEpoch(b []byte) bool {
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			return true
		}
		if b[0] == contentChangeCipherSpec || binary.BigEndian.Uint16(b[3:5]) >= 1 {
			return true
		}
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[11:13]))
		if n > len(b) {
			return true
		}
		b = b[n:]
	}
	return false
}

// startsClientHello reports whether the first record of a datagram is an
// epoch-0 handshake record whose fragment is a ClientHello: the only
// datagram that may create state for an unknown association id.
func startsClientHello(b []byte) bool {
	if len(b) < recordHeaderLen+handshakeHeaderLen {
		return false
	}
	return b[0] == contentHandshake && b[1] == 0xfe &&
		binary.BigEndian.Uint16(b[3:5]) == 0 &&
		b[recordHeaderLen] == handshakeTypeClientHello
}

// appendAlert appends a plaintext (epoch 0) DTLS 1.2 fatal alert record
// with sequence number seq. Used to refuse an association before, or while,
// a DTLS server runs for it in epoch 0.
func appendAlert(dst []byte, desc uint8, seq uint64) []byte {
	var h [recordHeaderLen + 2]byte
	h[0] = contentAlert
	h[1], h[2] = 0xfe, 0xfd // DTLS 1.2
	// epoch 0 in h[3:5]
	h[5], h[6] = byte(seq>>40), byte(seq>>32)
	binary.BigEndian.PutUint32(h[7:11], uint32(seq))
	binary.BigEndian.PutUint16(h[11:13], 2)
	h[13], h[14] = 2, desc // fatal
	return append(dst, h[:]...)
}

// TLS alert descriptions used when the KD refuses an association itself.
const (
	alertHandshakeFailure = 40
	alertAccessDenied     = 49
)
