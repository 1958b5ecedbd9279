package dwell

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBinEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		ns   int64
		bin  int
	}{
		{"negative", -5, 0},
		{"zero", 0, 0},
		{"999ns", 999, 0},
		{"1us", 1000, 1},
		{"99.9us", 99_999, 99},
		{"100us", 100_000, 100},
		{"104.9us", 104_999, 100},
		{"105us", 105_000, 101},
		{"999us", 999_000, 279},
		{"1ms", 1_000_000, 280},
		{"1.05ms", 1_050_000, 281},
		{"9.99ms", 9_999_999, 459},
		{"10ms", 10_000_000, 460},
		{"99.9ms", 99_999_999, 639},
		{"100ms", 100_000_000, NumBins - 1},
		{"1h", int64(time.Hour), NumBins - 1},
		{"max", math.MaxInt64, NumBins - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b := Bin(tc.ns); b != tc.bin {
				t.Fatalf("Bin(%d) = %d, want %d", tc.ns, b, tc.bin)
			}
		})
	}
}

// TestBinUpperConsistent checks every bin against its edges: its lower
// edge (the previous bin's upper) and the last nanosecond below its upper
// edge fall in it, and widths never exceed 5 % of the value above 100 µs.
func TestBinUpperConsistent(t *testing.T) {
	lo := time.Duration(0)
	for b := 0; b < NumBins-1; b++ {
		up := Upper(b)
		if up <= lo {
			t.Fatalf("bin %d: upper %v not above lower %v", b, up, lo)
		}
		if Bin(int64(lo)) != b || Bin(int64(up)-1) != b || Bin(int64(up)) != b+1 {
			t.Fatalf("bin %d [%v, %v): Bin(lo)=%d Bin(up-1)=%d Bin(up)=%d", b, lo, up, Bin(int64(lo)), Bin(int64(up)-1), Bin(int64(up)))
		}
		if lo >= 100*time.Microsecond && float64(up-lo) > 0.05*float64(lo) {
			t.Fatalf("bin %d [%v, %v) wider than 5 %%", b, lo, up)
		}
		lo = up
	}
	if lo != Max || Upper(NumBins-1) != math.MaxInt64 {
		t.Fatalf("last finite edge %v, overflow upper %v", lo, Upper(NumBins-1))
	}
	for _, le := range PromBuckets {
		d := time.Duration(math.Round(le * 1e9))
		if b := Bin(int64(d)); Upper(b-1) != d {
			t.Errorf("Prometheus bound %v is not a bin edge", d)
		}
	}
}

func TestQuantile(t *testing.T) {
	us := func(v int64) int64 { return v * 1000 }
	for _, tc := range []struct {
		name   string
		dwells []int64
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", []int64{us(7)}, 0.5, 8 * time.Microsecond},
		{"one p0", []int64{us(7)}, 0, 8 * time.Microsecond},
		{"median of three", []int64{us(1), us(20), us(300)}, 0.5, 21 * time.Microsecond},
		{"p100", []int64{us(1), us(20), us(300)}, 1, 305 * time.Microsecond},
		// 100 values 1..100 µs: p99 is the 99th (99 µs, bin [99,100)).
		{"p99 of 100", seq(1, 100, us(1)), 0.99, 100 * time.Microsecond},
		{"p50 of 100", seq(1, 100, us(1)), 0.5, 51 * time.Microsecond},
		// 1000 values, 990 at 10 µs and 10 at 2 ms: p99 is still 10 µs,
		// p99.9 is in the 2 ms bin.
		{"p99 boundary", append(rep(990, us(10)), rep(10, us(2000))...), 0.99, 11 * time.Microsecond},
		{"p99.9 tail", append(rep(990, us(10)), rep(10, us(2000))...), 0.999, 2050 * time.Microsecond},
		{"overflow", []int64{int64(time.Second)}, 0.5, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Hist
			for _, d := range tc.dwells {
				h.Observe(d)
			}
			if got := h.Quantile(tc.q); got != tc.want {
				t.Fatalf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
			if h.Count() != uint64(len(tc.dwells)) {
				t.Fatalf("Count %d, want %d", h.Count(), len(tc.dwells))
			}
		})
	}
}

func seq(from, to, unit int64) []int64 {
	var s []int64
	for v := from; v <= to; v++ {
		s = append(s, v*unit)
	}
	return s
}

