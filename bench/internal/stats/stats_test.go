package stats

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		in   []int64
		p    float64
		want int64
	}{
		{"empty", nil, 50, 0},
		{"one", []int64{7}, 99, 7},
		{"p50", v, 50, 5},
		{"p90", v, 90, 9},
		{"p99", v, 99, 10},
		{"p100", v, 100, 10},
		{"tiny p", v, 0.001, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %d, want %d", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var l Latency
	if s := l.Summarize(); s.Count != 0 || s.P99 != 0 {
		t.Fatalf("empty: %+v", s)
	}
	for i := 1000; i >= 1; i-- { // unsorted input
		l.Add(time.Duration(i) * time.Microsecond)
	}
	s := l.Summarize()
	if s.Count != 1000 || s.P50 != 500 || s.P99 != 990 || s.P999 != 999 || s.Max != 1000 || s.Mean != 500.5 {
		t.Fatalf("summary %+v", s)
	}
}

func TestReservoirBounded(t *testing.T) {
	l := Latency{Cap: 100}
	for i := range 100000 {
		l.Add(time.Duration(i % 1000))
	}
	if len(l.samples) != 100 || l.Count() != 100000 {
		t.Fatalf("kept %d of %d", len(l.samples), l.Count())
	}
	// A uniform subset of a uniform 0..999 sequence: the median is near 500.
	if p := l.Summarize().P50 * 1e3; p < 250 || p > 750 {
		t.Fatalf("reservoir median %v ns, want about 500", p)
	}
	var m Latency
	m.Merge(&l)
	if m.Count() != 100 {
		t.Fatalf("merged %d samples", m.Count())
	}
}

func TestJitter(t *testing.T) {
	var j Jitter
	// Constant transit time: no jitter.
	for i := range int64(100) {
		j.Update(i*1000, i*1000+50)
	}
	if j.Value() != 0 {
		t.Fatalf("constant transit: jitter %v", j.Value())
	}
	// Transit alternating 0 and 100 ns: |D| = 100 always; J → 100.
	var k Jitter
	for i := range int64(1000) {
		k.Update(i*1000, i*1000+(i%2)*100)
	}
	if v := k.Value(); v < 99 || v > 100 {
		t.Fatalf("alternating transit: jitter %v, want ~100ns", v)
	}
}
