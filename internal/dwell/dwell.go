// Package dwell measures how long packets stay in a forwarder: from the
// XDP receive time the classifier writes in front of each redirected frame
// (CLOCK_MONOTONIC, see afxdp.Socket.RxTime) to the moment the worker's TX
// kick returned for the batch that carried the packet's copies.
//
// A Recorder belongs to one worker: it collects the receive times of a
// batch's forwarded packets (Mark), takes one clock reading after the TX
// kick (Observe) and counts each packet's dwell in a log-linear histogram
// of plain counters; Publish copies the bins that changed into atomics once
// per batch, and Snapshot reads those from any goroutine. Nothing
// allocates and no atomic is written per packet.
//
// The histogram's bins are 1 µs wide below 100 µs, 5 µs to 1 ms, 50 µs to
// 10 ms and 500 µs to 100 ms (at most 5 % of the value above 100 µs), with
// one bin for everything longer: the bounds of PromBuckets and every round
// value in between are bin edges.
//
// The package knows nothing of AF_XDP or RTP.
package dwell

import (
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// NumBins is the number of histogram bins, the last one for dwells of
// 100 ms or more.
const NumBins = 100 + 180 + 180 + 180 + 1

// Max is the smallest dwell counted in the last (overflow) bin.
const Max = 100 * time.Millisecond

// Bin returns the histogram bin of a dwell of ns nanoseconds (negative
// counts as 0).
func Bin(ns int64) int {
	us := max(ns, 0) / 1000
	switch {
	case us < 100:
		return int(us)
	case us < 1000:
		return 100 + int((us-100)/5)
	case us < 10000:
		return 280 + int((us-1000)/50)
	case us < 100000:
		return 460 + int((us-10000)/500)
	}
	return NumBins - 1
}

// Upper returns the exclusive upper edge of bin b: every dwell counted in
// b is below it. The last bin's is +Inf (math.MaxInt64).
func Upper(b int) time.Duration {
	us := 0
	switch {
	case b < 0:
		return 0
	case b < 100:
		us = b + 1
	case b < 280:
		us = 100 + (b-100+1)*5
	case b < 460:
		us = 1000 + (b-280+1)*50
	case b < NumBins-1:
		us = 10000 + (b-460+1)*500
	default:
		return math.MaxInt64
	}
	return time.Duration(us) * time.Microsecond
}

// PromBuckets are the upper bounds, in seconds, under which the Prometheus
// histogram of a Hist counts (all of them bin edges, so the counts are
// exact).
var PromBuckets = []float64{
	5e-6, 10e-6, 20e-6, 30e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 750e-6,
	1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3,
}

// Hist is a dwell histogram: Bins[b] dwells in bin b (see Bin), Sum their
// total in nanoseconds.
type Hist struct {
	Bins [NumBins]uint64
	Sum  uint64
}

// Observe counts one dwell of ns nanoseconds.
func (h *Hist) Observe(ns int64) {
	ns = max(ns, 0)
	h.Bins[Bin(ns)]++
	h.Sum += uint64(ns)
}

// Count returns the number of dwells counted.
func (h *Hist) Count() uint64 {
	var n uint64
	for _, v := range h.Bins {
		n += v
	}
	return n
}

// Add adds o's counts to h.
func (h *Hist) Add(o *Hist) {
	for i, v := range o.Bins {
		h.Bins[i] += v
	}
	h.Sum += o.Sum
}

// Sub returns h minus an earlier snapshot of the same histogram (the
// dwells counted in between).
func (h *Hist) Sub(earlier *Hist) Hist {
	var d Hist
	for i, v := range h.Bins {
		d.Bins[i] = v - earlier.Bins[i]
	}
	d.Sum = h.Sum - earlier.Sum
	return d
}

// Quantile returns the upper edge of the bin holding the q-quantile (0 <
// q <= 1) of the counted dwells: at least a fraction q of them are below
// it. It returns 0 for an empty histogram and math.MaxInt64 when the
// quantile is in the overflow bin.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var cum uint64
	for b, v := range h.Bins {
		cum += v
		if cum >= rank {
			return Upper(b)
		}
	}
	return Upper(NumBins - 1)
}

// Cumulative returns the number of dwells below le, counting only whole
// bins (exact when le is a bin edge, as every PromBuckets bound is).
func (h *Hist) Cumulative(le time.Duration) uint64 {
	var n uint64
	for b, v := range h.Bins {
		if Upper(b) > le {
			break
		}
		n += v
	}
	return n
}

// PromCounts returns the cumulative count under each PromBuckets bound,
// in the form prometheus.MustNewConstHistogram takes.
func (h *Hist) PromCounts() map[float64]uint64 {
	m := make(map[float64]uint64, len(PromBuckets))
	for _, le := range PromBuckets {
		m[le] = h.Cumulative(time.Duration(math.Round(le * 1e9)))
	}
	return m
}

