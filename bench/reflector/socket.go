package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdfast/mdfast/internal/udpbatch"
)

// socketCounters are the socket reflector's counters, printed on exit.
type socketCounters struct {
	RxPackets   uint64 `json:"rx_packets"`
	TxPackets   uint64 `json:"tx_packets"`
	DropUnknown uint64 `json:"drop_unknown_source"`
	DropTx      uint64 `json:"drop_tx_error"`
}

// runSocket is the socket reflector: it listens on md, reflects until ctx
// ends, and returns its counters. ready is called once it listens.
func runSocket(ctx context.Context, md netip.AddrPort, members []netip.AddrPort, sockBuf, batch int, ready func()) (socketCounters, error) {
	var c socketCounters
	conn, err := udpbatch.Listen(ctx, "udp4", md.String(), udpbatch.Options{
		BatchSize: batch * len(members), RecvBuffer: sockBuf, SendBuffer: sockBuf,
	})
	if err != nil {
		return c, fmt.Errorf("listen on %s: %w", md, err)
	}
	r := newReflector(members, batch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(conn, &c)
	}()
	ready()
	<-ctx.Done()
	conn.Close()
	<-done
	return c, nil
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
func (r *reflector) run(conn *udpbatch.Conn, c *socketCounters) {
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
func (r *reflector) fanout(in []udpbatch.Message, c *socketCounters) []udpbatch.Message {
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
