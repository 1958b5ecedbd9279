package directory

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/etcdtest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// node is one Directory running against the test cluster with its own
// client (so that "killing" it can close the client first).
type node struct {
	d      *Directory
	cl     *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// startNode runs md-id id's directory, hosting conferences (KindSingle)
// from its registration on.
func startNode(t *testing.T, c *etcdtest.Cluster, id string, n int, lease time.Duration, conferences ...string) *node {
	t.Helper()
	ec := etcdclient.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second}
	cl, err := etcdclient.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	self := Alive{
		Media:       netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(5000+n)),
		Cascade:     netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(6000+n)),
		Fingerprint: [32]byte{byte(n)},
		Started:     time.Now(),
	}
	d, err := New(Config{Client: cl, Key: ec.Key, ID: id, Self: self, Lease: lease,
		BackoffMax: 500 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	for _, conf := range conferences {
		if err := d.Host(conf, KindSingle); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{d: d, cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(nd.done); _ = d.Run(ctx) }()
	t.Cleanup(nd.stop)
	return nd
}

var stopMu sync.Mutex

func (n *node) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	n.cancel()
	<-n.done
	n.cl.Close()
}

// kill ends the node as a SIGKILL would: the client goes away first, so
// the lease is never revoked and must expire.
func (n *node) kill() {
	n.cl.Close()
	n.cancel()
	<-n.done
}

// waitView waits until ok(view) holds for n's directory.
func waitView(t *testing.T, n *node, within time.Duration, what string, ok func(View) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		if ok(n.d.View()) {
			return time.Since(start)
		}
		select {
		case <-n.d.Updates():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: not within %v; view %+v, state %+v", what, within, n.d.View(), n.d.State())
		}
	}
}

func hosts(v View, id, conf string, kind Kind) bool {
	p, ok := v.Peers[id]
	return ok && p.Conferences[conf] == kind
}

func TestPresenceAndWatch(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	a := startNode(t, c, "md-a", 1, 2*time.Second)
	b := startNode(t, c, "md-b", 2, 2*time.Second)

	waitView(t, a, 5*time.Second, "a sees b alive", func(v View) bool { _, ok := v.Peers["md-b"]; return ok })
	if p := a.d.View().Peers["md-b"]; !p.Alive.Equal(b.d.cfg.Self) {
		t.Fatalf("a's view of b: %+v, want %+v", p.Alive, b.d.cfg.Self)
	}
	if err := b.d.Host("room/1", KindDouble); err != nil {
		t.Fatal(err)
	}
	waitView(t, a, 5*time.Second, "a sees b host room/1", func(v View) bool { return hosts(v, "md-b", "room/1", KindDouble) })
	waitView(t, b, 5*time.Second, "b sees itself host room/1", func(v View) bool { return hosts(v, "md-b", "room/1", KindDouble) })

	// A burst of changes is one transaction, not one write per change.
	before := b.d.State().Publishes
	for i := range 100 {
		_ = b.d.Host(fmt.Sprintf("burst-%d", i%5), KindSingle)
		b.d.Unhost(fmt.Sprintf("burst-%d", i%5))
	}
	_ = b.d.Host("burst-final", KindSingle)
	waitView(t, a, 5*time.Second, "a sees the burst's result", func(v View) bool { return hosts(v, "md-b", "burst-final", KindSingle) })
	if n := b.d.State().Publishes - before; n > 2 {
		t.Fatalf("a burst of 201 presence changes made %d etcd transactions, want at most 2 (debounced)", n)
	}
	b.d.Unhost("room/1")
	waitView(t, a, 5*time.Second, "a sees b withdraw room/1", func(v View) bool {
		_, ok := v.Peers["md-b"].Conferences["room/1"]
		return !ok && hosts(v, "md-b", "burst-final", KindSingle)
	})
	if s := a.d.State(); !s.Registered || s.BadEntries != 0 || s.Peers != 2 {
		t.Fatalf("state of a: %+v", s)
	}

	// A clean stop revokes the lease: b's entries go at once.
	b.stop()
	waitView(t, a, time.Second, "a sees b gone after its clean stop", func(v View) bool { _, ok := v.Peers["md-b"]; return !ok })
}

