package dataplane

import (
	"net/netip"

	"github.com/mdfast/mdfast/internal/keytable"
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
	// Link marks a link association: the hop to a peer Media Distributor
	// for one conference. Packets on it carry Tag (link.go); what comes
	// from a link is forwarded only to members that are not links.
	Link bool
	Tag  uint32
	// Traffic, for a link, is told what each batch sent on it and
	// received from it, and says when the link is gone
	// (*keytable.Endpoint has these methods).
	Traffic LinkTraffic

	// ep is Ref when the Peer is a keytable.Endpoint's (ktReader fills
	// it): the worker's Reader uses it per packet without a type
	// assertion.
	ep *keytable.Endpoint
}

// LinkTraffic is what a worker needs of a link association beyond its
// keys.
type LinkTraffic interface {
	// AddLinkTraffic adds one batch's traffic on the link.
	AddLinkTraffic(keytable.LinkStats)
	// Removed reports whether the link association was removed.
	Removed() bool
}

// LinkAddress is the Peer Route returns, with false, for the media address
// of a peer Media Distributor that link associations share: the worker
// reads the packet's conference tag and routes it with RouteLink.
var LinkAddress = &Peer{Link: true}

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
	// When another reader holds the sender's receive state (its flow moved
	// to this worker's queue), Route returns the sender, no members and
	// false; for an unknown source, nil and false.
	//
	// For the media address of a peer Media Distributor Route returns
	// LinkAddress and false; RouteLink then picks the link by the
	// packet's tag.
	Route(src netip.AddrPort) (sender *Peer, members []*Peer, ok bool)
	// RouteLink is Route for a packet from a peer Media Distributor's
	// media address carrying conference tag tag: the link association
	// (nil and false for an unknown tag) and its conference's members.
	RouteLink(src netip.AddrPort, tag uint32) (sender *Peer, members []*Peer, ok bool)
	// Admit claims ssrc for sender in its conference (if it is not the
	// sender's already) and admits one authenticated packet under it:
	// index is its SRTP index (ROC << 16 | SEQ), or its SRTCP index when
	// rtcp; now the batch time in nanoseconds. ok false (a collision, a
	// sender over its SSRC budget, an index the SSRC's re-basing cannot
	// place) means drop the packet. rebased reports, for an admitted
	// packet, whether OutIndex may give a receiver that is not a link an
	// index other than the packet's own (its SSRC was sent to some member
	// under an earlier owner); when false the worker seals those copies
	// under the packet's own index without asking OutIndex for each.
	Admit(sender *Peer, ssrc uint32, rtcp bool, index uint64, now int64) (rebased, ok bool)
	// OutIndex returns the index under which the packet Admit last
	// admitted must be sealed for receiver r: its own index, or a
	// re-based one when r was sent the SSRC under an earlier owner (the
	// caller then rewrites SEQ and seals under the new ROC, or uses it as
	// the SRTCP index). false means drop this copy.
	OutIndex(r *Peer) (uint64, bool)
	// The rest moves a sender's receive state between readers (see
	// handover.go); it is called outside the per-packet path and may be
	// called outside Begin/End. p is a Peer Route returned.

	// ID returns the reader's number, unique among the table's open
	// readers and never 0.
	ID() int
	// Owner returns the ID of the reader holding p's receive state (0:
	// nobody yet) or, when transit, the reader it is being handed to (0:
	// parked by a stopped reader); stale means p's keys were replaced.
	Owner(p *Peer) (reader int, transit, stale bool)
	// HandOver gives this reader's ownership of p's receive state to
	// reader to (0: park it), in transit until that reader Accepts; false
	// if this reader does not own it.
	HandOver(p *Peer, to int) bool
	// Accept takes ownership of p's receive state handed to this reader
	// or parked; false if it is neither (then the state handed over is
	// stale and must be dropped).
	Accept(p *Peer) bool
	// Release gives up ownership of p's receive state when this reader
	// holds none for it (nothing to hand over).
	Release(p *Peer)
}

// Table hands out one Reader per worker.
type Table interface {
	NewReader() Reader
}
