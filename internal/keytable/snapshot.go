package keytable

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// AddrKey is the map key of an endpoint's transport address: the IP address
// in its 16-octet form (IPv4 as IPv4-mapped IPv6, so an IPv4 address and its
// mapped form are the same key) and the UDP port. The zone of an IPv6
// address is not part of the key. It is a comparable fixed-size value, so a
// worker builds it on its stack from a parsed header without allocating.
//
// Inside the table a key also carries a link tag: the slot of a link
// association is its peer's address with its conference's tag (Snapshot.
// LookupLink), so several links share one address; the keys KeyOf, KeyV4
// and KeyV6 build have none.
type AddrKey struct {
	ip   [16]byte
	port uint16
	tag  uint32
}

// KeyOf returns the key of a transport address.
func KeyOf(ap netip.AddrPort) AddrKey {
	return AddrKey{ip: ap.Addr().As16(), port: ap.Port()}
}

// KeyV4 returns the key of an IPv4 address and UDP port, as a worker reads
// them from a packet header.
func KeyV4(ip [4]byte, port uint16) AddrKey {
	k := AddrKey{port: port}
	k.ip[10], k.ip[11] = 0xff, 0xff
	copy(k.ip[12:], ip[:])
	return k
}

// KeyV6 returns the key of an IPv6 address and UDP port, as a worker reads
// them from a packet header.
func KeyV6(ip [16]byte, port uint16) AddrKey {
	return AddrKey{ip: ip, port: port}
}

// AddrPort returns the transport address k was built from (IPv4 unmapped).
func (k AddrKey) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.ip).Unmap(), k.port)
}

// hash spreads k over the shards. It is a cheap mix, not the map's hash: it
// only has to balance the shards.
func (k *AddrKey) hash() uint64 {
	lo := binary.LittleEndian.Uint64(k.ip[0:8])
	hi := binary.LittleEndian.Uint64(k.ip[8:16])
	return mix(lo ^ (hi * 0x9e3779b97f4a7c15) ^ uint64(k.port)<<17 ^ uint64(k.tag)*0xbf58476d1ce4e5b9)
}

// withTag returns k with link tag tag.
func (k AddrKey) withTag(tag uint32) AddrKey {
	k.tag = tag
	return k
}

// linkAddr is the endpoint in the address slot (no tag) of a peer Media
// Distributor's media address while link associations use it: it reserves
// the address (no association but a link may take it) and tells a worker
// to read the packet's tag (Snapshot.Resolve). It is never a member of a
// conference and is not returned by Lookup.
var linkAddr = &Endpoint{link: true}

func confHash(id ConferenceID) uint64 { return mix(uint64(id) + 0x632be59bd9b4e019) }

// mix is the murmur3 64-bit finalizer.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Snapshot is one immutable version of the routing table. A worker gets it
// from Reader.Begin once per batch and uses it until Reader.End; every
// lookup in between sees the same, consistent table. Its methods are safe
// for concurrent use, take no lock and do not allocate.
//
// The table is split into shards (Config.Shards) by a hash of the address
// and of the conference ID. A shard is a small open-addressing hash table
// (linear probing, at most three quarters full) in one flat array, so a lookup is
// the shard's slice header in the root array plus one or two cache lines of
// slots. A write copies only the shards it changes and the two root arrays,
// and shares the rest with the previous snapshot.
type Snapshot struct {
	epoch uint64
	mask  uint64
	n     int
	addrs [][]addrSlot
	confs [][]confSlot
}

// addrSlot is one slot of an address shard; ep == nil marks it empty.
type addrSlot struct {
	key AddrKey
	ep  *Endpoint
}

// confSlot is one slot of a conference shard; an empty member list marks it
// empty (a conference without members is deleted).
type confSlot struct {
	id      ConferenceID
	members []*Endpoint
	// receivers are the members the workers send to: members itself
	// unless some lack consent (Table.SetConsent), then a filtered copy.
	receivers []*Endpoint
}

// Epoch returns the snapshot's version number; every publish increments it.
func (s *Snapshot) Epoch() uint64 { return s.epoch }

// Len returns the number of associations whose endpoint is routable in s.
func (s *Snapshot) Len() int { return s.n }

// Lookup returns the endpoint whose transport address is k, or nil. It
// never returns a link association (several share one address; see
// Resolve and LookupLink).
func (s *Snapshot) Lookup(k AddrKey) *Endpoint {
	if e := s.get(k); e != linkAddr {
		return e
	}
	return nil
}

// Resolve is Lookup for a worker: it returns the endpoint whose transport
// address is k, or, when k is the media address of a peer Media
// Distributor that link associations use, nil and link true: the packet's
// conference tag then picks the association (LookupLink). It neither
// locks nor allocates.
func (s *Snapshot) Resolve(k AddrKey) (ep *Endpoint, link bool) {
	e := s.get(k)
	if e == linkAddr {
		return nil, true
	}
	return e, false
}

