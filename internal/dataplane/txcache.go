package dataplane

import (
	"net/netip"

	"github.com/mdfast/mdfast/internal/frame"
)

// txCacheSize is the number of destinations a port keeps headers for (a
// power of two): 1024 entries of about 140 octets, 140 KiB per queue.
const txCacheSize = 1024

// txLocals is the number of (local address, VLAN tag, neighbour
// generation) tuples a txCache keeps keys for: a port replies from one or
// two local addresses, seldom more than a few.
const txLocals = 8

// txCache keeps, per port, the Ethernet/IP/UDP headers last built for a
// destination, so that the datagrams of a conference's fan-out copy
// prebuilt headers instead of looking up the next hop and building them
// per receiver. It is direct-mapped by a hash of the destination: a
// collision only costs a rebuild. An entry is used only while everything
// it was built from is unchanged: the destination, the local address and
// VLAN tag of the datagram replied to, and the neighbour table's
// generation (a MAC or route change rebuilds it). Owned by one worker.
//
// The last three are the same for every copy of one received datagram:
// they are looked at once per datagram (reply), which gives them a key,
// a number never given to another tuple; an entry holds the key it was
// built under, so that a lookup compares the destination and one word.
type txCache struct {
	e *[txCacheSize]txCacheEntry

	// What the headers are built from besides the datagram: the
	// neighbour table, the port's MAC, UDP checksums on IPv4.
	nb          Neighbours
	mac         frame.MAC
	udpChecksum bool

	// in is the datagram the lookups since the last done reply to, and
	// key the key of its tuple.
	in  *RxPacket
	key uint64
	// gen is the neighbour table's generation, read by the first reply
	// after done (once per TX batch, not per datagram: a change is seen
	// from the next batch on); genOK says it was.
	gen   uint64
	genOK bool
	// locals are the tuples last given keys, last the index of the one
	// used last; next is the last key given (0 is never one: no entry
	// matches before it is built).
	locals [txLocals]txLocal
	last   int
	next   uint64
}

type txLocal struct {
	local netip.AddrPort
	vlan  uint32 // proto<<16 | TCI
	gen   uint64
	key   uint64
}

type txCacheEntry struct {
	dst netip.AddrPort
	key uint64 // of the tuple the headers were built under; 0: none
	t   frame.Template
}

// newTxCache returns the cache of a port with the interface address mac,
// next hops from nb, and UDP checksums on IPv4 when udpChecksum.
func newTxCache(nb Neighbours, mac frame.MAC, udpChecksum bool) txCache {
	return txCache{e: new([txCacheSize]txCacheEntry), nb: nb, mac: mac, udpChecksum: udpChecksum}
}

// headers returns the template for a datagram to dst in reply to in,
// building it (txHeaders, from the cache's neighbour table, MAC and
// checksum setting) when the cached one does not match; a Reason
// when it cannot be built (no next hop yet: asked for). Every call with
// the same in until done must see the same *in (the worker's fan-out of
// one received datagram): its tuple is read on the first.
func (c *txCache) headers(dst netip.AddrPort, in *RxPacket) (*frame.Template, Reason) {
	if in != c.in {
		// The first copy of a datagram: its tuple's key. Usually the
		// tuple of the datagram before, looked at here; reply does the
		// rest.
		if l := &c.locals[c.last]; c.genOK && l.key != 0 && l.gen == c.gen && l.local == in.Dst && l.vlan == uint32(in.vlanProto)<<16|uint32(in.vlanTCI) {
			c.in, c.key = in, l.key
		} else {
			c.reply(in)
		}
	}
	if e := c.slot(dst); e.key == c.key && e.dst == dst {
		return &e.t, 0
	}
	return c.build(dst, in)
}

// slot returns the entry dst maps to.
func (c *txCache) slot(dst netip.AddrPort) *txCacheEntry {
	return &c.e[hashAddrPort(dst)>>(64-10)&(txCacheSize-1)]
}

// build is headers on a miss: it builds dst's entry under the key of in's
// tuple (reply has found it).
func (c *txCache) build(dst netip.AddrPort, in *RxPacket) (*frame.Template, Reason) {
	e := c.slot(dst)
	var hdr frame.Headers
	if r := txHeaders(c.nb, c.mac, dst, in, &hdr); r != 0 {
		return nil, r
	}
	e.t.Build(&hdr, c.udpChecksum)
	e.dst, e.key = dst, c.key
	return &e.t, 0
}

// reply makes in the datagram the next lookups reply to (headers has
// already looked at the tuple of the datagram before): it finds the key
// of its local address, VLAN tag and the neighbour generation, read on the
// batch's first reply (before any lookup the key's entries are built from:
// an entry built later from a newer table is only rebuilt once more), or
// gives the tuple a new one in place of the oldest.
func (c *txCache) reply(in *RxPacket) {
	c.in = in
	if !c.genOK {
		c.gen, c.genOK = c.nb.Gen(), true
	}
	gen := c.gen
	vlan := uint32(in.vlanProto)<<16 | uint32(in.vlanTCI)
	for i := range c.locals {
		if l := &c.locals[i]; l.key != 0 && l.gen == gen && l.local == in.Dst && l.vlan == vlan {
			c.key, c.last = l.key, i
			return
		}
	}
	c.next++
	c.last = int(c.next % txLocals)
	c.locals[c.last] = txLocal{local: in.Dst, vlan: vlan, gen: gen, key: c.next}
	c.key = c.next
}

// done ends the lookups for the datagrams of a batch: the worker reuses
// their RxPackets for the next one, and the next reply reads the
// neighbour generation again. The port calls it in Flush.
func (c *txCache) done() { c.in, c.genOK = nil, false }