// TestManyConferences: an MD hosting more conferences than etcd takes
// operations in one transaction (here --max-txn-ops 16) registers with all
// of them, and a presence change of 600 entries (300 hosted, 300
// withdrawn) is published.
func TestManyConferences(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 16})
	confs := func(prefix string) []string {
		out := make([]string, 300)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return out
	}
	hostsAll := func(v View, confs []string) bool {
		p, ok := v.Peers["md-b"]
		if !ok || len(p.Conferences) != len(confs) {
			return false
		}
		for _, conf := range confs {
			if p.Conferences[conf] != KindSingle {
				return false
			}
		}
		return true
	}
	a := startNode(t, c, "md-a", 1, 2*time.Second)
	old, next := confs("old"), confs("next")
	b := startNode(t, c, "md-b", 2, 2*time.Second, old...)
	waitView(t, a, 10*time.Second, "a sees b registered with 300 conferences", func(v View) bool { return hostsAll(v, old) })
	// The alive entry was claimed first (in a transaction comparing it),
	// and every hosting entry is on its lease.
	ec := etcdclient.Config{}
	g, err := a.cl.Get(t.Context(), ec.Key(mdDir), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var aliveRev, firstHosting, aliveLease int64
	leases := map[int64]int{}
	for _, kv := range g.Kvs {
		switch string(kv.Key) {
		case ec.Key(aliveKey("md-b")):
			aliveRev, aliveLease = kv.ModRevision, kv.Lease
		case ec.Key(aliveKey("md-a")):
		default:
			if firstHosting == 0 || kv.ModRevision < firstHosting {
				firstHosting = kv.ModRevision
			}
			leases[kv.Lease]++
		}
	}
	if aliveRev == 0 || aliveRev != firstHosting {
		t.Fatalf("b's alive entry written at revision %d, not with its first hosting entries (%d)", aliveRev, firstHosting)
	}
	if len(leases) != 1 || leases[aliveLease] != len(old) {
		t.Fatalf("hosting entries by lease %v, want all %d on the alive entry's lease %x", leases, len(old), aliveLease)
	}
	for i := range old {
		if err := b.d.Host(next[i], KindSingle); err != nil {
			t.Fatal(err)
		}
		b.d.Unhost(old[i])
	}
	waitView(t, a, 10*time.Second, "a sees b's 600 changes", func(v View) bool { return hostsAll(v, next) })
	if s := b.d.State(); !s.Registered || s.LastError != "" || s.Registrations != 1 {
		t.Fatalf("state of b: %+v", s)
	}
}

func TestKilledMDExpiresWithinLease(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	a := startNode(t, c, "md-a", 1, lease)
	b := startNode(t, c, "md-b", 2, lease)
	_ = b.d.Host("room", KindSingle)
	waitView(t, a, 5*time.Second, "a sees b host room", func(v View) bool { return hosts(v, "md-b", "room", KindSingle) })
	b.kill()
	// etcd checks expiry every 500 ms; the lease may have just been renewed.
	took := waitView(t, a, lease+time.Second, "b's entries expire", func(v View) bool { _, ok := v.Peers["md-b"]; return !ok })
	t.Logf("killed MD's entries gone %v after the kill (lease %v)", took.Round(10*time.Millisecond), lease)
	cl := c.Client(t)
	r, err := cl.Get(context.Background(), etcdclient.DefaultPrefix+"md/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.Kvs {
		if string(kv.Key) != etcdclient.DefaultPrefix+aliveKey("md-a") {
			t.Fatalf("left in etcd after b's lease expired: %s", kv.Key)
		}
	}
}

