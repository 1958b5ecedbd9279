package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

var seq atomic.Uint32

// NS is a named network namespace created for a test.
type NS struct {
	// Name is the namespace's name under /var/run/netns.
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// New creates a network namespace with a unique name and registers its
// deletion with t.Cleanup. The loopback interface is brought up.
func New(t testing.TB) *NS {
	t.Helper()
	name := fmt.Sprintf("mdf-%d-%d", os.Getpid(), seq.Add(1))
	var h netns.NsHandle
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current namespace: %w", err)
		}
		defer orig.Close()
		h, err = netns.NewNamed(name) // also switches this thread into it
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		return restore(orig)
	})
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	ns := &NS{Name: name, handle: h}
	t.Cleanup(func() {
		if ns.nl != nil {
			ns.nl.Close()
		}
		ns.handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("netnstest: delete namespace %s: %v", name, err)
		}
	})
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netnstest: netlink handle in %s: %v", name, err)
	}
	ns.nl = nl
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netnstest: lo in %s: %v", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netnstest: lo up in %s: %v", name, err)
	}
	return ns
}

// Netlink returns a netlink handle operating inside the namespace.
func (ns *NS) Netlink() *netlink.Handle { return ns.nl }

// Do runs fn on a goroutine locked to an OS thread that is inside the
// namespace, and restores the thread's namespace afterwards. Sockets opened
// by fn stay in the namespace and may be used from any goroutine.
func (ns *NS) Do(fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netnstest: get current namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			return fmt.Errorf("netnstest: enter namespace %s: %w", ns.Name, err)
		}
		ferr := fn()
		return errors.Join(ferr, restore(orig))
	})
}

// errTainted marks a thread whose namespace could not be restored.
var errTainted = errors.New("netnstest: could not restore the thread's namespace")

func restore(orig netns.NsHandle) error {
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("%w: %w", errTainted, err)
	}
	return nil
}

// onLockedThread runs fn on a new goroutine locked to its thread. When the
// thread's namespace could not be restored, the goroutine exits still
// locked, so the runtime destroys the thread instead of reusing it.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if !errors.Is(err, errTainted) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// End is one end of a veth pair.
type End struct {
	// NS is the namespace holding this end.
	NS *NS
	// Name and Index identify the interface inside NS.
	Name  string
	Index int
	// MAC is the interface's hardware address.
	MAC net.HardwareAddr
	// Addr is the interface's IPv4 address (in 198.18.0.0/24).
	Addr netip.Addr
	// Addr6 is the interface's IPv6 address (in 2001:db8::/64) in a star
	// made by NewStar6; the zero Addr otherwise.
	Addr6 netip.Addr
}

// Pair is two namespaces joined by a veth pair.
type Pair struct {
	// MD is the Media Distributor's side, Peer the traffic generator's side.
	MD, Peer End
	// queues is the number of RX and TX queues of each end (NewPairQueues).
	queues int
}

// NewPair creates two namespaces joined by a veth pair: the MD end has
// 198.18.0.1/24 and MAC 02:00:c6:12:00:01, the peer end 198.18.0.2/24 and
// MAC 02:00:c6:12:00:02. Both are up, with one RX and one TX queue each, and
// each side has a permanent neighbour entry for the other (no ARP needed).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	return NewPairQueues(t, 1)
}

// NewPairQueues is NewPair with n RX and n TX queues on each end (1 <= n
// <= 16), as `ip link add ... type veth numrxqueues n numtxqueues n`. On
// veth a frame is received on the queue whose number is the TX queue the
// sender's side put it on (veth_xmit keeps skb->queue_mapping), so a test
// chooses the MD's receive queue of a flow by steering it at the peer, e.g.
// with SteerUDP.
func NewPairQueues(t testing.TB, n int) *Pair {
	t.Helper()
	if n < 1 || n > 16 {
		t.Fatalf("netnstest: NewPairQueues with %d queues", n)
	}
	md, peer := New(t), New(t)
	p := &Pair{
		MD: End{NS: md, Name: "mdf-md", MAC: net.HardwareAddr{2, 0, 0xc6, 0x12, 0, 1},
			Addr: netip.MustParseAddr("198.18.0.1")},
		Peer: End{NS: peer, Name: "mdf-peer", MAC: net.HardwareAddr{2, 0, 0xc6, 0x12, 0, 2},
			Addr: netip.MustParseAddr("198.18.0.2")},
	}
	p.queues = n
	p.link(t)
	return p
}

// Relink creates the veth pair again, with the same names, addresses, MACs
// and neighbour entries as NewPair, after a test deleted it (deleting
// either end deletes both). The ends' Index fields are updated: the new
// interfaces have new indexes.
func (p *Pair) Relink(t testing.TB) {
	t.Helper()
	p.link(t)
}

// link creates the veth pair, addresses it and brings it up.
func (p *Pair) link(t testing.TB) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: p.MD.Name, HardwareAddr: p.MD.MAC, NumTxQueues: max(p.queues, 1), NumRxQueues: max(p.queues, 1),
		},
		PeerNumTxQueues:  uint32(max(p.queues, 1)),
		PeerNumRxQueues:  uint32(max(p.queues, 1)),
		PeerName:         p.Peer.Name,
		PeerHardwareAddr: p.Peer.MAC,
		PeerNamespace:    netlink.NsFd(int(p.Peer.NS.handle)),
	}
	if err := p.MD.NS.nl.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s/%s: %v", p.MD.Name, p.Peer.Name, err)
	}
	for _, e := range []*End{&p.MD, &p.Peer} {
		l, err := e.NS.nl.LinkByName(e.Name)
		if err != nil {
			t.Fatalf("netnstest: find %s in %s: %v", e.Name, e.NS.Name, err)
		}
		e.Index = l.Attrs().Index
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.Addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := e.NS.nl.AddrAdd(l, addr); err != nil {
			t.Fatalf("netnstest: address %s on %s: %v", e.Addr, e.Name, err)
		}
		if err := e.NS.nl.LinkSetUp(l); err != nil {
			t.Fatalf("netnstest: set %s up: %v", e.Name, err)
		}
	}
	for _, pair := range [][2]*End{{&p.MD, &p.Peer}, {&p.Peer, &p.MD}} {
		self, other := pair[0], pair[1]
		neigh := &netlink.Neigh{
			LinkIndex:    self.Index,
			State:        netlink.NUD_PERMANENT,
			IP:           other.Addr.AsSlice(),
			HardwareAddr: other.MAC,
		}
		if err := self.NS.nl.NeighSet(neigh); err != nil {
			t.Fatalf("netnstest: neighbour %s on %s: %v", other.Addr, self.Name, err)
		}
	}
}

// ListenUDP opens a kernel UDP socket inside the namespace, bound to
// addr:port (port 0 picks one).
func (ns *NS) ListenUDP(addr netip.Addr, port uint16) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netnstest: listen on %s:%d in %s: %w", addr, port, ns.Name, err)
	}
	return conn, nil
}

// RecvFrom reads one datagram on c within timeout; ok is false when none
// came. A datagram from anywhere but want (an IPv4-mapped source counts as
// IPv4) fails the test: name says whose socket it is.
func RecvFrom(t testing.TB, c *net.UDPConn, want netip.AddrPort, timeout time.Duration, name string) (b []byte, ok bool) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, false
	}
	if from.Addr().Unmap() != want.Addr() || from.Port() != want.Port() {
		t.Fatalf("%s: datagram from %s, want %s", name, from, want)
	}
	return buf[:n], true
}
