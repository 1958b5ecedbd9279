package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdfast/mdfast/internal/syssim"
)

// The multi-MD demo (DEMO_MDS > 1): one etcd member (Debian's etcd-server)
// in its own namespace holds the directory of MDs and the KD replicas'
// registry layer and sealed EKT parameter sets; the MDs find each other
// there and open one DTLS-SRTP link per pair; endpoint i joins MD i mod
// DEMO_MDS, and every endpoint must still receive every other's media.

const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
	cascadePort    = 5006
	// Metric families the summary reads from every MD.
	metricLinks   = "mdfast_cascade_links"
	metricLinkTx  = "mdfast_cascade_link_tx_packets_total"
	metricLinkRx  = "mdfast_cascade_link_rx_packets_total"
	etcdStartWait = 20 * time.Second
)

func etcdURL() string {
	return "http://" + net.JoinHostPort(hostAddr(etcdHost), strconv.Itoa(etcdClientPort))
}

// startEtcd starts the one-member etcd and waits for its /health.
func (d *demo) startEtcd() error {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("DEMO_MDS needs etcd (apt-get install etcd-server; scripts/deps.sh does): %w", err)
	}
	peer := "http://" + net.JoinHostPort(hostAddr(etcdHost), strconv.Itoa(etcdPeerPort))
	d.etcd, err = start(d.topo.ns("etcd"), "etcd", filepath.Join(d.dir, "etcd.log"), bin,
		"--name", "demo", "--data-dir", filepath.Join(d.dir, "etcd"),
		"--listen-client-urls", etcdURL(), "--advertise-client-urls", etcdURL(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "demo="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn")
	if err != nil {
		return err
	}
	c := syssim.HTTPClient(d.topo.ns("etcd"))
	deadline := time.Now().Add(etcdStartWait)
	for time.Now().Before(deadline) {
		if code, body, err := syssim.Get(c, etcdURL()+"/health"); err == nil && code == http.StatusOK && strings.Contains(body, "true") {
			return nil
		}
		if !d.etcd.Alive() {
			return fmt.Errorf("etcd exited: %v", d.etcd.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %v", etcdStartWait)
}

// multiMDArgs are MD m's directory and link arguments, its tunnels to
// every KD replica, and the certificate they need: one per MD from the
// files' CA, naming its md-id (as a link certificate must), for its
// tunnels and its links alike.
func (d *demo) multiMDArgs(m int) ([]string, error) {
	if m > 0 { // md's is the files' own md.crt
		if err := d.files.WriteLeaf(mdRole(m), net.ParseIP(hostAddr(mdHostN(m)))); err != nil {
			return nil, err
		}
	}
	args := []string{
		"-etcd-endpoints", etcdURL(), "-md-id", mdRole(m),
		"-cascade-listen", net.JoinHostPort(hostAddr(mdHostN(m)), strconv.Itoa(cascadePort)),
		"-cascade-cert", d.files.Path(mdRole(m) + ".crt"), "-cascade-key", d.files.Path(mdRole(m) + ".key"),
		"-cascade-ca", d.files.Path("ca.crt"),
	}
	for k := 1; k < d.o.kds; k++ {
		args = append(args, "-kd", net.JoinHostPort(hostAddr(kdHostN(k)), strconv.Itoa(tunnelPort)))
	}
	return args, nil
}

// multiKDArgs are KD replica k's store arguments: etcd, the key that seals
// EKT parameter sets there (the same file for every replica, never an
// MD's), and a journal of its own.
func (d *demo) multiKDArgs(k int) []string {
	key := d.files.Path("ekt-store.key")
	if _, err := os.Stat(key); err != nil {
		var b [32]byte
		_, _ = rand.Read(b[:])
		_ = os.WriteFile(key, []byte(hex.EncodeToString(b[:])+"\n"), 0o600)
	}
	return []string{"-etcd-endpoints", etcdURL(), "-ekt-store-key-file", key,
		"-journal", d.files.Path(indexed("kd", k) + "-associations.journal")}
}

// waitLinks waits until every MD has a link to every other for the demo
// conference (the links come up once each MD has a member of it).
func (d *demo) waitLinks(ctx context.Context, timeout time.Duration) error {
	want := float64(len(d.mds) - 1)
	deadline := time.Now().Add(timeout)
	for {
		short := -1
		for m := range d.mds {
			_, body, err := d.get(m, "/metrics")
			if err != nil || syssim.SumMetric(body, metricLinks) < want {
				short = m
				break
			}
		}
		if short < 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has fewer than %.0f links after %v (%s)", mdRole(short), want, timeout, metricLinks)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// linkSummary is the summary line's per-MD link traffic (packets each MD
// sent to and received from its peers) and, with KD replicas, the
// handshakes each replica completed.
func (d *demo) linkSummary() (string, error) {
	var b strings.Builder
	if len(d.kds) > 1 {
		for k := range d.kds {
			ok, err := d.kdMetric(k, "keydist_handshakes_total", `result="ok"`)
			if err != nil {
				return "", fmt.Errorf("%s metrics: %w", kdRole(k), err)
			}
			fmt.Fprintf(&b, " %s_handshakes_ok=%.0f", kdRole(k), ok)
		}
	}
	for m := range d.mds {
		_, body, err := d.get(m, "/metrics")
		if err != nil {
			return "", fmt.Errorf("%s metrics: %w", mdRole(m), err)
		}
		fmt.Fprintf(&b, " %s_link_tx=%.0f %s_link_rx=%.0f", mdRole(m), syssim.SumMetric(body, metricLinkTx), mdRole(m), syssim.SumMetric(body, metricLinkRx))
	}
	return b.String(), nil
}

// sumLabeled sums the samples of family name whose labels contain label.
func sumLabeled(body, name, label string) float64 {
	var sum float64
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}
