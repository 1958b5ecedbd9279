package keytable

import (
	"net/netip"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// ConferenceID identifies a conference (the set of endpoints whose media the
// MD forwards to each other). It is a small integer chosen by the caller,
// which maps its own conference names to IDs once on the control plane; a
// fixed-size integer keeps the hot path free of string hashing.
type ConferenceID uint32

// Endpoint is one immutable version of an association as the workers see
// it: its ID, key generation, transport address, conference and the two
// directions of hop-by-hop keys. Every write that changes one of these
// publishes a new Endpoint; the old version stays valid (and unchanged) for
// workers still holding an older Snapshot.
//
// The only mutable state reachable from an Endpoint is atomic and belongs
// to the association, shared by all its versions: the last-seen time
// (Touch), the receive-side owner (Reader.Own) and the SSRC claims
// (Table.ClaimSSRC).
type Endpoint struct {
	id   uuid.UUID
	gen  uint64
	addr netip.AddrPort
	conf ConferenceID
	recv *srtpfast.Keys
	send *srtpfast.Keys
	a    *assoc
	cs   *confState // nil while the endpoint is being moved between conferences
	join uint64     // join sequence number in conf (see JoinSeq)
	link bool       // a link association (Association.Link)
	tag  uint32     // its conference's link tag
	// noConsent takes the endpoint out of its conference's receivers
	// (Table.SetConsent); it stays a member and its media is forwarded.
	noConsent bool
}

// ID returns the association ID.
func (e *Endpoint) ID() uuid.UUID { return e.id }

// Gen returns the key generation: unique in the Table's life and changed
// only when the association's keys are installed or replaced. A worker keys
// its per-association receive state (the srtpfast.Opener built from Recv)
// by Gen: a different Gen means the keys were replaced and the Opener is
// stale.
func (e *Endpoint) Gen() uint64 { return e.gen }

// Addr returns the endpoint's transport address (where its packets come
// from and where packets to it are sent).
func (e *Endpoint) Addr() netip.AddrPort { return e.addr }

// Conference returns the endpoint's conference.
func (e *Endpoint) Conference() ConferenceID { return e.conf }

// Recv returns the keys of packets from the endpoint (client_write).
func (e *Endpoint) Recv() *srtpfast.Keys { return e.recv }

// Consent reports whether the endpoint receives media: false after
// Table.SetConsent took its consent away (RFC 7675).
func (e *Endpoint) Consent() bool { return !e.noConsent }

// Link reports whether the endpoint is a link association: the hop to a
// peer Media Distributor for its conference (Association.Link).
func (e *Endpoint) Link() bool { return e.link }

// Tag returns a link association's conference tag (zero otherwise).
func (e *Endpoint) Tag() uint32 { return e.tag }

// key returns the key of e's address slot: its address, with its tag for
// a link association.
func (e *Endpoint) key() AddrKey { return KeyOf(e.addr).withTag(e.tag) }

// LinkStats are a link association's traffic counters: what the workers
// sent to the peer Media Distributor for the conference and received from
// it (UDP payloads, authenticated ones for Rx), and the copies and packets
// they dropped on the way (TxDrops: a copy not sent on the link, e.g. a
// packet with 15 CSRCs that has no room for the tag; RxDrops: a packet
// from the link that did not open or was not admitted). Each worker adds
// its share once per batch (AddLinkTraffic).
type LinkStats struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
	TxDrops, RxDrops                       uint64
}

// linkCounters are the atomics behind LinkStats, allocated for link
// associations only.
type linkCounters struct {
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
	txDrops, rxDrops                       atomic.Uint64
}

// LinkStats returns the traffic counters of a link association, summed
// over its versions and the workers' published batches; zero for an
// association that is not a link.
func (e *Endpoint) LinkStats() LinkStats {
	c := e.a.link
	if c == nil {
		return LinkStats{}
	}
	return LinkStats{
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxDrops: c.txDrops.Load(), RxDrops: c.rxDrops.Load(),
	}
}

// AddLinkTraffic adds d to a link association's counters (a worker calls
// it once per batch per link it carried, with what that batch counted:
// one atomic add per non-zero counter). It does nothing for an association
// that is not a link. It does not allocate.
func (e *Endpoint) AddLinkTraffic(d LinkStats) {
	c := e.a.link
	if c == nil {
		return
	}
	for _, x := range [...]struct {
		n uint64
		c *atomic.Uint64
	}{{d.TxPackets, &c.txPackets}, {d.TxBytes, &c.txBytes}, {d.RxPackets, &c.rxPackets},
		{d.RxBytes, &c.rxBytes}, {d.TxDrops, &c.txDrops}, {d.RxDrops, &c.rxDrops}} {
		if x.n != 0 {
			x.c.Add(x.n)
		}
	}
}

// Send returns the keys of packets to the endpoint (server_write).
func (e *Endpoint) Send() *srtpfast.Keys { return e.send }

// Touch records that a packet from the endpoint authenticated at now (a
// clock in nanoseconds, read once per batch; the Table's idle expiry uses
// Config.Now().UnixNano()). It writes only when now advances, so a worker
// calling it for every packet of a batch writes the shared cache line once.
func (e *Endpoint) Touch(now int64) {
	if e.a.lastSeen.Load() < now {
		e.a.lastSeen.Store(now)
	}
}

// Removed reports whether the association has been removed from the
// table (any version of it): a worker may then forget the receive state it
// keeps for it.
func (e *Endpoint) Removed() bool { return e.a.removed.Load() }

// LastSeen returns the last time given to Touch (or the install time).
func (e *Endpoint) LastSeen() int64 { return e.a.lastSeen.Load() }

// JoinSeq returns the endpoint's join sequence number in its conference:
// it increases with every join, so it orders the members by the time they
// joined. A worker passes the largest JoinSeq of the receivers of a packet
// to Table.Admit.
func (e *Endpoint) JoinSeq() uint64 { return e.join }

// OverBudget returns how many of this association's packets were refused
// because it holds Config.MaxSSRCsPerSender claims.
func (e *Endpoint) OverBudget() uint64 { return e.a.overBudget.Load() }

// LostClaims returns how many of this association's SSRC claims other
// senders took over (it was silent or outsent under them).
func (e *Endpoint) LostClaims() uint64 { return e.a.lost.Load() }

// Collisions returns how many of this association's packets were refused by
// ClaimSSRC because another sender of its conference owns the SSRC.
func (e *Endpoint) Collisions() uint64 { return e.a.collisions.Load() }

// assoc is the state of one association shared by all its Endpoint
// versions. Fields not marked otherwise are written only under Table.mu.
type assoc struct {
	id      uuid.UUID
	serial  uint64 // unique in the Table's life
	cur     *Endpoint
	joinSeq uint64 // conference join sequence number, see confState

	// cs is the conference the association is a member of, nil while it is
	// being moved or after removal; claimers read it under cs.mu.
	cs atomic.Pointer[confState]
	// away is the conference it is moving out of (SetConference).
	away *confState
	// nclaims is the number of its live claims (changed under cs.mu).
	nclaims atomic.Int64
	// owner is gen<<16 | reader ID of the Reader that owns the receive
	// side of generation gen (Reader.Own).
	owner      atomic.Uint64
	lastSeen   atomic.Int64
	collisions atomic.Uint64
	overBudget atomic.Uint64
	lost       atomic.Uint64
	// link holds a link association's traffic counters (nil otherwise).
	link *linkCounters
	// removed is set when the association is removed (Remove, ExpireIdle,
	// a failed move).
	removed atomic.Bool
}
