package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/mdfast/mdfast/internal/testutil"
)

var summaryRE = regexp.MustCompile(`(?m)^demo: endpoints=(\d+) handshakes_ok=(\d+) forwarded=(\d+) delivered_ok=(\d+) lost=(\d+) auth_failures=(\d+) path=(xdp-native|xdp-generic|socket) profile=(0x[0-9a-f,x]+) ekt_ok=(\d+) md_e2e_keys=(\d+)(.*)$`)

// runDemo builds mdfast, keydist and the demo, runs the demo with env and
// returns its summary fields.
func runDemo(t *testing.T, env ...string) []string {
	t.Helper()
	testutil.NeedRoot(t, "the demo uses network namespaces and XDP")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the demo needs ip(8) (iproute2)")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "github.com/mdfast/mdfast/cmd/mdfast", "github.com/mdfast/mdfast/cmd/keydist", "github.com/mdfast/mdfast/cmd/mdfast-demo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(bin, "mdfast-demo"))
	cmd.Env = append(os.Environ(), append([]string{"DEMO_BIN=" + bin}, env...)...)
	out, err := cmd.CombinedOutput()
	m := summaryRE.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	t.Logf("%s", m[0])
	return m
}

func num(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkSummary(t *testing.T, m []string, endpoints int) {
	t.Helper()
	if n := num(t, m[1]); n != endpoints {
		t.Errorf("endpoints=%d, want %d", n, endpoints)
	}
	if num(t, m[2]) != num(t, m[1]) {
		t.Errorf("handshakes_ok=%s of %s", m[2], m[1])
	}
	if num(t, m[3]) == 0 || num(t, m[4]) == 0 {
		t.Errorf("nothing forwarded or delivered: %s", m[0])
	}
	if num(t, m[5]) != 0 || num(t, m[6]) != 0 {
		t.Errorf("lost=%s auth_failures=%s", m[5], m[6])
	}
}

// TestDemo runs the demo topology for 5 s: every handshake completes, every
// packet sent is delivered and decrypts, no authentication failure; the
// conference runs the double profile with EKT and the MD holds no
// participant's whole media key.
func TestDemo(t *testing.T) {
	m := runDemo(t, "DEMO_SECONDS=5")
	checkSummary(t, m, 3)
	if m[8] != "0x0009" || num(t, m[9]) != 3 || num(t, m[10]) != 0 {
		t.Errorf("profile=%s ekt_ok=%s md_e2e_keys=%s, want 0x0009, 3, 0", m[8], m[9], m[10])
	}
}

// TestDemoLegacy runs the legacy profile: the MD holds every whole key,
// and the summary says so.
func TestDemoLegacy(t *testing.T) {
	m := runDemo(t, "DEMO_SECONDS=3", "DEMO_PROFILE=legacy")
	checkSummary(t, m, 3)
	if m[8] != "0x0007" || num(t, m[9]) != 0 || num(t, m[10]) != 3 {
		t.Errorf("profile=%s ekt_ok=%s md_e2e_keys=%s, want 0x0007, 0, 3", m[8], m[9], m[10])
	}
}

// TestDemoKDRestart kills keydist mid-conference and restarts it:
// established streams keep flowing (nothing lost while the KD is down), the
// tunnel comes back (mdfast /readyz), and a new endpoint joins afterwards.
func TestDemoKDRestart(t *testing.T) {
	m := runDemo(t, "DEMO_SECONDS=8", "DEMO_KD_RESTART=1")
	checkSummary(t, m, 4)
}

// TestDemoSocketPath runs the demo on the socket fallback.
func TestDemoSocketPath(t *testing.T) {
	m := runDemo(t, "DEMO_SECONDS=3", "DEMO_PATH=socket")
	checkSummary(t, m, 3)
	if m[7] != "socket" {
		t.Errorf("path=%s, want socket", m[7])
	}
}

var multiRE = regexp.MustCompile(`(\w+)_(link_tx|link_rx|handshakes_ok)=(\d+)`)

// TestDemoMulti runs DEMO_MDS=3 with two KD replicas (the defaults): six
// endpoints, two per MD, all hear each other with no loss and no
// authentication failure across the links; both replicas completed
// handshakes; what the MDs sent on their links is what they received.
func TestDemoMulti(t *testing.T) {
	m := runDemo(t, "DEMO_SECONDS=5", "DEMO_MDS=3", "DEMO_ENDPOINTS=6")
	checkSummary(t, m, 6)
	if m[8] != "0x0009" || num(t, m[9]) != 6 || num(t, m[10]) != 0 {
		t.Errorf("profile=%s ekt_ok=%s md_e2e_keys=%s, want 0x0009, 6, 0", m[8], m[9], m[10])
	}
	var tx, rx int
	mds, kds := map[string]bool{}, 0
	for _, f := range multiRE.FindAllStringSubmatch(m[11], -1) {
		v := num(t, f[3])
		switch f[2] {
		case "link_tx":
			tx += v
			mds[f[1]] = v > 0
		case "link_rx":
			rx += v
		case "handshakes_ok":
			if v == 0 {
				t.Errorf("KD replica %s completed no handshake", f[1])
			}
			kds++
		}
	}
	if len(mds) != 3 || kds != 2 {
		t.Fatalf("summary names %d MDs and %d KD replicas, want 3 and 2: %s", len(mds), kds, m[11])
	}
	for md, sent := range mds {
		if !sent {
			t.Errorf("%s sent nothing on its links", md)
		}
	}
	if tx != rx {
		t.Errorf("the MDs sent %d packets on links and received %d", tx, rx)
	}
}