func TestEtcdStopRestart(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	a := startNode(t, c, "md-a", 1, lease)
	b := startNode(t, c, "md-b", 2, lease)
	_ = a.d.Host("room", KindDouble)
	_ = b.d.Host("room", KindDouble)
	full := func(v View) bool { return hosts(v, "md-a", "room", KindDouble) && hosts(v, "md-b", "room", KindDouble) }
	waitView(t, a, 5*time.Second, "full view", full)
	regs := a.d.State().Registrations

	c.Stop(0)
	// Down for longer than the lease: the keepalive gives up.
	time.Sleep(2 * lease)
	if !full(a.d.View()) {
		t.Fatalf("view lost while etcd is down: %+v", a.d.View())
	}
	if s := a.d.State(); s.Registered || s.LastError == "" {
		t.Fatalf("state while etcd is down: %+v (want unregistered with an error)", s)
	}
	// A change while etcd is down is published once it is back.
	_ = b.d.Host("later", KindSingle)

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitView(t, a, 15*time.Second, "registered again and republished", func(v View) bool {
		return full(v) && hosts(v, "md-b", "later", KindSingle)
	})
	deadline := time.Now().Add(10 * time.Second)
	for !a.d.State().Registered || a.d.State().LastError != "" {
		if time.Now().After(deadline) {
			t.Fatalf("a not registered again: %+v", a.d.State())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.d.State().Registrations <= regs {
		t.Fatalf("no new registration after the lease was lost: %+v", a.d.State())
	}
	// The old leases' expiry must not take the new entries with them.
	time.Sleep(lease + time.Second)
	if !full(a.d.View()) || !hosts(a.d.View(), "md-b", "later", KindSingle) {
		t.Fatalf("entries lost after re-registration: %+v", a.d.View())
	}
}

func TestBadEntriesIgnored(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	a := startNode(t, c, "md-a", 1, 2*time.Second)
	cl := c.Client(t)
	ctx := context.Background()
	p := etcdclient.DefaultPrefix
	for k, v := range map[string]string{
		p + "md/alive/bad id": `{}`,
		p + "md/alive/md-x":   `not json`,
		p + "md/conf/r/md-a":  `{"profile":"triple"}`,
		p + "md/weird":        `x`,
	} {
		if _, err := cl.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	waitView(t, a, 5*time.Second, "bad entries counted", func(View) bool { return a.d.State().BadEntries >= 4 })
	v := a.d.View()
	if _, ok := v.Peers["md-x"]; ok || len(v.Peers) != 1 || len(v.Peers["md-a"].Conferences) != 0 {
		t.Fatalf("view with bad entries: %+v", v)
	}
}

func TestNewRejects(t *testing.T) {
	good := Config{Client: &clientv3.Client{}, Key: func(s string) string { return s }, ID: "md", Self: testAlive()}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no client":  func(c *Config) { c.Client = nil },
		"bad id":     func(c *Config) { c.ID = "a/b" },
		"no addr":    func(c *Config) { c.Self.Media = netip.AddrPort{} },
		"short":      func(c *Config) { c.Lease = time.Second },
		"fractional": func(c *Config) { c.Lease = 2500 * time.Millisecond },
	} {
		c := good
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

// TestRestartWithinLease: an MD restarted before its old lease expired
// takes its entries over at once; what only the old incarnation hosted
// goes with the old lease, without waiting for it to expire.
func TestRestartWithinLease(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 10 * time.Second
	a := startNode(t, c, "md-a", 1, lease)
	b := startNode(t, c, "md-b", 2, lease)
	_ = b.d.Host("x", KindSingle)
	_ = b.d.Host("y", KindSingle)
	waitView(t, a, 5*time.Second, "a sees b host x and y", func(v View) bool {
		return hosts(v, "md-b", "x", KindSingle) && hosts(v, "md-b", "y", KindSingle)
	})
	old := a.d.View().Peers["md-b"].Alive
	b.kill()
	b2 := startNode(t, c, "md-b", 2, lease)
	_ = b2.d.Host("x", KindSingle)
	took := waitView(t, a, 5*time.Second, "the restarted b's entries replace the old ones", func(v View) bool {
		p, ok := v.Peers["md-b"]
		_, y := p.Conferences["y"]
		return ok && !p.Alive.Equal(old) && hosts(v, "md-b", "x", KindSingle) && !y
	})
	if took > lease/2 {
		t.Fatalf("took %v: the old lease was left to expire", took)
	}
}

// aliveLease returns the lease and value of md-id id's alive entry (0, zero
// Alive when there is none).
func aliveLease(t *testing.T, cl *clientv3.Client, id string) (clientv3.LeaseID, Alive) {
	t.Helper()
	r, err := cl.Get(t.Context(), etcdclient.DefaultPrefix+aliveKey(id))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return 0, Alive{}
	}
	a, err := ParseAlive(r.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return clientv3.LeaseID(r.Kvs[0].Lease), a
}

// TestSameIDOtherMDRefused: a second live MD with the same md-id but other
// addresses and certificate does not take the first one's entries over:
// the first stays registered on its one lease, the second waits and
// registers once the first has stopped.
func TestSameIDOtherMDRefused(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	cl := c.Client(t)
	a := startNode(t, c, "md-x", 1, lease, "room-a")
	obs := startNode(t, c, "md-o", 3, lease)
	waitView(t, obs, 5*time.Second, "a registered", func(v View) bool { return hosts(v, "md-x", "room-a", KindSingle) })
	first, _ := aliveLease(t, cl, "md-x")

	b := startNode(t, c, "md-x", 2, lease, "room-b")
	// For three leases: a keeps its entries on its first lease, b writes
	// nothing, the observer never sees md-x change.
	for end := time.Now().Add(3 * lease); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		id, alive := aliveLease(t, cl, "md-x")
		if id != first || !alive.Equal(a.d.cfg.Self) {
			t.Fatalf("md-x's alive entry on lease %x (%+v), want a's lease %x", id, alive, first)
		}
		if ttl, err := cl.TimeToLive(t.Context(), first); err != nil || ttl.TTL <= 0 {
			t.Fatalf("a's lease: TTL %+v, %v", ttl, err)
		}
		v := obs.d.View()
		if !hosts(v, "md-x", "room-a", KindSingle) || hosts(v, "md-x", "room-b", KindSingle) || !v.Peers["md-x"].Alive.Equal(a.d.cfg.Self) {
			t.Fatalf("observer's view of md-x: %+v", v.Peers["md-x"])
		}
		if !a.d.State().Registered || b.d.State().Registered {
			t.Fatalf("a %+v, b %+v: want only a registered", a.d.State(), b.d.State())
		}
	}
	if s := a.d.State(); s.Registrations != 1 {
		t.Fatalf("a registered %d times, want once", s.Registrations)
	}
	r, err := cl.Get(t.Context(), etcdclient.DefaultPrefix+hostingKey("room-b", "md-x"))
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("b wrote a hosting entry while refused: %v %v", r, err)
	}
	if s := b.d.State(); !s.IDInUse || !s.InUseBy.Equal(a.d.cfg.Self) || s.Refusals < 2 || s.Registrations != 0 ||
		!strings.Contains(s.LastError, "in use by another live MD") {
		t.Fatalf("state of the refused b: %+v", s)
	}
	if s := a.d.State(); s.IDInUse || s.Refusals != 0 {
		t.Fatalf("state of a: %+v", s)
	}

	// a stops cleanly (its lease revoked): b registers within a back-off
	// period.
	a.stop()
	took := waitView(t, obs, 3*time.Second, "b registered after a stopped", func(v View) bool {
		// (b's own state follows its write: wait for both.)
		return hosts(v, "md-x", "room-b", KindSingle) && v.Peers["md-x"].Alive.Equal(b.d.cfg.Self) && b.d.State().Registered
	})
	t.Logf("b registered %v after a's clean stop", took.Round(time.Millisecond))
	if s := b.d.State(); !s.Registered || s.IDInUse || s.LastError != "" {
		t.Fatalf("state of b once registered: %+v", s)
	}
	if took > time.Second {
		t.Fatalf("b registered %v after a's clean stop: the deletion did not wake it", took)
	}
}

// TestSameIDSimultaneousStart: two MDs of one md-id starting at the same
// moment, with no entry before them: exactly one registers (the alive
// entry is claimed by a transaction that compares its revision), the
// other is refused, and it stays so.
func TestSameIDSimultaneousStart(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	cl := c.Client(t)
	for round := range 4 {
		id := fmt.Sprintf("md-race-%d", round)
		var nodes [2]*node
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { nodes[i] = startNode(t, c, id, 10+i, lease, "room-"+id) })
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for !nodes[0].d.State().Registered && !nodes[1].d.State().Registered {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: neither registered: %+v %+v", round, nodes[0].d.State(), nodes[1].d.State())
			}
			time.Sleep(20 * time.Millisecond)
		}
		win := 0
		if nodes[1].d.State().Registered {
			win = 1
		}
		winLease, alive := aliveLease(t, cl, id)
		for end := time.Now().Add(lease); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			l, a := aliveLease(t, cl, id)
			if l != winLease || !a.Equal(alive) || !a.Equal(nodes[win].d.cfg.Self) {
				t.Fatalf("round %d: alive entry changed: lease %x %+v, want %x %+v", round, l, a, winLease, nodes[win].d.cfg.Self)
			}
			if s0, s1 := nodes[0].d.State(), nodes[1].d.State(); s0.Registered == s1.Registered || s0.Registrations+s1.Registrations != 1 {
				t.Fatalf("round %d: want exactly one registered, once: %+v, %+v", round, s0, s1)
			}
		}
		if s := nodes[1-win].d.State(); !s.IDInUse || !s.InUseBy.Equal(nodes[win].d.cfg.Self) {
			t.Fatalf("round %d: state of the loser: %+v", round, s)
		}
		nodes[0].stop()
		nodes[1].stop()
	}
}

