package afxdp

import (
	"math"
	"sync/atomic"
	"testing"
)

// fakeRing is a ring in ordinary memory whose "kernel" side the test plays.
type fakeRing struct {
	prod, cons, flags uint32
	slots             []uint64
	r                 ring
}

func newFakeRing(size, start uint32, producer bool) *fakeRing {
	f := &fakeRing{prod: start, cons: start, slots: make([]uint64, size)}
	f.r = ring{producer: &f.prod, consumer: &f.cons, flags: &f.flags, mask: size - 1, size: size}
	if producer {
		f.r.initProducer()
	} else {
		f.r.initConsumer()
	}
	return f
}

// kernelConsume plays the kernel consuming up to n entries of a producer
// ring and returns them.
func (f *fakeRing) kernelConsume(n uint32) []uint64 {
	prod, cons := atomic.LoadUint32(&f.prod), atomic.LoadUint32(&f.cons)
	var out []uint64
	for ; cons != prod && n > 0; n-- {
		out = append(out, f.slots[cons&f.r.mask])
		cons++
	}
	atomic.StoreUint32(&f.cons, cons)
	return out
}

// kernelProduce plays the kernel producing values into a consumer ring and
// returns how many fitted.
func (f *fakeRing) kernelProduce(vals ...uint64) int {
	prod, cons := atomic.LoadUint32(&f.prod), atomic.LoadUint32(&f.cons)
	n := 0
	for _, v := range vals {
		if prod-cons == f.r.size {
			break
		}
		f.slots[prod&f.r.mask] = v
		prod++
		n++
	}
	atomic.StoreUint32(&f.prod, prod)
	return n
}

func TestRingProducerWraparound(t *testing.T) {
	for _, start := range []uint32{0, math.MaxUint32 - 5, math.MaxUint32, math.MaxUint32 - 63} {
		f := newFakeRing(8, start, true)
		next, expect := uint64(0), uint64(0)
		for round := 0; round < 40; round++ {
			// Reserve what fits of a batch of 5, write, submit.
			idx, got := f.r.reserve(5)
			if free := f.r.free(0); got > 5 || free > 8 {
				t.Fatalf("start %#x round %d: got %d free %d", start, round, got, free)
			}
			for i := uint32(0); i < got; i++ {
				f.slots[(idx+i)&f.r.mask] = next
				next++
			}
			f.r.submit()
			if inRing := atomic.LoadUint32(&f.prod) - atomic.LoadUint32(&f.cons); inRing > 8 {
				t.Fatalf("start %#x round %d: %d entries in a ring of 8", start, round, inRing)
			}
			// The kernel takes 3 per round: the ring fills, then the
			// producer is limited to what the kernel freed.
			for _, v := range f.kernelConsume(3) {
				if v != expect {
					t.Fatalf("start %#x: kernel read %d, want %d", start, v, expect)
				}
				expect++
			}
		}
		if next < 100 {
			t.Fatalf("start %#x: only %d entries produced", start, next)
		}
		// Drain: everything produced is consumed in order.
		for _, v := range f.kernelConsume(8) {
			if v != expect {
				t.Fatalf("start %#x: kernel read %d, want %d", start, v, expect)
			}
			expect++
		}
		if expect != next {
			t.Fatalf("start %#x: consumed %d of %d", start, expect, next)
		}
		if _, got := f.r.reserve(100); got != 8 {
			t.Fatalf("start %#x: empty ring reserved %d of 8", start, got)
		}
	}
}

func TestRingConsumerWraparound(t *testing.T) {
	for _, start := range []uint32{0, math.MaxUint32 - 2, math.MaxUint32} {
		f := newFakeRing(4, start, false)
		next, expect := uint64(0), uint64(0)
		for round := 0; round < 30; round++ {
			for i := 0; i < 3; i++ {
				if f.kernelProduce(next) == 1 {
					next++
				}
			}
			idx, got := f.r.peek(2)
			for i := uint32(0); i < got; i++ {
				if v := f.slots[(idx+i)&f.r.mask]; v != expect {
					t.Fatalf("start %#x: read %d, want %d", start, v, expect)
				}
				expect++
			}
			f.r.release()
			if got := atomic.LoadUint32(&f.cons); got != f.r.cachedCons {
				t.Fatalf("consumer index %d not published (%d)", got, f.r.cachedCons)
			}
		}
		idx, got := f.r.peek(10)
		for i := uint32(0); i < got; i++ {
			if v := f.slots[(idx+i)&f.r.mask]; v != expect {
				t.Fatalf("start %#x: read %d, want %d", start, v, expect)
			}
			expect++
		}
		f.r.release()
		if expect != next || got > 4 {
			t.Fatalf("start %#x: consumed %d of %d (last peek %d)", start, expect, next, got)
		}
		if _, got := f.r.peek(1); got != 0 {
			t.Fatalf("empty ring peeked %d", got)
		}
	}
}

