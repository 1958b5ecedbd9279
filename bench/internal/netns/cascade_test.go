package netns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/mdfast/mdfast/internal/testutil"
)

// TestSetupCascade builds the two-MD topology and checks that the
// generator reaches both MDs and the MDs each other (UDP over the bridge),
// and that Close removes every namespace.
func TestSetupCascade(t *testing.T) {
	testutil.NeedRoot(t, "network namespaces")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := SetupCascade(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	gen := listen(t, c.GenNS, c.GenAddr)
	md0, md1 := listen(t, c.MDs[0].NS, c.MDs[0].Addr), listen(t, c.MDs[1].NS, c.MDs[1].Addr)
	for _, p := range []struct{ from, to *net.UDPConn }{{gen, md0}, {gen, md1}, {md0, md1}, {md1, md0}, {md1, gen}} {
		if _, err := p.from.WriteToUDPAddrPort([]byte("hello"), p.to.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		_ = p.to.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 16)
		n, from, err := p.to.ReadFromUDPAddrPort(b)
		if err != nil || string(b[:n]) != "hello" || from != p.from.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("%s → %s: %q from %s, %v", p.from.LocalAddr(), p.to.LocalAddr(), b[:n], from, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range []string{c.GenNS, c.MDs[0].NS, c.MDs[1].NS} {
		if strings.Contains(string(out), ns) {
			t.Fatalf("namespace %s left", ns)
		}
	}
	if _, err := SetupCascade(ctx, 1); err == nil {
		t.Fatal("a cascade of one MD")
	}
}

// listen opens a UDP socket on addr (any port) inside namespace ns.
func listen(t *testing.T, ns string, addr netip.Addr) *net.UDPConn {
	t.Helper()
	type res struct {
		c   *net.UDPConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread is left locked (and so discarded) whatever
		// happens: it may still be in ns.
		runtime.LockOSThread()
		h, err := vnetns.GetFromName(ns)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer h.Close()
		if err := vnetns.Set(h); err != nil {
			ch <- res{nil, err}
			return
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}
