package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCascadeOptions(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	alone := func() Config {
		c := Defaults()
		c.KD = StringList{"198.18.0.2:5740"}
		c.TunnelCert, c.TunnelKey, c.TunnelCA = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
		return c
	}
	several := func() Config {
		c := alone()
		c.Etcd.Endpoints = StringList{"http://198.18.0.10:2379"}
		c.MDID = "md-1"
		c.Address = "198.18.0.1"
		c.CascadeListen = "198.18.0.1:5800"
		c.CascadeCert, c.CascadeKey, c.CascadeCA = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
		return c
	}
	for name, c := range map[string]Config{"alone": alone(), "several": several()} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	c := several()
	if ma, _ := c.MediaAddr(); ma.String() != "198.18.0.1:5004" {
		t.Fatalf("default media address %v", ma)
	}
	if c.Etcd.Key("md/x") != "/mdfast/v1/md/x" || c.DirectoryLease.D() != 10*time.Second {
		t.Fatalf("etcd config %+v lease %v", c.Etcd, c.DirectoryLease)
	}
	c.MDID = ""
	if id, err := c.ID(); err != nil || id == "" {
		t.Fatalf("md-id defaults to the host name: %q %v", id, err)
	}
	for _, tc := range []struct {
		field string
		base  func() Config
		mut   func(*Config)
	}{
		{"cascade-listen", alone, func(c *Config) { c.CascadeListen = "198.18.0.1:5800" }},
		{"md-id", alone, func(c *Config) { c.MDID = "md-1" }},
		{"cascade-cert", alone, func(c *Config) { c.CascadeCert = "x" }},
		{"etcd-endpoints", several, func(c *Config) { c.Etcd.Endpoints = StringList{"198.18.0.10:2379"} }},
		{"etcd-prefix", several, func(c *Config) { c.Etcd.Prefix = "mdfast" }},
		{"md-id", several, func(c *Config) { c.MDID = "a/b" }},
		{"cascade-listen", several, func(c *Config) { c.CascadeListen = "" }},
		{"cascade-listen", several, func(c *Config) { c.CascadeListen = "0.0.0.0:5800" }},
		{"cascade-media-addr", several, func(c *Config) { c.Address = "" }},
		{"cascade-media-addr", several, func(c *Config) { c.CascadeMediaAddr = "198.18.0.1" }},
		{"cascade-cert", several, func(c *Config) { c.CascadeCert = "" }},
		{"cascade-ca", several, func(c *Config) { c.CascadeCA = filepath.Join(dir, "missing.pem") }},
		{"directory-lease", several, func(c *Config) { c.DirectoryLease = Duration(time.Second) }},
		{"directory-lease", several, func(c *Config) { c.DirectoryLease = Duration(2500 * time.Millisecond) }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := tc.base()
			tc.mut(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "config: "+tc.field+":") {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