func TestRingCacheRefresh(t *testing.T) {
	f := newFakeRing(8, math.MaxUint32-1, true)
	if _, got := f.r.reserve(8); got != 8 {
		t.Fatalf("reserved %d of 8", got)
	}
	f.r.submit()
	if _, got := f.r.reserve(1); got != 0 {
		t.Fatalf("full ring reserved %d", got)
	}
	f.kernelConsume(2)
	// The cache says full; free(n) must reload the consumer index.
	if _, got := f.r.reserve(4); got != 2 {
		t.Fatalf("reserved %d after the kernel freed 2", got)
	}
	f.r.submit()
	if p := atomic.LoadUint32(&f.prod); p != 8 { // MaxUint32-1 + 10 wrapped
		t.Fatalf("producer index %#x", p)
	}

	c := newFakeRing(8, math.MaxUint32, false)
	c.kernelProduce(1, 2, 3)
	if _, got := c.r.peek(1); got != 1 {
		t.Fatal("peek 1")
	}
	c.kernelProduce(4, 5)
	// Two cached entries remain but 4 are wanted: reload the producer.
	if _, got := c.r.peek(4); got != 4 {
		t.Fatalf("peeked %d of 4", got)
	}
}

func TestRingNeedWakeup(t *testing.T) {
	f := newFakeRing(8, 0, true)
	if f.r.needWakeup() {
		t.Fatal("wakeup needed with flags 0")
	}
	atomic.StoreUint32(&f.flags, xdpRingNeedWakeup)
	if !f.r.needWakeup() {
		t.Fatal("wakeup not needed with XDP_RING_NEED_WAKEUP")
	}
}

func BenchmarkRing(b *testing.B) {
	const batch = 64
	f := newFakeRing(2048, math.MaxUint32-1000, true)
	c := newFakeRing(2048, math.MaxUint32-1000, false)
	vals := make([]uint64, batch)
	b.ReportAllocs()
	b.SetBytes(batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Producer side: reserve, write, submit; the "kernel" consumes.
		idx, got := f.r.reserve(batch)
		for j := uint32(0); j < got; j++ {
			f.slots[(idx+j)&f.r.mask] = uint64(j)
		}
		f.r.submit()
		atomic.StoreUint32(&f.cons, atomic.LoadUint32(&f.prod))
		// Consumer side: the "kernel" produces, peek, read, release.
		atomic.StoreUint32(&c.prod, atomic.LoadUint32(&c.prod)+batch)
		idx, got = c.r.peek(batch)
		for j := uint32(0); j < got; j++ {
			vals[j] = c.slots[(idx+j)&c.r.mask]
		}
		c.r.release()
	}
}

func TestRingAllocs(t *testing.T) {
	f := newFakeRing(64, math.MaxUint32, true)
	allocs := testing.AllocsPerRun(100, func() {
		idx, got := f.r.reserve(16)
		for j := uint32(0); j < got; j++ {
			f.slots[(idx+j)&f.r.mask] = 1
		}
		f.r.submit()
		f.kernelConsume(0)
		atomic.StoreUint32(&f.cons, atomic.LoadUint32(&f.prod))
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

func TestFrames(t *testing.T) {
	f := newFrames(8, 2048)
	var got []uint64
	for {
		a, ok := f.pop(ownerUser)
		if !ok {
			break
		}
		got = append(got, a)
	}
	if len(got) != 8 || got[0] != 0 || got[7] != 7*2048 {
		t.Fatalf("popped %v", got)
	}
	if f.count[ownerUser] != 8 || f.count[ownerFree] != 0 {
		t.Fatalf("counts %v", f.count)
	}
	// An address inside the frame (past headroom) returns the frame.
	if !f.push(got[3]+256, ownerUser) {
		t.Fatal("push with offset refused")
	}
	if f.push(got[3], ownerUser) {
		t.Fatal("double free accepted")
	}
	if f.push(8*2048, ownerUser) {
		t.Fatal("address beyond the UMEM accepted")
	}
	if !f.move(got[0], ownerUser, ownerKernelTx) || f.move(got[0], ownerUser, ownerKernelTx) {
		t.Fatal("move from the wrong owner")
	}
	if f.count[ownerFree] != 1 || f.count[ownerUser] != 6 || f.count[ownerKernelTx] != 1 {
		t.Fatalf("counts %v", f.count)
	}
	if a, ok := f.pop(ownerKernelRx); !ok || a != got[3] {
		t.Fatalf("pop after push: %d %v", a, ok)
	}
	if err := f.verify(); err != nil {
		t.Fatal(err)
	}
}
