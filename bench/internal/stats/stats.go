// Package stats summarizes what the load generator measures: latency
// percentiles over a bounded reservoir of samples and RFC 3550
// inter-arrival jitter. It must not allocate per sample once the reservoir
// is full.
package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// DefaultReservoir is the number of latency samples kept by a zero Latency.
const DefaultReservoir = 1 << 20

// Latency collects latency samples. Past its capacity it keeps a uniform
// random subset (reservoir sampling, algorithm R), so percentiles stay
// unbiased over long runs with bounded memory. Not safe for concurrent use;
// merge per-goroutine Latencies with Merge.
type Latency struct {
	// Cap bounds the samples kept; zero means DefaultReservoir.
	Cap     int
	samples []int64
	seen    uint64
	rng     *rand.Rand
}

// Add records one sample.
func (l *Latency) Add(d time.Duration) {
	l.seen++
	c := l.Cap
	if c <= 0 {
		c = DefaultReservoir
	}
	if len(l.samples) < c {
		l.samples = append(l.samples, int64(d))
		return
	}
	if l.rng == nil {
		l.rng = rand.New(rand.NewPCG(l.seen, uint64(c)))
	}
	if j := l.rng.Uint64N(l.seen); j < uint64(c) {
		l.samples[j] = int64(d)
	}
}

// Count returns the number of samples recorded (kept or not).
func (l *Latency) Count() uint64 { return l.seen }

// Merge adds o's kept samples to l (as samples of l).
func (l *Latency) Merge(o *Latency) {
	for _, s := range o.samples {
		l.Add(time.Duration(s))
	}
}

// Summary is a latency distribution in microseconds.
type Summary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// Summarize sorts the kept samples and returns their percentiles (zero
// values when there is none).
func (l *Latency) Summarize() Summary {
	s := Summary{Count: l.seen}
	if len(l.samples) == 0 {
		return s
	}
	v := slices.Clone(l.samples)
	slices.Sort(v)
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	s.P50 = us(Percentile(v, 50))
	s.P99 = us(Percentile(v, 99))
	s.P999 = us(Percentile(v, 99.9))
	s.Max = us(v[len(v)-1])
	var sum float64
	for _, x := range v {
		sum += float64(x)
	}
	s.Mean = sum / float64(len(v)) / 1e3
	return s
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Jitter is the RFC 3550 (section 6.4.1) inter-arrival jitter of one
// stream, computed in nanoseconds instead of RTP timestamp units:
// J += (|D| - J) / 16, where D is the change of transit time between two
// consecutive packets.
type Jitter struct {
	j       float64
	transit int64
	have    bool
}

// Update takes one packet's send and receive times (same clock).
func (j *Jitter) Update(sendNanos, recvNanos int64) {
	t := recvNanos - sendNanos
	if j.have {
		d := float64(t - j.transit)
		j.j += (math.Abs(d) - j.j) / 16
	}
	j.transit, j.have = t, true
}

// Value returns the current jitter estimate.
func (j *Jitter) Value() time.Duration { return time.Duration(j.j) }

// Spread is a figure measured once per round: its median over the rounds
// and its smallest and largest value.
type Spread struct {
	// N is the number of rounds that measured the figure.
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Values are the per-round figures, in round order.
	Values []float64 `json:"values"`
}

// SpreadOf returns the median, minimum and maximum of vs (one value per
// round, in round order; NaNs are left out). With an even count the median
// is the mean of the two middle values. The zero Spread (N 0) says nothing
// was measured.
func SpreadOf(vs []float64) Spread {
	var s Spread
	for _, v := range vs {
		if !math.IsNaN(v) {
			s.Values = append(s.Values, v)
		}
	}
	s.N = len(s.Values)
	if s.N == 0 {
		return s
	}
	v := slices.Clone(s.Values)
	slices.Sort(v)
	s.Min, s.Max = v[0], v[len(v)-1]
	if m := len(v) / 2; len(v)%2 == 1 {
		s.Median = v[m]
	} else {
		s.Median = (v[m-1] + v[m]) / 2
	}
	return s
}

// Added is the latency a forwarder adds over the reflector, per
// percentile, µs.
type Added struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
}

// AddedLatency returns what path adds to the latency distribution of ref
// (the same generator and rate through a trivial reflector): each
// percentile of path minus the same percentile of ref. These are
// differences of quantiles of the two distributions, not per-packet
// differences (no packet goes through both). A negative value means the
// path was faster than the reflector at that percentile; it is kept, not
// clipped, so that noise shows as noise.
func AddedLatency(path, ref Summary) Added {
	return Added{P50: path.P50 - ref.P50, P99: path.P99 - ref.P99, P999: path.P999 - ref.P999}
}
