package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/options"
	"github.com/mdfast/mdfast/internal/options/optionstest"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keydist.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:9000\nhandshake-timeout: 3s\nprofiles: [\"0x0007\"]\ndial: [a:1, b:2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-listen", ":7000", "-dial", "c:3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":7000" || c.HandshakeTimeout != 3*time.Second || !slices.Equal(c.Profiles, []string{"0x0007"}) ||
		!slices.Equal(c.Dial, []string{"c:3"}) || c.AdminListen != "127.0.0.1:5741" {
		t.Fatalf("config = %+v", c)
	}
	if _, err := loadConfig([]string{"-config", path, "-nope"}, io.Discard); err == nil {
		t.Fatal("unknown flag accepted")
	}
	_ = os.WriteFile(path, []byte("lisen: x\n"), 0o600)
	if _, err := loadConfig([]string{"-config", path}, io.Discard); err == nil {
		t.Fatal("unknown config key accepted")
	}
	for _, tc := range []struct {
		in []string
		ok bool
	}{
		{[]string{"0x0007", "8", "0x0001"}, true},
		{[]string{"0x0009", "0x000A"}, true},
		{[]string{"0x0003"}, false},
		{[]string{"x"}, false},
	} {
		if _, err := parseProfiles(tc.in); (err == nil) != tc.ok {
			t.Errorf("parseProfiles(%v) = %v", tc.in, err)
		}
	}
}

// TestAdminToken: the token has the same minimum length whether it comes
// from the file or from KEYDIST_ADMIN_TOKEN.
func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	short, long := filepath.Join(dir, "short"), filepath.Join(dir, "long")
	if err := os.WriteFile(short, []byte("0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env, file string
		ok              bool
	}{
		{"file long enough", "", long, true},
		{"file too short", "", short, false},
		{"env long enough", "0123456789abcdef", "", true},
		{"env too short", "0123", long, false},
		{"env blank: file used", "   ", long, true},
		{"neither", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KEYDIST_ADMIN_TOKEN", tc.env)
			tok, err := adminToken(&config{AdminTokenFile: tc.file})
			if (err == nil) != tc.ok || (err == nil && len(tok) < minAdminToken) {
				t.Fatalf("adminToken = %q, %v; want ok=%v", tok, err, tc.ok)
			}
		})
	}
}

func freshOptions() []options.Option {
	c := defaults()
	return c.options()
}

// TestOptionsEverywhere: every keydist option has a flag that reads back
// and a YAML key that loads a non-default value; none is re-read on
// SIGHUP, so a change to any of them is reported as needing a restart.
func TestOptionsEverywhere(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	optionstest.Everywhere(t, freshOptions, func(path string) ([]options.Option, error) {
		c, err := loadConfig([]string{"-config", path}, io.Discard)
		return c.options(), err
	})
	for i, o := range freshOptions() {
		if o.Reload || o.NoFlag {
			t.Errorf("option %s: Reload %v NoFlag %v", o.Name, o.Reload, o.NoFlag)
		}
		n := freshOptions()
		n[i].SetValue(optionstest.NonDefault(n[i]))
		if reload, restart := options.Changes(freshOptions(), n); len(reload) != 0 || !slices.Equal(restart, []string{o.Name}) {
			t.Errorf("changing %s: reload %v restart %v", o.Name, reload, restart)
		}
	}
}

// TestREADMEOptions: README.md's keydist option table is the one the
// declarations produce (UPDATE_README=1 rewrites it).
func TestREADMEOptions(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	optionstest.README(t, "../../README.md", "keydist options", freshOptions())
}

// TestValidate: errors in declaration order, the same every run.
func TestValidate(t *testing.T) {
	c := defaults()
	c.Listen, c.Profiles, c.EKTCipher, c.LogFormat = "", options.StringList{"0x0003"}, "rot13", "xml"
	first := c.validate().Error()
	for range 20 {
		if got := c.validate().Error(); got != first {
			t.Fatalf("errors changed between runs:\n%s\n---\n%s", first, got)
		}
	}
	var order []string
	for line := range strings.SplitSeq(first, "\n") {
		order = append(order, strings.SplitN(strings.TrimPrefix(line, "config: "), ":", 2)[0])
	}
	if want := "listen tunnel-cert tunnel-key tunnel-ca profiles ekt-cipher log-format"; strings.Join(order, " ") != want {
		t.Fatalf("error order %v, want %s\n%s", order, want, first)
	}
}
