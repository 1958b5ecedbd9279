package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// ipCmd runs ip(8) with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// topology is the demo's namespaces: a switch with a bridge, the KD, the MD
// and the endpoints, each plugged into the bridge by a veth pair, on
// 198.18.0.0/24.
type topology struct {
	prefix    string
	names     []string // created namespaces, for cleanup
	hostLinks []string // interfaces created in this host's namespace (DEMO_WEB)
}

const (
	mdHost   = 1
	kdHost   = 2
	etcdHost = 7
	epHost   = 11
	// maxMDs and maxKDs bound DEMO_MDS and DEMO_KDS.
	maxMDs = 4
	maxKDs = 2
)

// mdHostN is MD i's host number: md (1), md1 (3), md2 (4), md3 (5).
func mdHostN(i int) int {
	if i == 0 {
		return mdHost
	}
	return 2 + i
}

// kdHostN is KD replica i's host number: kd (2), kd1 (6).
func kdHostN(i int) int {
	if i == 0 {
		return kdHost
	}
	return 6
}

// mdRole and kdRole name the namespaces: "md", "md1", ...; "kd", "kd1".
func mdRole(i int) string { return indexed("md", i) }
func kdRole(i int) string { return indexed("kd", i) }

func indexed(s string, i int) string {
	if i == 0 {
		return s
	}
	return fmt.Sprintf("%s%d", s, i)
}

func hostAddr(h int) string { return fmt.Sprintf("198.18.0.%d", h) }
func hostMAC(h int) string  { return fmt.Sprintf("02:00:c6:12:00:%02x", h) }

func (t *topology) ns(role string) string { return t.prefix + role }

func (t *topology) add(role string) error {
	name := t.ns(role)
	if err := ipCmd("netns", "add", name); err != nil {
		return err
	}
	t.names = append(t.names, name)
	return ipCmd("-n", name, "link", "set", "lo", "up")
}

// node creates namespace role with interface eth0 (198.18.0.host) plugged
// into the bridge.
func (t *topology) node(role string, host int) error {
	if err := t.add(role); err != nil {
		return err
	}
	sw, name := t.ns("sw"), t.ns(role)
	swIf := "v-" + role
	for _, args := range [][]string{
		{"-n", sw, "link", "add", swIf, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"-n", sw, "link", "set", swIf, "master", "br0", "up"},
		{"-n", name, "link", "set", "eth0", "address", hostMAC(host)},
		{"-n", name, "addr", "add", hostAddr(host) + "/24", "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	return nil
}

func (t *topology) neigh(role string, host int) error {
	return ipCmd("-n", t.ns(role), "neigh", "replace", hostAddr(host), "lladdr", hostMAC(host), "dev", "eth0", "nud", "permanent")
}

// build creates the topology for n endpoints (n+1 with a late joiner),
// endpoint i at MD i mod mds, kds KD replicas, and, when etcd, the etcd
// host of the multi-MD demo.
func (t *topology) build(n, mds, kds int, etcd bool) error {
	if err := t.add("sw"); err != nil {
		return err
	}
	sw := t.ns("sw")
	if err := ipCmd("-n", sw, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := ipCmd("-n", sw, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for m := range mds {
		if err := t.node(mdRole(m), mdHostN(m)); err != nil {
			return err
		}
	}
	for k := range kds {
		if err := t.node(kdRole(k), kdHostN(k)); err != nil {
			return err
		}
	}
	if etcd {
		if err := t.node("etcd", etcdHost); err != nil {
			return err
		}
	}
	for i := range n {
		role := fmt.Sprintf("ep%d", i)
		if err := t.node(role, epHost+i); err != nil {
			return err
		}
		// Static neighbours both ways: the AF_XDP path needs the
		// endpoints' MACs before their first media packet.
		md := i % mds
		if err := t.neigh(mdRole(md), epHost+i); err != nil {
			return err
		}
		if err := t.neigh(role, mdHostN(md)); err != nil {
			return err
		}
	}
	for m := range mds {
		// The MDs' media to each other (the links) is on the fast path
		// too; the KDs and etcd are reached through the kernel.
		for o := range mds {
			if o != m {
				if err := t.neigh(mdRole(m), mdHostN(o)); err != nil {
					return err
				}
			}
		}
		for k := range kds {
			if err := t.neigh(mdRole(m), kdHostN(k)); err != nil {
				return err
			}
			if err := t.neigh(kdRole(k), mdHostN(m)); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanup deletes every namespace created, in reverse order.
func (t *topology) cleanup() {
	for _, l := range t.hostLinks {
		_ = ipCmd("link", "del", l)
	}
	t.hostLinks = nil
	for i := len(t.names) - 1; i >= 0; i-- {
		_ = ipCmd("netns", "del", t.names[i])
	}
	t.names = nil
}
