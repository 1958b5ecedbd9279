package udpbatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultBatchSize is the batch size used when Options.BatchSize is zero.
const DefaultBatchSize = 64

// Options configures a Conn.
type Options struct {
	// BatchSize is the largest number of datagrams one ReadBatch or
	// WriteBatch call moves. Zero means DefaultBatchSize.
	BatchSize int
	// ReusePort sets SO_REUSEPORT so that several Conns (one per worker)
	// share the address; the kernel keeps each 4-tuple on one socket.
	ReusePort bool
	// RecvBuffer and SendBuffer set SO_RCVBUF and SO_SNDBUF when non-zero
	// (SO_RCVBUFFORCE/SO_SNDBUFFORCE are tried first, which works as root).
	RecvBuffer, SendBuffer int
	// BusyPollMicros sets SO_BUSY_POLL when non-zero.
	BusyPollMicros int
	// ReportFragmented turns on EnableFragSize so that ReadBatch sets
	// Message.Fragmented.
	ReportFragmented bool
}

// Message is one datagram of a batch.
type Message struct {
	// Buf is the buffer: on read, the datagram is written into Buf[:cap]
	// and N says how much arrived; on write, Buf is sent whole.
	Buf []byte
	// N is the length received (ReadBatch only).
	N int
	// Addr is the source (ReadBatch) or the destination (WriteBatch).
	Addr netip.AddrPort
	// Truncated reports that the datagram was larger than cap(Buf) and
	// was cut (ReadBatch only; MSG_TRUNC).
	Truncated bool
	// Fragmented reports that the kernel reassembled the datagram from IP
	// fragments (ReadBatch only, with Options.ReportFragmented).
	Fragmented bool
}

// Conn is a UDP socket read and written in batches. See the package
// documentation for the concurrency rules.
type Conn struct {
	uc  *net.UDPConn
	raw syscall.RawConn
	v6  bool // the socket is AF_INET6 (dual-stack); else AF_INET
	// oob holds one control buffer per read message when the socket
	// reports fragmentation (EnableFragSize); nil otherwise.
	oob []byte

	rd, wr direction
}

// direction is the scratch of one direction: built once, reused.
type direction struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	off   int                     // first message of the current call
	n     int                     // messages in the current call
	got   int                     // result of the syscall
	errno syscall.Errno
	fn    func(fd uintptr) bool // bound once: no closure per call
}

// Listen opens a UDP socket on addr ("host:port"; network "udp", "udp4" or
// "udp6") configured by opts.
func Listen(ctx context.Context, network, addr string, opts Options) (*Conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = setSockopts(int(fd), opts) })
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("udpbatch: listen %s %s: %w", network, addr, err)
	}
	c, err := New(pc.(*net.UDPConn), opts.BatchSize)
	if err != nil {
		pc.Close()
		return nil, err
	}
	if opts.ReportFragmented {
		c.oob = make([]byte, len(c.rd.hdrs)*fragOOBSize)
	}
	return c, nil
}

func setSockopts(fd int, opts Options) error {
	if opts.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("udpbatch: SO_REUSEPORT: %w", err)
		}
	}
	if opts.RecvBuffer > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, opts.RecvBuffer) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, opts.RecvBuffer); err != nil {
				return fmt.Errorf("udpbatch: SO_RCVBUF: %w", err)
			}
		}
	}
	if opts.SendBuffer > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, opts.SendBuffer) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, opts.SendBuffer); err != nil {
				return fmt.Errorf("udpbatch: SO_SNDBUF: %w", err)
			}
		}
	}
	if opts.BusyPollMicros > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, opts.BusyPollMicros); err != nil {
			return fmt.Errorf("udpbatch: SO_BUSY_POLL: %w", err)
		}
	}
	if opts.ReportFragmented {
		return EnableFragSize(fd)
	}
	return nil
}

// New wraps an open UDP socket. The Conn takes ownership of uc.
func New(uc *net.UDPConn, batchSize int) (*Conn, error) {
	if batchSize <= 0 {
		batchSize = DefaultBatchSize
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: raw conn: %w", err)
	}
	var domain int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("udpbatch: control: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("udpbatch: SO_DOMAIN: %w", serr)
	}
	c := &Conn{uc: uc, raw: raw, v6: domain == unix.AF_INET6}
	c.rd.init(batchSize)
	c.wr.init(batchSize)
	c.rd.fn = c.recvmmsg
	c.wr.fn = c.sendmmsg
	return c, nil
}

