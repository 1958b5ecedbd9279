package keydist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testTLSID  = "abcdefghijklmnopqrstuvwxyz012345"
	testTLSID2 = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
)

func testFP(b byte) Fingerprint {
	var f Fingerprint
	for i := range f {
		f[i] = b
	}
	return f
}

func TestParseFingerprint(t *testing.T) {
	want := testFP(0xab)
	colon := want.String()
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"sdp form", "sha-256 " + colon, true},
		{"sdp upper hash name", "SHA-256 " + colon, true},
		{"colon", colon, true},
		{"lower colon", strings.ToLower(colon), true},
		{"plain hex", strings.ReplaceAll(colon, ":", ""), true},
		{"sha-1", "sha-1 " + colon, false},
		{"short", colon[:10], false},
		{"bad separator", strings.ReplaceAll(colon, ":", "-"), false},
		{"bad hex", strings.Repeat("zz", 32), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFingerprint(tc.in)
			if tc.ok {
				if err != nil || got != want {
					t.Fatalf("got %v %v", got, err)
				}
			} else if !errors.Is(err, ErrInvalidFingerprint) {
				t.Fatalf("err = %v, want ErrInvalidFingerprint", err)
			}
		})
	}
}

func TestValidateTLSID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{testTLSID, true},
		{"a+b/c-d_e" + strings.Repeat("x", 11), true},
		{strings.Repeat("a", 19), false},
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a", 19) + "=", false},
		{strings.Repeat("a", 19) + " ", false},
		{NewTLSID(), true},
	} {
		if err := ValidateTLSID(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateTLSID(%q) = %v", tc.in, err)
		}
	}
	if id := NewTLSID(); len(id) != 43 {
		t.Fatalf("NewTLSID length %d", len(id))
	}
}

func fileYAML(confs ...string) string { return "conferences:\n" + strings.Join(confs, "") }

func confYAML(id string, legacy bool, eps ...[2]string) string {
	s := fmt.Sprintf("  - id: %s\n    allow_legacy: %v\n    endpoints:\n", id, legacy)
	for _, e := range eps {
		if e[0] != "" {
			s += fmt.Sprintf("      - tls_id: %q\n        fingerprint: %q\n", e[0], e[1])
		} else {
			s += fmt.Sprintf("      - fingerprint: %q\n", e[1])
		}
	}
	return s
}