func rep(n int, v int64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestCumulativeSubAdd(t *testing.T) {
	var a Hist
	for _, d := range []time.Duration{3 * time.Microsecond, 40 * time.Microsecond, 2 * time.Millisecond, time.Second} {
		a.Observe(int64(d))
	}
	pc := a.PromCounts()
	for le, want := range map[float64]uint64{5e-6: 1, 30e-6: 1, 50e-6: 2, 1e-3: 2, 2e-3: 2, 5e-3: 3, 100e-3: 3} {
		if pc[le] != want {
			t.Errorf("le %v: %d, want %d", le, pc[le], want)
		}
	}
	b := a
	b.Observe(int64(10 * time.Microsecond))
	d := b.Sub(&a)
	if d.Count() != 1 || d.Sum != uint64(10*time.Microsecond) || d.Bins[10] != 1 {
		t.Fatalf("Sub: count %d sum %d", d.Count(), d.Sum)
	}
	a.Add(&d)
	if a != b {
		t.Fatal("Add(Sub) does not give back the later snapshot")
	}
}

// TestOffset maps a clock_gettime(CLOCK_MONOTONIC) reading taken between
// two readings of Now: it must fall between them, give or take a few
// microseconds (the offset's error and the system call's own time).
func TestOffset(t *testing.T) {
	if _, err := Offset(); err != nil {
		t.Fatal(err)
	}
	const slack = 5 * time.Microsecond
	bad := 0
	for range 20 {
		a := Now()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		b := Now()
		if k := ts.Nano(); k < a-int64(slack) || k > b+int64(slack) {
			bad++
			t.Logf("kernel %d not within [%d, %d] ± %v", k, a, b, slack)
		}
	}
	// A preempted reading can fall outside; most must not.
	if bad > 2 {
		t.Fatalf("%d of 20 readings outside the bracket", bad)
	}
}

func TestRecorder(t *testing.T) {
	r, err := NewRecorder(4)
	if err != nil {
		t.Fatal(err)
	}
	now := Now()
	r.Mark(now - int64(30*time.Microsecond))
	r.Mark(0) // unknown: ignored
	r.Mark(now - int64(3*time.Millisecond))
	r.Observe()
	var h Hist
	r.Snapshot(&h)
	if h.Count() != 0 {
		t.Fatal("counts visible before Publish")
	}
	r.Publish()
	r.Snapshot(&h)
	if h.Count() != 2 {
		t.Fatalf("count %d, want 2", h.Count())
	}
	if h.Cumulative(30*time.Microsecond) != 0 || h.Cumulative(3*time.Millisecond) != 1 || h.Quantile(1) > 4*time.Millisecond {
		t.Fatalf("dwells misplaced: p100 %v", h.Quantile(1))
	}
	// More marks than the batch: the extra ones are ignored.
	for range 6 {
		r.Mark(Now())
	}
	r.Observe()
	r.Publish()
	r.Snapshot(&h)
	if h.Count() != 6 {
		t.Fatalf("count %d, want 6", h.Count())
	}
	if h.Sum < uint64(3*time.Millisecond) {
		t.Fatalf("sum %d", h.Sum)
	}
}

func TestRecorderAllocs(t *testing.T) {
	r, err := NewRecorder(64)
	if err != nil {
		t.Fatal(err)
	}
	t0 := Now()
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			r.Mark(t0 - int64(i)*1000)
		}
		r.Observe()
		r.Publish()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

func TestSparse(t *testing.T) {
	var h Hist
	h.Observe(int64(3 * time.Microsecond))
	h.Observe(int64(3 * time.Millisecond))
	h.Observe(int64(time.Hour))
	s := h.Sparse()
	if len(s.Bins) != 3 {
		t.Fatalf("%d bins", len(s.Bins))
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Sparse
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.Hist()
	if err != nil || got != h {
		t.Fatalf("round trip through %s: %v", b, err)
	}
	for _, bad := range []string{`{"bins":{"-1":1}}`, `{"bins":{"641":1}}`, `{"bins":{"99999999999":1}}`} {
		var s Sparse
		if err := json.Unmarshal([]byte(bad), &s); err != nil {
			continue // refused by the decoder: fine too
		}
		if _, err := s.Hist(); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
