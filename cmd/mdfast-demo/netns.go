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
	mdHost = 1
	kdHost = 2
	epHost = 11
)

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

// build creates the topology for n endpoints (n+1 with a late joiner).
func (t *topology) build(n int) error {
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
	if err := t.node("md", mdHost); err != nil {
		return err
	}
	if err := t.node("kd", kdHost); err != nil {
		return err
	}
	for i := range n {
		role := fmt.Sprintf("ep%d", i)
		if err := t.node(role, epHost+i); err != nil {
			return err
		}
		// Static neighbours both ways: the AF_XDP path needs the
		// endpoints' MACs before their first media packet.
		if err := t.neigh("md", epHost+i); err != nil {
			return err
		}
		if err := t.neigh(role, mdHost); err != nil {
			return err
		}
	}
	if err := t.neigh("md", kdHost); err != nil {
		return err
	}
	return t.neigh("kd", mdHost)
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
