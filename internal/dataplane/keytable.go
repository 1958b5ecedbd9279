package dataplane

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/mdfast/mdfast/internal/keytable"
)

// KeyTable adapts a *keytable.Table to Table.
type KeyTable struct{ T *keytable.Table }

// NewReader implements Table: a keytable.Reader with a per-worker cache of
// Peers, one per Endpoint version (allocated once per version, not per
// packet).
func (k KeyTable) NewReader() Reader {
	return &ktReader{t: k.T, r: k.T.NewReader(), peers: make(map[*keytable.Endpoint]*Peer), epoch: 1}
}

type ktReader struct {
	t     *keytable.Table
	r     *keytable.Reader
	snap  *keytable.Snapshot
	peers map[*keytable.Endpoint]*Peer
	// recent is a direct-mapped cache in front of peers, indexed by a hash
	// of the Endpoint's address: a hit costs a few instructions where the
	// map costs a call and a probe. Its entries hold their Endpoints (as
	// the map does), so an address in it is never reused for another
	// Endpoint while cached; it is cleared with peers.
	recent  [recentPeers]recentPeer
	maxJoin uint64         // of the members Route returned last
	claim   keytable.Claim // what Admit admitted last
	// conf and confJoin are the receivers and their highest JoinSeq of
	// routedConf, when routed: within a batch (one snapshot, immutable,
	// where a conference's receivers depend on nothing else) the next
	// packet from the same conference reuses them without looking them
	// up. Reset by Begin when the snapshot changed.
	conf       []*Peer
	confJoin   uint64
	routedConf keytable.ConferenceID
	routed     bool
	// routes are the sources Route routed since epoch began,
	// direct-mapped by a hash of the source: the next packet from one of
	// them (several senders' packets interleave; a video frame's come in
	// a burst) takes its route again, members and maxJoin included,
	// without a lookup. An entry holds its own copy of the members, less
	// those the worker skips for that sender (itself; links, for a link). Only
	// a route is kept: a source Route does not route is looked up each
	// time.
	//
	// A route depends on the snapshot and on this reader's ownership of
	// the sender (Reader.Own) alone, so an epoch lasts while both stay:
	// Begin starts a new one when the snapshot is not the one the last
	// batch read (snapEpoch), and HandOver and Release (the only ways
	// this reader loses an ownership once granted; the worker calls them
	// between batches) end it. Routes thus carry over from batch to batch
	// until the table publishes. epoch starts at 1: an entry's 0 is never.
	routes    [routeSlots]routeEntry
	epoch     uint64
	snapEpoch uint64
}

// routeSlots is the size of ktReader.routes (a power of two).
const routeSlots = 1 << 4

type routeEntry struct {
	src     netip.AddrPort
	epoch   uint64 // the batch it was routed in; 0: never
	peer    *Peer
	members []*Peer
	maxJoin uint64
}

// routeSlot returns src's slot in ktReader.routes.
func routeSlot(src netip.AddrPort) uint64 {
	return hashAddrPort(src) >> (64 - 4) // < routeSlots
}

// hashAddrPort is a Fibonacci hash of ap's address and port for a
// direct-mapped table: take its top bits. The address is read as the
// two words a netip.Addr keeps it in (its first 16 octets), not through
// As16, which swaps and copies them through the stack. Only the spread of
// the slots depends on that layout, never a result: every table it
// indexes compares the whole AddrPort of the entry it finds.
func hashAddrPort(ap netip.AddrPort) uint64 {
	w := (*[2]uint64)(unsafe.Pointer(&ap))
	return (w[0] ^ w[1] ^ uint64(ap.Port())<<48) * 0x9e3779b97f4a7c15
}

func (k *ktReader) Begin() {
	k.snap = k.r.Begin()
	if se := k.snap.Epoch(); se != k.snapEpoch {
		// Another snapshot: no route nor conference of the last one.
		k.snapEpoch = se
		k.newEpoch()
		if len(k.peers) > 4*k.snap.Len()+1024 {
			clear(k.peers) // old versions; live ones are rebuilt on use
			k.recent = [recentPeers]recentPeer{}
		}
	}
}

// newEpoch forgets the routes and the conference found so far.
func (k *ktReader) newEpoch() {
	k.epoch++
	k.routed = false
}

// recentPeers is the size of ktReader.recent: recentSlot's range.
const recentPeers = 1 << 8

type recentPeer struct {
	ep *keytable.Endpoint
	p  *Peer
}

// recentSlot returns ep's slot in ktReader.recent: Fibonacci hashing of
// its address (heap objects do not move).
func recentSlot(ep *keytable.Endpoint) uint64 {
	return uint64(uintptr(unsafe.Pointer(ep))) * 0x9e3779b97f4a7c15 >> (64 - 8) // < recentPeers
}

// End ends the batch. The routes stay: the next batch takes them again if
// it reads the same snapshot (see ktReader.routes).
func (k *ktReader) End() {
	k.snap = nil
	k.r.End()
}

// Close unregisters the keytable.Reader (Worker.Run calls it on exit).
func (k *ktReader) Close() { k.r.Close() }

func (k *ktReader) peer(ep *keytable.Endpoint) *Peer {
	if r := &k.recent[recentSlot(ep)]; r.ep == ep {
		return r.p
	}
	return k.peerSlow(ep)
}

