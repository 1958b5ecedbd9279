package dataplane

import (
	"net/netip"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Peer is one endpoint (one DTLS association) as a worker sees it. The key
// table publishes Peers and never modifies one after publishing it (a
// rekey publishes a new Peer with a higher Gen); only LastSeen is written,
// atomically.
type Peer struct {
	// ID identifies the association for the life of the process.
	ID uint64
	// Gen changes whenever the Peer's keys change.
	Gen uint64
	// Addr is the endpoint's transport address: packets from it are its
	// media, packets to it carry the conference's media.
	Addr netip.AddrPort
	// Recv opens what the endpoint sends (client_write HBH keys); Send
	// seals what the MD sends to it (server_write HBH keys). Either is nil
	// until installed.
	Recv, Send *srtpfast.Keys
	// Seen, when not nil, is told the time (Unix nanoseconds, once per
	// batch) of the last authenticated packet from the endpoint, for idle
	// expiry (*keytable.Endpoint has this method).
	Seen interface{ Touch(now int64) }
	// Ref is the table's own handle on the endpoint (for its Reader).
	Ref any
}

// Reader is what a worker needs from the key table: a per-worker read
// view, used between Begin and End once per batch (the table publishes
// snapshots; what Route returns stays valid until End). A Reader is used by
// one goroutine and must not allocate in Route, Admit or OutIndex.
type Reader interface {
	// Begin takes the snapshot the next lookups read.
	Begin()
	// End releases it.
	End()
	// Route returns the endpoint sending from src and the members of its
	// conference (the sender may be among them; the worker skips it).
	Route(src netip.AddrPort) (sender *Peer, members []*Peer, ok bool)
	// Admit claims ssrc for sender in its conference (if it is not the
	// sender's already) and admits one authenticated packet under it:
	// index is its SRTP index (ROC << 16 | SEQ), or its SRTCP index when
	// rtcp; now the batch time in nanoseconds. false (a collision, a
	// sender over its SSRC budget, an index the SSRC's re-basing cannot
	// place) means drop the packet.
	Admit(sender *Peer, ssrc uint32, rtcp bool, index uint64, now int64) bool
	// OutIndex returns the index under which the packet Admit last
	// admitted must be sealed for receiver r: its own index, or a
	// re-based one when r was sent the SSRC under an earlier owner (the
	// caller then rewrites SEQ and seals under the new ROC, or uses it as
	// the SRTCP index). false means drop this copy.
	OutIndex(r *Peer) (uint64, bool)
}

// Table hands out one Reader per worker.
type Table interface {
	NewReader() Reader
}
