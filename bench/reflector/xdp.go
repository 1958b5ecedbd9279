package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/neigh"
)

// xdpOptions configure openXDP.
type xdpOptions struct {
	// Mode is dataplane.ModeXDPNative or dataplane.ModeXDPGeneric.
	Mode dataplane.Mode
	// Interface carries the media; Port is the media port the classifier
	// redirects.
	Interface string
	Port      uint16
	// Queues is the RX queues served, 0..Queues-1 (default 1).
	Queues int
	// Members are the endpoints: what one sends goes to all the others.
	Members []netip.AddrPort
	Logger  *slog.Logger
}

// xdpPlane is the XDP reflector: the classifier's attachment, the
// neighbour table and one reflecting goroutine per queue.
type xdpPlane struct {
	mode dataplane.Mode
	xsk  afxdp.Mode // the AF_XDP bind mode of the sockets (copy on veth)
	log  *slog.Logger

	cl    *bpf.Classifier
	att   *bpf.Attachment
	nb    *neigh.Table
	nbc   context.CancelFunc
	nbw   chan struct{}
	loops []*reflectLoop

	stop atomic.Bool
	wg   sync.WaitGroup
	errs []error // each loop's exit error, by index (after wg.Wait)
}

// openXDP sets the XDP reflector up as internal/dataplane sets up an XDP
// mode with cmd/mdfast's defaults (the classifier with DTLS and STUN
// redirected too, the AF_XDP sizes, bind mode, batch and idle wait of
// internal/config), in the network namespace of the calling thread, and
// starts reflecting.
func openXDP(o xdpOptions) (_ *xdpPlane, err error) {
	if o.Mode != dataplane.ModeXDPNative && o.Mode != dataplane.ModeXDPGeneric {
		return nil, fmt.Errorf("reflector: %s is not an XDP mode", o.Mode)
	}
	if o.Queues <= 0 {
		o.Queues = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if len(o.Members) < 2 {
		return nil, fmt.Errorf("reflector: %d members: nothing to reflect to", len(o.Members))
	}
	defaults := config.Defaults()
	dc, err := defaults.Dataplane(nil, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("reflector: daemon defaults: %w", err)
	}
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("reflector: interface %q: %w", o.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("reflector: interface %s has no Ethernet address", o.Interface)
	}
	x := &xdpPlane{mode: o.Mode, log: o.Logger}
	defer func() {
		if err != nil {
			x.teardown()
		}
	}()
	slots := max(uint32(bpf.DefaultQueueSlots), uint32(o.Queues))
	if x.cl, err = bpf.Load(bpf.Options{QueueSlots: slots, Ports: []uint16{o.Port}, SlowToXSK: true}); err != nil {
		return nil, fmt.Errorf("reflector: %s: %w", o.Mode, err)
	}
	bm := bpf.ModeNative
	if o.Mode == dataplane.ModeXDPGeneric {
		bm = bpf.ModeGeneric
	}
	if x.att, err = x.cl.Attach(ifi.Index, bm); err != nil {
		return nil, fmt.Errorf("reflector: %s: %w", o.Mode, err)
	}
	if x.nb, err = neigh.New(neigh.Options{Ifindex: ifi.Index, Logger: o.Logger}); err != nil {
		return nil, fmt.Errorf("reflector: %s: %w", o.Mode, err)
	}
	pcfg := dc.PortConfig(ifi.HardwareAddr)
	for q := range o.Queues {
		sock, err := dc.OpenQueue(ifi.Index, q)
		if err != nil {
			return nil, fmt.Errorf("reflector: %s: %w", o.Mode, err)
		}
		x.xsk = sock.Mode()
		x.loops = append(x.loops, newReflectLoop(dataplane.NewXDPPort(sock, x.nb, pcfg), o.Members, dc.BatchSize))
		if err := x.cl.RegisterSocket(uint32(q), sock.FD()); err != nil {
			return nil, fmt.Errorf("reflector: %s: %w", o.Mode, err)
		}
	}
	// Resolve the endpoints' next hops before the first packet, as the
	// daemon does when it installs an endpoint.
	for _, m := range o.Members {
		if _, _, err := x.nb.Want(m.Addr()); err != nil {
			return nil, fmt.Errorf("reflector: next hop of %s: %w", m.Addr(), err)
		}
	}
	x.start()
	return x, nil
}

// Describe returns the mode and the AF_XDP bind mode, e.g. "xdp-native
// (copy)".
func (x *xdpPlane) Describe() string { return fmt.Sprintf("%s (%s)", x.mode, x.xsk) }

func (x *xdpPlane) start() {
	ctx, cancel := context.WithCancel(context.Background())
	x.nbc, x.nbw = cancel, make(chan struct{})
	go func() {
		defer close(x.nbw)
		_ = x.nb.Run(ctx)
	}()
	x.errs = make([]error, len(x.loops))
	for i, l := range x.loops {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := l.run(&x.stop); err != nil {
				x.errs[i] = fmt.Errorf("reflector: queue %d: %w", i, err)
				x.log.Error("reflector: queue stopped", "queue", i, "err", err)
			}
		}()
	}
}