func (d *direction) init(n int) {
	d.hdrs = make([]unix.Mmsghdr, n)
	d.iovs = make([]unix.Iovec, n)
	d.names = make([]unix.RawSockaddrInet6, n)
	for i := range d.hdrs {
		h := &d.hdrs[i].Hdr
		h.Iov = &d.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&d.names[i]))
	}
}

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() netip.AddrPort {
	return c.uc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// UDPConn returns the underlying socket, for single-datagram use and
// socket options. Do not read from it while a ReadBatch may run.
func (c *Conn) UDPConn() *net.UDPConn { return c.uc }

// SetReadDeadline sets the deadline for ReadBatch.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for WriteBatch.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// Close closes the socket; a blocked ReadBatch returns net.ErrClosed.
func (c *Conn) Close() error { return c.uc.Close() }

// ReadBatch receives up to len(ms) datagrams, blocking until at least one
// has arrived (or the read deadline passes). Each ms[i].Buf must have a
// non-zero capacity; the datagram lands in ms[i].Buf[:ms[i].N]. A kernel
// error is returned as a bare syscall.Errno; poller errors are wrapped.
func (c *Conn) ReadBatch(ms []Message) (int, error) {
	d := &c.rd
	if len(ms) > len(d.hdrs) {
		return 0, ErrBatchTooLarge
	}
	for i := range ms {
		b := ms[i].Buf[:cap(ms[i].Buf)]
		if len(b) == 0 {
			return 0, errors.New("udpbatch: read buffer with zero capacity")
		}
		d.iovs[i].Base = &b[0]
		d.iovs[i].SetLen(len(b))
		d.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		d.hdrs[i].Hdr.Flags = 0
		d.hdrs[i].Len = 0
		if c.oob != nil {
			d.hdrs[i].Hdr.Control = &c.oob[i*fragOOBSize]
			d.hdrs[i].Hdr.SetControllen(fragOOBSize)
		}
	}
	d.off, d.n = 0, len(ms)
	if err := c.raw.Read(d.fn); err != nil {
		return 0, fmt.Errorf("udpbatch: recvmmsg: %w", err)
	}
	if d.errno != 0 {
		return 0, d.errno
	}
	for i := 0; i < d.got; i++ {
		m := &ms[i]
		m.N = int(d.hdrs[i].Len)
		m.Truncated = d.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0
		if m.N > cap(m.Buf) {
			m.N = cap(m.Buf)
		}
		m.Buf = m.Buf[:m.N]
		m.Addr = sockaddrToAddrPort(&d.names[i])
		m.Fragmented = false
		if c.oob != nil {
			o := i * fragOOBSize
			m.Fragmented = Fragmented(c.oob[o : o+int(min(d.hdrs[i].Hdr.Controllen, fragOOBSize))])
		}
	}
	return d.got, nil
}

// recvmmsg is the RawConn.Read callback: it reports false (wait for the
// poller) on EAGAIN and true on anything else.
func (c *Conn) recvmmsg(fd uintptr) bool {
	d := &c.rd
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&d.hdrs[d.off])), uintptr(d.n), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	d.got, d.errno = int(n), e
	return true
}

// WriteBatch sends the datagrams ms[i].Buf to ms[i].Addr. It blocks while
// the socket buffer is full and returns how many were sent. An error from
// the kernel concerns ms[n] (the first not sent) and is returned as a bare
// syscall.Errno (no allocation on the data path; errors.Is works with it):
// callers count it and go on with ms[n+1:]. Errors from the poller (closed
// socket, deadline) are wrapped.
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	d := &c.wr
	if len(ms) > len(d.hdrs) {
		return 0, ErrBatchTooLarge
	}
	if len(ms) == 0 {
		return 0, nil
	}
	for i := range ms {
		b := ms[i].Buf
		if len(b) == 0 {
			d.iovs[i].Base = nil
		} else {
			d.iovs[i].Base = &b[0]
		}
		d.iovs[i].SetLen(len(b))
		d.hdrs[i].Hdr.Namelen = c.addrPortToSockaddr(&d.names[i], ms[i].Addr)
		d.hdrs[i].Len = 0
	}
	sent := 0
	for sent < len(ms) {
		d.off, d.n = sent, len(ms)-sent
		err := c.raw.Write(d.fn)
		if err != nil {
			return sent, fmt.Errorf("udpbatch: sendmmsg: %w", err)
		}
		if d.errno != 0 {
			return sent, d.errno
		}
		sent += d.got
	}
	return sent, nil
}

func (c *Conn) sendmmsg(fd uintptr) bool {
	d := &c.wr
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&d.hdrs[d.off])), uintptr(d.n), unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	d.got, d.errno = int(n), e
	return true
}
