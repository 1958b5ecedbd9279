package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// Bridge is a switch namespace holding one bridge ("br0"), to which Node
// plugs namespaces by veth pairs: an L2 segment whose nodes a test gives
// any addresses (several per node, e.g. for many sources) and its own
// processes. Star is the fixed-address variant for one MD and endpoints.
type Bridge struct {
	// Switch is the namespace of the bridge and the switch-side veth ends
	// ("p1", "p2", ...).
	Switch *NS
	br     netlink.Link
	n      int
}

// Node is a namespace plugged into a Bridge: its interface "eth0" is up
// with Addrs.
type Node struct {
	NS    *NS
	MAC   net.HardwareAddr // 02:00:c6:12:ee:<n>, n counting the bridge's nodes from 1
	Link  netlink.Link     // eth0, in NS
	Addrs []netip.Addr
}

// NewBridge creates the switch namespace and its bridge; everything is
// removed in t.Cleanup.
func NewBridge(t testing.TB) *Bridge {
	t.Helper()
	sw := New(t)
	if err := sw.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		t.Fatalf("netnstest: add bridge: %v", err)
	}
	br, err := sw.nl.LinkByName("br0")
	if err != nil {
		t.Fatalf("netnstest: find bridge: %v", err)
	}
	if err := sw.nl.LinkSetUp(br); err != nil {
		t.Fatalf("netnstest: bridge up: %v", err)
	}
	return &Bridge{Switch: sw, br: br}
}

// Node creates a namespace whose eth0 (one RX and one TX queue) has addrs,
// IPv4 addresses with prefix length bits, and plugs it into the bridge (at
// most 255 nodes).
func (b *Bridge) Node(t testing.TB, bits int, addrs ...netip.Addr) *Node {
	t.Helper()
	b.n++
	if b.n > 255 {
		t.Fatal("netnstest: more than 255 nodes on a bridge")
	}
	ns := New(t)
	nd := &Node{NS: ns, MAC: net.HardwareAddr{2, 0, 0xc6, 0x12, 0xee, byte(b.n)}, Addrs: addrs}
	swName := fmt.Sprintf("p%d", b.n)
	f, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatalf("netnstest: open netns %s: %v", ns.Name, err)
	}
	defer f.Close()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: swName, NumTxQueues: 1, NumRxQueues: 1, MasterIndex: b.br.Attrs().Index},
		PeerName:         "eth0",
		PeerHardwareAddr: nd.MAC,
		PeerNamespace:    netlink.NsFd(int(f.Fd())),
	}
	if err := b.Switch.nl.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s: %v", swName, err)
	}
	swl, err := b.Switch.nl.LinkByName(swName)
	if err != nil {
		t.Fatalf("netnstest: find %s: %v", swName, err)
	}
	if err := b.Switch.nl.LinkSetUp(swl); err != nil {
		t.Fatalf("netnstest: %s up: %v", swName, err)
	}
	if nd.Link, err = ns.nl.LinkByName("eth0"); err != nil {
		t.Fatalf("netnstest: find eth0 in %s: %v", ns.Name, err)
	}
	for _, a := range addrs {
		if err := ns.nl.AddrAdd(nd.Link, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}}); err != nil {
			t.Fatalf("netnstest: address %s in %s: %v", a, ns.Name, err)
		}
	}
	if err := ns.nl.LinkSetUp(nd.Link); err != nil {
		t.Fatalf("netnstest: eth0 up in %s: %v", ns.Name, err)
	}
	return nd
}

// Neigh gives n a permanent neighbour entry for each of other's addresses
// (the AF_XDP path needs the MACs before the first packet).
func (n *Node) Neigh(t testing.TB, other *Node) {
	t.Helper()
	for _, a := range other.Addrs {
		ne := &netlink.Neigh{LinkIndex: n.Link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: other.MAC}
		if err := n.NS.nl.NeighSet(ne); err != nil {
			t.Fatalf("netnstest: neighbour %s in %s: %v", a, n.NS.Name, err)
		}
	}
}