func TestParseRegistryFile(t *testing.T) {
	fp := "sha-256 " + testFP(1).String()
	for _, tc := range []struct {
		name string
		in   string
		err  error
	}{
		{"ok", fileYAML(confYAML("c1", false, [2]string{testTLSID, fp})), nil},
		{"empty file", "", nil},
		{"legacy entry", fileYAML(confYAML("c1", true, [2]string{"", fp})), nil},
		{"legacy entry without allow_legacy", fileYAML(confYAML("c1", false, [2]string{"", fp})), ErrInvalidTLSID},
		{"bad fingerprint", fileYAML(confYAML("c1", false, [2]string{testTLSID, "sha-256 00"})), ErrInvalidRegistryFile},
		{"short tls id", fileYAML(confYAML("c1", false, [2]string{"short", fp})), ErrInvalidTLSID},
		{"duplicate tls id", fileYAML(confYAML("c1", false, [2]string{testTLSID, fp}), confYAML("c2", false, [2]string{testTLSID, fp})), ErrDuplicate},
		{"duplicate conference", fileYAML(confYAML("c1", false), confYAML("c1", false)), ErrDuplicate},
		{"bad conference id", fileYAML(confYAML("a/b", false)), ErrInvalidConference},
		{"unknown key", "conferences:\n  - id: c1\n    alow_legacy: true\n", ErrInvalidRegistryFile},
		{"not yaml", "{{{{", ErrInvalidRegistryFile},
		{"wrong type", "conferences: 3\n", ErrInvalidRegistryFile},
		{"missing fingerprint", "conferences:\n  - id: c1\n    endpoints:\n      - tls_id: " + testTLSID + "\n", ErrInvalidFingerprint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRegistryFile([]byte(tc.in))
			if tc.err == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestRegistryLayers(t *testing.T) {
	r := NewRegistry()
	changes := 0
	r.Subscribe(func() { changes++ })
	if err := r.ReplaceFile([]Conference{{ID: "c1", Endpoints: []Endpoint{{TLSID: testTLSID, Fingerprint: testFP(1)}}}}); err != nil {
		t.Fatal(err)
	}
	m, ok := r.current().lookupTLSID([]byte(testTLSID))
	if !ok || m.Conference != "c1" || m.Endpoint.Fingerprint != testFP(1) || ValidateTLSID(m.Endpoint.KDTLSID) != nil {
		t.Fatalf("lookup = %+v %v", m, ok)
	}
	kdID := m.Endpoint.KDTLSID
	// Reload with the same entry keeps the generated KD tls-id.
	_ = r.ReplaceFile([]Conference{{ID: "c1", Endpoints: []Endpoint{{TLSID: testTLSID, Fingerprint: testFP(1)}}}})
	if m2, _ := r.current().lookupTLSID([]byte(testTLSID)); m2.Endpoint.KDTLSID != kdID {
		t.Fatal("KD tls-id changed across reloads")
	}
	// API add, duplicate refused.
	if _, err := r.AddEndpoint("c2", Endpoint{TLSID: testTLSID, Fingerprint: testFP(2)}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate add: %v", err)
	}
	e, err := r.AddEndpoint("c2", Endpoint{TLSID: testTLSID2, Fingerprint: testFP(2)})
	if err != nil || e.Source != "api" || e.KDTLSID == "" {
		t.Fatalf("add: %+v %v", e, err)
	}
	if _, err := r.AddEndpoint("c2", Endpoint{Fingerprint: testFP(3)}); !errors.Is(err, ErrInvalidTLSID) {
		t.Fatalf("legacy add without allow_legacy: %v", err)
	}
	// Remove a file entry through the API: hidden until re-added.
	if n, err := r.RemoveEndpoint("c1", testTLSID, nil); err != nil || n != 1 {
		t.Fatalf("remove: %d %v", n, err)
	}
	if _, ok := r.current().lookupTLSID([]byte(testTLSID)); ok {
		t.Fatal("removed file entry still matches")
	}
	_ = r.ReplaceFile([]Conference{{ID: "c1", Endpoints: []Endpoint{{TLSID: testTLSID, Fingerprint: testFP(1)}}}})
	if _, ok := r.current().lookupTLSID([]byte(testTLSID)); ok {
		t.Fatal("revoked file entry came back on reload")
	}
	if _, err := r.AddEndpoint("c1", Endpoint{TLSID: testTLSID, Fingerprint: testFP(1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.current().lookupTLSID([]byte(testTLSID)); !ok {
		t.Fatal("re-added entry does not match")
	}
	if _, err := r.RemoveEndpoint("c1", "", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove nothing: %v", err)
	}
	if _, err := r.RemoveEndpoint("nope", testTLSID, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
	// Legacy.
	if err := r.SetConference("leg", true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddEndpoint("leg", Endpoint{Fingerprint: testFP(9)}); err != nil {
		t.Fatal(err)
	}
	s := r.current()
	if !s.anyLegacy {
		t.Fatal("anyLegacy false")
	}
	lm, ok := s.lookupLegacy(testFP(9))
	if !ok || !lm.Legacy || lm.Conference != "leg" {
		t.Fatalf("legacy lookup %+v %v", lm, ok)
	}
	if !s.stillValid(&lm) {
		t.Fatal("legacy match not valid")
	}
	_ = r.SetConference("leg", false)
	if r.current().stillValid(&lm) {
		t.Fatal("legacy match still valid after allow_legacy=false")
	}
	if err := r.RemoveConference("c2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.current().lookupTLSID([]byte(testTLSID2)); ok {
		t.Fatal("endpoint of removed conference still matches")
	}
	if changes < 8 {
		t.Fatalf("subscribers notified %d times", changes)
	}
	if got := len(r.Conferences()); got != 2 {
		t.Fatalf("conferences = %d", got)
	}
}

func TestFileWatcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "registry.yaml")
	fp := "sha-256 " + testFP(1).String()
	write := func(s string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // atomic replace, as editors do
			t.Fatal(err)
		}
	}
	r := NewRegistry()
	var results []error
	w := &FileWatcher{Registry: r, Path: path, OnReload: func(err error) { results = append(results, err) }, Logger: discardLogger()}
	if w.Poll() {
		t.Fatal("missing file reloaded")
	}
	write(fileYAML(confYAML("c1", false, [2]string{testTLSID, fp})))
	if !w.Poll() || r.NumEndpoints() != 1 {
		t.Fatalf("first load: %d endpoints", r.NumEndpoints())
	}
	if w.Poll() {
		t.Fatal("unchanged file reloaded")
	}
	write("conferences: [[[")
	if !w.Poll() || r.NumEndpoints() != 1 || results[len(results)-1] == nil {
		t.Fatal("bad file replaced the registry")
	}
	time.Sleep(10 * time.Millisecond)
	write(fileYAML(confYAML("c1", false)))
	if !w.Poll() || r.NumEndpoints() != 0 {
		t.Fatalf("second load: %d endpoints", r.NumEndpoints())
	}
}
