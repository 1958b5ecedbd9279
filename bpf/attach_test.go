package bpf

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
	"github.com/vishvananda/netlink/nl"
)

// TestAttach attaches the classifier for real on the MD end of a veth pair,
// in native and in generic mode, sends datagrams of every class from the
// peer namespace and checks the counters and what the MD's kernel socket
// receives; after Close, the interface has no XDP program.
func TestAttach(t *testing.T) {
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			pair := netnstest.NewPair(t)
			c := loadTest(t)
			var a *Attachment
			err := pair.MD.NS.Do(func() (err error) {
				a, err = c.Attach(pair.MD.Index, mode)
				return err
			})
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			if a.Mode() != mode || a.Ifindex() != pair.MD.Index {
				t.Fatalf("attached in %s on %d", a.Mode(), a.Ifindex())
			}
			wantAttach := uint32(nl.XDP_ATTACHED_DRV)
			if mode == ModeGeneric {
				wantAttach = nl.XDP_ATTACHED_SKB
			}
			checkXDP(t, pair.MD, true, wantAttach)
			if got, err := a.AttachedIfindex(); err != nil || got != pair.MD.Index {
				t.Errorf("AttachedIfindex = %d, %v; want %d", got, err, pair.MD.Index)
			}

			md, err := pair.MD.NS.ListenUDP(pair.MD.Addr, mediaPort)
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			peer, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()

			const n = 20
			before, err := c.Counters()
			if err != nil {
				t.Fatal(err)
			}
			to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(pair.MD.Addr, mediaPort))
			other := net.UDPAddrFromAddrPort(netip.AddrPortFrom(pair.MD.Addr, mediaPort+1))
			classes := []struct {
				payload []byte
				to      *net.UDPAddr
				counter Counter
				arrives bool
			}{
				{rtp, to, CounterPassNoSocket, true},
				{[]byte{22, 0xfe, 0xfd, 0, 0}, to, CounterPassDTLS, true},
				{[]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, to, CounterPassSTUN, true},
				{[]byte("junk"), to, CounterDropJunk, false},
				{nil, to, CounterDropEmpty, false},
				{rtp, other, CounterPassOther, false}, // nobody listens there
			}
			want := map[string]int{}
			for _, cl := range classes {
				for i := 0; i < n; i++ {
					if _, err := peer.WriteToUDP(cl.payload, cl.to); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
				if cl.arrives {
					want[string(cl.payload)] += n
				}
			}
			got := map[string]int{}
			buf := make([]byte, 2048)
			for total := 0; total < 3*n; total++ {
				if err := md.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
					t.Fatal(err)
				}
				k, _, err := md.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("after %d datagrams: %v", total, err)
				}
				got[string(buf[:k])]++
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("kernel socket got %d datagrams starting % x, want %d", got[p], p[:1], w)
				}
			}
			if err := md.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if k, _, err := md.ReadFromUDP(buf); !isTimeout(err) {
				t.Errorf("kernel socket got an unexpected datagram % x (err %v)", buf[:k], err)
			}

			after, err := c.Counters()
			if err != nil {
				t.Fatal(err)
			}
			for _, cl := range classes {
				d := after[cl.counter] - before[cl.counter]
				if cl.counter == CounterPassOther && d >= n {
					continue // IPv6 neighbour discovery may add to it
				}
				if d != n {
					t.Errorf("counter %s moved by %d, want %d", cl.counter, d, n)
				}
			}
			if d := after[CounterRedirect] - before[CounterRedirect]; d != 0 {
				t.Errorf("redirected %d frames without a socket", d)
			}

			if mode == ModeNative {
				err = a.Close()
			} else {
				err = c.Close()
			}
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkXDP(t, pair.MD, false, 0)
		})
	}
}

