package stats

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		name             string
		in               []float64
		n                int
		median, min, max float64
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one round", []float64{2.5}, 1, 2.5, 2.5, 2.5},
		{"odd rounds, unsorted", []float64{5.3, 1.76, 3.1}, 3, 3.1, 1.76, 5.3},
		{"even rounds: mean of the middle two", []float64{4, 1, 3, 2}, 4, 2.5, 1, 4},
		{"one lucky round does not move the median", []float64{2, 2.1, 9}, 3, 2.1, 2, 9},
		{"NaN rounds left out", []float64{math.NaN(), 1, 3}, 2, 2, 1, 3},
		{"negative values kept", []float64{-3, 1, -1}, 3, -1, -3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := SpreadOf(tc.in)
			if s.N != tc.n || s.Median != tc.median || s.Min != tc.min || s.Max != tc.max {
				t.Fatalf("SpreadOf(%v) = %+v, want n %d median %v min %v max %v", tc.in, s, tc.n, tc.median, tc.min, tc.max)
			}
			if len(s.Values) != tc.n {
				t.Fatalf("values %v, want %d", s.Values, tc.n)
			}
		})
	}
	in := []float64{3, 1, 2}
	s := SpreadOf(in)
	if !slices.Equal(in, []float64{3, 1, 2}) || !slices.Equal(s.Values, in) {
		t.Fatalf("SpreadOf reordered its input or lost the round order: in %v, values %v", in, s.Values)
	}
}

// TestAddedLatency builds the reflector's and a path's distributions from
// samples and checks that the added latency is the difference of their
// percentiles.
func TestAddedLatency(t *testing.T) {
	build := func(f func(i int) time.Duration) Summary {
		var l Latency
		for i := range 10000 {
			l.Add(f(i))
		}
		return l.Summarize()
	}
	// The reflector: 20 µs + i%100 µs (p50 69 µs, p99 118 µs).
	ref := build(func(i int) time.Duration { return 20*time.Microsecond + time.Duration(i%100)*time.Microsecond })
	tests := []struct {
		name string
		path Summary
		want Added
	}{
		{"same distribution adds nothing", ref, Added{}},
		{"constant 15 µs more on every packet", build(func(i int) time.Duration {
			return 35*time.Microsecond + time.Duration(i%100)*time.Microsecond
		}), Added{15, 15, 15}},
		{"a 2% tail of 1 ms moves p99 and p99.9, not p50", build(func(i int) time.Duration {
			if i%50 == 0 {
				return time.Millisecond
			}
			return 20*time.Microsecond + time.Duration(i%100)*time.Microsecond
		}), Added{P50: 1, P99: 1000 - 119, P999: 1000 - 119}},
		{"faster than the reflector: negative, not clipped", build(func(i int) time.Duration {
			return 10*time.Microsecond + time.Duration(i%100)*time.Microsecond
		}), Added{-10, -10, -10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AddedLatency(tc.path, ref)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1.5 }
			if !near(got.P50, tc.want.P50) || !near(got.P99, tc.want.P99) || !near(got.P999, tc.want.P999) {
				t.Fatalf("AddedLatency = %+v, want %+v (path %+v, reflector %+v)", got, tc.want, tc.path, ref)
			}
		})
	}
}
