package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/testutil"
	"github.com/mdfast/mdfast/internal/tunnel"
)

// startKD runs a Key Distributor (keydist over the tunnel's KD side) on a
// loopback port and returns its address.
func startKD(t *testing.T, p *pki) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveKD(t, p, ln)
}

// serveKD runs a Key Distributor with an empty registry on ln (closed at
// cleanup) and returns its address.
func serveKD(t *testing.T, p *pki, ln net.Listener) string {
	t.Helper()
	addr, _ := serveKDRegistry(t, p, ln, keydist.NewRegistry())
	return addr
}

// serveKDRegistry runs a Key Distributor with registry reg on ln (closed
// at cleanup) and returns its address and the fingerprint of its DTLS
// certificate.
func serveKDRegistry(t *testing.T, p *pki, ln net.Listener, reg *keydist.Registry) (string, keydist.Fingerprint) {
	t.Helper()
	dtlsCert, err := keydist.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	kd, err := keydist.New(keydist.Config{Certificate: dtlsCert, Registry: reg, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{p.ca.Leaf(t, "kd")}, CAs: p.ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	kt, err := tunnel.NewKD(tunnel.KDConfig{TLS: tlsCfg, Logger: discard}, kd)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = kt.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		_ = kt.Close()
		<-served
		_ = kd.Close()
	})
	return ln.Addr().String(), keydist.CertFingerprint(dtlsCert)
}

var listenRE = regexp.MustCompile(`msg="(metrics|control API) listening" addr=(\S+)`)

// TestRunEndToEnd starts "mdfast run" in socket mode against an in-process
// KD, checks /healthz, /readyz and /metrics, reloads the mappings and the
// log level with SIGHUP, and stops it with SIGTERM.
func TestRunEndToEnd(t *testing.T) {
	testutil.NeedRoot(t, "runs the mdfast daemon end to end")
	p := writePKI(t)
	kdAddr := startKD(t, p)
	mediaPort := freeUDPPort(t)
	cfgBody := func(level, room string) string {
		return strings.Join([]string{
			"mode: socket",
			"address: 127.0.0.1",
			fmt.Sprintf("media-ports: [%d]", mediaPort),
			"kd: [" + kdAddr + "]",
			"kd-server-name: kd",
			"tunnel-cert: " + p.certFile,
			"tunnel-key: " + p.key,
			"tunnel-ca: " + p.caFile,
			"tunnel-backoff-max: 200ms",
			"control-listen: 127.0.0.1:0",
			"control-token-file: " + p.tokenFile,
			"metrics-listen: 127.0.0.1:0",
			"log-level: " + level,
			"mappings:",
			"  tls-ids:",
			"    dGhpcyBpcyBhIHRscy1pZA: " + room,
		}, "\n") + "\n"
	}
	cfgPath := p.writeConfig(t, "mdfast.yaml", cfgBody("info", "room1"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	cmd := command(ctx, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mdfast stdout:\n%s\nmdfast stderr:\n%s", stdout.String(), stderr.String())
		}
	})

	// waitLog waits for a log line matching re and returns its submatches.
	waitLog := func(what string, re *regexp.Regexp, n int) [][]string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if m := re.FindAllStringSubmatch(stderr.String(), -1); len(m) >= n {
				return m
			}
			select {
			case err := <-exited:
				stopped = true
				t.Fatalf("mdfast exited (%v) before %s", err, what)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s in 10s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	addrs := map[string]string{}
	for _, m := range waitLog("listener addresses", listenRE, 2) {
		addrs[m[1]] = m[2]
	}
	metricsURL, controlURL := "http://"+addrs["metrics"], "http://"+addrs["control API"]

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get(metricsURL+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(metricsURL+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no tunnel") {
			t.Fatalf("/readyz before the tunnel = %d %q", code, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 in 10s (tunnel to the KD not up)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "mdfast: running path=socket ports=[") {
		t.Errorf("stdout %q lacks the running line", stdout.String())
	}

	code, body := get(metricsURL+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"# TYPE mdfast_packets_received_total counter",
		`mdfast_packets_received_total{queue="0"} `,
		`mdfast_packets_forwarded_total{queue="0"} `,
		`mdfast_packets_dropped_total{queue="0",reason="junk"} `,
		"# TYPE mdfast_associations gauge",
		fmt.Sprintf(`mdfast_tunnel_up{kd=%q} 1`, kdAddr),
		"# TYPE mdfast_handshake_duration_seconds histogram",
		`mdfast_dataplane_mode{mode="socket"} 1`,
		`mdfast_ready{check="tunnel"} 1`,
		`mdfast_ready{check="workers"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	token := "0123456789abcdef0123456789abcdef"
	mappings := func() control.Mappings {
		t.Helper()
		code, body := get(controlURL+"/v1/mappings", token)
		if code != http.StatusOK {
			t.Fatalf("GET /v1/mappings = %d %q", code, body)
		}
		var m control.Mappings
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("mappings %q: %v", body, err)
		}
		return m
	}
	if code, _ := get(controlURL+"/v1/mappings", ""); code != http.StatusUnauthorized {
		t.Errorf("control API without token = %d, want 401", code)
	}
	if got := mappings().TLSIDs["dGhpcyBpcyBhIHRscy1pZA"]; got != "room1" {
		t.Fatalf("mapping before SIGHUP = %q, want room1", got)
	}

	// SIGHUP: new mapping and log level.
	p.writeConfig(t, "mdfast.yaml", cfgBody("debug", "room2"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("the reload line", regexp.MustCompile(`msg="SIGHUP: configuration reloaded" .*log_level=debug`), 1)
	if got := mappings().TLSIDs["dGhpcyBpcyBhIHRscy1pZA"]; got != "room2" {
		t.Errorf("mapping after SIGHUP = %q, want room2", got)
	}
	if strings.Contains(stderr.String(), "need a restart") {
		t.Error("reload with only reloadable changes asked for a restart")
	}

	// SIGHUP with an invalid file: refused, the running config stays.
	p.writeConfig(t, "mdfast.yaml", cfgBody("loud", "room3"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("the refusal", regexp.MustCompile(`SIGHUP: configuration invalid; keeping the running one.*log-level`), 1)
	if got := mappings().TLSIDs["dGhpcyBpcyBhIHRscy1pZA"]; got != "room2" {
		t.Errorf("mapping after a bad SIGHUP = %q, want room2 kept", got)
	}

	// SIGTERM: clean exit, status 0, within a few seconds.
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("mdfast exited with %v after SIGTERM", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("mdfast still running 5s after SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{`msg="shutting down"`, `msg="dataplane: stopped"`, `msg=stopped`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for l := range strings.SplitSeq(stderr.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && !strings.Contains(l, "SIGHUP: configuration invalid") {
			t.Errorf("error logged: %s", l)
		}
	}
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}
