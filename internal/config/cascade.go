package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/options"
)

// cascadeOptions declares the shared store (etcd-*) and the links between
// MDs (md-id, cascade-*, directory-lease). With no etcd-endpoints none of
// them is used and the MD works alone, as it always has.
func (c *Config) cascadeOptions() []options.Option {
	needs := func(name string, set bool) error {
		if set && !c.Etcd.Enabled() {
			return fmt.Errorf("needs etcd-endpoints (%s is for an MD of several)", name)
		}
		return nil
	}
	file := func(name string, p *string) func() error {
		return func() error {
			if !c.Etcd.Enabled() {
				return needs(name, *p != "")
			}
			if *p == "" {
				return errors.New("required with etcd-endpoints (the links between MDs are mutually authenticated)")
			}
			_, err := os.Stat(*p)
			return err
		}
	}
	etcdCheck := func() error { return c.Etcd.Validate() }
	return append(options.Etcd(&c.Etcd, etcdclient.DefaultPrefix, "the shared directory of MDs; empty: this MD works alone", "md/", etcdCheck),
		options.String(&c.MDID, "md-id", "", "this MD's name in the directory, unique among the MDs (empty: the host name)").Check(func() error {
			if err := needs("md-id", c.MDID != ""); err != nil {
				return err
			}
			if !c.Etcd.Enabled() {
				return nil
			}
			id, err := c.ID()
			if err != nil {
				return err
			}
			return directory.CheckID(id)
		}),
		options.String(&c.CascadeListen, "cascade-listen", "", "UDP ip:port of the DTLS associations with peer MDs (a specific address: it is published)").Check(func() error {
			if !c.Etcd.Enabled() {
				return needs("cascade-listen", c.CascadeListen != "")
			}
			_, err := c.CascadeAddr()
			return err
		}),
		options.String(&c.CascadeMediaAddr, "cascade-media-addr", "", "ip:port peers send link media to (empty: address and the first media port)").Check(func() error {
			if !c.Etcd.Enabled() {
				return needs("cascade-media-addr", c.CascadeMediaAddr != "")
			}
			_, err := c.MediaAddr()
			return err
		}),
		options.String(&c.CascadeCert, "cascade-cert", "", "certificate (PEM) of this MD towards peer MDs: it must name md-id as a DNS name; its SHA-256 is published").Check(file("cascade-cert", &c.CascadeCert)),
		options.String(&c.CascadeKey, "cascade-key", "", "key (PEM) of cascade-cert").Check(file("cascade-key", &c.CascadeKey)),
		options.String(&c.CascadeCA, "cascade-ca", "", "CA bundle (PEM) peer MDs' certificates must chain to").Check(file("cascade-ca", &c.CascadeCA)),
		options.Dur(&c.DirectoryLease, "directory-lease", Duration(directory.DefaultLease), "lease of this MD's directory entries: a dead MD's entries expire within it (whole seconds)").Check(func() error {
			d := c.DirectoryLease.D()
			if d < directory.MinLease || d%time.Second != 0 {
				return fmt.Errorf("%v: want whole seconds, at least %v", d, directory.MinLease)
			}
			return nil
		}),
	)
}

// ID returns md-id, or the host name when it is empty.
func (c *Config) ID() (string, error) {
	if c.MDID != "" {
		return c.MDID, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("md-id empty and no host name: %w", err)
	}
	return h, nil
}

// CascadeAddr parses cascade-listen: a specific address with a port.
func (c *Config) CascadeAddr() (netip.AddrPort, error) {
	return specificAddr("cascade-listen", c.CascadeListen)
}

// MediaAddr returns the address peers send link media to:
// cascade-media-addr, else address and the first media port.
func (c *Config) MediaAddr() (netip.AddrPort, error) {
	if c.CascadeMediaAddr != "" {
		return specificAddr("cascade-media-addr", c.CascadeMediaAddr)
	}
	if c.Address == "" || len(c.MediaPorts) == 0 {
		return netip.AddrPort{}, errors.New("required when address is empty (peers need a specific address)")
	}
	return specificAddr("cascade-media-addr", fmt.Sprintf("%s:%d", c.Address, c.MediaPorts[0]))
}

func specificAddr(name, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("%q is not ip:port", s)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
		return ap, fmt.Errorf("%s %v: want a specific unicast address and a port", name, ap)
	}
	return ap, nil
}
