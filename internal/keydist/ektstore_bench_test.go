package keydist

import (
	"strconv"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
)

// BenchmarkEKTCurrent compares, in one run, what a handshake's EKT step
// costs: a new conference's set in this process (MemoryEKT, the
// baseline), a new conference's set through an etcd transaction
// (EtcdEKT, sealed), and a conference this replica already holds (EtcdEKT
// cache: no etcd request). Compare the ratios, not the absolute times.
func BenchmarkEKTCurrent(b *testing.B) {
	c := startEtcd(b)
	s := newTestStore(b, c, "bench")
	e := newTestEtcdEKT(b, s)
	m, err := NewMemoryEKT(MemoryEKTConfig{Cipher: dtls.EKTCipherAESKW128, TTL: time.Hour, MaxConferences: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	e.max = 1 << 30
	n := 0 // conference names stay new across runs (-count)
	b.Run("memory-new", func(b *testing.B) {
		for b.Loop() {
			n++
			p, err := m.Current("m" + strconv.Itoa(n))
			if err != nil {
				b.Fatal(err)
			}
			p.zero()
		}
	})
	b.Run("etcd-new", func(b *testing.B) {
		for b.Loop() {
			n++
			p, err := e.Current("n" + strconv.Itoa(n))
			if err != nil {
				b.Fatal(err)
			}
			p.zero()
		}
	})
	b.Run("etcd-held", func(b *testing.B) {
		if _, err := e.Current("held"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			p, err := e.Current("held")
			if err != nil {
				b.Fatal(err)
			}
			p.zero()
		}
	})
	b.Run("etcd-rekey", func(b *testing.B) {
		p, err := e.Current("rk")
		if err != nil {
			b.Fatal(err)
		}
		spi := p.SPI
		for b.Loop() {
			p, err := e.Rekey("rk", spi)
			if err != nil {
				b.Fatal(err)
			}
			spi = p.SPI
			p.zero()
		}
	})
}
