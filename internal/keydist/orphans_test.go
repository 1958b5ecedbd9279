package keydist

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/dtls"
)

// disconnects returns the association ids a fakeTunnel was sent
// EndpointDisconnect for, in order.
func (f *fakeTunnel) disconnects() []uuid.UUID {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uuid.UUID
	for _, e := range f.sent {
		if e.kind == "disconnect" {
			out = append(out, e.id)
		}
	}
	return out
}

func sortedIDs(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return out
}

// joinKeyed makes an endpoint join conference (double profile, EKT)
// through replica via and waits for its first EKTKey.
func joinKeyed(t *testing.T, via *replica, conference string) *ektEndpoint {
	t.Helper()
	ep, err := joinDoubleVia(t, via.reg, via.env, conference, ProfileDoubleAES128GCM, dtls.EKTCipherAESKW128)
	if err != nil {
		t.Fatal(err)
	}
	ep.waitKeys(t, 1, 5*time.Second)
	return ep
}

// TestReplicaOrphansEndedOnRekey: replica 1 keys members of two
// conferences and dies (its lease goes): replica 2 keeps them as orphans
// and ends none. A member of replica 2 leaves "conf": replica 2 re-keys
// it and, once a tunnel to replica 1's MD is up (retried on the janitor
// tick until then), sends EndpointDisconnect for exactly replica 1's
// associations of "conf" (not those of "other"), counts them and forgets
// them; a second re-key sends nothing more.
func TestReplicaOrphansEndedOnRekey(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	for range 2 {
		joinKeyed(t, r1, "conf")
	}
	joinKeyed(t, r1, "other")
	b1, b2 := joinKeyed(t, r2, "conf"), joinKeyed(t, r2, "conf")
	b3 := joinKeyed(t, r2, "conf")
	joinKeyed(t, r2, "other")

	// Replica 1's associations, by conference, as its MD knows them.
	var md string
	byConf := map[string][]uuid.UUID{}
	for _, a := range r1.kd.Associations() {
		md = a.MD
		byConf[a.Conference] = append(byConf[a.Conference], a.ID)
	}
	if len(byConf["conf"]) != 2 || len(byConf["other"]) != 1 {
		t.Fatalf("replica 1 holds %v", byConf)
	}
	waitFor(t, "replica 2 lists replica 1's associations", func() bool { return len(r2.store.RemoteAssociations()) == 3 })

	// Replica 1 dies: its lease goes first (records and alive key vanish
	// together), then its process.
	_ = r1.store.Close()
	_ = r1.kd.Close()
	waitFor(t, "replica 1's associations are orphans at replica 2", func() bool {
		return len(r2.store.orphansOf("conf")) == 2 && len(r2.store.orphansOf("other")) == 1
	})
	if n := counterValue(r2.kd.m.orphansDisconnected); n != 0 {
		t.Fatalf("%v orphans ended when their replica died", n)
	}

	// Shorter retries for the test; the MD of replica 1 has no tunnel to
	// replica 2 yet.
	r2.kd.mu.Lock()
	r2.kd.orphanRetryInterval = 100 * time.Millisecond
	r2.kd.mu.Unlock()
	rekeys := counterValue(r2.kd.m.ektRekeys)
	_ = b1.r.Close()
	waitCounter(t, r2.kd.m.ektRekeys, rekeys+1)
	b2.waitKeys(t, 2, 5*time.Second)
	waitCounter(t, r2.kd.m.orphanDisconnectRetries, 2)
	if n := r2.kd.numOrphansPending(); n != 2 {
		t.Fatalf("%d orphans queued, want 2", n)
	}

	// The MD's tunnel to replica 2 comes up: the next tick ends them.
	ft := &fakeTunnel{id: "md-to-kd2", peer: md}
	r2.kd.tunnelUp(ft)
	waitCounter(t, r2.kd.m.orphansDisconnected, 2)
	if got, want := sortedIDs(ft.disconnects()), sortedIDs(byConf["conf"]); !slices.Equal(got, want) {
		t.Fatalf("EndpointDisconnect for %v, want replica 1's associations of conf %v", got, want)
	}
	if n := len(r2.store.orphansOf("conf")); n != 0 {
		t.Fatalf("%d orphans of conf still kept after they were ended", n)
	}
	if o := r2.store.orphansOf("other"); len(o) != 1 || o[0].id != byConf["other"][0] {
		t.Fatalf("the orphan of another conference was touched: %v", o)
	}
	if n := counterValue(r2.kd.m.orphanDisconnectsFailed); n != 0 {
		t.Fatalf("%v orphans given up", n)
	}

	// A second re-key of conf: nothing more to end.
	_ = b2.r.Close()
	waitCounter(t, r2.kd.m.ektRekeys, rekeys+2)
	b3.waitKeys(t, 3, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // a few janitor ticks
	if d := ft.disconnects(); len(d) != 2 {
		t.Fatalf("%d EndpointDisconnects after the second re-key, want still 2: %v", len(d), d)
	}
	if n := counterValue(r2.kd.m.orphansDisconnected); n != 2 {
		t.Fatalf("orphans_disconnected_total %v, want 2", n)
	}
}

// TestOrphanLeftRekeys: an orphan's endpoint leaves while the replica
// that keyed it is gone; its MD sends the EndpointDisconnect to another
// replica, which forgets the orphan and re-keys its conference for the
// members it holds (the leaver knew the key); another conference's orphan
// and an EndpointDisconnect for an association nobody knows change
// nothing.
func TestOrphanLeftRekeys(t *testing.T) {
	c := startEtcd(t)
	r1 := newReplica(t, c, "kd1")
	r2 := newReplica(t, c, "kd2")
	joinKeyed(t, r1, "conf")
	joinKeyed(t, r1, "other")
	b1, b2 := joinKeyed(t, r2, "conf"), joinKeyed(t, r2, "conf")
	var md string
	byConf := map[string]uuid.UUID{}
	for _, a := range r1.kd.Associations() {
		md = a.MD
		byConf[a.Conference] = a.ID
	}
	waitFor(t, "replica 2 lists replica 1's associations", func() bool { return len(r2.store.RemoteAssociations()) == 2 })
	_ = r1.store.Close()
	_ = r1.kd.Close()
	waitFor(t, "replica 1's associations are orphans at replica 2", func() bool {
		return len(r2.store.orphansOf("conf")) == 1 && len(r2.store.orphansOf("other")) == 1
	})
	ft := &fakeTunnel{id: "md-to-kd2", peer: md}
	r2.kd.tunnelUp(ft)
	rekeys := counterValue(r2.kd.m.ektRekeys)

	r2.kd.handleEndpointDisconnect(ft, uuid.New()) // nobody's
	time.Sleep(100 * time.Millisecond)
	if n := counterValue(r2.kd.m.ektRekeys); n != rekeys || counterValue(r2.kd.m.orphansLeft) != 0 {
		t.Fatalf("an unknown association's end re-keyed (%v) or counted as an orphan's", n-rekeys)
	}

	r2.kd.handleEndpointDisconnect(ft, byConf["conf"])
	waitCounter(t, r2.kd.m.ektRekeys, rekeys+1)
	b1.waitKeys(t, 2, 5*time.Second)
	b2.waitKeys(t, 2, 5*time.Second)
	if n := counterValue(r2.kd.m.orphansLeft); n != 1 {
		t.Fatalf("orphans_left_total %v, want 1", n)
	}
	if n := len(r2.store.orphansOf("conf")); n != 0 {
		t.Fatalf("the orphan that left is still kept (%d)", n)
	}
	if o := r2.store.orphansOf("other"); len(o) != 1 || o[0].id != byConf["other"] {
		t.Fatalf("the orphan of another conference was touched: %v", o)
	}
	if d := ft.disconnects(); len(d) != 0 {
		t.Fatalf("EndpointDisconnects sent %v: the re-key had no orphan left to end", d)
	}
}

// fakeOrphanEKT is a MemoryEKT that also holds orphans, as EtcdEKT does
// for the KeyDistributor.
type fakeOrphanEKT struct {
	*MemoryEKT
	mu        sync.Mutex
	orphans   []orphan
	forgotten []orphan
	rekeyed   func(string)
}

func (f *fakeOrphanEKT) setRekeyed(g func(string)) { f.rekeyed = g }

func (f *fakeOrphanEKT) orphansOf(conference string) []orphan {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []orphan
	for _, o := range f.orphans {
		if o.conference == conference {
			out = append(out, o)
		}
	}
	return out
}

func (f *fakeOrphanEKT) forgetOrphan(o orphan) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orphans = slices.DeleteFunc(f.orphans, func(x orphan) bool { return x.key == o.key })
	f.forgotten = append(f.forgotten, o)
}

