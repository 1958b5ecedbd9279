package dataplane

import (
	"encoding/binary"
	"net/netip"

	"github.com/mdfast/mdfast/internal/frame"
)

// txCacheSize is the number of destinations a port keeps headers for (a
// power of two): 1024 entries of about 140 octets, 140 KiB per queue.
const txCacheSize = 1024

// txCache keeps, per port, the Ethernet/IP/UDP headers last built for a
// destination, so that the datagrams of a conference's fan-out copy
// prebuilt headers instead of looking up the next hop and building them
// per receiver. It is direct-mapped by a hash of the destination: a
// collision only costs a rebuild. An entry is used only while everything
// it was built from is unchanged: the destination, the local address and
// VLAN tag of the datagram replied to, and the neighbour table's
// generation (a MAC or route change rebuilds it). Owned by one worker.
type txCache struct {
	e []txCacheEntry
}

type txCacheEntry struct {
	dst, local netip.AddrPort
	vlan       uint32 // proto<<16 | TCI
	gen        uint64
	t          frame.Template
}

func newTxCache() txCache { return txCache{e: make([]txCacheEntry, txCacheSize)} }

// headers returns the template for a datagram to dst in reply to in,
// building it (txHeaders) when the cached one does not match; a Reason
// when it cannot be built (no next hop yet: asked for).
func (c *txCache) headers(nb Neighbours, mac frame.MAC, udpChecksum bool, dst netip.AddrPort, in *RxPacket) (*frame.Template, Reason) {
	a := dst.Addr().As16()
	h := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:]) ^ uint64(dst.Port())<<48
	h *= 0x9E3779B97F4A7C15 // Fibonacci hashing: the top bits are well mixed
	e := &c.e[h>>(64-10)&(txCacheSize-1)]
	gen := nb.Gen()
	vlan := uint32(in.vlanProto)<<16 | uint32(in.vlanTCI)
	if e.t.Len() != 0 && e.gen == gen && e.dst == dst && e.local == in.Dst && e.vlan == vlan {
		return &e.t, 0
	}
	var hdr frame.Headers
	if r := txHeaders(nb, mac, dst, in, &hdr); r != 0 {
		return nil, r
	}
	e.t.Build(&hdr, udpChecksum)
	e.dst, e.local, e.vlan, e.gen = dst, in.Dst, vlan, gen
	return &e.t, 0
}
