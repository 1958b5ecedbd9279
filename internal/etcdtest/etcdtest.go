// Package etcdtest runs a real etcd cluster (Debian's etcd-server, which
// scripts/deps.sh installs) for tests: one or three members on loopback or
// inside a test's network namespace, with stop and restart of a member for
// fault tests. It is a test helper: production code must not import it.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/mdfast/mdfast/internal/syssim"
)

// Options configures a Cluster.
type Options struct {
	// Members is the number of members (1 or 3; 0 means 1).
	Members int
	// Netns, if set, runs the members inside that network namespace
	// (`ip netns exec`); IP must then be one of its addresses.
	Netns string
	// IP is the address the members listen on (default 127.0.0.1); member
	// i uses ports BasePort+2i (clients) and BasePort+2i+1 (peers).
	IP netip.Addr
	// BasePort (default: a free port pair found on loopback, or 23790 in a
	// namespace).
	BasePort int
	// MaxTxnOps, if set, is the members' --max-txn-ops (etcd's default
	// is 128): tests of writes that must fit a server's limit.
	MaxTxnOps int
}

// Cluster is a running etcd cluster, stopped in t.Cleanup.
type Cluster struct {
	dir     string
	opts    Options
	members []*member
}

type member struct {
	name, client, peer, data, log string
	args                          []string
	proc                          *syssim.Proc
}

// Binary returns the path of the etcd binary, or skips t (saying how to get
// it) when it is missing outside CI; in CI (CI or MDFAST_CI set) a missing
// etcd fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("MDFAST_CI") != "" {
			t.Fatalf("etcdtest: etcd not found (scripts/deps.sh installs Debian's etcd-server): %v", err)
		}
		t.Skip("needs etcd: apt-get install etcd-server (scripts/deps.sh does)")
	}
	return p
}

// Start starts a cluster and waits until it answers.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	if o.Members == 0 {
		o.Members = 1
	}
	if o.Members != 1 && o.Members != 3 {
		t.Fatalf("etcdtest: %d members: want 1 or 3", o.Members)
	}
	if !o.IP.IsValid() {
		o.IP = netip.MustParseAddr("127.0.0.1")
	}
	if o.BasePort == 0 {
		if o.Netns != "" {
			o.BasePort = 23790
		} else {
			o.BasePort = freePorts(t, 2*o.Members)
		}
	}
	c := &Cluster{dir: t.TempDir(), opts: o}
	var initial []string
	for i := 0; i < o.Members; i++ {
		m := &member{
			name:   fmt.Sprintf("m%d", i),
			client: "http://" + netip.AddrPortFrom(o.IP, uint16(o.BasePort+2*i)).String(),
			peer:   "http://" + netip.AddrPortFrom(o.IP, uint16(o.BasePort+2*i+1)).String(),
		}
		m.data = filepath.Join(c.dir, m.name)
		m.log = filepath.Join(c.dir, m.name+".log")
		initial = append(initial, m.name+"="+m.peer)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = []string{bin,
			"--name", m.name, "--data-dir", m.data,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", filepath.Base(c.dir),
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "warn",
		}
		if o.MaxTxnOps > 0 {
			m.args = append(m.args, "--max-txn-ops", strconv.Itoa(o.MaxTxnOps))
		}
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.proc != nil {
				m.proc.Kill()
				<-m.proc.Done()
			}
		}
	})
	for i := range c.members {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Cluster) start(i int) error {
	m := c.members[i]
	args := m.args
	if c.opts.Netns != "" {
		args = append([]string{"ip", "netns", "exec", c.opts.Netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	p, err := syssim.Start("etcd "+m.name, m.log, cmd)
	if err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	m.proc = p
	return nil
}

// Endpoints returns the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var e []string
	for _, m := range c.members {
		e = append(e, m.client)
	}
	return e
}

// Stop kills member i (SIGKILL) and waits for it to exit.
func (c *Cluster) Stop(i int) {
	m := c.members[i]
	if m.proc == nil {
		return
	}
	m.proc.Stop(syscall.SIGKILL)
	<-m.proc.Done()
	m.proc = nil
}

// Restart starts member i again on its data directory (after Stop).
func (c *Cluster) Restart(i int) error {
	if c.members[i].proc != nil {
		return fmt.Errorf("etcdtest: member %d is running", i)
	}
	c.members[i].args = replaceArg(c.members[i].args, "--initial-cluster-state", "existing")
	return c.start(i)
}

func replaceArg(args []string, name, val string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == name {
			out[i+1] = val
		}
	}
	return out
}

// Log returns the last lines of member i's log (for failure messages).
func (c *Cluster) Log(i int) string {
	b, _ := os.ReadFile(c.members[i].log)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// WaitHealthy waits until every running member answers a linearizable read.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = c.probe()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcdtest: cluster not healthy after %v: %w\n%s", timeout, last, c.Log(0))
}

func (c *Cluster) probe() error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cl.Get(ctx, "etcdtest-probe")
	return err
}

func (c *Cluster) client() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second}
	if c.opts.Netns != "" {
		// Connections are made from inside the members' namespace.
		dial := syssim.DialIn(c.opts.Netns)
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		})}
	}
	return clientv3.New(cfg)
}

// Client returns a client of the cluster (for a cluster in a namespace,
// its connections are made from inside it), closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cl, err := c.client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// freePorts finds n consecutive free TCP ports on loopback.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n; p++ {
			ll, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ll.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("etcdtest: no free ports")
	return 0
}
