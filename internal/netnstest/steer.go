package netnstest

import (
	"fmt"
	"os/exec"
	"testing"
)

// SetXPS maps e's TX queue queue to the CPUs in cpuMask (transmit packet
// steering, /sys/class/net/<if>/queues/tx-<queue>/xps_cpus): a datagram
// from an unconnected socket leaves on the TX queue mapped to the CPU its
// sender runs on. On a veth pair (NewPairQueues) the other end receives it
// on the RX queue of the same number (veth_xmit keeps skb->queue_mapping),
// so a test moves a flow to another of the MD's RX queues, as an RSS change
// would on a NIC, by sending from a thread pinned to another CPU. The
// write goes through `ip netns exec`, which mounts the namespace's own
// sysfs.
func (e *End) SetXPS(t testing.TB, queue int, cpuMask uint64) {
	t.Helper()
	path := fmt.Sprintf("/sys/class/net/%s/queues/tx-%d/xps_cpus", e.Name, queue)
	out, err := exec.Command("ip", "netns", "exec", e.NS.Name, "sh", "-c",
		fmt.Sprintf("echo %x > %s", cpuMask, path)).CombinedOutput()
	if err != nil {
		t.Fatalf("netnstest: set %s in %s to %x: %v: %s", path, e.NS.Name, cpuMask, err, out)
	}
}
