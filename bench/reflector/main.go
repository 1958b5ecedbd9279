// Command reflector is the load generator's calibration for `make bench`:
// the simplest forwarder that fans out. It reads the media port in
// batches (recvmmsg through internal/udpbatch) and, for every datagram from
// an endpoint of the bench key file, sends the same octets unchanged to
// every other endpoint (sendmmsg). It has no keys and does no crypto: the
// receivers open what it sends with the sender's client_write keys (loadgen
// -reflected). What the generator measures through it is its own latency,
// the veth's and that of a minimal socket forwarder; the driver subtracts
// it from each path's to report the latency a forwarder adds.
//
// Why a socket and not XDP: XDP_TX and XDP_REDIRECT send one frame for each
// frame received, and a fan-out needs copies (TC's bpf_clone_redirect, a
// second BPF program to build, load and keep reproducible). The socket
// reflector fans out like the forwarders with no other work.
//
// It prints "ready reflector" on stdout once listening and, on SIGTERM or
// SIGINT, one JSON line with its counters.
//
//	reflector -keys keys.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/internal/udpbatch"
)

type counters struct {
	RxPackets   uint64 `json:"rx_packets"`
	TxPackets   uint64 `json:"tx_packets"`
	DropUnknown uint64 `json:"drop_unknown_source"`
	DropTx      uint64 `json:"drop_tx_error"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("reflector", "err", err)
		os.Exit(1)
	}
}

func run() error {
	keysPath := flag.String("keys", "", "bench key file (required): the endpoints and the address to listen on")
	sockBuf := flag.Int("socket-buffer", 8<<20, "SO_RCVBUF/SO_SNDBUF (as the forwarders)")
	batch := flag.Int("batch", udpbatch.DefaultBatchSize, "recvmmsg batch")
	flag.Parse()
	kf, err := benchkeys.Load(*keysPath)
	if err != nil {
		return err
	}
	members := make([]netip.AddrPort, len(kf.Endpoints))
	for i, e := range kf.Endpoints {
		members[i] = netip.AddrPortFrom(e.Addr.Addr().Unmap(), e.Addr.Port())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conn, err := udpbatch.Listen(ctx, "udp4", kf.MD.String(), udpbatch.Options{
		BatchSize: *batch * len(members), RecvBuffer: *sockBuf, SendBuffer: *sockBuf,
	})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", kf.MD, err)
	}
	r := newReflector(members, *batch)
	var c counters
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(conn, &c)
	}()
	fmt.Println("ready reflector")
	<-ctx.Done()
	conn.Close()
	<-done
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"mode": "reflector", "counters": c}); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	return nil
}

// reflector holds the batches, allocated once.
type reflector struct {
	members []netip.AddrPort
	in, out []udpbatch.Message
}

func newReflector(members []netip.AddrPort, batch int) *reflector {
	r := &reflector{
		members: members,
		in:      make([]udpbatch.Message, batch),
		out:     make([]udpbatch.Message, 0, batch*len(members)),
	}
	for i := range r.in {
		r.in[i].Buf = make([]byte, 2048)
	}
	return r
}

// run reflects until conn is closed.
func (r *reflector) run(conn *udpbatch.Conn, c *counters) {
	for {
		n, err := conn.ReadBatch(r.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.RxPackets += uint64(n)
		out := r.fanout(r.in[:n], c)
		for len(out) > 0 {
			k, err := conn.WriteBatch(out)
			c.TxPackets += uint64(k)
			if err == nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.DropTx++
			out = out[k+1:]
		}
		for i := range r.in[:n] {
			r.in[i].Buf = r.in[i].Buf[:cap(r.in[i].Buf)]
		}
	}
}

// fanout returns, for each datagram of in from a member, one message per
// other member with the same octets (no copy: they share the buffer).
func (r *reflector) fanout(in []udpbatch.Message, c *counters) []udpbatch.Message {
	out := r.out[:0]
	for i := range in {
		from := netip.AddrPortFrom(in[i].Addr.Addr().Unmap(), in[i].Addr.Port())
		self := -1
		for j, m := range r.members {
			if m == from {
				self = j
				break
			}
		}
		if self < 0 {
			c.DropUnknown++
			continue
		}
		b := in[i].Buf[:in[i].N]
		for j, m := range r.members {
			if j != self {
				out = append(out, udpbatch.Message{Buf: b, Addr: m})
			}
		}
	}
	return out
}
