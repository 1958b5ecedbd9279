package dataplane

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/neigh"
)

// Neighbours is what the AF_XDP port needs from the neighbour table
// (satisfied by *neigh.Table).
type Neighbours interface {
	Lookup(dst netip.Addr) (neigh.Entry, bool)
	Miss(dst netip.Addr)
	// Gen changes whenever a Lookup result may have (see neigh.Table.Gen).
	Gen() uint64
}

// XDPPortConfig configures an XDPPort.
type XDPPortConfig struct {
	// MAC is the interface's address, the source of every frame sent.
	MAC frame.MAC
	// UDPChecksumIPv4 computes UDP checksums on IPv4 (IPv6 always has
	// them).
	UDPChecksumIPv4 bool
	// Poll is how long Receive waits for packets (default 50 ms).
	Poll time.Duration
	// Batch is the TX batch size (default 64).
	Batch int
	// Wait is how Receive waits when the RX ring is empty (default
	// WaitPoll); Spin is how long WaitAdaptive spins after the last
	// packet (default DefaultSpin).
	Wait Wait
	Spin time.Duration
	// NoRxTime says the XDP program puts no receive time in front of
	// the frames (bpf.Options.NoRxTime): Receive then does not look for
	// one. The octets in front of a received packet are whatever the
	// UMEM frame held before, such as a datagram sent from it, which a
	// sender chooses (its RTP header extension): read as metadata they
	// would be receive times an outsider planted.
	NoRxTime bool
}

// Wait is how an AF_XDP worker waits for packets when its RX ring is
// empty. Whatever the wait, a received batch is handled and its TX frames
// are flushed at once: no packet waits for a batch to fill.
type Wait uint8

const (
	// WaitPoll sleeps in poll as soon as the RX ring is empty (with
	// need_wakeup): the least CPU, and a wake-up on every packet at low
	// rates. The default: WaitAdaptive has not (yet) been measured to cut
	// the added latency on a host quiet enough to tell (see the bench
	// results of issue 13).
	WaitPoll Wait = iota
	// WaitAdaptive spins on the RX ring (an atomic load, no system call)
	// for up to Spin after the last packet arrived, then sleeps in poll:
	// while packets come closer together than Spin, none waits for the
	// thread to be woken; an idle worker sleeps, and after a lone packet
	// (an audio conference: one every 20 ms per speaker) it burns at
	// most Spin.
	WaitAdaptive
	// WaitSpin never sleeps: it spins on the RX ring, one core busy all
	// the time.
	WaitSpin
)

// DefaultSpin is WaitAdaptive's spin after the last packet.
const DefaultSpin = 50 * time.Microsecond

// ParseWait parses "poll" (also the empty string), "adaptive" or "spin".
func ParseWait(s string) (Wait, error) {
	switch s {
	case "poll", "":
		return WaitPoll, nil
	case "adaptive":
		return WaitAdaptive, nil
	case "spin":
		return WaitSpin, nil
	}
	return 0, fmt.Errorf("dataplane: unknown wait %q (poll, adaptive, spin)", s)
}

// String returns the name ParseWait parses.
func (w Wait) String() string {
	switch w {
	case WaitAdaptive:
		return "adaptive"
	case WaitPoll:
		return "poll"
	case WaitSpin:
		return "spin"
	}
	return fmt.Sprintf("wait(%d)", uint8(w))
}

// epoch is the origin of nanotime.
var epoch = time.Now()

// nanotime is monotonic nanoseconds since epoch (no allocation).
func nanotime() int64 { return int64(time.Since(epoch)) }

// xdpPacketHeadroom is the kernel's XDP_PACKET_HEADROOM: the octets it
// leaves in front of a packet it receives into a UMEM frame, beyond the
// UMEM's own headroom.
const xdpPacketHeadroom = 256

// XDPPort is the AF_XDP port: received frames are parsed in the UMEM and
// opened in place; each outgoing datagram is copied into a fresh UMEM
// frame at the offset of its headers, sealed there, and given
// Ethernet/IP/UDP headers (next-hop MAC from the neighbour table).
type XDPPort struct {
	sock *afxdp.Socket
	nb   Neighbours
	cfg  XDPPortConfig
	c    *Counts

	hdr frame.Headers // parse scratch
	rxd []afxdp.Desc
	txd []afxdp.Desc
	txn []uint32 // UDP payload octets of each txd (TxBytes counts those, as the socket port does)
	ntx int

	cur  afxdp.Desc // frame reserved for the next datagram
	have bool
	// txOff is where in its UMEM frame a datagram sent is placed: where
	// the kernel places one received (XDP_PACKET_HEADROOM plus the
	// UMEM headroom), so that what is sent never covers the octets in
	// front of a later received packet, where Receive looks for the XDP
	// program's receive time (afxdp.Socket.RxTime): a sender's octets
	// forwarded there would read as metadata on a driver that writes
	// none.
	txOff  uint32
	curHdr *frame.Template // of the reserved frame's datagram, in hdrs
	curBuf []byte          // the reserved frame (sock.Frame(cur))
	hdrs   txCache

	lastRx int64 // nanotime of the last non-empty Receive (WaitAdaptive)

	// waitUntil is the WaitUntil deadline (Unix nanoseconds), 0 if none.
	waitUntil int64
	// stopping is set by Interrupt: Receive no longer waits.
	stopping atomic.Bool
}

