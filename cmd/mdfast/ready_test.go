package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// xdpDaemon is "mdfast run" in an XDP mode inside the MD namespace of a veth
// pair, with its KD in the peer namespace (so that the tunnel crosses the
// veth and can be cut there), and an HTTP client that reaches the metrics
// listener on the MD namespace's loopback.
type xdpDaemon struct {
	pair    *netnstest.Pair
	metrics string // http://127.0.0.1:port inside the MD namespace
	client  *http.Client
	stderr  *syncBuffer
}

// startXDPDaemon starts the daemon in mode ("xdp-native" or "xdp-generic")
// and waits until /readyz says ready.
func startXDPDaemon(t *testing.T, mode string) *xdpDaemon {
	t.Helper()
	p := writePKI(t)
	pair := netnstest.NewPair(t)
	var ln net.Listener
	if err := pair.Peer.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", pair.Peer.Addr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kdAddr := serveKD(t, p, ln)
	cfg := p.writeConfig(t, "mdfast.yaml", strings.Join([]string{
		"mode: " + mode,
		"interface: " + pair.MD.Name,
		"address: " + pair.MD.Addr.String(),
		"media-ports: [5004]",
		"kd: [" + kdAddr + "]",
		"kd-server-name: kd",
		"tunnel-cert: " + p.certFile,
		"tunnel-key: " + p.key,
		"tunnel-ca: " + p.caFile,
		"tunnel-backoff-max: 200ms",
		"control-listen: ''",
		"metrics-listen: 127.0.0.1:0",
	}, "\n")+"\n")

	// The whole process runs in the MD namespace: its netlink handle, its
	// XDP attachment and its sockets are there.
	stderr, exited := runInNetns(t, pair.MD.NS.Name, cfg)
	d := &xdpDaemon{pair: pair, stderr: stderr}

	d.client = netnsHTTPClient(pair.MD.NS, 2*time.Second)
	re := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
	deadline := time.Now().Add(15 * time.Second)
	for d.metrics == "" {
		if m := re.FindStringSubmatch(d.stderr.String()); m != nil {
			d.metrics = "http://" + m[1]
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mdfast exited (%v) before listening", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no metrics listener in 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		code, body := d.get(t, "/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 in 15s: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.wantMetric(t, `mdfast_dataplane_mode{mode="`+mode+`"} 1`)
	for _, c := range []string{"workers", "xdp_program", "tunnel"} {
		d.wantMetric(t, `mdfast_ready{check="`+c+`"} 1`)
	}
	return d
}

func (d *xdpDaemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := d.client.Get(d.metrics + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func (d *xdpDaemon) wantMetric(t *testing.T, line string) {
	t.Helper()
	if _, body := d.get(t, "/metrics"); !strings.Contains(body, line+"\n") {
		t.Errorf("/metrics lacks %q", line)
	}
}

// waitNotReady polls /readyz until it answers 503 with a body containing
// want, and returns how long that took from start.
func (d *xdpDaemon) waitNotReady(t *testing.T, start time.Time, within time.Duration, want string) (time.Duration, string) {
	t.Helper()
	for {
		code, body := d.get(t, "/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, want) {
			return time.Since(start), body
		}
		if time.Since(start) > within {
			t.Fatalf("/readyz = %d %q %v after the fault; want 503 with %q", code, body, time.Since(start), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadyzInterfaceRecreated runs the daemon in each XDP mode on a veth,
// deletes the interface and creates it again under the same name: /readyz
// must turn 503 naming the XDP program within 2 s, stay 503 once the new
// interface (with no program) is there, and mdfast_ready{check="xdp_program"}
// must be 0.
func TestReadyzInterfaceRecreated(t *testing.T) {
	testutil.NeedRoot(t, "runs mdfast with XDP on a veth in a network namespace and deletes the interface")
	for _, mode := range []string{"xdp-native", "xdp-generic"} {
		t.Run(mode, func(t *testing.T) {
			d := startXDPDaemon(t, mode)
			oldIndex := d.pair.MD.Index
			l, err := d.pair.MD.NS.Netlink().LinkByName(d.pair.MD.Name)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := d.pair.MD.NS.Netlink().LinkDel(l); err != nil {
				t.Fatal(err)
			}
			took, body := d.waitNotReady(t, start, 2*time.Second, "xdp_program: XDP program not attached: interface mdf-md is gone")
			t.Logf("%s: interface deleted -> /readyz 503 in %v: %q", mode, took.Round(time.Millisecond), body)

			d.pair.Relink(t)
			if d.pair.MD.Index == oldIndex {
				t.Fatalf("recreated interface kept index %d", oldIndex)
			}
			took, body = d.waitNotReady(t, time.Now(), 2*time.Second,
				fmt.Sprintf("xdp_program: XDP program not attached: interface %s was recreated (ifindex %d; the program was on %d)",
					d.pair.MD.Name, d.pair.MD.Index, oldIndex))
			t.Logf("%s: after recreation: 503 %q (%v)", mode, body, took.Round(time.Millisecond))
			// The daemon does not re-attach: it stays not ready, for the
			// orchestrator to restart it.
			time.Sleep(2 * readyPeriod)
			if code, body := d.get(t, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "XDP program") {
				t.Errorf("/readyz on the recreated interface = %d %q", code, body)
			}
			d.wantMetric(t, `mdfast_ready{check="xdp_program"} 0`)
			nl, err := d.pair.MD.NS.Netlink().LinkByName(d.pair.MD.Name)
			if err != nil {
				t.Fatal(err)
			}
			if x := nl.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("the recreated interface has an XDP program (%d): the check would be wrong", x.ProgId)
			}
		})
	}
}

// TestReadyzTunnelBlackholed runs the daemon in XDP generic mode and makes
// the KD's namespace silently discard everything it sends to the MD (a
// blackhole route): no RST, no ICMP, as when a path dies. /readyz must turn
// 503 naming the tunnel well before TCP's own timeouts, and
// mdfast_ready{check="tunnel"} must be 0.
func TestReadyzTunnelBlackholed(t *testing.T) {
	testutil.NeedRoot(t, "runs mdfast with XDP in a network namespace and blackholes its KD")
	d := startXDPDaemon(t, "xdp-generic")
	route := &netlink.Route{
		Dst:  &net.IPNet{IP: d.pair.MD.Addr.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Type: unix.RTN_BLACKHOLE,
	}
	start := time.Now()
	if err := d.pair.Peer.NS.Netlink().RouteAdd(route); err != nil {
		t.Fatalf("blackhole route: %v", err)
	}
	// Keepalive idle 2 s, probes every 1 s, TCP_USER_TIMEOUT 5 s, the
	// readiness period on top: expect about 5 s; fail past 8 s.
	took, body := d.waitNotReady(t, start, 8*time.Second, "tunnel: no tunnel to a key distributor")
	t.Logf("tunnel blackholed -> /readyz 503 in %v: %q", took.Round(time.Millisecond), body)
	d.wantMetric(t, `mdfast_ready{check="tunnel"} 0`)
	d.wantMetric(t, `mdfast_ready{check="xdp_program"} 1`)

	// The path comes back: the tunnel is redialed and /readyz is 200 again.
	if err := d.pair.Peer.NS.Netlink().RouteDel(route); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for {
		code, _ := d.get(t, "/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Since(back) > 15*time.Second {
			t.Fatalf("/readyz not 200 within 15s after the path came back: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("path restored -> /readyz 200 in %v", time.Since(back).Round(time.Millisecond))
}

// runInNetns runs `mdfast run -config cfg` in the network namespace ns
// (its netlink handle, XDP attachment and sockets are there) and returns
// its stderr and a channel that receives its exit (put the value back
// after reading it: t.Cleanup waits for it); t.Cleanup stops it (SIGTERM,
// then kill after 10 s) and logs its output if t failed.
func runInNetns(t *testing.T, ns, cfg string) (*syncBuffer, chan error) {
	t.Helper()
	cmd := command(t.Context(), "run", "-config", cfg)
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("ip(8): %v", err)
	}
	cmd.Path = ip
	cmd.Args = append([]string{"ip", "netns", "exec", ns}, cmd.Args...)
	var stdout syncBuffer
	stderr := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mdfast stdout:\n%s\nmdfast stderr:\n%s", stdout.String(), stderr.String())
		}
	})
	return stderr, exited
}

// netnsHTTPClient is an HTTP client whose connections are made in ns.
func netnsHTTPClient(ns *netnstest.NS, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				var derr error
				c, derr = (&net.Dialer{}).DialContext(ctx, network, addr)
				return derr
			})
			return c, err
		},
	}}
}
