// Package netns builds the benchmark's topology with iproute2: two network
// namespaces with unique names (the forwarder's and the generator's) joined
// by one veth pair on 198.18.0.0/24, permanent neighbour entries both ways,
// and removes it again. It runs `ip`, so it needs root; it must not touch
// anything outside the namespaces it created, except to remove namespaces
// of earlier runs whose process is gone.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Prefix starts the name of every namespace this package creates:
// "<Prefix><pid>-md" and "<Prefix><pid>-gen".
const Prefix = "mdfb-"

// Topology is the forwarder's namespace and the generator's, one veth pair
// between them.
type Topology struct {
	// Queues is the number of RX and TX queues of each veth end.
	Queues int
	// MDNS and GenNS are the namespace names.
	MDNS, GenNS string
	// MDIf and GenIf are the veth ends' names (inside their namespaces).
	MDIf, GenIf string
	// MDAddr and GenAddr are their addresses.
	MDAddr, GenAddr netip.Addr
	// MDMAC and GenMAC are their hardware addresses.
	MDMAC, GenMAC string
}

// Setup creates the topology with one queue per veth end. On error it
// removes what it made.
func Setup(ctx context.Context) (*Topology, error) { return SetupQueues(ctx, 1) }

// SetupQueues creates the topology with n RX and n TX queues on each veth
// end, in namespaces of their own ("<Prefix><pid>-q<n>-md" when n > 1).
// With no XPS configured the generator's side picks a datagram's TX queue
// by a hash of its flow, and veth delivers it on the forwarder's RX queue
// of the same number, so the endpoints' flows spread over the queues as
// RSS spreads them on a NIC. On error it removes what it made.
func SetupQueues(ctx context.Context, n int) (_ *Topology, err error) {
	if n < 1 {
		return nil, fmt.Errorf("netns: %d queues", n)
	}
	pid := strconv.Itoa(os.Getpid())
	if n > 1 {
		pid += "-q" + strconv.Itoa(n)
	}
	q := strconv.Itoa(n)
	t := &Topology{
		Queues: n,
		MDNS:   Prefix + pid + "-md", GenNS: Prefix + pid + "-gen",
		MDIf: "mdfb-md", GenIf: "mdfb-gen",
		MDAddr: netip.MustParseAddr("198.18.0.1"), GenAddr: netip.MustParseAddr("198.18.0.2"),
		MDMAC: "02:00:c6:12:00:01", GenMAC: "02:00:c6:12:00:02",
	}
	defer func() {
		if err != nil {
			_ = t.Close()
		}
	}()
	steps := [][]string{
		{"netns", "add", t.MDNS},
		{"netns", "add", t.GenNS},
		{"-n", t.MDNS, "link", "add", t.MDIf, "address", t.MDMAC, "numtxqueues", q, "numrxqueues", q,
			"type", "veth", "peer", "name", t.GenIf, "address", t.GenMAC, "netns", t.GenNS, "numtxqueues", q, "numrxqueues", q},
		{"-n", t.MDNS, "addr", "add", t.MDAddr.String() + "/24", "dev", t.MDIf},
		{"-n", t.GenNS, "addr", "add", t.GenAddr.String() + "/24", "dev", t.GenIf},
		{"-n", t.MDNS, "link", "set", "lo", "up"},
		{"-n", t.GenNS, "link", "set", "lo", "up"},
		{"-n", t.MDNS, "link", "set", t.MDIf, "up"},
		{"-n", t.GenNS, "link", "set", t.GenIf, "up"},
		{"-n", t.MDNS, "neigh", "replace", t.GenAddr.String(), "lladdr", t.GenMAC, "dev", t.MDIf, "nud", "permanent"},
		{"-n", t.GenNS, "neigh", "replace", t.MDAddr.String(), "lladdr", t.MDMAC, "dev", t.GenIf, "nud", "permanent"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Close deletes both namespaces (and with them the veth pair).
func (t *Topology) Close() error {
	var errs []error
	for _, ns := range []string{t.MDNS, t.GenNS} {
		if !exists(ns) {
			continue
		}
		if err := ip(context.Background(), "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Command returns a command that runs name with args inside namespace ns,
// pinned to CPU cpu (taskset) when cpu >= 0, at niceness nice (nice -n)
// when not 0.
func Command(ctx context.Context, ns string, cpu, nice int, name string, args ...string) *exec.Cmd {
	argv := []string{"netns", "exec", ns}
	if nice != 0 {
		argv = append(argv, "nice", "-n", strconv.Itoa(nice))
	}
	if cpu >= 0 {
		argv = append(argv, "taskset", "-c", strconv.Itoa(cpu))
	}
	argv = append(argv, name)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	// SIGTERM first on cancellation, so the child cleans up (XDP detach).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	return cmd
}

// RemoveStale deletes namespaces named by this package whose creating
// process no longer exists (left by a run that was killed with SIGKILL).
// It returns the names it removed.
func RemoveStale(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("netns: list: %w", err)
	}
	var removed []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		rest := strings.TrimPrefix(f[0], Prefix)
		i := strings.IndexByte(rest, '-')
		if i < 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[:i])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := ip(ctx, "netns", "delete", f[0]); err != nil {
			return removed, err
		}
		removed = append(removed, f[0])
	}
	return removed, nil
}

func alive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

func exists(ns string) bool {
	_, err := os.Stat("/var/run/netns/" + ns)
	return err == nil
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
