package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mdfast/mdfast/internal/dwell"
)

// TestDwellMetric checks mdfast_forward_dwell_seconds of one queue
// against the worker histogram it comes from: count, sum in seconds and
// the cumulative count under every bucket bound.
func TestDwellMetric(t *testing.T) {
	var h dwell.Hist
	for _, d := range []time.Duration{3 * time.Microsecond, 49 * time.Microsecond, 50 * time.Microsecond, 400 * time.Microsecond, 7 * time.Millisecond, time.Second} {
		h.Observe(int64(d))
	}
	var m dto.Metric
	if err := dwellMetric("0", &h).Write(&m); err != nil {
		t.Fatal(err)
	}
	if labels(&m)["queue"] != "0" {
		t.Fatalf("labels %v", labels(&m))
	}
	hist := m.GetHistogram()
	if hist.GetSampleCount() != 6 {
		t.Fatalf("count %d", hist.GetSampleCount())
	}
	if want := (3 + 49 + 50 + 400 + 7000 + 1e6) * 1e-6; hist.GetSampleSum() < want*0.999999 || hist.GetSampleSum() > want*1.000001 {
		t.Fatalf("sum %v, want %v", hist.GetSampleSum(), want)
	}
	want := map[float64]uint64{5e-6: 1, 10e-6: 1, 50e-6: 2, 75e-6: 3, 500e-6: 4, 5e-3: 4, 10e-3: 5, 100e-3: 5}
	seen := 0
	for _, b := range hist.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok {
			seen++
			if b.GetCumulativeCount() != w {
				t.Errorf("le %v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
		}
	}
	if seen != len(want) || len(hist.GetBucket()) != len(dwell.PromBuckets) {
		t.Fatalf("%d buckets, %d of the expected", len(hist.GetBucket()), seen)
	}
}
