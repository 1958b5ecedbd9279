package keydist

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/etcdclient"
)

// regReplica is a registry attached to its own store on c (no DTLS
// servers: the registry's API layer only).
func regReplica(t *testing.T, c TestEtcd, name string) *Registry {
	t.Helper()
	s := newTestStore(t, c, name)
	reg := NewRegistry()
	s.AttachRegistry(reg)
	waitFor(t, "replica "+name+" loaded", func() bool { return s.Check() == nil })
	return reg
}

// addMany registers eps in conf through reg, 8 at a time.
func addMany(t *testing.T, reg *Registry, conf string, eps []Endpoint) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(eps))
	work := make(chan Endpoint)
	for range 8 {
		wg.Go(func() {
			for e := range work {
				if _, err := reg.AddEndpoint(conf, e); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, e := range eps {
		work <- e
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("register in %q: %v", conf, err)
	}
}

// seed writes eps into conf's API layer directly in etcd, as addEndpoint
// would (conference, entries, tls-id claims), many per transaction:
// registering thousands one by one through two replicas' mirrors takes
// most of a minute under the race detector. It returns when every one of
// regs lists them.
func seed(t *testing.T, c TestEtcd, conf string, eps []Endpoint, regs ...*Registry) {
	t.Helper()
	m := regs[0].getStore().(*regMirror)
	ops := []clientv3.Op{clientv3.OpPut(m.confKey(conf), mustJSON(storedConference{Conference: conf}))}
	for i := range eps {
		e := &eps[i]
		ops = append(ops, clientv3.OpPut(m.claimKey(e.TLSID), claimValue(conf, e)),
			clientv3.OpPut(m.epKey(conf, e), mustJSON(storedEndpoint{Conference: conf, TLSID: e.TLSID, Fingerprint: e.Fingerprint, KDTLSID: e.KDTLSID})))
	}
	cl := c.Client(t)
	if _, err := etcdclient.Chunks(ops, func(o []clientv3.Op) (*clientv3.TxnResponse, error) {
		return cl.Txn(t.Context()).Then(o...).Commit()
	}); err != nil {
		t.Fatal(err)
	}
	last := &eps[len(eps)-1]
	for _, r := range regs {
		waitFor(t, "the seeded entries listed", func() bool {
			_, ok := r.current().entry(entryKey{conf: conf, tlsID: last.TLSID, fp: last.Fingerprint})
			return ok
		})
	}
}

// countKeys counts the keys under the registry prefix plus sub.
func countKeys(t *testing.T, c TestEtcd, sub string) int64 {
	t.Helper()
	g, err := c.Client(t).Get(t.Context(), (&Store{prefix: "/mdfast/v1/"}).key("kd/registry/"+sub), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return g.Count
}

// revision reads the store's current revision.
func revision(t *testing.T, c TestEtcd) int64 {
	t.Helper()
	g, err := c.Client(t).Get(t.Context(), "probe")
	if err != nil {
		t.Fatal(err)
	}
	return g.Header.Revision
}

func newEndpoints(n int, fp Fingerprint) []Endpoint {
	eps := make([]Endpoint, n)
	for i := range eps {
		eps[i] = Endpoint{TLSID: NewTLSID(), Fingerprint: fp, KDTLSID: NewTLSID()}
	}
	return eps
}

// sameRegistries waits until two replicas list the same conferences
// (endpoints in any order: seeded ones share a create revision).
func sameRegistries(t *testing.T, a, b *Registry) {
	t.Helper()
	sorted := func(r *Registry) []Conference {
		cs := r.Conferences()
		for _, c := range cs {
			slices.SortFunc(c.Endpoints, func(x, y Endpoint) int { return cmp.Compare(x.TLSID, y.TLSID) })
		}
		return cs
	}
	waitFor(t, "the replicas agree", func() bool { return reflect.DeepEqual(sorted(a), sorted(b)) })
}

// replicasWithFile starts an etcd limited to limit operations per
// transaction (0: etcd's default) and two registry replicas on it whose
// configuration file lists file in conference conf.
func replicasWithFile(t *testing.T, limit int, conf string, file []Endpoint) (TestEtcd, *Registry, *Registry) {
	t.Helper()
	c := StartTestEtcdMaxTxnOps(t, limit)
	r1, r2 := regReplica(t, c, "kd1"), regReplica(t, c, "kd2")
	for _, r := range []*Registry{r1, r2} {
		if err := r.ReplaceFile([]Conference{{ID: conf, Endpoints: file}}); err != nil {
			t.Fatal(err)
		}
	}
	return c, r1, r2
}

// wantKeys checks how many keys each kd/registry/ subtree holds.
func wantKeys(t *testing.T, c TestEtcd, want map[string]int64) {
	t.Helper()
	for sub, n := range want {
		if got := countKeys(t, c, sub); got != n {
			t.Errorf("%d keys under kd/registry/%s, want %d", got, sub, n)
		}
	}
}

// TestRemoveLargeConference: a conference of 1,000 API endpoints (each
// with a tls-id) and 200 file entries is removed through
// Registry.RemoveConference (what DELETE /v1/conferences/{conf} calls),
// on a stock etcd (--max-txn-ops 128) and on one limited to 16 operations
// per transaction. Nothing of it is left in etcd but the file entries'
// revocations, the other replica agrees, another conference is untouched,
// and the same tls-ids register again in a new conference.
func TestRemoveLargeConference(t *testing.T) {
	for _, limit := range []int{0, 16} {
		t.Run(fmt.Sprintf("max-txn-ops=%d", limit), func(t *testing.T) {
			c, r1, r2 := replicasWithFile(t, limit, "big", newEndpoints(200, Fingerprint{8}))
			fp := Fingerprint{7}
			api := newEndpoints(1000, fp)
			seed(t, c, "big", api[:990], r1, r2)
			addMany(t, r1, "big", api[990:])
			addMany(t, r2, "keep", newEndpoints(3, fp))
			sameRegistries(t, r1, r2)
			if got, _ := r2.Conference("big"); len(got.Endpoints) != 1200 {
				t.Fatalf("replica 2 lists %d endpoints in big, want 1200", len(got.Endpoints))
			}

			before := revision(t, c)
			if err := r1.RemoveConference("big"); err != nil {
				t.Fatalf("remove a conference of 1,200 endpoints: %v", err)
			}
			t.Logf("removal of 1,000 API endpoints and 200 file entries: %d transactions", revision(t, c)-before)
			if got, _ := r1.Conference("big"); len(got.Endpoints) != 0 {
				t.Fatalf("replica 1 still lists %d endpoints after the removal returned", len(got.Endpoints))
			}
			wantKeys(t, c, map[string]int64{"ep/big/": 0, "conf/big": 0, "revoked/big/": 200, "tlsid/": 3, "ep/keep/": 3})
			sameRegistries(t, r1, r2)
			if got, _ := r2.Conference("keep"); len(got.Endpoints) != 3 {
				t.Fatalf("the removal touched another conference: %d endpoints", len(got.Endpoints))
			}
			// No claim is left (counted above); every 10th tls-id, spread
			// over all the claim transactions, registers again.
			var again []Endpoint
			for i := 0; i < len(api); i += 10 {
				again = append(again, Endpoint{TLSID: api[i].TLSID, Fingerprint: fp})
			}
			addMany(t, r2, "again", again)
			if got, _ := r2.Conference("again"); len(got.Endpoints) != len(again) {
				t.Fatalf("%d re-registered endpoints listed, want %d", len(got.Endpoints), len(again))
			}
			sameRegistries(t, r1, r2)
		})
	}
}

// TestRemoveManyEndpoints: 300 API endpoints and 50 file entries of one
// fingerprint removed at once (DELETE .../endpoints?fingerprint=), on an
// etcd limited to 16 operations per transaction.
func TestRemoveManyEndpoints(t *testing.T) {
	fp, other := Fingerprint{7}, Fingerprint{9}
	c, r1, r2 := replicasWithFile(t, 16, "many", newEndpoints(50, fp))
	api := newEndpoints(300, fp)
	seed(t, c, "many", api[:290], r1, r2)
	addMany(t, r1, "many", api[290:])
	addMany(t, r1, "many", newEndpoints(2, other))
	sameRegistries(t, r1, r2)
	n, err := r2.RemoveEndpoint("many", "", &fp)
	if err != nil || n != 350 {
		t.Fatalf("removed %d (%v), want 350", n, err)
	}
	wantKeys(t, c, map[string]int64{"ep/many/": 2, "revoked/many/": 50, "tlsid/": 2, "conf/many": 1})
	sameRegistries(t, r1, r2)
	if got, _ := r1.Conference("many"); len(got.Endpoints) != 2 {
		t.Fatalf("%d endpoints left, want the 2 of another fingerprint", len(got.Endpoints))
	}
	addMany(t, r1, "other", api)
}

// TestRemovalClaimSteps: the claim step of a removal deletes a claim only
// if the entry it names is gone: not the claim of the same endpoint
// registered again meanwhile (through another replica), nor one that
// names another conference (a stale mirror listed the entry there). A
// removal stopped after its entry step (a crash) leaves stale claims that
// do not block the tls-ids.
func TestRemovalClaimSteps(t *testing.T) {
	c := StartTestEtcdMaxTxnOps(t, 16)
	r1, r2 := regReplica(t, c, "kd1"), regReplica(t, c, "kd2")
	m := r1.getStore().(*regMirror)
	fp := Fingerprint{7}
	eps := newEndpoints(40, fp)
	seed(t, c, "conf", eps, r1, r2)

	// A crash after step 2: entries gone, their claims left.
	if err := m.writeSteps(nil, []clientv3.Op{clientv3.OpDelete(m.prefix()+"ep/conf/", clientv3.WithPrefix()), clientv3.OpDelete(m.confKey("conf"))}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, c, "tlsid/"); n != 40 {
		t.Fatalf("%d claims, want the 40 left by the crash", n)
	}
	// Meanwhile eps[0] registers again in conf through replica 2 (its
	// stale claim dropped and taken again), and eps[1]'s tls-id moves to
	// another conference.
	if _, err := r2.AddEndpoint("conf", Endpoint{TLSID: eps[0].TLSID, Fingerprint: fp}); err != nil {
		t.Fatalf("a stale claim blocks its tls-id: %v", err)
	}
	if _, err := r2.AddEndpoint("elsewhere", Endpoint{TLSID: eps[1].TLSID, Fingerprint: fp}); err != nil {
		t.Fatalf("a stale claim blocks its tls-id: %v", err)
	}
	// The retried removal's claim step, from the list read before.
	if err := m.writeSteps(nil, nil, m.dropClaimOps("conf", eps)); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, c, "tlsid/"); n != 2 {
		t.Fatalf("%d claims left, want the 2 of the registrations made meanwhile", n)
	}
	for i, conf := range []string{"conf", "elsewhere"} {
		g, err := c.Client(t).Get(t.Context(), m.claimKey(eps[i].TLSID))
		if err != nil {
			t.Fatal(err)
		}
		if e := (Endpoint{TLSID: eps[i].TLSID, Fingerprint: fp}); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != claimValue(conf, &e) {
			t.Fatalf("claim of the endpoint registered again in %q: %v", conf, g.Kvs)
		}
	}
	// The kept claims still guard their tls-ids.
	for _, conf := range []string{"third", "conf"} {
		for _, e := range eps[:2] {
			if _, err := r1.AddEndpoint(conf, Endpoint{TLSID: e.TLSID, Fingerprint: Fingerprint{1}}); err == nil {
				t.Fatalf("tls-id %s registered in %q twice", e.TLSID, conf)
			}
		}
	}
	sameRegistries(t, r1, r2)
}

// TestRemovalResumes: a conference removal stopped within its first step
// (some file entries revoked, as after a crash) leaves those entries
// hidden and the rest as they were, on both replicas; the operator's
// retry through the other replica completes it.
func TestRemovalResumes(t *testing.T) {
	file := newEndpoints(40, Fingerprint{8})
	c, r1, r2 := replicasWithFile(t, 16, "conf", file)
	seed(t, c, "conf", newEndpoints(40, Fingerprint{7}), r1, r2)
	m := r1.getStore().(*regMirror)
	if err := m.writeSteps(m.revokeOps("conf", file[:20])); err != nil {
		t.Fatal(err)
	}
	sameRegistries(t, r1, r2)
	if got, _ := r2.Conference("conf"); len(got.Endpoints) != 60 {
		t.Fatalf("%d endpoints listed after a partial first step, want 60", len(got.Endpoints))
	}
	if err := r2.RemoveConference("conf"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, c, map[string]int64{"ep/conf/": 0, "conf/conf": 0, "revoked/conf/": 40, "tlsid/": 0})
	sameRegistries(t, r1, r2)
	if got, _ := r1.Conference("conf"); len(got.Endpoints) != 0 {
		t.Fatalf("%d endpoints listed after the retried removal", len(got.Endpoints))
	}
}