// LookupLink returns the link association of the peer Media Distributor
// at k for the conference whose link tag is tag, or nil. Like Lookup it is
// one probe of the address table: O(1), no lock, no allocation.
func (s *Snapshot) LookupLink(k AddrKey, tag uint32) *Endpoint {
	if tag == 0 {
		return nil
	}
	return s.get(k.withTag(tag))
}

// get returns what the address slot k holds (linkAddr included), or nil.
func (s *Snapshot) get(k AddrKey) *Endpoint {
	h := k.hash()
	sl := s.addrs[h&s.mask]
	if len(sl) == 0 {
		return nil
	}
	m := uint64(len(sl) - 1)
	for i := h >> 32 & m; ; i = (i + 1) & m {
		e := &sl[i]
		if e.ep == nil {
			return nil
		}
		if e.key == k {
			return e.ep
		}
	}
}

// LookupAddr is Lookup(KeyOf(ap)).
func (s *Snapshot) LookupAddr(ap netip.AddrPort) *Endpoint {
	return s.Lookup(KeyOf(ap))
}

// Receivers returns the members of ep's conference in s that receive media,
// ep included if it does (skip it when forwarding ep's packets): every
// member but those whose consent expired (Table.SetConsent). ep must come
// from s. The slice is shared and must not be modified.
func (s *Snapshot) Receivers(ep *Endpoint) []*Endpoint {
	// The probe of conf, written out: this is the per-packet path.
	h := confHash(ep.conf)
	sl := s.confs[h&s.mask]
	if len(sl) == 0 {
		return nil
	}
	m := uint64(len(sl) - 1)
	for i := h >> 32 & m; ; i = (i + 1) & m {
		e := &sl[i]
		if len(e.members) == 0 {
			return nil
		}
		if e.id == ep.conf {
			return e.receivers
		}
	}
}

// Conference returns the members of conference id in s, or nil. The slice
// is shared and must not be modified.
func (s *Snapshot) Conference(id ConferenceID) []*Endpoint {
	if e := s.conf(id); e != nil {
		return e.members
	}
	return nil
}

// conf returns the slot of conference id, or nil.
func (s *Snapshot) conf(id ConferenceID) *confSlot {
	h := confHash(id)
	sl := s.confs[h&s.mask]
	if len(sl) == 0 {
		return nil
	}
	m := uint64(len(sl) - 1)
	for i := h >> 32 & m; ; i = (i + 1) & m {
		e := &sl[i]
		if len(e.members) == 0 {
			return nil
		}
		if e.id == id {
			return e
		}
	}
}

// receiving returns the members of l that receive media: l itself when
// all do (the usual case: no copy), else a copy without the others.
func receiving(l []*Endpoint) []*Endpoint {
	for i, e := range l {
		if e.noConsent {
			out := slices.Clone(l[:i])
			for _, e := range l[i+1:] {
				if !e.noConsent {
					out = append(out, e)
				}
			}
			return out
		}
	}
	return l
}

// txn builds the next snapshot from the current one under Table.mu: the
// root arrays are copied once, a shard the first time the transaction
// changes it, and a member list the first time it changes (later changes in
// the same transaction edit the copy in place: no reader can see it before
// publish).
type txn struct {
	old, s   *Snapshot
	addrN    map[uint64]int // entries of each shard copied so far
	confN    map[uint64]int
	ownLists map[ConferenceID]bool
}

func newTxn(old *Snapshot) *txn {
	return &txn{
		old: old,
		s: &Snapshot{
			epoch: old.epoch + 1,
			mask:  old.mask,
			n:     old.n,
			addrs: slices.Clone(old.addrs),
			confs: slices.Clone(old.confs),
		},
		addrN: make(map[uint64]int),
		confN: make(map[uint64]int),
	}
}

// capFor returns the slot count for n entries: a power of two, at most
// three quarters full (so a probe always ends at an empty slot), at least 4.
func capFor(n int) int {
	c := 4
	for 3*c < 4*n {
		c *= 2
	}
	return c
}

// addrShard returns shard i as a private copy with room for one more
// entry.
func (x *txn) addrShard(i uint64, extra int) []addrSlot {
	n, own := x.addrN[i]
	if !own {
		for _, e := range x.s.addrs[i] {
			if e.ep != nil {
				n++
			}
		}
	}
	sl := x.s.addrs[i]
	if !own || capFor(n+extra) > len(sl) {
		nsl := make([]addrSlot, max(capFor(n+extra), len(sl)))
		m := uint64(len(nsl) - 1)
		for _, e := range sl {
			if e.ep != nil {
				insertAddr(nsl, m, e)
			}
		}
		sl = nsl
		x.s.addrs[i] = sl
	}
	x.addrN[i] = n
	return sl
}