// TestAttachedIfindexAfterDelete deletes the interface the classifier is
// attached to: the kernel detaches the bpf_link and AttachedIfindex says so
// (0), which is what the MD's readiness check relies on.
func TestAttachedIfindexAfterDelete(t *testing.T) {
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	pair := netnstest.NewPair(t)
	c := loadTest(t)
	var a *Attachment
	if err := pair.MD.NS.Do(func() (err error) {
		a, err = c.Attach(pair.MD.Index, ModeGeneric)
		return err
	}); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if got, err := a.AttachedIfindex(); err != nil || got != pair.MD.Index {
		t.Fatalf("AttachedIfindex before delete = %d, %v; want %d", got, err, pair.MD.Index)
	}
	l, err := pair.MD.NS.Netlink().LinkByIndex(pair.MD.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.MD.NS.Netlink().LinkDel(l); err != nil {
		t.Fatal(err)
	}
	if got, err := a.AttachedIfindex(); err != nil || got != 0 {
		t.Errorf("AttachedIfindex after delete = %d, %v; want 0", got, err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close of a link whose interface is gone: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// checkXDP checks through netlink and `ip link` whether an XDP program is
// attached to the end's interface.
func checkXDP(t *testing.T, e netnstest.End, attached bool, attachMode uint32) {
	t.Helper()
	l, err := e.NS.Netlink().LinkByIndex(e.Index)
	if err != nil {
		t.Fatal(err)
	}
	x := l.Attrs().Xdp
	if got := x != nil && x.Attached; got != attached {
		t.Errorf("netlink: XDP attached = %v, want %v", got, attached)
	}
	if attached && x != nil && x.AttachMode != attachMode {
		t.Errorf("netlink: attach mode %d, want %d", x.AttachMode, attachMode)
	}
	out, err := exec.Command("ip", "-netns", e.NS.Name, "-d", "link", "show", "dev", e.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	if got := bytes.Contains(out, []byte("prog/xdp")) || strings.Contains(string(out), " xdp"); got != attached {
		t.Errorf("ip link shows XDP = %v, want %v:\n%s", got, attached, out)
	}
}

// TestRedirectWithSocket registers a real AF_XDP socket in the XSKMAP slot
// of queue 0 (the queue Program.Test runs on): the whole RTP frame is then
// redirected (XDP_REDIRECT, counted), every truncation of it still is not.
func TestRedirectWithSocket(t *testing.T) {
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	pair := netnstest.NewPair(t)
	c := loadTest(t)
	registerSocket(t, pair, c)
	testTruncation(t, c, xdpRedirect, CounterRedirect)
	for _, p := range [][]byte{rtcp, {22, 1}, {0, 1}, {0x42}} {
		v, _ := run(t, c, frame{payload: p}.build())
		if (v == xdpRedirect) != (p[0] == 0x80) {
			t.Errorf("payload % x: verdict %d", p, v)
		}
	}
	if err := c.UnregisterSocket(0); err != nil {
		t.Fatal(err)
	}
	if v, counter := run(t, c, frame{payload: rtp}.build()); v != xdpPass || counter != CounterPassNoSocket {
		t.Errorf("after UnregisterSocket: verdict %d counter %s", v, counter)
	}
}

// TestNoRxTime loads the classifier with Options.NoRxTime: frames it
// redirects to a real AF_XDP socket carry no metadata (run checks the
// output is the frame alone).
func TestNoRxTime(t *testing.T) {
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	pair := netnstest.NewPair(t)
	c, err := Load(Options{Ports: []uint16{mediaPort}, NoRxTime: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	registerSocket(t, pair, c)
	for _, p := range [][]byte{rtp, rtcp} {
		if v, counter := run(t, c, frame{payload: p}.build()); v != xdpRedirect || counter != CounterRedirect {
			t.Errorf("payload % x: verdict %d counter %s", p[:2], v, counter)
		}
	}
}

// registerSocket opens an AF_XDP socket (copy mode) on queue 0 of the
// pair's MD interface, closed with the test, and registers it with c.
func registerSocket(t *testing.T, pair *netnstest.Pair, c *Classifier) {
	t.Helper()
	var sock *afxdp.Socket
	err := pair.MD.NS.Do(func() (err error) {
		sock, err = afxdp.Open(afxdp.Config{Ifindex: pair.MD.Index, Mode: afxdp.ModeCopy, NumFrames: 64})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	if err := c.RegisterSocket(0, sock.FD()); err != nil {
		t.Fatal(err)
	}
}
