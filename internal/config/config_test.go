package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateNamesFields(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := func() Config {
		c := Defaults()
		c.KD = StringList{"198.18.0.2:5740"}
		c.TunnelCert, c.TunnelKey, c.TunnelCA = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
		return c
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("good config: %v", c.Validate())
	}
	for _, tc := range []struct {
		field string
		mut   func(*Config)
	}{
		{"mode", func(c *Config) { c.Mode = "turbo" }},
		{"interface", func(c *Config) { c.Mode = "xdp-native" }},
		{"media-ports", func(c *Config) { c.MediaPorts = []uint16{5004, 5004} }},
		{"queues", func(c *Config) { c.Queues = 0 }},
		{"profiles", func(c *Config) { c.Profiles = StringList{"0x0001"} }},
		{"kd", func(c *Config) { c.KD = StringList{"nohost"} }},
		{"tunnel-ca", func(c *Config) { c.TunnelCA = filepath.Join(dir, "missing.pem") }},
		{"idle-timeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"mappings", func(c *Config) { c.Mappings.Addrs = map[string]string{"bad": "room"} }},
		{"log-level", func(c *Config) { c.LogLevel = "loud" }},
		{"xsk-bind", func(c *Config) { c.XSKBind = "fast" }},
		{"ring-size", func(c *Config) { c.RingSize = 1000 }},
		{"ring-size", func(c *Config) { c.RingSize = 32 }},
		{"frame-size", func(c *Config) { c.FrameSize = 1500 }},
		{"umem-frames", func(c *Config) { c.RingSize, c.UMEMFrames = 2048, 2048 }},
		{"busy-poll-usec", func(c *Config) { c.BusyPollUsec = -1 }},
		{"default-conference", func(c *Config) { c.RemovedDefaultConference = "default" }},
		{"single-conference", func(c *Config) { c.SingleConference = strings.Repeat("x", 256) }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := good()
			tc.mut(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "config: "+tc.field+":") {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestAFXDPFlags(t *testing.T) {
	c, _, err := Load("mdfast", []string{"-xsk-bind", "copy", "-ring-size", "4096", "-umem-frames", "0x4000",
		"-frame-size", "4096", "-busy-poll", "-busy-poll-usec", "20", "-busy-poll-budget", "16", "-udp-checksum-ipv4=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := c.ParseXSKBind(); err != nil || m.String() != "copy" {
		t.Fatalf("xsk-bind = %v, %v", m, err)
	}
	if c.RingSize != 4096 || c.UMEMFrames != 0x4000 || c.FrameSize != 4096 || !c.BusyPoll ||
		c.BusyPollUsec != 20 || c.BusyPollBudget != 16 || c.UDPChecksumIPv4 {
		t.Fatalf("parsed %+v", c)
	}
	if _, _, err := Load("mdfast", []string{"-ring-size", "-5"}, io.Discard); err == nil {
		t.Fatal("negative ring-size accepted")
	}
	if d := Defaults(); !d.UDPChecksumIPv4 || d.XSKBind != "auto" {
		t.Fatalf("defaults %+v", d)
	}
}

func TestLoadFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mdfast.yaml")
	yaml := "kd: [198.18.0.2:5740]\nidle-timeout: 45s\nmedia-ports: [5004, 5006]\nmappings:\n  tls-ids:\n    abc: room1\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, path, err := Load("mdfast", []string{"-config", p, "-idle-timeout", "50s"}, io.Discard)
	if err != nil || path != p {
		t.Fatal(err)
	}
	if c.IdleTimeout.D().String() != "50s" || len(c.MediaPorts) != 2 || c.Mappings.TLSIDs["abc"] != "room1" || c.KD[0] != "198.18.0.2:5740" {
		t.Fatalf("loaded %+v", c)
	}
	if err := os.WriteFile(p, []byte("idle-timout: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load("mdfast", []string{"-config", p}, io.Discard); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestDataplaneConfig(t *testing.T) {
	c := Defaults()
	c.Mode, c.Interface, c.Address, c.Queues = "xdp-generic", "eth0", "198.18.0.1", 2
	c.XSKBind, c.RingSize, c.UMEMFrames = "copy", 1024, 8192
	c.BusyPollUsec, c.BusyPollBudget = 20, 16
	d, err := c.Dataplane(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Mode.String() != "xdp-generic" || d.Interface != "eth0" || d.Address.String() != "198.18.0.1" || d.Queues != 2 ||
		d.XSKMode.String() != "copy" || d.RingSize != 1024 || d.NumFrames != 8192 || !d.UDPChecksumIPv4 {
		t.Fatalf("dataplane config %+v", d)
	}
	// Busy-poll settings reach the sockets only when busy-poll is on.
	if d.BusyPoll || d.BusyPollUsec != 0 || d.BusyPollBudget != 0 {
		t.Fatalf("busy-poll off, but usec=%d budget=%d", d.BusyPollUsec, d.BusyPollBudget)
	}
	c.BusyPoll = true
	if d, _ = c.Dataplane(nil, nil); !d.BusyPoll || d.BusyPollUsec != 20 || d.BusyPollBudget != 16 {
		t.Fatalf("busy-poll on: %+v", d)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Mode = "turbo" },
		func(c *Config) { c.XSKBind = "fast" },
		func(c *Config) { c.Address = "not-an-ip" },
	} {
		b := Defaults()
		bad(&b)
		var fe *FieldError
		if _, err := b.Dataplane(nil, nil); !errors.As(err, &fe) {
			t.Fatalf("Dataplane of a bad config: %v, want a FieldError", err)
		}
	}
}

// TestDefaultConferenceRemoved: a configuration that still sets the
// removed default-conference (file or flag, even to its old default) is
// refused, naming the option and the single-conference line that keeps
// the old behaviour; nothing reads it as single-conference silently.
func TestDefaultConferenceRemoved(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mdfast.yaml")
	if err := os.WriteFile(p, []byte("kd: [198.18.0.2:5740]\ndefault-conference: default\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"file": {"-config", p},
		"flag": {"-kd", "198.18.0.2:5740", "-default-conference", "room1"},
	} {
		t.Run(name, func(t *testing.T) {
			c, _, err := Load("mdfast", args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.SingleConference != "" {
				t.Fatalf("default-conference became single-conference %q", c.SingleConference)
			}
			err = c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrDefaultConferenceRemoved) ||
				!strings.Contains(err.Error(), "config: default-conference:") ||
				!strings.Contains(err.Error(), "set single-conference: "+c.RemovedDefaultConference) {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

// TestSingleConference: single-conference mode is off by default and
// turned on by naming the conference.
func TestSingleConference(t *testing.T) {
	if d := Defaults(); d.SingleConference != "" {
		t.Fatalf("single-conference on by default: %q", d.SingleConference)
	}
	c, _, err := Load("mdfast", []string{"-single-conference", "lobby"}, io.Discard)
	if err != nil || c.SingleConference != "lobby" {
		t.Fatalf("single-conference = %q, %v", c.SingleConference, err)
	}
}