// NewXDPPort wraps sock (which it then owns) for one worker.
func NewXDPPort(sock *afxdp.Socket, nb Neighbours, cfg XDPPortConfig) *XDPPort {
	if cfg.Poll <= 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Spin <= 0 {
		cfg.Spin = DefaultSpin
	}
	return &XDPPort{
		sock: sock, nb: nb, cfg: cfg, c: new(Counts),
		txOff: xdpPacketHeadroom + sock.Config().Headroom,
		hdrs:  newTxCache(nb, cfg.MAC, cfg.UDPChecksumIPv4),
		rxd:   make([]afxdp.Desc, cfg.Batch),
		txd:   make([]afxdp.Desc, cfg.Batch),
		txn:   make([]uint32, cfg.Batch),
	}
}

// Socket returns the AF_XDP socket, e.g. for FrameStats. Not for use while
// the worker runs.
func (p *XDPPort) Socket() *afxdp.Socket { return p.sock }

// Bind implements Port.
func (p *XDPPort) Bind(c *Counts) { p.c = c }

// Receive implements Port.
func (p *XDPPort) Receive(rx []RxPacket) (int, error) {
	d := p.rxd[:min(len(rx), len(p.rxd))]
	n, err := p.sock.Receive(d)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		if _, err := p.sock.Complete(); err != nil {
			return 0, err
		}
		p.sock.Refill()
		if n, err = p.wait(d); err != nil || n == 0 {
			return 0, err
		}
	}
	if p.cfg.Wait == WaitAdaptive {
		p.lastRx = nanotime()
	}
	h := &p.hdr
	for i := range d[:n] {
		buf := p.sock.Frame(d[i])
		if buf == nil {
			rx[i] = RxPacket{Drop: DropFrameBad}
			continue
		}
		// The receive time first, whatever the frame holds: reading it
		// clears its marker, which must not outlive this packet in the
		// frame (a later one may come without metadata).
		var rxTime int64
		if !p.cfg.NoRxTime {
			rxTime = p.sock.RxTime(d[i])
		}
		off, ln, err := frame.Parse(buf, h)
		if err != nil {
			rx[i] = RxPacket{Drop: parseReason(err)}
			continue
		}
		rx[i].setFrame(buf[off:off+ln], h, rxTime)
	}
	return n, nil
}

// wait waits for packets on an empty RX ring as cfg.Wait says and receives
// them into d. It returns 0 when none came within the poll interval (or,
// spinning, within the spin), before the WaitUntil deadline, or when the
// socket was woken (Wake, Interrupt).
func (p *XDPPort) wait(d []afxdp.Desc) (int, error) {
	if p.stopping.Load() {
		return 0, nil
	}
	limit := p.cfg.Poll
	if p.waitUntil != 0 {
		left := time.Duration(p.waitUntil - time.Now().UnixNano())
		switch {
		case left <= 0:
			p.waitUntil = 0 // passed: the worker has served it
		case left < limit:
			limit = left
		}
	}
	switch p.cfg.Wait {
	case WaitSpin:
		if !p.spinUntil(nanotime() + int64(limit)) {
			return p.drainWake()
		}
		p.c[XDPSpinCatches]++
		return p.sock.Receive(d)
	case WaitAdaptive:
		if p.lastRx != 0 && p.spinUntil(min(p.lastRx+int64(p.cfg.Spin), nanotime()+int64(limit))) {
			p.c[XDPSpinCatches]++
			return p.sock.Receive(d)
		}
	}
	p.c[XDPPollSleeps]++
	ready, err := p.sock.Wait(limit)
	if err != nil || !ready {
		return 0, err
	}
	return p.sock.Receive(d)
}