// TestSameIDAfterCrash: a refused MD registers once the other MD's lease
// expires (it was killed, so nothing revoked it): a crashed MD cannot
// lock its md-id out.
func TestSameIDAfterCrash(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	a := startNode(t, c, "md-x", 1, lease, "room-a")
	waitView(t, a, 5*time.Second, "a registered", func(v View) bool { return hosts(v, "md-x", "room-a", KindSingle) })
	b := startNode(t, c, "md-x", 2, lease, "room-b")
	waitView(t, b, 5*time.Second, "b refused", func(View) bool { return b.d.State().IDInUse })
	a.kill()
	// etcd checks expiry every 500 ms; the lease may have just been renewed.
	took := waitView(t, b, lease+2*time.Second, "b registered after a's lease expired", func(v View) bool {
		return b.d.State().Registered && hosts(v, "md-x", "room-b", KindSingle) && v.Peers["md-x"].Alive.Equal(b.d.cfg.Self)
	})
	t.Logf("b registered %v after a was killed (lease %v)", took.Round(time.Millisecond), lease)
	if _, ok := b.d.View().Peers["md-x"].Conferences["room-a"]; ok {
		t.Fatalf("a's hosting entry outlived its lease: %+v", b.d.View().Peers["md-x"])
	}
}

// TestSameIDForeignEntries: an alive entry of the md-id on no lease is no
// MD's (written by hand) and is replaced; one on a lease that does not
// parse cannot be told to be this MD's and is left alone until its lease
// is gone.
func TestSameIDForeignEntries(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	cl := c.Client(t)
	other, err := Alive{Media: netip.MustParseAddrPort("198.18.0.9:5000"), Cascade: netip.MustParseAddrPort("198.18.0.9:6000"),
		Started: time.Now()}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(t.Context(), etcdclient.DefaultPrefix+aliveKey("md-h"), string(other)); err != nil {
		t.Fatal(err)
	}
	h := startNode(t, c, "md-h", 1, lease)
	waitView(t, h, 5*time.Second, "an entry on no lease replaced", func(v View) bool {
		return h.d.State().Registered && v.Peers["md-h"].Alive.Equal(h.d.cfg.Self)
	})

	g, err := cl.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(t.Context(), etcdclient.DefaultPrefix+aliveKey("md-g"), `{"media":"future format"}`, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, "md-g", 2, lease)
	waitView(t, n, 5*time.Second, "refused by an unparsable entry on a lease", func(View) bool {
		s := n.d.State()
		return s.IDInUse && s.Refusals >= 2 && strings.Contains(s.LastError, "does not parse")
	})
	if r, err := cl.Get(t.Context(), etcdclient.DefaultPrefix+aliveKey("md-g")); err != nil || len(r.Kvs) != 1 ||
		clientv3.LeaseID(r.Kvs[0].Lease) != g.ID {
		t.Fatalf("the unparsable entry was touched: %+v %v", r, err)
	}
	if _, err := cl.Revoke(t.Context(), g.ID); err != nil {
		t.Fatal(err)
	}
	waitView(t, n, 2*time.Second, "registered once that lease was revoked", func(v View) bool {
		return n.d.State().Registered && v.Peers["md-g"].Alive.Equal(n.d.cfg.Self)
	})
}

