package dataplane

import (
	"net/netip"

	"github.com/mdfast/mdfast/internal/frame"
)

// RxPacket is one received datagram, valid until the Port's Release.
type RxPacket struct {
	// Payload is the UDP payload. Its capacity may extend past its length
	// (the rest of the receive buffer); the worker opens it in place.
	Payload []byte
	// Src is the sender's transport address; Dst the MD's address the
	// datagram was sent to (the socket port gives its bound address).
	Src, Dst netip.AddrPort
	// Drop is non-zero when the port could not parse the datagram; the
	// worker counts it and skips the packet.
	Drop Reason
	// RxTime is when the XDP program redirected the frame
	// (CLOCK_MONOTONIC nanoseconds, from the frame's metadata; see
	// afxdp.Socket.RxTime), 0 when unknown (socket mode, a driver without
	// XDP metadata). The worker measures the packet's dwell from it.
	RxTime int64

	// VLAN tag of the received frame (AF_XDP), repeated on replies.
	vlanProto, vlanTCI uint16
}

// setFrame makes p the datagram of a parsed frame (frame.Parse): its UDP
// payload, the headers' addresses and VLAN tag, its receive time (0:
// unknown), no drop. It assigns field
// by field: a composite literal would zero and copy the whole struct per
// packet. A field added to RxPacket must be set here too.
func (p *RxPacket) setFrame(payload []byte, h *frame.Headers, rxTime int64) {
	p.Payload = payload
	p.RxTime = rxTime
	p.Src, p.Dst = h.SrcAddr, h.DstAddr
	p.Drop = 0
	p.vlanProto, p.vlanTCI = h.VLANProto, h.VLANTCI
}

// Port is the batch I/O of one worker: one NIC queue (AF_XDP) or one
// socket of an SO_REUSEPORT group. All methods but Interrupt are called
// from the worker's goroutine only.
//
// Sending is two-step so the worker can copy and seal straight into the
// transmit buffer: TxBuffer returns a zero-length slice whose capacity is
// the room for the payload (headers, when the port writes them, go in front
// of it); the worker writes the payload and calls Commit. A TxBuffer not
// committed is reused by the next TxBuffer call.
type Port interface {
	// Bind gives the port the worker's counters (called once, before
	// anything else).
	Bind(c *Counts)
	// Receive fills rx[:n] with received datagrams, waiting up to the
	// port's poll interval when none is ready (then n is 0). An error is
	// fatal for the port (closed).
	Receive(rx []RxPacket) (n int, err error)
	// Release gives back the buffers of packets returned by Receive.
	Release(rx []RxPacket)
	// TxBuffer returns the payload buffer of the next datagram to dst, a
	// reply to in (same local address and VLAN), or a drop reason. The
	// port may read *in once for all the calls with the same in until the
	// next Flush (the copies of one received datagram): the caller must
	// not change it in between.
	TxBuffer(dst netip.AddrPort, in *RxPacket) ([]byte, Reason)
	// Commit queues the datagram: n octets written into the last TxBuffer.
	Commit(n int)
	// Flush transmits what is queued and reaps completions.
	Flush() error
	// Interrupt makes a blocked Receive return soon, and every later one
	// too (the worker is stopping). It is safe to call from any goroutine.
	Interrupt()
	// Wake makes a Receive that is waiting return soon, once: the worker
	// has hand-over work (handover.go). A Wake while no Receive waits
	// makes the next one return soon. Many Wakes may end one wait. Safe
	// from any goroutine; it must not block or allocate.
	Wake()
	// WaitUntil makes Receive wait no later than deadline (Unix
	// nanoseconds, the worker's batch clock), once, when no packet comes
	// sooner: the worker holds a hand-over request it can answer then
	// (handover.go). A deadline already passed is forgotten; a later call
	// replaces it. The worker calls it between batches only while such a
	// request waits, never on the per-packet path. A port whose Receive
	// never waits may do nothing.
	WaitUntil(deadline int64)
	// Close releases the port. The worker must have stopped.
	Close() error
}