// drainWake consumes a pending wake-up of a spinning wait (a Wait that
// returns at once) and receives nothing.
func (p *XDPPort) drainWake() (int, error) {
	if p.sock.Woken() {
		if _, err := p.sock.Wait(0); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// spinUntil spins on the RX ring until it has packets (true) or the
// monotonic clock passes deadline or the socket is woken (false). The
// clock and the wake flag are read once per 64 looks at the ring.
func (p *XDPPort) spinUntil(deadline int64) bool {
	for {
		for range 64 {
			if p.sock.Ready() {
				return true
			}
		}
		if nanotime() >= deadline || p.sock.Woken() {
			return false
		}
	}
}

// Release implements Port: the RX frames go back to the fill ring.
func (p *XDPPort) Release(rx []RxPacket) {
	p.sock.Recycle(p.rxd[:len(rx)])
}

// TxBuffer implements Port.
func (p *XDPPort) TxBuffer(dst netip.AddrPort, in *RxPacket) ([]byte, Reason) {
	t, r := p.hdrs.headers(dst, in)
	if r != 0 {
		return nil, r
	}
	if !p.have && !p.alloc() {
		return nil, DropTxFull
	}
	p.curHdr = t
	p.curBuf = p.sock.Frame(p.cur)
	return p.curBuf[t.Len():t.Len()], 0
}

// txHeaders fills h with the headers of a datagram from mac to dst sent in
// reply to in: the next hop's MAC from nb (asking for it on a miss), the
// source address in was sent to (or, across address families, the route's
// preferred source) and in's VLAN tag.
func txHeaders(nb Neighbours, mac frame.MAC, dst netip.AddrPort, in *RxPacket, h *frame.Headers) Reason {
	da := dst.Addr().Unmap()
	e, ok := nb.Lookup(da)
	if !ok {
		nb.Miss(da)
		return DropNoNeighbour
	}
	src := in.Dst.Addr().Unmap()
	if src.Is4() != da.Is4() {
		if !e.Src.IsValid() || e.Src.Unmap().Is4() != da.Is4() {
			return DropNoSource
		}
		src = e.Src.Unmap()
	}
	*h = frame.Headers{
		Dst: e.MAC, Src: mac, VLANProto: in.vlanProto, VLANTCI: in.vlanTCI,
		SrcAddr: netip.AddrPortFrom(src, in.Dst.Port()),
		DstAddr: netip.AddrPortFrom(da, dst.Port()),
		TTL:     64,
	}
	return 0
}

// alloc reserves a free UMEM frame, reaping completions (and flushing the
// queued batch) when none is free.
func (p *XDPPort) alloc() bool {
	for try := 0; try < 2; try++ {
		if p.sock.Alloc(p.txd[p.ntx:p.ntx+1]) == 1 {
			p.cur = p.txd[p.ntx]
			p.cur.Addr += uint64(p.txOff) // within the frame: see txOff
			p.cur.Len -= p.txOff
			p.have = true
			return true
		}
		if try == 0 {
			_ = p.Flush()
		}
	}
	return false
}

// Commit implements Port: it writes the headers and queues the frame.
func (p *XDPPort) Commit(n int) {
	if p.curHdr.Write(p.curBuf, n) != nil {
		p.c[DropTooBig]++
		return // the frame stays reserved for the next datagram
	}
	p.cur.Len = uint32(p.curHdr.Len() + n)
	p.txd[p.ntx] = p.cur
	p.txn[p.ntx] = uint32(n)
	p.ntx++
	p.have = false
	if p.ntx == len(p.txd) {
		_ = p.Flush()
	}
}

// Flush implements Port: it transmits the queued frames (those that do
// not fit the TX ring are dropped and counted), then reaps completions and
// refills the fill ring.
func (p *XDPPort) Flush() error {
	p.hdrs.done()
	var err error
	if p.ntx > 0 {
		q, terr := p.sock.Transmit(p.txd[:p.ntx])
		for _, n := range p.txn[:q] {
			p.c[TxBytes] += uint64(n)
		}
		p.c[TxPackets] += uint64(q)
		if q < p.ntx {
			p.c[DropTxFull] += uint64(p.ntx - q)
			p.sock.Recycle(p.txd[q:p.ntx])
		}
		p.ntx = 0
		err = terr
	}
	if _, cerr := p.sock.Complete(); cerr != nil && err == nil {
		err = cerr
	}
	p.sock.Refill()
	return err
}

// Interrupt implements Port: it wakes the socket, and no later Receive
// waits.
func (p *XDPPort) Interrupt() {
	p.stopping.Store(true)
	p.sock.Wake()
}

// Wake implements Port: it wakes a Receive sleeping in poll(2) (or
// spinning) through the socket's eventfd (afxdp.Socket.Wake).
func (p *XDPPort) Wake() { p.sock.Wake() }

// WaitUntil implements Port: Receive's wait ends at the earlier of the
// poll interval and deadline.
func (p *XDPPort) WaitUntil(deadline int64) { p.waitUntil = deadline }

// Close implements Port: it closes the socket (removing it from the XSKMAP).
func (p *XDPPort) Close() error { return p.sock.Close() }
