package udpbatch

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fragOOBSize is the control buffer of one received message: room for the
// one IP_RECVFRAGSIZE or IPV6_RECVFRAGSIZE message (an int) and then some.
const fragOOBSize = 64

// EnableFragSize asks the kernel to say, for each datagram received on the
// UDP socket fd, whether it was reassembled from IP fragments: it sets
// IP_RECVFRAGSIZE (IPv4, also for IPv4 datagrams on a dual-stack AF_INET6
// socket) and, on an AF_INET6 socket, IPV6_RECVFRAGSIZE (Linux 4.10+). The
// kernel then attaches the size of the largest fragment as a control
// message to reassembled datagrams only (IPv6 atomic fragments included);
// Fragmented finds it.
func EnableFragSize(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVFRAGSIZE, 1); err != nil {
		return fmt.Errorf("udpbatch: IP_RECVFRAGSIZE: %w", err)
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("udpbatch: SO_DOMAIN: %w", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVFRAGSIZE, 1); err != nil {
			return fmt.Errorf("udpbatch: IPV6_RECVFRAGSIZE: %w", err)
		}
	}
	return nil
}

// Fragmented reports whether oob, the control messages of one datagram
// received on a socket set up by EnableFragSize, says the datagram was
// reassembled from fragments. It walks the messages in place (no
// allocation) and stops at the first malformed header.
func Fragmented(oob []byte) bool {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(oob) {
			return false
		}
		if (h.Level == unix.IPPROTO_IP && h.Type == unix.IP_RECVFRAGSIZE) ||
			(h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_RECVFRAGSIZE) {
			return true
		}
		n = cmsgAlign(n)
		if n >= len(oob) {
			return false
		}
		oob = oob[n:]
	}
	return false
}

// cmsgAlign rounds n up to the alignment of control messages (the size of
// a long).
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}