// Recorder is one worker's dwell histogram. Mark, Observe and Publish are
// for the worker's goroutine; Snapshot is safe from any goroutine.
type Recorder struct {
	pending []int64 // receive times of the batch's forwarded packets
	offset  int64   // CLOCK_MONOTONIC minus the Go monotonic reading
	on      bool

	h     Hist
	dirty [(NumBins + 63) / 64]uint64
	any   bool

	pub    [NumBins]atomic.Uint64
	pubSum atomic.Uint64
}

// NewRecorder returns a Recorder for batches of up to batch packets. When
// the monotonic clock cannot be read it returns a Recorder that marks
// nothing, and the error.
func NewRecorder(batch int) (*Recorder, error) {
	r := &Recorder{pending: make([]int64, 0, max(batch, 1))}
	off, err := Offset()
	if err != nil {
		return r, err
	}
	r.offset, r.on = off, true
	return r, nil
}

// Mark notes the XDP receive time rxNs (CLOCK_MONOTONIC nanoseconds) of a
// packet whose copies were queued in this batch; 0 (unknown) is ignored,
// and so is a mark beyond the batch size.
func (r *Recorder) Mark(rxNs int64) {
	if rxNs != 0 && len(r.pending) < cap(r.pending) {
		r.pending = append(r.pending, rxNs)
	}
}

// Observe reads the clock once and counts the dwell of every marked
// packet up to now; call it when the batch's TX kick has returned.
func (r *Recorder) Observe() {
	if len(r.pending) == 0 || !r.on {
		r.pending = r.pending[:0]
		return
	}
	now := monotonic() + r.offset
	for _, t := range r.pending {
		ns := max(now-t, 0)
		b := Bin(ns)
		r.h.Bins[b]++
		r.h.Sum += uint64(ns)
		r.dirty[b>>6] |= 1 << (b & 63)
	}
	r.any = true
	r.pending = r.pending[:0]
}

// Publish makes the counts observed since the last Publish visible to
// Snapshot: one atomic store per bin that changed.
func (r *Recorder) Publish() {
	if !r.any {
		return
	}
	for w, word := range r.dirty {
		for word != 0 {
			b := w<<6 | bits.TrailingZeros64(word)
			word &= word - 1
			r.pub[b].Store(r.h.Bins[b])
		}
		r.dirty[w] = 0
	}
	r.pubSum.Store(r.h.Sum)
	r.any = false
}

// Snapshot copies the published counts into h.
func (r *Recorder) Snapshot(h *Hist) {
	for i := range h.Bins {
		h.Bins[i] = r.pub[i].Load()
	}
	h.Sum = r.pubSum.Load()
}

// epoch is the origin of monotonic.
var epoch = time.Now()

// monotonic returns Go's monotonic clock (runtime nanotime, itself
// CLOCK_MONOTONIC read through the vDSO) as nanoseconds since epoch.
func monotonic() int64 { return int64(time.Since(epoch)) }

var offsetOnce = sync.OnceValues(deriveOffset)

// Offset returns CLOCK_MONOTONIC minus the package's Go monotonic reading,
// derived once per process: of 64 clock_gettime(CLOCK_MONOTONIC) calls,
// each between two Go readings, the one with the closest pair gives the
// offset against the pair's midpoint. Both clocks are the same kernel
// clock, so the offset is constant; its error is at most half that
// closest pair's gap (well under a microsecond on an idle core).
func Offset() (int64, error) { return offsetOnce() }

func deriveOffset() (int64, error) {
	best, off := int64(math.MaxInt64), int64(0)
	for range 64 {
		var ts unix.Timespec
		a := monotonic()
		err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		b := monotonic()
		if err != nil {
			return 0, fmt.Errorf("dwell: read CLOCK_MONOTONIC: %w", err)
		}
		if b-a < best {
			best, off = b-a, ts.Nano()-(a+(b-a)/2)
		}
	}
	return off, nil
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds, the clock
// of bpf_ktime_get_ns, from Go's monotonic clock (no system call).
func Now() int64 {
	off, _ := Offset()
	return monotonic() + off
}

// Sparse is a Hist in JSON: the non-empty bins by index, and the sum.
// The bench's forwarders print it in their snapshots.
type Sparse struct {
	SumNs uint64         `json:"sum_ns"`
	Bins  map[int]uint64 `json:"bins"`
}

// Sparse returns h's non-empty bins.
func (h *Hist) Sparse() Sparse {
	s := Sparse{SumNs: h.Sum, Bins: map[int]uint64{}}
	for b, v := range h.Bins {
		if v != 0 {
			s.Bins[b] = v
		}
	}
	return s
}

// Hist returns the histogram s describes, or an error for a bin index
// outside 0..NumBins-1.
func (s *Sparse) Hist() (Hist, error) {
	var h Hist
	for b, v := range s.Bins {
		if b < 0 || b >= NumBins {
			return Hist{}, fmt.Errorf("dwell: bin %d outside 0..%d", b, NumBins-1)
		}
		h.Bins[b] = v
	}
	h.Sum = s.SumNs
	return h, nil
}
