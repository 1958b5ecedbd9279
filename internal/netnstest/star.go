package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Star is a Media Distributor namespace and several endpoint namespaces,
// each joined by a veth pair to one bridge in a switch namespace: a small
// L2 segment, 198.18.0.0/24 (and 2001:db8::/64 from NewStar6), on which every frame the MD sends crosses a
// real veth (so XDP and AF_XDP see ordinary traffic).
type Star struct {
	// Switch holds the bridge "mdf-br" and the switch-side veth ends.
	Switch *NS
	// MD is the Media Distributor's interface ("mdf-md", 198.18.0.1,
	// 02:00:c6:12:00:01).
	MD End
	// Endpoints are the endpoints' interfaces ("mdf-ep", 198.18.0.11 and
	// up, 02:00:c6:12:00:0b and up), each in its own namespace.
	Endpoints []End
}

// NewStar creates the switch namespace with its bridge, the MD namespace
// and n endpoint namespaces (1 <= n <= 100). Every interface is up with one
// RX and one TX queue. The MD has a permanent neighbour entry for every
// endpoint and every endpoint one for the MD (no ARP needed). Everything is
// removed in t.Cleanup.
func NewStar(t testing.TB, n int) *Star {
	t.Helper()
	return newStar(t, n, false)
}

// NewStar6 is NewStar with IPv6 as well (dual stack): every interface also
// has the address 2001:db8::host/64 (End.Addr6: 2001:db8::1 for the MD,
// 2001:db8::b and up for the endpoints, the same host numbers as in IPv4),
// added with IFA_F_NODAD so that it is usable at once, and the permanent
// neighbour entries exist for both families (no neighbour discovery
// needed).
func NewStar6(t testing.TB, n int) *Star {
	t.Helper()
	return newStar(t, n, true)
}

func newStar(t testing.TB, n int, ipv6 bool) *Star {
	t.Helper()
	if n < 1 || n > 100 {
		t.Fatalf("netnstest: NewStar with %d endpoints", n)
	}
	sw := New(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "mdf-br"}}
	if err := sw.nl.LinkAdd(br); err != nil {
		t.Fatalf("netnstest: add bridge: %v", err)
	}
	brLink, err := sw.nl.LinkByName("mdf-br")
	if err != nil {
		t.Fatalf("netnstest: find bridge: %v", err)
	}
	if err := sw.nl.LinkSetUp(brLink); err != nil {
		t.Fatalf("netnstest: bridge up: %v", err)
	}
	s := &Star{Switch: sw}
	s.MD = s.join(t, brLink, "mdf-md", "sw-md", 1, ipv6)
	for i := range n {
		s.Endpoints = append(s.Endpoints, s.join(t, brLink, "mdf-ep", fmt.Sprintf("sw-ep%d", i), byte(11+i), ipv6))
	}
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		setNeigh(t, &s.MD, ep, ep.Addr)
		setNeigh(t, ep, &s.MD, s.MD.Addr)
		if ipv6 {
			setNeigh(t, &s.MD, ep, ep.Addr6)
			setNeigh(t, ep, &s.MD, s.MD.Addr6)
		}
	}
	return s
}

// join creates a namespace with interface name (address 198.18.0.host,
// and 2001:db8::host when ipv6) and plugs its veth peer swName into the
// bridge.
func (s *Star) join(t testing.TB, br netlink.Link, name, swName string, host byte, ipv6 bool) End {
	t.Helper()
	ns := New(t)
	e := End{NS: ns, Name: name, MAC: net.HardwareAddr{2, 0, 0xc6, 0x12, 0, host},
		Addr: netip.AddrFrom4([4]byte{198, 18, 0, host})}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: swName, NumTxQueues: 1, NumRxQueues: 1, MasterIndex: br.Attrs().Index,
		},
		PeerName:         name,
		PeerHardwareAddr: e.MAC,
		PeerNamespace:    netlink.NsFd(int(ns.handle)),
	}
	if err := s.Switch.nl.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s/%s: %v", swName, name, err)
	}
	swl, err := s.Switch.nl.LinkByName(swName)
	if err != nil {
		t.Fatalf("netnstest: find %s: %v", swName, err)
	}
	if err := s.Switch.nl.LinkSetMaster(swl, br); err != nil {
		t.Fatalf("netnstest: %s into bridge: %v", swName, err)
	}
	if err := s.Switch.nl.LinkSetUp(swl); err != nil {
		t.Fatalf("netnstest: set %s up: %v", swName, err)
	}
	l, err := ns.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("netnstest: find %s in %s: %v", name, ns.Name, err)
	}
	e.Index = l.Attrs().Index
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.Addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := ns.nl.AddrAdd(l, addr); err != nil {
		t.Fatalf("netnstest: address %s on %s: %v", e.Addr, name, err)
	}
	if ipv6 {
		e.Addr6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: host})
		addr6 := &netlink.Addr{
			IPNet: &net.IPNet{IP: e.Addr6.AsSlice(), Mask: net.CIDRMask(64, 128)},
			Flags: unix.IFA_F_NODAD,
		}
		if err := ns.nl.AddrAdd(l, addr6); err != nil {
			t.Fatalf("netnstest: address %s on %s: %v", e.Addr6, name, err)
		}
	}
	if err := ns.nl.LinkSetUp(l); err != nil {
		t.Fatalf("netnstest: set %s up: %v", name, err)
	}
	return e
}

// setNeigh gives self a permanent neighbour entry for other's address ip
// (IPv4 or IPv6).
func setNeigh(t testing.TB, self, other *End, ip netip.Addr) {
	t.Helper()
	n := &netlink.Neigh{
		LinkIndex:    self.Index,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: other.MAC,
	}
	if err := self.NS.nl.NeighSet(n); err != nil {
		t.Fatalf("netnstest: neighbour %s on %s in %s: %v", ip, self.Name, self.NS.Name, err)
	}
}
