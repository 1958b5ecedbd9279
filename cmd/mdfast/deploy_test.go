package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployUnits runs systemd-analyze verify on deploy/*.service (with the
// daemons' paths pointed at an executable that exists, since verify checks
// them) and checks that mdfast's unit grants exactly the capabilities its
// comment and the README name.
func TestDeployUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (scripts/deps.sh installs systemd): %v", err)
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"mdfast.service", "keydist.service"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer("/usr/local/bin/mdfast", "/bin/true", "/usr/local/bin/keydist", "/bin/true").Replace(string(b))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
		if name == "mdfast.service" {
			const caps = "CAP_NET_ADMIN CAP_BPF CAP_NET_RAW CAP_IPC_LOCK"
			for _, key := range []string{"AmbientCapabilities=", "CapabilityBoundingSet="} {
				var lines []string
				for _, l := range strings.Split(text, "\n") {
					if strings.HasPrefix(l, key) {
						lines = append(lines, l)
					}
				}
				if len(lines) != 1 || lines[0] != key+caps {
					t.Errorf("%s: %q, want exactly %q", name, lines, key+caps)
				}
			}
		}
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
