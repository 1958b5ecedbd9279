package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/internal/udpbatch"
)

// Buffer sizes of the socket port. A receive buffer takes the largest
// datagram the XDP modes' slow-path socket takes (slowBufSize: a jumbo
// frame's, or one reassembled from IP fragments), so that a DTLS flight an
// endpoint sends in one large datagram reaches the slow path whole in
// every mode (it was cut at 2048 octets and dropped as truncated here); a
// transmit buffer a full Ethernet MTU datagram plus SRTP tailroom (larger
// media is dropped as too big, as in the XDP modes).
const (
	socketRxBufSize = slowBufSize
	socketTxBufSize = 2048
)

// SocketPort is the socket fallback: one udpbatch.Conn of an SO_REUSEPORT
// group, read with recvmmsg straight into the worker's buffers (opened in
// place) and written with sendmmsg from the worker's transmit buffers.
type SocketPort struct {
	conn  *udpbatch.Conn
	local netip.AddrPort
	c     *Counts

	rxm []udpbatch.Message
	rxb [][]byte
	txm []udpbatch.Message
	txb [][]byte
	ntx int
	dst netip.AddrPort

	// stopping is set by Interrupt. Interrupt and Wake both end the wait
	// with a read deadline in the past; Receive clears it again unless
	// stopping.
	stopping atomic.Bool
}

// NewSocketPort wraps conn (which it then owns) for one worker; batch is
// the batch size of both directions and must not exceed the Conn's.
func NewSocketPort(conn *udpbatch.Conn, batch int) *SocketPort {
	if batch <= 0 {
		batch = udpbatch.DefaultBatchSize
	}
	p := &SocketPort{
		conn: conn, local: conn.LocalAddr(), c: new(Counts),
		rxm: make([]udpbatch.Message, batch), rxb: make([][]byte, batch),
		txm: make([]udpbatch.Message, batch), txb: make([][]byte, batch),
	}
	rx, tx := make([]byte, batch*socketRxBufSize), make([]byte, batch*socketTxBufSize)
	for i := range batch {
		p.rxb[i] = rx[i*socketRxBufSize : (i+1)*socketRxBufSize : (i+1)*socketRxBufSize]
		p.txb[i] = tx[i*socketTxBufSize : (i+1)*socketTxBufSize : (i+1)*socketTxBufSize]
	}
	return p
}

// Bind implements Port.
func (p *SocketPort) Bind(c *Counts) { p.c = c }

// Receive implements Port: it blocks until datagrams arrive or Interrupt.
func (p *SocketPort) Receive(rx []RxPacket) (int, error) {
	m := p.rxm[:min(len(rx), len(p.rxm))]
	for i := range m {
		m[i].Buf = p.rxb[i]
	}
	n, err := p.conn.ReadBatch(m)
	if err != nil {
		var errno syscall.Errno
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !p.stopping.Load() { // a Wake
				_ = p.conn.SetReadDeadline(time.Time{})
				if p.stopping.Load() { // Interrupt ran meanwhile
					_ = p.conn.SetReadDeadline(time.Unix(1, 0))
				}
			}
			return 0, nil
		case errors.As(err, &errno):
			p.c[DropRxError]++
			return 0, nil
		}
		return 0, err
	}
	for i := range m[:n] {
		rx[i] = RxPacket{Payload: m[i].Buf, Src: m[i].Addr, Dst: p.local}
		switch {
		case m[i].Truncated:
			rx[i].Drop = DropTruncated
		case m[i].Fragmented && isMedia(m[i].Buf):
			rx[i].Drop = fragmentedMedia
		}
	}
	return n, nil
}

// Release implements Port; the receive buffers are the port's own.
func (p *SocketPort) Release([]RxPacket) {}

// TxBuffer implements Port.
func (p *SocketPort) TxBuffer(dst netip.AddrPort, _ *RxPacket) ([]byte, Reason) {
	if p.ntx == len(p.txm) {
		if p.Flush() != nil {
			return nil, DropTxError
		}
	}
	p.dst = dst
	return p.txb[p.ntx][:0], 0
}

// Commit implements Port.
func (p *SocketPort) Commit(n int) {
	p.txm[p.ntx] = udpbatch.Message{Buf: p.txb[p.ntx][:n], Addr: p.dst}
	p.ntx++
}

// Flush implements Port: sendmmsg of the queued datagrams. A datagram the
// kernel refuses is counted (DropTxError) and skipped.
func (p *SocketPort) Flush() error {
	m := p.txm[:p.ntx]
	p.ntx = 0
	for len(m) > 0 {
		n, err := p.conn.WriteBatch(m)
		p.c[TxPackets] += uint64(n)
		for i := range m[:n] {
			p.c[TxBytes] += uint64(len(m[i].Buf))
		}
		m = m[n:]
		if err != nil {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				p.c[DropTxError] += uint64(len(m))
				return err
			}
			p.c[DropTxError]++
			m = m[1:]
		}
	}
	return nil
}

// Interrupt implements Port: it expires the read and write deadlines.
func (p *SocketPort) Interrupt() {
	p.stopping.Store(true)
	_ = p.conn.SetReadDeadline(time.Unix(1, 0))
	_ = p.conn.SetWriteDeadline(time.Unix(1, 0))
}

// Wake implements Port: it expires the read deadline; the Receive that
// returns for it clears it again. The worker checks for hand-over work
// after every Receive, so a Wake that races with that clearing is not
// lost: its work was posted before it.
func (p *SocketPort) Wake() {
	_ = p.conn.SetReadDeadline(time.Unix(1, 0))
}

// WaitUntil implements Port: it sets the read deadline, which the Receive
// that returns for it clears again (as after a Wake). A Wake that this
// overwrites is not lost: the worker checks its mailbox after calling
// WaitUntil and wakes its port again if work came (handover.go).
func (p *SocketPort) WaitUntil(deadline int64) {
	_ = p.conn.SetReadDeadline(time.Unix(0, deadline))
	if p.stopping.Load() { // Interrupt ran meanwhile
		_ = p.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// Close implements Port.
func (p *SocketPort) Close() error { return p.conn.Close() }
