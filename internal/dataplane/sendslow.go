package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ErrSendWouldBlock is returned by SendSlow when the slow-path socket's
// send buffer is full: the datagram was dropped rather than waited for.
var ErrSendWouldBlock = errors.New("dataplane: slow-path send buffer full")

// sendNoWait sends one datagram on c without ever waiting for room in the
// socket's send buffer. The slow path answers whatever arrives (cookie
// exchanges, STUN), and a datagram towards an address whose next hop does
// not resolve stays charged to the socket's send buffer until neighbour
// resolution gives up (seconds): a flood from spoofed sources fills the
// buffer, and a blocking send would stop the slow path for everyone. Such a
// datagram is dropped instead, like any datagram lost on the way.
func sendNoWait(c *net.UDPConn, b []byte, dst netip.AddrPort) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("dataplane: slow-path socket: %w", err)
	}
	sa, err := sockaddrFor(c, dst)
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return true // never wait for writability
	}); err != nil {
		return fmt.Errorf("dataplane: slow-path socket: %w", err)
	}
	switch {
	case errors.Is(serr, unix.EAGAIN):
		return ErrSendWouldBlock
	case serr != nil:
		return fmt.Errorf("dataplane: send slow-path datagram to %s: %w", dst, serr)
	}
	return nil
}

// slowSendBuffer is the send buffer of the sockets the slow path answers
// from. Answers to spoofed on-link sources wait in the kernel's neighbour
// queue, charged to this buffer, until resolution fails (about 3 s); the
// kernel keeps at most gc_thresh3 (1024 by default) unresolved neighbours,
// so 4 MiB holds their datagrams with room to spare and a flood of them
// cannot leave the real endpoints' answers without room.
const slowSendBuffer = 4 << 20

// growSendBuffer raises c's send buffer to slowSendBuffer, past
// net.core.wmem_max when the process may (CAP_NET_ADMIN, which the XDP
// modes have). Best effort: sendNoWait copes with a full buffer.
func growSendBuffer(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, slowSendBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, slowSendBuffer)
		}
	})
}

// sockaddrFor returns dst in the address family of c's socket (an IPv4
// destination is v4-mapped on a dual-stack IPv6 socket).
func sockaddrFor(c *net.UDPConn, dst netip.AddrPort) (unix.Sockaddr, error) {
	local, _ := c.LocalAddr().(*net.UDPAddr)
	v4sock := local != nil && local.IP.To4() != nil
	a := dst.Addr()
	switch {
	case v4sock && a.Unmap().Is4():
		return &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.Unmap().As4()}, nil
	case v4sock:
		return nil, fmt.Errorf("dataplane: send to %s from an IPv4 socket: %w", dst, ErrBadAddress)
	default:
		return &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16(), ZoneId: zoneID(a)}, nil
	}
}

func zoneID(a netip.Addr) uint32 {
	if a.Zone() == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(a.Zone()); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
