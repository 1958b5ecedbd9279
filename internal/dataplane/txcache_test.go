package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/neigh"
)

// countingNeighbours is a neighbour table that counts lookups.
type countingNeighbours struct {
	m       map[netip.Addr]neigh.Entry
	gen     uint64
	lookups int
	misses  int
}

func (n *countingNeighbours) Lookup(a netip.Addr) (neigh.Entry, bool) {
	n.lookups++
	e, ok := n.m[a]
	return e, ok
}
func (n *countingNeighbours) Miss(netip.Addr) { n.misses++ }
func (n *countingNeighbours) Gen() uint64     { return n.gen }

// TestTxCache: the cached headers are exactly what txHeaders and
// frame.Write produce, they are rebuilt whenever what they were built from
// changes (neighbour generation, local address, VLAN tag, destination
// sharing the slot), and only then.
func TestTxCache(t *testing.T) {
	mac := frame.MAC{2, 0, 0, 0, 0, 1}
	a := netip.MustParseAddrPort("198.18.1.2:4000")
	b := netip.MustParseAddrPort("[2001:db8::2]:4000")
	nb := &countingNeighbours{m: map[netip.Addr]neigh.Entry{
		a.Addr(): {MAC: frame.MAC{2, 0, 0, 0, 0, 0xa}},
		b.Addr(): {MAC: frame.MAC{2, 0, 0, 0, 0, 0xb}},
	}}
	in4 := &RxPacket{Dst: netip.MustParseAddrPort("198.18.0.1:5004")}
	in6 := &RxPacket{Dst: netip.MustParseAddrPort("[2001:db8::1]:5004")}
	c := newTxCache(nb, mac, true)

	// check asks for the headers of a 100-octet datagram to dst in reply
	// to in, compares them with txHeaders + frame.Write, and returns how
	// many neighbour lookups the cache made.
	check := func(name string, dst netip.AddrPort, in *RxPacket) int {
		t.Helper()
		before := nb.lookups
		tp, r := c.headers(dst, in)
		if r != 0 {
			t.Fatalf("%s: %v", name, r)
		}
		looked := nb.lookups - before
		var h frame.Headers
		if r := txHeaders(nb, mac, dst, in, &h); r != 0 {
			t.Fatal(r)
		}
		want, got := make([]byte, h.Len()+100), make([]byte, h.Len()+100)
		for i := h.Len(); i < len(want); i++ {
			want[i], got[i] = byte(i), byte(i)
		}
		_ = frame.Write(want, &h, 100, true)
		if err := tp.Write(got, 100); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: cached headers differ (%v)\n got %x\nwant %x", name, err, got[:h.Len()], want[:h.Len()])
		}
		return looked
	}
	steps := []struct {
		name   string
		dst    netip.AddrPort
		in     *RxPacket
		change func()
		build  bool
	}{
		{"first to a", a, in4, nil, true},
		{"again to a", a, in4, nil, false},
		{"first to b (IPv6)", b, in6, nil, true},
		{"again to a after b", a, in4, nil, false},
		{"a's MAC changed, generation bumped", a, in4, func() {
			nb.m[a.Addr()] = neigh.Entry{MAC: frame.MAC{2, 0, 0, 0, 0, 0xc}}
			nb.gen++
		}, true},
		{"a, same generation", a, in4, nil, false},
		{"reply from another local address", a, &RxPacket{Dst: netip.MustParseAddrPort("198.18.0.9:5004")}, nil, true},
		{"back to the first local address", a, in4, nil, true},
		{"VLAN-tagged reply", a, &RxPacket{Dst: in4.Dst, vlanProto: frame.EtherTypeVLAN, vlanTCI: 7}, nil, true},
		{"another port of a's address", netip.AddrPortFrom(a.Addr(), 4001), in4, nil, true},
	}
	for _, s := range steps {
		c.done() // each step is a batch of its own
		if s.change != nil {
			s.change()
		}
		if got := check(s.name, s.dst, s.in) > 0; got != s.build {
			t.Errorf("%s: rebuilt %v, want %v", s.name, got, s.build)
		}
	}

	// Within a batch the generation is read once: a change is seen from
	// the next batch on (after the port's Flush).
	c.done()
	check("batch before the change", a, in4)
	nb.m[a.Addr()] = neigh.Entry{MAC: frame.MAC{2, 0, 0, 0, 0, 0xe}}
	nb.gen++
	before := nb.lookups
	if _, r := c.headers(a, in4); r != 0 || nb.lookups != before {
		t.Fatalf("same datagram after a generation change: reason %v, %d lookups", r, nb.lookups-before)
	}
	// Nor for another datagram of the same batch: the generation is read
	// once per batch, at its first reply.
	before = nb.lookups
	if _, r := c.headers(a, &RxPacket{Dst: in4.Dst}); r != 0 || nb.lookups != before {
		t.Fatalf("later datagram of the batch after a generation change: reason %v, %d lookups", r, nb.lookups-before)
	}
	c.done()
	if check("next batch", a, in4) == 0 {
		t.Fatal("next batch after a generation change: not rebuilt")
	}

	// More local tuples than the cache keeps keys for, in turn: each
	// datagram still gets its own headers (evicted tuples rebuild).
	for round := range 3 {
		for i := range txLocals + 3 {
			c.done()
			in := &RxPacket{Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 5004)}
			check(fmt.Sprintf("round %d, local %d", round, i), a, in)
		}
	}

	// Destinations sharing a slot evict each other and stay correct.
	c.done()
	var coll []netip.AddrPort
	slot := func(d netip.AddrPort) *txCacheEntry {
		tp, _ := c.headers(d, in4)
		for i := range c.e {
			if &c.e[i].t == tp {
				return &c.e[i]
			}
		}
		return nil
	}
	first := slot(a)
	for i := 1; len(coll) < 2 && i < 1<<16; i++ {
		d := netip.AddrPortFrom(a.Addr(), uint16(i))
		if slot(d) == first {
			coll = append(coll, d)
		}
	}
	if len(coll) < 2 {
		t.Fatal("no colliding destinations found")
	}
	for range 3 {
		for _, d := range append(coll, a) {
			check("colliding "+d.String(), d, in4)
		}
	}

	// No next hop: a drop reason, the miss reported, nothing cached.
	u := netip.MustParseAddrPort("198.18.9.9:4000")
	if _, r := c.headers(u, in4); r != DropNoNeighbour || nb.misses != 1 {
		t.Fatalf("unresolved: reason %v, misses %d", r, nb.misses)
	}
	nb.m[u.Addr()] = neigh.Entry{MAC: frame.MAC{2, 0, 0, 0, 0, 0xd}}
	nb.gen++
	check("resolved later", u, in4)

	if allocs := testing.AllocsPerRun(100, func() { _, _ = c.headers(a, in4) }); allocs != 0 {
		t.Fatalf("headers allocates %.1f times", allocs)
	}
}
