package dataplane

import (
	"net/netip"
	"sync/atomic"

	"github.com/mdfast/mdfast/internal/dwell"
)

// fakePort is a Port in memory: tests push datagrams and read what was
// committed. It allocates nothing after newFakePort.
type fakePort struct {
	c *Counts

	rxBuf  [][]byte
	rxLen  []int
	rxSrc  []netip.AddrPort
	head   int
	tail   int
	local  netip.AddrPort
	txBuf  [][]byte
	txLen  []int
	txDst  []netip.AddrPort
	ntx    int
	curDst netip.AddrPort
	full   bool // TxBuffer fails with DropTxFull
	// rxAgo, when non-zero, gives every received packet the receive time
	// dwell.Now()-rxAgo, as the XDP port's metadata would.
	rxAgo int64
	// flushes counts Flush calls; sentAtFlush the datagrams committed by
	// each.
	flushes     int
	sentAtFlush []int
	wakes       atomic.Int64
	// waitUntil is the last WaitUntil deadline (Receive never waits).
	waitUntil int64
}

func newFakePort(queue, out int) *fakePort {
	p := &fakePort{
		c:     new(Counts),
		rxBuf: make([][]byte, queue), rxLen: make([]int, queue), rxSrc: make([]netip.AddrPort, queue),
		txBuf: make([][]byte, out), txLen: make([]int, out), txDst: make([]netip.AddrPort, out),
		local: netip.MustParseAddrPort("198.18.0.1:5004"),
	}
	for i := range p.rxBuf {
		p.rxBuf[i] = make([]byte, 2048)
	}
	for i := range p.txBuf {
		p.txBuf[i] = make([]byte, 2048)
	}
	return p
}

// push queues a datagram from src (copied).
func (p *fakePort) push(b []byte, src netip.AddrPort) {
	i := p.tail % len(p.rxBuf)
	p.rxLen[i] = copy(p.rxBuf[i], b)
	p.rxSrc[i] = src
	p.tail++
}

// sent returns the datagrams committed since the last reset.
func (p *fakePort) sent() (bufs [][]byte, dsts []netip.AddrPort) {
	for i := range p.ntx {
		bufs = append(bufs, p.txBuf[i][:p.txLen[i]])
		dsts = append(dsts, p.txDst[i])
	}
	return bufs, dsts
}

func (p *fakePort) reset() { p.ntx = 0 }

func (p *fakePort) Bind(c *Counts) { p.c = c }

func (p *fakePort) Receive(rx []RxPacket) (int, error) {
	n := 0
	for n < len(rx) && p.head < p.tail {
		i := p.head % len(p.rxBuf)
		rx[n] = RxPacket{Payload: p.rxBuf[i][:p.rxLen[i]], Src: p.rxSrc[i], Dst: p.local}
		if p.rxAgo != 0 {
			rx[n].RxTime = dwell.Now() - p.rxAgo
		}
		p.head++
		n++
	}
	return n, nil
}

func (p *fakePort) Release([]RxPacket) {}

func (p *fakePort) TxBuffer(dst netip.AddrPort, _ *RxPacket) ([]byte, Reason) {
	if p.full || p.ntx == len(p.txBuf) {
		return nil, DropTxFull
	}
	p.curDst = dst
	return p.txBuf[p.ntx][:0], 0
}

func (p *fakePort) Commit(n int) {
	p.txLen[p.ntx] = n
	p.txDst[p.ntx] = p.curDst
	p.ntx++
	p.c[TxPackets]++
	p.c[TxBytes] += uint64(n)
}

func (p *fakePort) Flush() error {
	p.flushes++
	if len(p.sentAtFlush) < cap(p.sentAtFlush) {
		p.sentAtFlush = append(p.sentAtFlush, p.ntx)
	}
	return nil
}
func (p *fakePort) Interrupt()        {}
func (p *fakePort) Wake()             { p.wakes.Add(1) }
func (p *fakePort) WaitUntil(d int64) { p.waitUntil = d }
func (p *fakePort) Close() error      { return nil }
