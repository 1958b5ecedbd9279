package neigh

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

func TestResolve(t *testing.T) {
	testutil.NeedRoot(t, "creates network namespaces and reads their neighbour tables")
	p := netnstest.NewPair(t)
	nl := p.MD.NS.Netlink()
	tab, err := New(Options{Ifindex: p.MD.Index, Handle: nl, Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tab.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; tab.Close() })

	// On-link destination with a permanent neighbour entry.
	e, ok, err := tab.Want(p.Peer.Addr)
	if err != nil || !ok {
		t.Fatalf("Want(%s) = %v, %v, %v", p.Peer.Addr, e, ok, err)
	}
	if e.MAC != frame.MAC(p.Peer.MAC) || e.Src != p.MD.Addr {
		t.Fatalf("entry %+v, want MAC %s src %s", e, p.Peer.MAC, p.MD.Addr)
	}
	if got, ok := tab.Lookup(p.Peer.Addr); !ok || got != e {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}

	// A destination behind a gateway resolves to the gateway's MAC.
	_, dstNet, _ := net.ParseCIDR("198.19.5.0/24")
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: p.MD.Index, Dst: dstNet, Gw: p.Peer.Addr.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	far := netip.MustParseAddr("198.19.5.9")
	if e, ok, _ := tab.Want(far); !ok || e.MAC != frame.MAC(p.Peer.MAC) {
		t.Fatalf("Want(%s) via gateway = %+v, %v", far, e, ok)
	}

	// An on-link address with no neighbour entry misses, and resolves once
	// the kernel learns it.
	unknown := netip.MustParseAddr("198.18.0.77")
	if _, ok := tab.Lookup(unknown); ok {
		t.Fatal("unknown neighbour found")
	}
	tab.Miss(unknown)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0x77}
	if err := nl.NeighSet(&netlink.Neigh{LinkIndex: p.MD.Index, State: netlink.NUD_REACHABLE, IP: unknown.AsSlice(), HardwareAddr: mac}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if e, ok := tab.Lookup(unknown); ok {
			if e.MAC != frame.MAC(mac) {
				t.Fatalf("MAC %v, want %v", e.MAC, mac)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("miss never resolved")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Refreshes that find nothing new keep the generation (what workers
	// cached stays valid); a MAC change reaches the snapshot within the
	// refresh interval and changes it.
	g := tab.Gen()
	time.Sleep(100 * time.Millisecond) // 5 refreshes
	if tab.Gen() != g {
		t.Fatalf("generation moved from %d to %d without a change", g, tab.Gen())
	}
	mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 0x78}
	nl.NeighSet(&netlink.Neigh{LinkIndex: p.MD.Index, State: netlink.NUD_REACHABLE, IP: unknown.AsSlice(), HardwareAddr: mac2})
	for e, _ := tab.Lookup(unknown); e.MAC != frame.MAC(mac2); e, _ = tab.Lookup(unknown) {
		if time.Now().After(deadline) {
			t.Fatal("MAC change never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tab.Gen() == g {
		t.Fatal("MAC change did not change the generation")
	}

	// Forget removes it.
	tab.Forget(unknown)
	for _, ok := tab.Lookup(unknown); ok; _, ok = tab.Lookup(unknown) {
		if time.Now().After(deadline) {
			t.Fatal("Forget not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Loopback is not on the egress interface: never resolved.
	if _, ok, _ := tab.Want(netip.MustParseAddr("127.0.0.1")); ok {
		t.Fatal("127.0.0.1 resolved on the veth")
	}
	if tab.Failures() == 0 {
		t.Fatal("failures not counted")
	}

	if a := testing.AllocsPerRun(100, func() { tab.Lookup(p.Peer.Addr); tab.Miss(unknown) }); a != 0 {
		t.Fatalf("Lookup+Miss allocate %.1f times", a)
	}
}

func TestWantLimit(t *testing.T) {
	testutil.NeedRoot(t, "creates network namespaces and reads their neighbour tables")
	p := netnstest.NewPair(t)
	tab, err := New(Options{Ifindex: p.MD.Index, Handle: p.MD.NS.Netlink(), MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tab.Want(p.Peer.Addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tab.Want(netip.MustParseAddr("198.18.0.9")); err != ErrTooMany {
		t.Fatalf("second Want: %v, want ErrTooMany", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without an ifindex: no error")
	}
}