func insertAddr(sl []addrSlot, m uint64, e addrSlot) {
	for j := e.key.hash() >> 32 & m; ; j = (j + 1) & m {
		if sl[j].ep == nil || sl[j].key == e.key {
			sl[j] = e
			return
		}
	}
}

// putAddr puts ep in its address slot (for a link: its peer's address
// with its tag).
func (x *txn) putAddr(ep *Endpoint) { x.putKey(ep.key(), ep) }

// putKey puts ep in slot k; linkAddr is not counted as an association.
func (x *txn) putKey(k AddrKey, ep *Endpoint) {
	i := k.hash() & x.s.mask
	sl := x.addrShard(i, 1)
	m := uint64(len(sl) - 1)
	for j := k.hash() >> 32 & m; ; j = (j + 1) & m {
		if sl[j].ep == nil {
			x.addrN[i]++
			if ep != linkAddr {
				x.s.n++
			}
			sl[j] = addrSlot{k, ep}
			return
		}
		if sl[j].key == k {
			sl[j].ep = ep
			return
		}
	}
}

// delKey empties slot k.
func (x *txn) delKey(k AddrKey) {
	i := k.hash() & x.s.mask
	sl := x.addrShard(i, 0)
	m := uint64(len(sl) - 1)
	j := k.hash() >> 32 & m
	for ; ; j = (j + 1) & m {
		if sl[j].ep == nil {
			return
		}
		if sl[j].key == k {
			break
		}
	}
	x.addrN[i]--
	if sl[j].ep != linkAddr {
		x.s.n--
	}
	// Backward-shift deletion keeps every probe chain unbroken.
	for l := (j + 1) & m; sl[l].ep != nil; l = (l + 1) & m {
		home := sl[l].key.hash() >> 32 & m
		if (l-home)&m >= (l-j)&m {
			sl[j] = sl[l]
			j = l
		}
	}
	sl[j] = addrSlot{}
}

func (x *txn) confShard(i uint64, extra int) []confSlot {
	n, own := x.confN[i]
	if !own {
		for _, e := range x.s.confs[i] {
			if len(e.members) != 0 {
				n++
			}
		}
	}
	sl := x.s.confs[i]
	if !own || capFor(n+extra) > len(sl) {
		nsl := make([]confSlot, max(capFor(n+extra), len(sl)))
		m := uint64(len(nsl) - 1)
		for _, e := range sl {
			if len(e.members) != 0 {
				for j := confHash(e.id) >> 32 & m; ; j = (j + 1) & m {
					if len(nsl[j].members) == 0 {
						nsl[j] = e
						break
					}
				}
			}
		}
		sl = nsl
		x.s.confs[i] = sl
	}
	x.confN[i] = n
	return sl
}

// setMembers sets the member list of conference id (deleting it when l is
// empty).
func (x *txn) setMembers(id ConferenceID, l []*Endpoint) {
	h := confHash(id)
	i := h & x.s.mask
	sl := x.confShard(i, 1)
	m := uint64(len(sl) - 1)
	j := h >> 32 & m
	for ; ; j = (j + 1) & m {
		if len(sl[j].members) == 0 {
			if len(l) != 0 {
				x.confN[i]++
				sl[j] = confSlot{id, l, receiving(l)}
			}
			return
		}
		if sl[j].id == id {
			break
		}
	}
	if len(l) != 0 {
		sl[j].members, sl[j].receivers = l, receiving(l)
		return
	}
	x.confN[i]--
	for k := (j + 1) & m; len(sl[k].members) != 0; k = (k + 1) & m {
		home := confHash(sl[k].id) >> 32 & m
		if (k-home)&m >= (k-j)&m {
			sl[j] = sl[k]
			j = k
		}
	}
	sl[j] = confSlot{}
}

// list returns a member list of conference id that the transaction owns.
func (x *txn) list(id ConferenceID) []*Endpoint {
	l := x.s.Conference(id)
	if !x.ownLists[id] {
		if x.ownLists == nil {
			x.ownLists = make(map[ConferenceID]bool)
		}
		x.ownLists[id] = true
		l = slices.Clone(l)
	}
	return l
}

func (x *txn) addMember(ep *Endpoint) {
	x.setMembers(ep.conf, append(x.list(ep.conf), ep))
}

// replaceMember replaces the member of ep's association by ep.
func (x *txn) replaceMember(ep *Endpoint) {
	l := x.list(ep.conf)
	for i, e := range l {
		if e.a == ep.a {
			l[i] = ep
		}
	}
	x.setMembers(ep.conf, l)
}

func (x *txn) delMember(id ConferenceID, a *assoc) {
	l := slices.DeleteFunc(x.list(id), func(e *Endpoint) bool { return e.a == a })
	x.setMembers(id, l)
}
