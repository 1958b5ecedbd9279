// Package udpbatch reads and writes a UDP socket in batches with
// recvmmsg(2) and sendmmsg(2), without allocating per call or per packet.
//
// It is the I/O layer of mdfast's socket path: the slow path's kernel socket
// on the media port, and the socket fallback of the data plane, used where
// XDP or AF_XDP is unavailable. It owns the socket, the mmsghdr, iovec and
// sockaddr arrays, and the integration with the Go netpoller (through
// syscall.RawConn, so deadlines and Close work as on a net.UDPConn).
//
// It must not know what the datagrams carry.
//
// # Concurrency
//
// One goroutine may call ReadBatch while another calls WriteBatch: each
// direction has its own scratch arrays. Two concurrent ReadBatch calls (or
// two WriteBatch calls) on one Conn are not allowed; a data-plane worker owns
// its Conn. Several workers share one port through SO_REUSEPORT (see
// Options.ReusePort): the kernel then spreads flows over the sockets by a
// hash of the 4-tuple, so one endpoint's packets always reach one worker.
package udpbatch
