package dataplane

import (
	"net/netip"
	"testing"
)

// TestHashAddrPortSpread: hashAddrPort reads a netip.AddrPort's address
// as its first two words. Should that layout change (the words no longer
// the address), sources differing only in address would share a slot;
// this test then fails. It also wants IPv4 and IPv6 sources, and ports,
// spread over the route slots and the TX cache.
func TestHashAddrPortSpread(t *testing.T) {
	cases := []struct {
		name string
		src  func(i int) netip.AddrPort
	}{
		{"IPv4 addresses", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 5000)
		}},
		{"IPv4 ports", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(5000+i))
		}},
		{"IPv6 addresses", func(i int) netip.AddrPort {
			a := netip.MustParseAddr("2001:db8::").As16()
			a[14], a[15] = byte(i>>8), byte(i)
			return netip.AddrPortFrom(netip.AddrFrom16(a), 5000)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			routes := map[uint64]bool{}
			tx := map[uint64]bool{}
			for i := range 64 {
				src := c.src(i)
				if routeSlot(src) >= routeSlots {
					t.Fatalf("routeSlot(%v) = %d, beyond %d slots", src, routeSlot(src), routeSlots)
				}
				routes[routeSlot(src)] = true
				tx[hashAddrPort(src)>>(64-10)&(txCacheSize-1)] = true
			}
			// 64 sources: nearly all 16 route slots, and most of 64 TX
			// cache slots, are taken; one slot for all is a broken hash.
			if len(routes) < 12 || len(tx) < 32 {
				t.Fatalf("64 sources take %d of %d route slots and %d TX cache slots", len(routes), routeSlots, len(tx))
			}
		})
	}
	// The same address as IPv4 and IPv4-mapped IPv6 are different sources;
	// Route tells them apart by comparing the whole AddrPort.
	v4 := netip.MustParseAddrPort("198.18.0.1:5000")
	v6 := netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), 5000)
	if v4 == v6 {
		t.Fatal("IPv4 and IPv4-mapped compare equal")
	}
}
