package dataplane

import (
	"fmt"
	"testing"
)

// BenchmarkWorker measures the worker's cost per received SRTP packet on
// the fake port: open with the sender's keys, then copy and seal for each
// of fanout receivers. Bytes are the received packet's.
func BenchmarkWorker(b *testing.B) {
	for _, size := range []int{160, 1200} {
		for _, fanout := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("%dB/fanout%d", size, fanout), func(b *testing.B) {
				benchWorker(b, size, fanout)
			})
		}
	}
}

func benchWorker(b *testing.B, size, fanout int) {
	const ring, batch = 1024, 64
	f := &fixture{tbl: newMemTable(), port: newFakePort(ring, batch*16)}
	f.eps = newConference(b, f.tbl, addrs(fanout+1))
	f.w = NewWorker(0, f.port, f.tbl.NewReader(), WorkerConfig{BatchSize: batch})
	s := f.eps[0]
	pkts := make([][]byte, ring)
	for i := range pkts {
		_, pkts[i] = s.sealRTP(b, size-12-16)
	}
	gen := s.peer.Gen
	b.SetBytes(int64(len(pkts[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		k := min(batch, b.N-i)
		for j := range k {
			p := (i + j) % ring
			if p == 0 && i+j > 0 {
				// The ring of packets starts again: a new key generation
				// (a new Opener) accepts the same sequence numbers.
				gen++
				np := *s.peer
				np.Gen = gen
				f.tbl.add(&np)
			}
			f.port.push(pkts[p], s.peer.Addr)
		}
		f.port.reset()
		_ = f.w.poll()
		i += k
	}
	b.StopTimer()
	if st := f.w.Stats(); st.Drops() != 0 {
		b.Fatalf("drops: %s", nonZero(&st))
	}
}
