package keytable

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// TestConcurrentReaders runs 4 workers reading batches while the control
// plane installs 10,000 associations, re-keys some and removes them all.
// Each worker checks, for every endpoint it resolves:
//
//   - the keys are complete and consistent: Recv and Send non-nil and from
//     the same pair, the pair of this association (original or re-keyed);
//   - the endpoint's ID, address and membership agree with the snapshot;
//   - the endpoint was not removed before the batch began: the writer
//     stamps each association with a sequence number once Remove has
//     returned, and the worker reads the sequence before Begin.
func TestConcurrentReaders(t *testing.T) {
	const (
		total   = 10_000
		window  = 300 // live associations at a time
		confs   = 40
		pairs   = 64
		workers = 4
	)
	ctx := context.Background()
	tb := newTable(t, Config{MaxAssociations: window + 1, GraceTimeout: 10 * time.Second})

	var ps [pairs]keyPair
	pairOf := make(map[*srtpfast.Keys]int) // read-only once the readers run
	for i := range ps {
		ps[i] = newPair(t, i)
		pairOf[ps[i].recv], pairOf[ps[i].send] = i, i
	}
	keys := make([]AddrKey, total)
	for i := range keys {
		keys[i] = KeyOf(addrOf(i))
	}
	idx := func(ep *Endpoint) int { // association number from its ID (see idOf)
		id := ep.ID()
		return int(binary.BigEndian.Uint64(id[8:])&^(1<<63)) - 1
	}

	var (
		seq       atomic.Uint64
		removedAt [total]atomic.Uint64 // seq stamped after Remove returned
		installed atomic.Int64         // highest association number installed + 1
		stop      atomic.Bool
		failures  atomic.Int64
		firstErr  sync.Once
		errMsg    string
		batches   atomic.Int64
		hits      atomic.Int64
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		firstErr.Do(func() { errMsg = fmt.Sprintf(format, args...) })
	}

	var wg sync.WaitGroup
	for w := range workers {
		r := tb.NewReader()
		wg.Go(func() {
			defer r.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				began := seq.Load()
				hi := installed.Load()
				snap := r.Begin()
				for range 32 {
					if hi == 0 {
						break
					}
					i := rng.IntN(int(hi))
					ep := snap.Lookup(keys[i])
					if ep == nil {
						continue
					}
					hits.Add(1)
					if d := removedAt[i].Load(); d != 0 && d <= began {
						fail("association %d removed at %d visible in a batch begun at %d", i, d, began)
					}
					if idx(ep) != i {
						fail("address %d resolves to association %d", i, idx(ep))
					}
					rp, ok1 := pairOf[ep.Recv()]
					sp, ok2 := pairOf[ep.Send()]
					if !ok1 || !ok2 || rp != sp || (rp != i%pairs && rp != (i+1)%pairs) {
						fail("association %d: half-installed keys: recv pair %d (%v), send pair %d (%v)", i, rp, ok1, sp, ok2)
					}
					if snap.Lookup(KeyOf(ep.Addr())) != ep {
						fail("association %d: address does not map back", i)
					}
					if !slices.Contains(snap.Receivers(ep), ep) {
						fail("association %d: not a member of its conference", i)
					}
				}
				r.End()
				batches.Add(1)
				// Workers in production own a core each; here 4 share
				// the test's CPUs with the writer, so let it run.
				runtime.Gosched()
			}
		})
	}

	start := time.Now()
	for i := range total {
		if _, err := tb.Install(ctx, assocOf(i, ConferenceID(i%confs), ps[i%pairs])); err != nil {
			t.Fatalf("install %d: %v", i, err)
		}
		installed.Store(int64(i + 1))
		if i%7 == 0 { // re-key: both directions replaced as one unit
			p := ps[(i+1)%pairs]
			if _, err := tb.Install(ctx, Association{ID: idOf(i), Addr: addrOf(i), Conference: ConferenceID(i % confs), Recv: p.recv, Send: p.send}); err != nil {
				t.Fatalf("rekey %d: %v", i, err)
			}
		}
		if j := i - window; j >= 0 {
			if err := tb.Remove(ctx, idOf(j)); err != nil {
				t.Fatalf("remove %d: %v", j, err)
			}
			removedAt[j].Store(seq.Add(1))
		}
	}
	for j := total - window; j < total; j++ {
		if err := tb.Remove(ctx, idOf(j)); err != nil {
			t.Fatalf("remove %d: %v", j, err)
		}
		removedAt[j].Store(seq.Add(1))
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d violations; first: %s", n, errMsg)
	}
	st := tb.Stats()
	if st.Associations != 0 || st.Conferences != 0 || tb.snap.Load().Len() != 0 {
		t.Errorf("table not empty at the end: %+v", st)
	}
	if st.Installs != total || st.Removes != total {
		t.Errorf("stats %+v", st)
	}
	t.Logf("%d installs + %d re-keys + %d removes in %v; %d batches, %d endpoint hits checked",
		total, st.Rekeys, total, elapsed, batches.Load(), hits.Load())
}