// Stats returns the sum of the loops' counters as of their last batch.
func (x *xdpPlane) Stats() dataplane.Stats {
	var s dataplane.Stats
	for _, l := range x.loops {
		ls := l.Stats()
		s.Add(&ls)
	}
	return s
}

// Dwell returns the loops' dwell histograms summed, as of their last
// batch; safe from any goroutine.
func (x *xdpPlane) Dwell() dwell.Hist {
	var sum, h dwell.Hist
	for _, l := range x.loops {
		l.dwell.Snapshot(&h)
		sum.Add(&h)
	}
	return sum
}

// Close stops the loops, closes the sockets, detaches the classifier and
// returns the final counters.
func (x *xdpPlane) Close() (dataplane.Stats, error) {
	x.stop.Store(true)
	x.wg.Wait()
	st := x.Stats()
	return st, errors.Join(append(x.errs, x.teardown())...)
}

// teardown releases everything; the loops must not be running.
func (x *xdpPlane) teardown() error {
	var errs []error
	for _, l := range x.loops {
		if err := l.port.Close(); err != nil {
			errs = append(errs, fmt.Errorf("reflector: close socket: %w", err))
		}
	}
	if x.att != nil {
		errs = append(errs, x.att.Close())
	}
	if x.cl != nil {
		errs = append(errs, x.cl.Close())
	}
	if x.nb != nil {
		if x.nbc != nil {
			x.nbc()
			<-x.nbw
		}
		x.nb.Close()
	}
	return errors.Join(errs...)
}

// reflectLoop reflects one port's batches. Its batch and counters are
// allocated once; the counters are published to atomics after every batch.
type reflectLoop struct {
	port    dataplane.Port
	members []netip.AddrPort
	rx      []dataplane.RxPacket
	c       dataplane.Counts
	pub     [dataplane.NumCounters]atomic.Uint64
	// dwell is each reflected datagram's time from the XDP receive to the
	// return of its batch's TX kick, as mdfast's workers measure it.
	dwell *dwell.Recorder
}

func newReflectLoop(port dataplane.Port, members []netip.AddrPort, batch int) *reflectLoop {
	l := &reflectLoop{port: port, members: members, rx: make([]dataplane.RxPacket, max(batch, 1))}
	port.Bind(&l.c)
	// Without the monotonic clock the Recorder marks nothing (no dwell).
	l.dwell, _ = dwell.NewRecorder(len(l.rx))
	return l
}

// run reflects until stop is set or the port fails.
func (l *reflectLoop) run(stop *atomic.Bool) error {
	for !stop.Load() {
		if err := l.poll(); err != nil {
			if stop.Load() {
				return nil
			}
			return err
		}
	}
	return nil
}

// poll receives one batch (or waits as the port's idle wait says), copies
// every media datagram of it to the sender's other members, flushes the TX
// batch at once and gives the RX frames back.
func (l *reflectLoop) poll() error {
	n, err := l.port.Receive(l.rx)
	if err != nil {
		l.publish()
		return err
	}
	if n > 0 {
		for i := range l.rx[:n] {
			l.reflect(&l.rx[i])
		}
	}
	// An idle Flush reaps completions and refills the fill ring.
	if err := l.port.Flush(); err != nil {
		l.c[dataplane.DropTxError]++
	}
	l.dwell.Observe()
	if n > 0 {
		l.port.Release(l.rx[:n])
	}
	l.publish()
	return nil
}

// reflect copies p to every member but its sender. Anything else (a frame
// the port could not parse, an empty or non-media payload, a source that is
// no member) is counted and dropped.
func (l *reflectLoop) reflect(p *dataplane.RxPacket) {
	c := &l.c
	if p.Drop != 0 {
		c[p.Drop]++
		return
	}
	b := p.Payload
	c[dataplane.RxPackets]++
	c[dataplane.RxBytes] += uint64(len(b))
	switch {
	case len(b) == 0:
		c[dataplane.DropEmpty]++
		return
	case b[0] < 128 || b[0] > 191:
		c[dataplane.DropJunk]++
		return
	}
	from := netip.AddrPortFrom(p.Src.Addr().Unmap(), p.Src.Port())
	self := -1
	for i, m := range l.members {
		if m == from {
			self = i
			break
		}
	}
	if self < 0 {
		c[dataplane.DropUnknownSource]++
		return
	}
	sent := false
	for i, m := range l.members {
		if i == self {
			continue
		}
		buf, why := l.port.TxBuffer(m, p)
		if why != 0 {
			c[why]++
			continue
		}
		if cap(buf) < len(b) {
			c[dataplane.DropTooBig]++
			continue
		}
		l.port.Commit(copy(buf[:len(b)], b))
		sent = true
	}
	if sent {
		c[dataplane.Forwarded]++
		l.dwell.Mark(p.RxTime)
	}
}

func (l *reflectLoop) publish() {
	for i := range l.c {
		l.pub[i].Store(l.c[i])
	}
	l.dwell.Publish()
}

// Stats returns the loop's counters as of its last batch; safe from any
// goroutine.
func (l *reflectLoop) Stats() dataplane.Stats {
	var s dataplane.Stats
	for i := range s {
		s[i] = l.pub[i].Load()
	}
	return s
}
