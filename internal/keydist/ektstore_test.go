package keydist

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/etcdclient"
)

// testStoreKey is the seal key every test replica shares.
var testStoreKey = bytes.Repeat([]byte{0x5a}, StoreKeyLen)

// newTestStore connects a replica's Store to the cluster (its own client).
func newTestStore(t testing.TB, c TestEtcd, replica string) *Store {
	t.Helper()
	cl, err := etcdclient.New(etcdclient.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(StoreConfig{Client: cl, SealKey: testStoreKey, Replica: replica, Timeout: time.Second,
		LeaseTTL: 3 * time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		_ = cl.Close()
	})
	waitLease(t, s)
	return s
}

func waitLease(t testing.TB, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.currentLease(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no store lease in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestEtcdEKT(t testing.TB, s *Store) *EtcdEKT {
	t.Helper()
	e, err := NewEtcdEKT(s, MemoryEKTConfig{Cipher: dtls.EKTCipherAESKW128, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestEtcdEKTOneSetUnderRace: many concurrent Current calls from two
// replicas' sources for a new conference all get one set.
func TestEtcdEKTOneSetUnderRace(t *testing.T) {
	c := startEtcd(t)
	a := newTestEtcdEKT(t, newTestStore(t, c, "r1"))
	b := newTestEtcdEKT(t, newTestStore(t, c, "r2"))
	for round := range 5 {
		conf := "race-" + string(rune('a'+round))
		const n = 16
		out := make([]EKTParams, 2*n)
		errs := make([]error, 2*n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 * n {
			src := a
			if i%2 == 1 {
				src = b
			}
			wg.Go(func() {
				<-start
				out[i], errs[i] = src.Current(conf)
			})
		}
		close(start)
		wg.Wait()
		for i := range out {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if out[i].SPI != out[0].SPI || !bytes.Equal(out[i].Key, out[0].Key) || !bytes.Equal(out[i].Salt, out[0].Salt) {
				t.Fatalf("round %d: call %d got SPI %d, call 0 SPI %d: two sets for one conference", round, i, out[i].SPI, out[0].SPI)
			}
		}
	}
}

// TestEtcdEKTRekeyCompareAndSwap: two replicas re-keying the same SPI at
// once make one new set, which both return; a stale SPI returns the
// current set unchanged; the other replica is told and caches it.
func TestEtcdEKTRekeyCompareAndSwap(t *testing.T) {
	c := startEtcd(t)
	a := newTestEtcdEKT(t, newTestStore(t, c, "r1"))
	b := newTestEtcdEKT(t, newTestStore(t, c, "r2"))
	told := make(chan string, 16)
	b.setNotify(func(conf string) { told <- conf })
	first, err := a.Current("conf")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := b.Current("conf"); err != nil || p.SPI != first.SPI {
		t.Fatalf("b: %v %v", p, err)
	}
	var ra, rb EKTParams
	var ea, eb error
	var wg sync.WaitGroup
	wg.Go(func() { ra, ea = a.Rekey("conf", first.SPI) })
	wg.Go(func() { rb, eb = b.Rekey("conf", first.SPI) })
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatal(ea, eb)
	}
	if ra.SPI != first.SPI+1 || rb.SPI != ra.SPI || !bytes.Equal(ra.Key, rb.Key) || bytes.Equal(ra.Key, first.Key) {
		t.Fatalf("re-key race: a SPI %d, b SPI %d (first %d)", ra.SPI, rb.SPI, first.SPI)
	}
	if p, _ := a.Rekey("conf", first.SPI); p.SPI != ra.SPI {
		t.Fatalf("stale re-key changed the set: SPI %d", p.SPI)
	}
	// a re-keys alone: b's cache follows through the watch.
	next, err := a.Rekey("conf", ra.SPI)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		if p, _ := b.Current("conf"); p.SPI == next.SPI && bytes.Equal(p.Key, next.Key) {
			break
		}
		select {
		case <-told:
		case <-deadline:
			t.Fatal("b never saw a's re-key")
		}
	}
}

// TestEtcdEKTForget: the last member of one replica leaving re-keys the
// set while the other replica has members (whoever left knew the key); the
// last replica leaving deletes it.
func TestEtcdEKTForget(t *testing.T) {
	c := startEtcd(t)
	sa := newTestStore(t, c, "r1")
	a := newTestEtcdEKT(t, sa)
	b := newTestEtcdEKT(t, newTestStore(t, c, "r2"))
	told := make(chan string, 16)
	b.setNotify(func(conf string) { told <- conf })
	first, _ := a.Current("conf")
	if _, err := b.Current("conf"); err != nil {
		t.Fatal(err)
	}
	a.Forget("conf")
	select {
	case <-told:
	case <-time.After(5 * time.Second):
		t.Fatal("b not told of the re-key after a's last member left")
	}
	if p, _ := b.Current("conf"); p.SPI == first.SPI || bytes.Equal(p.Key, first.Key) {
		t.Fatal("set not re-keyed after a replica's last member left")
	}
	b.Forget("conf")
	cl := c.Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := cl.Get(context.Background(), sa.key("kd/ekt/"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && g.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("EKT keys left in the store after every replica forgot the conference: %v %v", g, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEtcdEKTSealed: the raw value holds neither the key nor the salt; a
// value moved to another conference's key, or with a bit flipped, is
// refused with ErrStoreValue and counted.
func TestEtcdEKTSealed(t *testing.T) {
	c := startEtcd(t)
	s := newTestStore(t, c, "r1")
	e := newTestEtcdEKT(t, s)
	p, err := e.Current("conf-a")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t)
	ctx := context.Background()
	g, err := cl.Get(ctx, e.setKey("conf-a"))
	if err != nil || len(g.Kvs) != 1 {
		t.Fatal(g, err)
	}
	raw := g.Kvs[0].Value
	if bytes.Contains(raw, p.Key) || bytes.Contains(raw, p.Salt) || bytes.Contains(raw, p.Key[:8]) {
		t.Fatal("the EKT key or salt is in the store in the clear")
	}
	before := counterValue(s.errCount(storeOpValue))
	if _, err := cl.Put(ctx, e.setKey("conf-b"), string(raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Current("conf-b"); !errors.Is(err, ErrStoreValue) {
		t.Fatalf("value moved to another conference: %v, want ErrStoreValue", err)
	}
	flipped := bytes.Clone(raw)
	flipped[len(flipped)-20] ^= 1
	if _, err := cl.Put(ctx, e.setKey("conf-c"), string(flipped)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Current("conf-c"); !errors.Is(err, ErrStoreValue) {
		t.Fatalf("flipped bit: %v, want ErrStoreValue", err)
	}
	if got := counterValue(s.errCount(storeOpValue)); got != before+2 {
		t.Fatalf("bad values counted %v, want %v", got, before+2)
	}
	// Another store key does not open it either.
	other, err := newSealAEAD(bytes.Repeat([]byte{1}, StoreKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openParams(other, s.prefix, "conf-a", dtls.EKTCipherAESKW128, raw); !errors.Is(err, ErrStoreValue) {
		t.Fatalf("opened under another store key: %v", err)
	}
}

// TestEtcdEKTRollbackRefused: an older sealed set written back over the
// current one (a restored backup, a replayed value: it opens, and gets a
// newer revision) is not adopted by a replica holding the newer set; it
// is counted as a bad value, and the next re-key goes on from the newer
// one. The same value written again unchanged is no rollback.
func TestEtcdEKTRollbackRefused(t *testing.T) {
	c := startEtcd(t)
	s := newTestStore(t, c, "r1")
	a := newTestEtcdEKT(t, s)
	b := newTestEtcdEKT(t, newTestStore(t, c, "r2"))
	first, err := a.Current("conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Current("conf"); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t)
	ctx := context.Background()
	g, err := cl.Get(ctx, a.setKey("conf"))
	if err != nil || len(g.Kvs) != 1 {
		t.Fatal(g, err)
	}
	old := g.Kvs[0].Value
	next, err := a.Rekey("conf", first.SPI)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b follows the re-key", func() bool { p, _ := b.Current("conf"); return p.SPI == next.SPI })
	cur, err := cl.Get(ctx, a.setKey("conf"))
	if err != nil || len(cur.Kvs) != 1 {
		t.Fatal(cur, err)
	}
	bad := counterValue(s.errCount(storeOpValue))
	if _, err := cl.Put(ctx, a.setKey("conf"), string(cur.Kvs[0].Value)); err != nil { // unchanged: fine
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, a.setKey("conf"), string(old)); err != nil { // rolled back
		t.Fatal(err)
	}
	waitCounter(t, s.errCount(storeOpValue), bad+1)
	time.Sleep(200 * time.Millisecond) // b's watch has seen it too
	for name, e := range map[string]*EtcdEKT{"a": a, "b": b} {
		if p, _ := e.Current("conf"); p.SPI != next.SPI || !bytes.Equal(p.Key, next.Key) {
			t.Errorf("replica %s holds SPI %d after the rollback, want %d", name, p.SPI, next.SPI)
		}
	}
}

// TestEtcdEKTStoreDown: with etcd stopped, a conference this replica
// holds still answers from the cache; a new one fails within the bound
// with ErrStoreUnavailable, counted; after a restart it works again.
func TestEtcdEKTStoreDown(t *testing.T) {
	c := startEtcd(t)
	s := newTestStore(t, c, "r1")
	e := newTestEtcdEKT(t, s)
	held, err := e.Current("held")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	if p, err := e.Current("held"); err != nil || p.SPI != held.SPI {
		t.Fatalf("held conference while etcd is down: %v", err)
	}
	before := counterValue(s.errCount(storeOpEKTGet))
	start := time.Now()
	_, err = e.Current("new")
	took := time.Since(start)
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("new conference with etcd down: %v, want ErrStoreUnavailable", err)
	}
	if took > 3*time.Second {
		t.Fatalf("failed after %v: not bounded by the 1s store timeout", took)
	}
	if counterValue(s.errCount(storeOpEKTGet)) <= before {
		t.Fatal("store error not counted")
	}
	if s.Check() == nil {
		t.Fatal("store readiness passes with etcd down")
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := e.Current("new")
		if err == nil {
			p.zero()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new conference after etcd came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("readiness after etcd came back: %v", err)
	}
	if p, _ := e.Current("held"); p.SPI != held.SPI {
		t.Fatal("held conference's set changed across the outage")
	}
}

// TestOpenParamsBadInput: every malformed sealed value is a typed error.
func TestOpenParamsBadInput(t *testing.T) {
	aead := testAEAD(t)
	p := EKTParams{Cipher: dtls.EKTCipherAESKW128, Key: make([]byte, 16), Salt: make([]byte, 12), SPI: 7, TTL: time.Hour, Created: time.Unix(1e9, 0)}
	good, err := sealParams(aead, "/p/", "c", &p)
	if err != nil {
		t.Fatal(err)
	}
	if q, err := openParams(aead, "/p/", "c", dtls.EKTCipherAESKW128, good); err != nil || q.SPI != 7 || q.TTL != time.Hour || !q.Created.Equal(p.Created) {
		t.Fatalf("round trip: %v %v", q, err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header only", good[:sealedHeaderLen]},
		{"short header", good[:5]},
		{"truncated", good[:len(good)-1]},
		{"extended", append(bytes.Clone(good), 0)},
		{"version", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"cipher", mod(func(b []byte) []byte { b[1] = byte(dtls.EKTCipherAESKW256); return b })},
		{"unknown cipher", mod(func(b []byte) []byte { b[1] = 0xff; return b })},
		{"spi", mod(func(b []byte) []byte { b[3] ^= 1; return b })},
		{"created", mod(func(b []byte) []byte { b[8] ^= 1; return b })},
		{"ttl zero", mod(func(b []byte) []byte { b[12], b[13], b[14], b[15] = 0, 0, 0, 0; return b })},
		{"ttl huge", mod(func(b []byte) []byte { b[12] = 0xff; return b })},
		{"ttl", mod(func(b []byte) []byte { b[15] ^= 1; return b })},
		{"nonce", mod(func(b []byte) []byte { b[20] ^= 1; return b })},
		{"ciphertext", mod(func(b []byte) []byte { b[30] ^= 1; return b })},
		{"tag", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := openParams(aead, "/p/", "c", dtls.EKTCipherAESKW128, tc.b); !errors.Is(err, ErrStoreValue) {
				t.Fatalf("got %v, want ErrStoreValue", err)
			}
		})
	}
	if _, err := openParams(aead, "/p/", "d", dtls.EKTCipherAESKW128, good); !errors.Is(err, ErrStoreValue) {
		t.Fatal("opened under another conference")
	}
	if _, err := openParams(aead, "/q/", "c", dtls.EKTCipherAESKW128, good); !errors.Is(err, ErrStoreValue) {
		t.Fatal("opened under another prefix")
	}
}

func testAEAD(t testing.TB) cipher.AEAD {
	a, err := newSealAEAD(testStoreKey)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// FuzzOpenParams: no input panics; whatever opens re-seals to a value
// that opens to the same set.
func FuzzOpenParams(f *testing.F) {
	aead := testAEAD(f)
	p := EKTParams{Cipher: dtls.EKTCipherAESKW128, Key: make([]byte, 16), Salt: make([]byte, 12), SPI: 7, TTL: time.Hour, Created: time.Unix(1e9, 0)}
	_, _ = rand.Read(p.Key)
	good, _ := sealParams(aead, "/p/", "c", &p)
	f.Add(good, "c")
	f.Add(good[:20], "c")
	f.Add([]byte{1, 1, 0, 0}, "")
	f.Fuzz(func(t *testing.T, b []byte, conf string) {
		q, err := openParams(aead, "/p/", conf, dtls.EKTCipherAESKW128, b)
		if err != nil {
			if !errors.Is(err, ErrStoreValue) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := sealParams(aead, "/p/", conf, &q)
		if err != nil {
			t.Fatal(err)
		}
		r, err := openParams(aead, "/p/", conf, dtls.EKTCipherAESKW128, again)
		if err != nil || r.SPI != q.SPI || !bytes.Equal(r.Key, q.Key) {
			t.Fatalf("re-sealed value: %v", err)
		}
	})
}
