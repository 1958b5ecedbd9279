package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/internal/options"
	"github.com/mdfast/mdfast/internal/options/optionstest"
)

func fresh() []options.Option {
	c := Defaults()
	return c.Options()
}

// TestOptionsEverywhere: every declared option has a flag (mappings, a
// structure, is file-only) that reads back, and a YAML key that loads a
// non-default value.
func TestOptionsEverywhere(t *testing.T) {
	optionstest.Everywhere(t, fresh, func(path string) ([]options.Option, error) {
		c, _, err := Load("mdfast", []string{"-config", path}, io.Discard)
		return c.Options(), err
	})
	for _, o := range fresh() {
		if o.NoFlag && o.Name != "mappings" {
			t.Errorf("option %s has no flag", o.Name)
		}
	}
}

// TestREADMEOptions: README.md's mdfast option table is the one the
// declarations produce (UPDATE_README=1 rewrites it).
func TestREADMEOptions(t *testing.T) {
	optionstest.README(t, "../../README.md", "mdfast options", fresh())
}

// TestDefaultsNotShared: Defaults returns fresh slices each time.
func TestDefaultsNotShared(t *testing.T) {
	a := Defaults()
	a.MediaPorts[0], a.Profiles[0] = 1, "x"
	if b := Defaults(); b.MediaPorts[0] != 5004 || b.Profiles[0] != "0x0009" {
		t.Fatalf("Defaults shares slices: %v %v", b.MediaPorts, b.Profiles)
	}
}

// TestValidateOrder: the errors come in declaration order, the same text
// every time (the tunnel files and listen addresses were checked in map
// order before).
func TestValidateOrder(t *testing.T) {
	dir := t.TempDir()
	c := Defaults()
	c.KD = StringList{"nohost"}
	c.Queues, c.BatchSize = 0, 0
	c.TunnelCert, c.TunnelKey, c.TunnelCA = filepath.Join(dir, "c"), filepath.Join(dir, "k"), filepath.Join(dir, "ca")
	c.ControlListen, c.MetricsListen = "nope", "nope"
	c.LogLevel, c.LogFormat = "loud", "xml"
	first := c.Validate().Error()
	for range 20 {
		if got := c.Validate().Error(); got != first {
			t.Fatalf("errors changed between runs:\n%s\n---\n%s", first, got)
		}
	}
	var order []string
	for line := range strings.SplitSeq(first, "\n") {
		order = append(order, strings.SplitN(strings.TrimPrefix(line, "config: "), ":", 2)[0])
	}
	want := []string{"queues", "batch-size", "kd", "tunnel-cert", "tunnel-key", "tunnel-ca", "control-listen", "metrics-listen", "log-level", "log-format"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("error order %v, want %v", order, want)
	}
}

// TestLoadFileStrict: unknown keys, at the top and inside mappings, and
// repeated keys are errors that give the line.
func TestLoadFileStrict(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	for body, want := range map[string]string{
		"queues: 2\nidle-timout: 1s\n":         "line 2",
		"mappings:\n  tls-idz: {a: b}\n":       "tls-idz",
		"queues: 2\nqueues: 3\n":               "twice",
		"- a\n- b\n":                           "not a mapping",
		"idle-timeout: soon\n":                 "line 1",
		"media-ports: [5004, 70000]\n":         "media-ports",
		"# only a comment\n":                   "",
		"mappings:\n  tls-ids: {abc: room1}\n": "",
	} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(p)
		if want == "" && err != nil {
			t.Errorf("%q: %v", body, err)
		}
		if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: error %v, want one containing %q", body, err, want)
		}
	}
}
