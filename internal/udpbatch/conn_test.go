package udpbatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listenT(t *testing.T, network, addr string, opts Options) *Conn {
	t.Helper()
	c, err := Listen(context.Background(), network, addr, opts)
	if err != nil {
		t.Fatalf("Listen(%s, %s): %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestReadWriteBatch(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr string
	}{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"udp6", "udp6", "[::1]:0"},
		{"dual-stack socket, IPv4 peer", "udp", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := listenT(t, tc.network, tc.addr, Options{BatchSize: 16})
			b := listenT(t, tc.network, tc.addr, Options{BatchSize: 16})
			const n = 16
			out := make([]Message, n)
			for i := range out {
				out[i] = Message{Buf: bytes.Repeat([]byte{byte(i)}, 10+i*50), Addr: b.LocalAddr()}
			}
			sent, err := a.WriteBatch(out)
			if err != nil || sent != n {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, n)
			}
			in := make([]Message, n)
			for i := range in {
				in[i].Buf = make([]byte, 0, 2048)
			}
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < n {
				k, err := b.ReadBatch(in[got:])
				if err != nil {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				got += k
			}
			for i := range in {
				if !bytes.Equal(in[i].Buf, out[i].Buf) {
					t.Errorf("datagram %d: got %d bytes, want %d", i, len(in[i].Buf), len(out[i].Buf))
				}
				if in[i].Addr != a.LocalAddr() {
					t.Errorf("datagram %d: source %v, want %v", i, in[i].Addr, a.LocalAddr())
				}
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	a := listenT(t, "udp4", "127.0.0.1:0", Options{})
	b := listenT(t, "udp4", "127.0.0.1:0", Options{})
	if _, err := a.WriteBatch([]Message{{Buf: make([]byte, 100), Addr: b.LocalAddr()}}); err != nil {
		t.Fatal(err)
	}
	in := []Message{{Buf: make([]byte, 0, 40)}}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := b.ReadBatch(in); err != nil || k != 1 {
		t.Fatalf("ReadBatch = %d, %v", k, err)
	}
	if !in[0].Truncated || in[0].N != 40 {
		t.Fatalf("Truncated=%v N=%d, want true 40", in[0].Truncated, in[0].N)
	}
}

func TestBadCalls(t *testing.T) {
	a := listenT(t, "udp4", "127.0.0.1:0", Options{BatchSize: 2})
	if _, err := a.ReadBatch(make([]Message, 3)); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("ReadBatch(3) on batch 2: %v, want ErrBatchTooLarge", err)
	}
	if _, err := a.WriteBatch(make([]Message, 3)); !errors.Is(err, ErrBatchTooLarge) {
		t.Errorf("WriteBatch(3) on batch 2: %v, want ErrBatchTooLarge", err)
	}
	if _, err := a.ReadBatch([]Message{{}}); err == nil {
		t.Error("ReadBatch with a zero-capacity buffer: no error")
	}
}

func TestDeadlineAndClose(t *testing.T) {
	a := listenT(t, "udp4", "127.0.0.1:0", Options{})
	in := []Message{{Buf: make([]byte, 0, 64)}}
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := a.ReadBatch(in); !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("ReadBatch past deadline: %v, want a timeout", err)
	}
	a.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := a.ReadBatch(in); done <- err }()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReusePortSpreadsFlows checks that with SO_REUSEPORT every flow stays
// on one socket (the property the data plane's per-worker state relies on).
func TestReusePortSpreadsFlows(t *testing.T) {
	a := listenT(t, "udp4", "127.0.0.1:0", Options{ReusePort: true})
	b := listenT(t, "udp4", a.LocalAddr().String(), Options{ReusePort: true})
	owner := map[netip.AddrPort]*Conn{}
	const flows, per = 8, 20
	senders := make([]*Conn, flows)
	for i := range senders {
		senders[i] = listenT(t, "udp4", "127.0.0.1:0", Options{})
	}
	for r := 0; r < per; r++ {
		for _, s := range senders {
			if _, err := s.WriteBatch([]Message{{Buf: []byte(fmt.Sprint(r)), Addr: a.LocalAddr()}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := 0
	for _, c := range []*Conn{a, b} {
		in := make([]Message, 64)
		for {
			for i := range in {
				in[i].Buf = make([]byte, 0, 64)
			}
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			k, err := c.ReadBatch(in)
			if err != nil {
				break
			}
			for _, m := range in[:k] {
				if o, ok := owner[m.Addr]; ok && o != c {
					t.Fatalf("flow %v reached two sockets", m.Addr)
				}
				owner[m.Addr] = c
			}
			total += k
		}
	}
	if total != flows*per {
		t.Fatalf("received %d datagrams, want %d", total, flows*per)
	}
}

func TestZeroAllocs(t *testing.T) {
	a := listenT(t, "udp4", "127.0.0.1:0", Options{BatchSize: 8})
	b := listenT(t, "udp4", "127.0.0.1:0", Options{BatchSize: 8, RecvBuffer: 4 << 20, ReportFragmented: true})
	out := make([]Message, 8)
	for i := range out {
		out[i] = Message{Buf: make([]byte, 200), Addr: b.LocalAddr()}
	}
	in := make([]Message, 8)
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2048)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
		got := 0
		for got < len(out) {
			for i := range in {
				in[i].Buf = bufs[i]
			}
			k, err := b.ReadBatch(in[:len(out)-got])
			if err != nil {
				t.Fatal(err)
			}
			got += k
		}
	})
	if allocs != 0 {
		t.Fatalf("WriteBatch+ReadBatch allocate %.1f times per batch, want 0", allocs)
	}
}

func BenchmarkLoopback(b *testing.B) {
	for _, size := range []int{160, 1200} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			tx, err := Listen(context.Background(), "udp4", "127.0.0.1:0", Options{BatchSize: 32})
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			rx, err := Listen(context.Background(), "udp4", "127.0.0.1:0", Options{BatchSize: 32, RecvBuffer: 8 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			out := make([]Message, 32)
			for i := range out {
				out[i] = Message{Buf: make([]byte, size), Addr: rx.LocalAddr()}
			}
			in := make([]Message, 32)
			bufs := make([][]byte, 32)
			for i := range bufs {
				bufs[i] = make([]byte, 0, 2048)
			}
			b.SetBytes(int64(size) * 32)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tx.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < 32; {
					for i := range in {
						in[i].Buf = bufs[i]
					}
					k, err := rx.ReadBatch(in[:32-got])
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
			}
		})
	}
}
