package keytable

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

const benchAssocs = 100_000

// benchTable returns a table with benchAssocs associations in conferences
// of 10, and their address keys in random order.
func benchTable(b *testing.B, shards int) (*Table, []AddrKey) {
	return benchTableN(b, shards, benchAssocs)
}

func benchTableN(b *testing.B, shards, n int) (*Table, []AddrKey) {
	b.Helper()
	p := newPair(b, 0)
	tb := newTable(b, Config{MaxAssociations: 2 * n, Shards: shards})
	bulkInstall(b, tb, 0, n, 10, p)
	keys := make([]AddrKey, n)
	for i := range keys {
		keys[i] = KeyOf(addrOf(i))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return tb, keys
}

// BenchmarkLookup: resolving a packet's source address to its sender and
// the conference's receivers, inside one batch (Lookup) and with a batch of
// one packet (Begin+Lookup+End), at 100,000 associations (random order:
// mostly cache misses) and at 1,000 (cache-resident), each against a plain
// Go map of the same entries.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{benchAssocs, 1000} {
		b.Run(fmt.Sprintf("assocs=%d", n), func(b *testing.B) { benchLookup(b, n) })
	}
}

func benchLookup(b *testing.B, size int) {
	tb, keys := benchTableN(b, 0, size)
	r := tb.NewReader()
	defer r.Close()
	// Baseline: one plain Go map of the same 100,000 entries, so that the
	// cost of the random (cache-missing) access itself is visible.
	flat := make(map[AddrKey]*Endpoint, benchAssocs)
	for _, sl := range tb.snap.Load().addrs {
		for _, e := range sl {
			if e.ep != nil {
				flat[e.key] = e.ep
			}
		}
	}
	b.Run("baseline-flat-map", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			if flat[keys[i%len(keys)]] != nil {
				n++
			}
		}
		if n == 0 {
			b.Fatal("no hits")
		}
	})
	b.Run("Lookup", func(b *testing.B) {
		b.ReportAllocs()
		s := r.Begin()
		n := 0
		for i := 0; b.Loop(); i++ {
			if s.Lookup(keys[i%len(keys)]) != nil {
				n++
			}
		}
		r.End()
		if n == 0 {
			b.Fatal("no hits")
		}
	})
	b.Run("Lookup+Receivers", func(b *testing.B) {
		b.ReportAllocs()
		s := r.Begin()
		n := 0
		for i := 0; b.Loop(); i++ {
			ep := s.Lookup(keys[i%len(keys)])
			n += len(s.Receivers(ep))
		}
		r.End()
		if n == 0 {
			b.Fatal("no receivers")
		}
	})
	b.Run("Begin+Lookup+Receivers+End", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			s := r.Begin()
			if ep := s.Lookup(keys[i%len(keys)]); ep != nil { // nil once removed
				n += len(s.Receivers(ep))
			}
			r.End()
		}
		if n == 0 {
			b.Fatal("no receivers")
		}
	})
}

// BenchmarkInstall: the cost of installing one association into a table of
// 100,000, for the flat copy-on-write map (shards=1) and sharded snapshots.
// Each op installs a new association and removes the oldest, so the size
// stays at 100,000; the Remove has no reader to wait for.
func BenchmarkInstall(b *testing.B) {
	p := newPair(b, 1)
	for _, shards := range []int{1, 256, 512, 1024, 4096} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			tb, _ := benchTable(b, shards)
			ctx := context.Background()
			b.ReportAllocs()
			next := benchAssocs
			for b.Loop() {
				if _, err := tb.Install(ctx, assocOf(next, ConferenceID(next/10), p)); err != nil {
					b.Fatal(err)
				}
				if err := tb.Remove(ctx, idOf(next-benchAssocs)); err != nil {
					b.Fatal(err)
				}
				next++
			}
		})
	}
}

// BenchmarkReaderLatency: a worker's Begin+Lookup+Receivers+End at 100,000
// associations with no writes, and while the control plane installs and
// removes 1,000 associations per second.
func BenchmarkReaderLatency(b *testing.B) {
	tb, keys := benchTable(b, 0)
	p := newPair(b, 1)
	r := tb.NewReader()
	defer r.Close()
	run := func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			s := r.Begin()
			if ep := s.Lookup(keys[i%len(keys)]); ep != nil { // nil once removed
				n += len(s.Receivers(ep))
			}
			r.End()
		}
		if n == 0 {
			b.Fatal("no receivers")
		}
	}
	b.Run("writes=none", run)
	b.Run("writes=1000installs/s", func(b *testing.B) {
		ctx := context.Background()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var installs int
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			next := benchAssocs
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := tb.Install(ctx, assocOf(next, ConferenceID(next/10), p)); err != nil {
					b.Error(err)
					return
				}
				if err := tb.Remove(ctx, idOf(next-benchAssocs)); err != nil {
					b.Error(err)
					return
				}
				next++
				installs++
			}
		})
		start := time.Now()
		run(b)
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(installs)/time.Since(start).Seconds(), "installs/s")
	})
}

// BenchmarkAdmit is the per-packet claim cost of a worker: Admit on an
// SSRC the sender owns plus Claim.Out for 4 receivers, for a fresh SSRC
// and for one re-based after its earlier owner left (ClaimSSRC is the
// cost of the claim check alone, the whole of it before re-basing).
func BenchmarkAdmit(b *testing.B) {
	p := newPair(b, 0)
	tb := newTable(b, Config{})
	bulkInstall(b, tb, 0, 10, 10, p)
	s := tb.snap.Load()
	ep := s.LookupAddr(addrOf(1))
	gone := s.LookupAddr(addrOf(2))
	rcv := s.Receivers(ep)[:5]
	admitAt(tb, gone, 2, KindRTP, 1000, 1)
	if err := tb.Remove(context.Background(), gone.ID()); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		ssrc uint32
	}{{"fresh", 1}, {"rebased", 2}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			idx := uint64(10)
			var sink uint64
			for b.Loop() {
				idx++
				c, ok := tb.Admit(ep, bc.ssrc, KindRTP, idx, 100, 1)
				if !ok {
					b.Fatal("refused")
				}
				for _, r := range rcv {
					out, _ := c.Out(r)
					sink += out
				}
			}
			_ = sink
		})
	}
	b.Run("ClaimSSRC", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tb.ClaimSSRC(ep, 1)
		}
	})
}