func (f *fakeOrphanEKT) isOrphan(o orphan) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.orphans, func(x orphan) bool { return x.key == o.key })
}

func (f *fakeOrphanEKT) orphanByID(md string, id uuid.UUID) (orphan, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.orphans {
		if o.md == md && o.id == id {
			return o, true
		}
	}
	return orphan{}, false
}

// revive takes o out of the orphans without ending it: its replica came
// back and re-published it.
func (f *fakeOrphanEKT) revive(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orphans = slices.DeleteFunc(f.orphans, func(x orphan) bool { return x.key == key })
}

func (f *fakeOrphanEKT) numForgotten() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.forgotten)
}

// TestOrphanRetriesBounded: an orphan whose MD has no tunnel is retried
// on the janitor tick a bounded number of times, then given up (counted;
// its record stays for the next re-key); the next re-key with a tunnel up
// ends it once, and a re-key while one is still queued does not queue it
// twice.
func TestOrphanRetriesBounded(t *testing.T) {
	mem, err := NewMemoryEKT(MemoryEKTConfig{})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeOrphanEKT{MemoryEKT: mem}
	id1, id2 := uuid.New(), uuid.New()
	src.orphans = []orphan{
		{key: "kd1/a", replica: "kd1", md: "md1", id: id1, conference: "conf"},
		{key: "kd1/b", replica: "kd1", md: "md1", id: id2, conference: "other"},
	}
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := New(Config{Certificate: cert, Registry: NewRegistry(), Logger: discardLogger(), EKT: src,
		HandshakeTimeout: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kd.Close() })
	if src.rekeyed == nil {
		t.Fatal("the KD did not subscribe to the source's re-keys")
	}
	kd.mu.Lock()
	kd.orphanRetries, kd.orphanRetryInterval = 3, time.Millisecond
	kd.mu.Unlock()

	src.rekeyed("conf")
	src.rekeyed("conf") // queued once
	if n := kd.numOrphansPending(); n != 1 {
		t.Fatalf("%d orphans queued, want 1", n)
	}
	waitCounter(t, kd.m.orphanDisconnectsFailed, 1)
	if n := counterValue(kd.m.orphanDisconnectRetries); n != 3 {
		t.Fatalf("%v retries, want 3", n)
	}
	if n := kd.numOrphansPending(); n != 0 || src.numForgotten() != 0 {
		t.Fatalf("after giving up: %d queued, %d forgotten", n, src.numForgotten())
	}

	ft := &fakeTunnel{id: "t1", peer: "md1"}
	kd.tunnelUp(ft)
	src.rekeyed("conf")
	if d := ft.disconnects(); len(d) != 1 || d[0] != id1 {
		t.Fatalf("EndpointDisconnect for %v, want [%v]", d, id1)
	}
	src.rekeyed("conf")
	time.Sleep(100 * time.Millisecond)
	if d := ft.disconnects(); len(d) != 1 {
		t.Fatalf("an orphan ended twice: %v", d)
	}
	if counterValue(kd.m.orphansDisconnected) != 1 || src.numForgotten() != 1 || len(src.orphansOf("other")) != 1 {
		t.Fatalf("disconnected %v, forgotten %d, other's orphans %d", counterValue(kd.m.orphansDisconnected),
			src.numForgotten(), len(src.orphansOf("other")))
	}
}

