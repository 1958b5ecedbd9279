package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mdfast/mdfast/"

// rules: a package (relative to the module) and the packages it must not
// depend on, directly or not, with why (DEVELOPERS.md, "Layout").
var rules = []struct {
	pkg    string
	banned []string
	why    string
}{
	{"internal/tunnel", []string{"internal/keytable", "internal/srtpfast", "internal/dtls", "internal/dtlsmsg", "internal/dataplane"},
		"the tunnel hands messages to interfaces its caller defines"},
	{"internal/srtpfast", []string{"internal/tunnel", "internal/keytable", "internal/dtls"},
		"per-packet crypto gets its keys through a small type, never from a protocol"},
	{"internal/keytable", []string{"internal/tunnel", "internal/dtls", "internal/dataplane"},
		"the key table knows keys and addresses, not where they come from"},
	{"internal/double", []string{"internal/srtpfast"},
		"the endpoint side of RFC 8723 is the MD's independent counterpart"},
	{"internal/dtls", []string{"internal/tunnel", "internal/keytable", "internal/srtpfast", "internal/dataplane", "internal/keydist"},
		"the DTLS stack owns no transport and no keys beyond its own"},
	{"internal/mdslow", []string{"internal/dataplane", "internal/afxdp", "bpf"},
		"the slow path names datagrams through slowpkt, not the XDP data plane"},
	{"internal/control", []string{"internal/dataplane", "internal/afxdp", "bpf"},
		"the control API does not pull in the data plane"},
	{"internal/keydist", []string{"internal/dataplane", "internal/keytable", "internal/srtpfast", "internal/afxdp", "bpf"},
		"the Key Distributor hands out keys; it never forwards media"},
	{"internal/endpointsim", []string{"internal/keydist", "internal/dataplane", "internal/mdslow"},
		"the endpoint simulator names certificates through identity, not the KD server"},
	{"internal/identity", []string{"internal/keydist", "internal/dtls", "internal/tunnel"},
		"fingerprints and tls-ids are shared below both daemons"},
	{"internal/sdp", []string{"internal/keydist", "internal/control", "internal/mdslow", "internal/dtls", "net/http"},
		"the SDP reader and answer writer know neither registries, HTTP nor the MD"},
	{"internal/directory", []string{"internal/keytable", "internal/srtpfast", "internal/dataplane", "internal/dtls", "internal/cascade"},
		"the MD directory knows names and addresses in etcd, not keys, links or packets"},
	{"internal/cascade", []string{"internal/dataplane", "internal/afxdp", "bpf", "internal/mdslow", "internal/tunnel"},
		"the link manager writes links into the key table through its own interface; it never forwards media"},
	{"perc", []string{"internal/keydist", "internal/dataplane", "internal/keytable", "internal/tunnel", "internal/mdslow"},
		"the endpoint package depends on neither daemon"},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps ./%s: %v", pkg, err)
	}
	var d []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if rel, ok := strings.CutPrefix(l, module); ok {
			d = append(d, rel)
		}
	}
	return d
}

func TestImportRules(t *testing.T) {
	if err := exec.Command("go", "env", "GOMOD").Run(); err != nil {
		t.Fatalf("go: %v", err)
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			d := deps(t, "../../"+r.pkg)
			if len(d) == 0 {
				t.Fatalf("no dependencies listed for %s: the test proves nothing", r.pkg)
			}
			for _, b := range r.banned {
				if slices.Contains(d, b) {
					t.Errorf("%s depends on %s: %s", r.pkg, b, r.why)
				}
			}
		})
	}
}

// testOnly are the packages that exist for tests and may use
// internal/testutil; bench/ holds the benchmark's own programs.
var testOnly = []string{"internal/testutil", "internal/netnstest", "internal/syssim", "internal/archtest", "internal/etcdtest"}

// TestNoTestutilInProduction: no production package depends, directly or
// not, on internal/testutil (it is for tests only; its doc says so).
func TestNoTestutilInProduction(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	checked, seen := 0, false
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		if pkg == "internal/testutil" {
			seen = true
		}
		if slices.Contains(testOnly, pkg) || pkg == "bench" || strings.HasPrefix(pkg, "bench/") {
			continue
		}
		checked++
		if slices.Contains(f[1:], module+"internal/testutil") {
			t.Errorf("%s depends on internal/testutil: test helpers must not reach production code", pkg)
		}
	}
	if !seen || checked < 10 {
		t.Fatalf("go list ./... named internal/testutil: %v, checked %d packages: the test proves nothing", seen, checked)
	}
}
