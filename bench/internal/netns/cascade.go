package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// CascadeMD is one MD's namespace of a Cascade topology.
type CascadeMD struct {
	// NS is the namespace, If its veth end (inside NS), Addr and MAC
	// that end's addresses.
	NS, If string
	Addr   netip.Addr
	MAC    string
	// Port is the veth end's peer in the generator's namespace, a port of
	// the bridge.
	Port string
}

// Cascade is the topology of a cascade of MDs (issue 14): one namespace
// per MD and the generator's, one veth pair from each MD to a bridge in
// the generator's namespace, on 198.18.0.0/24 (MD i at 198.18.0.(1+2i):
// .1, .3, .5...; the generator at .2 on the bridge). Members reach their
// MD and the MDs reach each other (the links) over the same L2 segment and
// the MDs' one data-plane interface each, as MDs on one LAN do: what one
// MD sends to another crosses the bridge in the generator's namespace.
type Cascade struct {
	// MDs are the MDs' namespaces.
	MDs []CascadeMD
	// GenNS is the generator's namespace, Bridge the bridge in it;
	// GenAddr and GenMAC the bridge's addresses.
	GenNS, Bridge string
	GenAddr       netip.Addr
	GenMAC        string
}

// SetupCascade creates the topology for n MDs (2..9), in namespaces
// "<Prefix><pid>-c<n>-md<i>" and "<Prefix><pid>-c<n>-gen", with permanent
// neighbour entries between every pair of addresses and static forwarding
// entries on the bridge (no flooding, no learning delay). On error it
// removes what it made.
func SetupCascade(ctx context.Context, n int) (_ *Cascade, err error) {
	if n < 2 || n > 9 {
		return nil, fmt.Errorf("netns: cascade of %d MDs, want 2..9", n)
	}
	base := Prefix + strconv.Itoa(os.Getpid()) + "-c" + strconv.Itoa(n)
	c := &Cascade{GenNS: base + "-gen", Bridge: "mdfb-br",
		GenAddr: netip.MustParseAddr("198.18.0.2"), GenMAC: "02:00:c6:12:01:fe"}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	for i := range n {
		c.MDs = append(c.MDs, CascadeMD{
			NS: base + "-md" + strconv.Itoa(i), If: "mdfb-md",
			Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + 2*i)}),
			MAC:  fmt.Sprintf("02:00:c6:12:01:%02x", 1+2*i),
			Port: "mdfb-gen" + strconv.Itoa(i),
		})
	}
	steps := [][]string{
		{"netns", "add", c.GenNS},
		{"-n", c.GenNS, "link", "set", "lo", "up"},
		{"-n", c.GenNS, "link", "add", c.Bridge, "address", c.GenMAC, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"-n", c.GenNS, "addr", "add", c.GenAddr.String() + "/24", "dev", c.Bridge},
		{"-n", c.GenNS, "link", "set", c.Bridge, "up"},
	}
	for _, m := range c.MDs {
		steps = append(steps,
			[]string{"netns", "add", m.NS},
			[]string{"-n", m.NS, "link", "set", "lo", "up"},
			[]string{"-n", m.NS, "link", "add", m.If, "address", m.MAC, "type", "veth", "peer", "name", m.Port, "netns", c.GenNS},
			[]string{"-n", m.NS, "addr", "add", m.Addr.String() + "/24", "dev", m.If},
			[]string{"-n", c.GenNS, "link", "set", m.Port, "master", c.Bridge},
			[]string{"-n", m.NS, "link", "set", m.If, "up"},
			[]string{"-n", c.GenNS, "link", "set", m.Port, "up"},
			[]string{"-n", c.GenNS, "neigh", "replace", m.Addr.String(), "lladdr", m.MAC, "dev", c.Bridge, "nud", "permanent"},
			[]string{"-n", m.NS, "neigh", "replace", c.GenAddr.String(), "lladdr", c.GenMAC, "dev", m.If, "nud", "permanent"},
		)
	}
	for i, m := range c.MDs {
		for j, o := range c.MDs {
			if i != j {
				steps = append(steps, []string{"-n", m.NS, "neigh", "replace", o.Addr.String(), "lladdr", o.MAC, "dev", m.If, "nud", "permanent"})
			}
		}
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return nil, err
		}
	}
	// Static FDB entries: each MD's MAC behind its port, so that no frame
	// is flooded to the other MDs before the bridge has learnt it.
	for _, m := range c.MDs {
		if err := bridgeFDB(ctx, c.GenNS, m.MAC, m.Port); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close deletes the namespaces (and with them the veth pairs and the
// bridge).
func (c *Cascade) Close() error {
	var errs []error
	nss := []string{c.GenNS}
	for _, m := range c.MDs {
		nss = append(nss, m.NS)
	}
	for _, ns := range nss {
		if ns == "" || !exists(ns) {
			continue
		}
		if err := ip(context.Background(), "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func bridgeFDB(ctx context.Context, ns, mac, port string) error {
	out, err := Command(ctx, ns, -1, 0, "bridge", "fdb", "replace", mac, "dev", port, "master", "static").CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: bridge fdb replace %s dev %s: %w: %s", mac, port, err, out)
	}
	return nil
}