// peerSlow is peer on a miss of recent: the map, or a new Peer; it fills
// ep's slot in recent.
func (k *ktReader) peerSlow(ep *keytable.Endpoint) *Peer {
	p := k.peers[ep]
	if p == nil {
		id := ep.ID()
		p = &Peer{
			// Random (v4) association IDs folded to 64 bits.
			ID:   binary.BigEndian.Uint64(id[:8]) ^ binary.BigEndian.Uint64(id[8:]),
			Gen:  ep.Gen(),
			Addr: ep.Addr(),
			Recv: ep.Recv(), Send: ep.Send(), Seen: ep, Ref: ep,
			Link: ep.Link(), Tag: ep.Tag(),
			ep: ep,
		}
		if p.Link {
			p.Traffic = ep
		}
		k.peers[ep] = p
	}
	k.recent[recentSlot(ep)] = recentPeer{ep, p}
	return p
}

// Route implements Reader. A sender whose receive side another worker owns
// (keytable.Reader.Own) is not routed here: Route returns it with false.
func (k *ktReader) Route(src netip.AddrPort) (*Peer, []*Peer, bool) {
	e := &k.routes[routeSlot(src)]
	if e.epoch != k.epoch || e.src != src {
		return k.routeMiss(src, e)
	}
	k.maxJoin = e.maxJoin
	return e.peer, e.members, true
}

// cachedRoute is Route for a source routed in this epoch, without the call
// through Reader: the worker tries it first (it inlines). It returns the
// entry, and Admit uses its maxJoin, as after Route; nil (also for a nil
// k: a worker on another Reader) when Route must be asked.
func (k *ktReader) cachedRoute(src netip.AddrPort) *routeEntry {
	if k == nil {
		return nil
	}
	e := &k.routes[routeSlot(src)]
	if e.epoch != k.epoch || e.src != src {
		return nil
	}
	k.maxJoin = e.maxJoin
	return e
}

// routeMiss is Route for a source not routed yet in the batch: it looks
// it up and, when routed, fills its entry e.
func (k *ktReader) routeMiss(src netip.AddrPort, e *routeEntry) (*Peer, []*Peer, bool) {
	ep, link := k.snap.Resolve(keytable.KeyOf(src))
	if link {
		return LinkAddress, nil, false
	}
	p, members, ok := k.route(ep)
	if ok {
		e.src, e.epoch, e.peer, e.maxJoin = src, k.epoch, p, k.maxJoin
		// The copy leaves out what the worker would skip for every packet
		// of p: p itself, and the links when p is one.
		e.members = e.members[:0]
		for _, m := range members {
			if m != nil && m.ID != p.ID && !(m.Link && p.Link) {
				e.members = append(e.members, m)
			}
		}
	}
	return p, members, ok
}

// RouteLink implements Reader with keytable.Snapshot.LookupLink.
func (k *ktReader) RouteLink(src netip.AddrPort, tag uint32) (*Peer, []*Peer, bool) {
	return k.route(k.snap.LookupLink(keytable.KeyOf(src), tag))
}

func (k *ktReader) route(ep *keytable.Endpoint) (*Peer, []*Peer, bool) {
	if ep == nil {
		return nil, nil, false
	}
	if !k.r.Own(ep) {
		return k.peer(ep), nil, false
	}
	// A conference's receivers are one slice per snapshot, found by the
	// conference alone.
	if conf := ep.Conference(); !k.routed || conf != k.routedConf {
		k.conf = k.conf[:0]
		k.confJoin = 0
		for _, m := range k.snap.Receivers(ep) {
			k.conf = append(k.conf, k.peer(m))
			k.confJoin = max(k.confJoin, m.JoinSeq())
		}
		k.routedConf, k.routed = conf, true
	}
	k.maxJoin = k.confJoin
	return k.peer(ep), k.conf, true
}

// peerEndpoint returns p's Endpoint, or nil if p is not from a keytable.
func peerEndpoint(p *Peer) *keytable.Endpoint {
	if p.ep != nil {
		return p.ep
	}
	ep, _ := p.Ref.(*keytable.Endpoint)
	return ep
}

// Admit implements Reader with keytable.Reader.AdmitTo and
// keytable.Claim.Rebased. Every Peer this reader routes has its Endpoint
// in ep.
func (k *ktReader) Admit(sender *Peer, ssrc uint32, rtcp bool, index uint64, now int64) (rebased, ok bool) {
	kind := keytable.KindRTP
	if rtcp {
		kind = keytable.KindRTCP
	}
	if sender.ep == nil || !k.r.AdmitTo(&k.claim, sender.ep, ssrc, kind, index, k.maxJoin, now) {
		return false, false
	}
	return k.claim.Rebased(), true
}

// OutIndex implements Reader with keytable.Claim.Out.
func (k *ktReader) OutIndex(r *Peer) (uint64, bool) {
	ep := peerEndpoint(r)
	if ep == nil {
		return 0, false
	}
	return k.claim.Out(ep)
}

// ID implements Reader.
func (k *ktReader) ID() int { return k.r.ID() }

// Owner implements Reader with keytable.Reader.Owner.
func (k *ktReader) Owner(p *Peer) (int, bool, bool) {
	ep, ok := p.Ref.(*keytable.Endpoint)
	if !ok {
		return 0, false, true
	}
	return k.r.Owner(ep)
}

// HandOver implements Reader with keytable.Reader.HandOver.
// The routes of the batches before go: p's may be among them.
func (k *ktReader) HandOver(p *Peer, to int) bool {
	k.newEpoch()
	ep, ok := p.Ref.(*keytable.Endpoint)
	return ok && k.r.HandOver(ep, to)
}

// Accept implements Reader with keytable.Reader.Accept.
func (k *ktReader) Accept(p *Peer) bool {
	ep, ok := p.Ref.(*keytable.Endpoint)
	return ok && k.r.Accept(ep)
}

// Release implements Reader with keytable.Reader.Release.
// The routes of the batches before go: p's may be among them.
func (k *ktReader) Release(p *Peer) {
	k.newEpoch()
	if ep, ok := p.Ref.(*keytable.Endpoint); ok {
		k.r.Release(ep)
	}
}
