package dataplane

import (
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dwell"
)

// TestWorkerDwell checks the worker's side of the dwell measurement with a
// port that stamps receive times: each forwarded media packet is observed
// once, after the flush, with the dwell its receive time implies; packets
// without a receive time, dropped packets and packets forwarded to nobody
// are not observed; the observation path allocates nothing.
func TestWorkerDwell(t *testing.T) {
	f := newFixture(t, 5)
	s := f.eps[0]
	var h dwell.Hist
	// No receive time: forwarded, not observed.
	_, enc := s.sealRTP(t, 160)
	f.port.push(enc, s.peer.Addr)
	f.poll(t)
	if f.w.Dwell(&h); h.Count() != 0 || f.w.Stats()[Forwarded] != 1 {
		t.Fatalf("%d dwells, %d forwarded", h.Count(), f.w.Stats()[Forwarded])
	}
	// Received 300 µs ago: one observation per forwarded packet, in a
	// batch of three, each between 300 µs and 300 µs plus the test's time.
	f.port.rxAgo = int64(300 * time.Microsecond)
	f.port.reset()
	start := time.Now()
	for range 3 {
		_, enc := s.sealRTP(t, 160)
		f.port.push(enc, s.peer.Addr)
	}
	f.port.push([]byte{0x80, 0, 0, 1}, s.peer.Addr) // malformed: dropped
	f.poll(t)
	took := time.Since(start)
	f.w.Dwell(&h)
	if st := f.w.Stats(); h.Count() != 3 || st[Forwarded] != 4 {
		t.Fatalf("%d dwells, %d forwarded: %s", h.Count(), st[Forwarded], nonZero(&st))
	}
	if lo := h.Cumulative(300 * time.Microsecond); lo != 0 {
		t.Fatalf("%d dwells under the 300 µs the port stamped", lo)
	}
	if p100 := h.Quantile(1); p100 > 300*time.Microsecond+took+5*time.Millisecond {
		t.Fatalf("p100 %v, the batch took %v", p100, took)
	}

	f.port.reset()
	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = s.sealRTP(t, 1200)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		f.port.reset()
		f.port.push(pkts[i], s.peer.Addr)
		i++
		_ = f.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet with dwell observation", allocs)
	}
	f.w.Dwell(&h)
	if st := f.w.Stats(); h.Count() != st[Forwarded]-1 {
		t.Fatalf("%d dwells for %d forwarded with a receive time", h.Count(), st[Forwarded]-1)
	}
}

// TestTxKickFrames: with WorkerConfig.TxKickFrames the worker flushes as
// soon as that many copies are queued (after the packet that reached it)
// and observes the dwell of the packets flushed so far at that kick; the
// batch's end flushes the rest. Nothing allocates.
func TestTxKickFrames(t *testing.T) {
	f := newFixture(t, 5) // 4 copies per packet
	f.w = NewWorker(0, f.port, f.tbl.NewReader(), WorkerConfig{TxKickFrames: 8})
	f.port.rxAgo = int64(100 * time.Microsecond)
	f.port.sentAtFlush = make([]int, 0, 16)
	s := f.eps[0]
	for range 5 {
		_, enc := s.sealRTP(t, 160)
		f.port.push(enc, s.peer.Addr)
	}
	var h dwell.Hist
	f.poll(t)
	// 5 packets × 4 copies: kicks after the 2nd (8) and 4th (16), then
	// the batch's flush (20).
	if got := f.port.sentAtFlush; len(got) != 3 || got[0] != 8 || got[1] != 16 || got[2] != 20 {
		t.Fatalf("flushed at %v copies, want [8 16 20]", got)
	}
	if f.w.Dwell(&h); h.Count() != 5 {
		t.Fatalf("%d dwells for 5 packets", h.Count())
	}
	pkts := make([][]byte, 204) // AllocsPerRun runs once more to warm up
	for i := range pkts {
		_, pkts[i] = s.sealRTP(t, 160)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		f.port.reset()
		f.port.push(pkts[i], s.peer.Addr)
		f.port.push(pkts[i+1], s.peer.Addr)
		i += 2
		_ = f.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch with TxKickFrames", allocs)
	}
}