// TestQueuedOrphanRevivedNotEnded: an orphan queued while its MD has no
// tunnel to this replica, whose replica then comes back on a new lease and
// re-publishes it (a live association again), is not ended when the
// tunnel comes up.
func TestQueuedOrphanRevivedNotEnded(t *testing.T) {
	mem, err := NewMemoryEKT(MemoryEKTConfig{})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeOrphanEKT{MemoryEKT: mem}
	id := uuid.New()
	src.orphans = []orphan{{key: "kd1/a", replica: "kd1", md: "md1", id: id, conference: "conf"}}
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := New(Config{Certificate: cert, Registry: NewRegistry(), Logger: discardLogger(), EKT: src,
		HandshakeTimeout: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kd.Close() })
	kd.mu.Lock()
	kd.orphanRetries, kd.orphanRetryInterval = 1000, time.Millisecond
	kd.mu.Unlock()

	src.rekeyed("conf")
	if n := kd.numOrphansPending(); n != 1 {
		t.Fatalf("%d orphans queued, want 1", n)
	}
	src.revive("kd1/a")
	ft := &fakeTunnel{id: "t1", peer: "md1"}
	kd.tunnelUp(ft)
	kd.endOrphans(time.Now().Add(time.Second), true)
	if d := ft.disconnects(); len(d) != 0 {
		t.Fatalf("EndpointDisconnect for %v: a live replica's association was ended", d)
	}
	if n := kd.numOrphansPending(); n != 0 {
		t.Fatalf("%d orphans still queued", n)
	}
}