// TestSameIDClones: two live MDs that publish the same addresses and
// certificate (cloned hosts behind identical addresses) cannot be told
// apart but by their start time: the later one takes over once, the
// earlier one is then refused, and they do not flap.
func TestSameIDClones(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	const lease = 2 * time.Second
	cl := c.Client(t)
	a := startNode(t, c, "md-c", 1, lease)
	waitView(t, a, 5*time.Second, "a registered", func(v View) bool { _, ok := v.Peers["md-c"]; return ok })
	b := startNode(t, c, "md-c", 1, lease)
	waitView(t, a, 5*time.Second, "b took over, a refused", func(View) bool {
		return b.d.State().Registered && a.d.State().IDInUse
	})
	won, _ := aliveLease(t, cl, "md-c")
	for end := time.Now().Add(2 * lease); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if l, v := aliveLease(t, cl, "md-c"); l != won || !v.Equal(b.d.cfg.Self) {
			t.Fatalf("md-c's entry changed hands again: lease %x %+v", l, v)
		}
	}
	if sa, sb := a.d.State(), b.d.State(); sa.Registrations != 1 || sb.Registrations != 1 || sa.Registered || !sb.Registered {
		t.Fatalf("a %+v, b %+v: want one takeover, then b only", sa, sb)
	}
}
