package main

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/mdfast/mdfast/internal/dataplane"
)

// memPort is a dataplane.Port in memory: a test queues received datagrams
// (RxPacket as a real port returns them) and reads what was committed and
// flushed. It allocates nothing after newMemPort.
type memPort struct {
	c *dataplane.Counts

	rx   []dataplane.RxPacket
	head int

	txBuf   [][]byte
	txLen   []int
	txDst   []netip.AddrPort
	ntx     int
	flushed int // committed datagrams the last Flush sent
	curDst  netip.AddrPort

	// room is the capacity TxBuffer hands out (0: 2048); full makes
	// TxBuffer fail with DropTxFull, noNeighbour with DropNoNeighbour
	// for that destination.
	room        int
	full        bool
	noNeighbour netip.AddrPort

	flushes, releases int
	released          int
}

func newMemPort(out int) *memPort {
	p := &memPort{
		txBuf: make([][]byte, out), txLen: make([]int, out), txDst: make([]netip.AddrPort, out),
		rx: make([]dataplane.RxPacket, 0, 256),
	}
	for i := range p.txBuf {
		p.txBuf[i] = make([]byte, 2048)
	}
	return p
}

func (p *memPort) push(pk dataplane.RxPacket) { p.rx = append(p.rx, pk) }

func (p *memPort) Bind(c *dataplane.Counts) { p.c = c }

func (p *memPort) Receive(rx []dataplane.RxPacket) (int, error) {
	n := copy(rx, p.rx[p.head:])
	p.head += n
	if p.head == len(p.rx) {
		p.rx, p.head = p.rx[:0], 0
	}
	return n, nil
}

func (p *memPort) Release(rx []dataplane.RxPacket) { p.releases++; p.released += len(rx) }

func (p *memPort) TxBuffer(dst netip.AddrPort, _ *dataplane.RxPacket) ([]byte, dataplane.Reason) {
	switch {
	case p.full || p.ntx == len(p.txBuf):
		return nil, dataplane.DropTxFull
	case dst == p.noNeighbour:
		return nil, dataplane.DropNoNeighbour
	}
	p.curDst = dst
	room := len(p.txBuf[p.ntx])
	if p.room > 0 {
		room = p.room
	}
	return p.txBuf[p.ntx][:0:room], 0
}

func (p *memPort) Commit(n int) {
	p.txLen[p.ntx], p.txDst[p.ntx] = n, p.curDst
	p.ntx++
}

func (p *memPort) Flush() error {
	p.flushes++
	p.flushed = p.ntx
	p.c[dataplane.TxPackets] += uint64(p.ntx)
	p.ntx = 0
	return nil
}

func (p *memPort) Interrupt()      {}
func (p *memPort) Wake()           {}
func (p *memPort) WaitUntil(int64) {}
func (p *memPort) Close() error    { return nil }

var (
	md      = netip.MustParseAddrPort("198.18.0.1:5004")
	members = []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.2:40000"),
		netip.MustParseAddrPort("198.18.0.2:40001"),
		netip.MustParseAddrPort("198.18.0.2:40002"),
		netip.MustParseAddrPort("198.18.0.2:40003"),
	}
)

func rtp(seq byte, n int) []byte {
	b := make([]byte, n)
	b[0], b[1], b[3] = 0x80, 96, seq
	for i := 12; i < n; i++ {
		b[i] = byte(i) ^ seq
	}
	return b
}

// TestReflect: a media datagram from a member goes, unchanged, to every
// other member, flushed in the same batch; everything else is counted by
// its reason and sent nowhere.
func TestReflect(t *testing.T) {
	mapped := netip.AddrPortFrom(netip.AddrFrom16(members[2].Addr().As16()), members[2].Port())
	tests := []struct {
		name  string
		pk    dataplane.RxPacket
		setup func(*memPort)
		// want is the members (by index) that receive the payload; count
		// the counter that must be n (default 1; per receiver for the
		// drops of one copy).
		want  []int
		count dataplane.Counter
		n     uint64
	}{
		{name: "rtp from member 0", pk: dataplane.RxPacket{Payload: rtp(1, 172), Src: members[0], Dst: md}, want: []int{1, 2, 3}, count: dataplane.Forwarded},
		{name: "rtcp from member 3", pk: dataplane.RxPacket{Payload: append([]byte{0x80, 200}, make([]byte, 40)...), Src: members[3], Dst: md}, want: []int{0, 1, 2}, count: dataplane.Forwarded},
		{name: "v4-mapped source", pk: dataplane.RxPacket{Payload: rtp(2, 60), Src: mapped, Dst: md}, want: []int{0, 1, 3}, count: dataplane.Forwarded},
		{name: "unknown port", pk: dataplane.RxPacket{Payload: rtp(3, 60), Src: netip.MustParseAddrPort("198.18.0.2:40009"), Dst: md}, count: dataplane.DropUnknownSource},
		{name: "unknown address", pk: dataplane.RxPacket{Payload: rtp(3, 60), Src: netip.MustParseAddrPort("198.18.0.3:40000"), Dst: md}, count: dataplane.DropUnknownSource},
		{name: "dtls", pk: dataplane.RxPacket{Payload: []byte{22, 0xfe, 0xfd, 0, 0}, Src: members[0], Dst: md}, count: dataplane.DropJunk},
		{name: "stun", pk: dataplane.RxPacket{Payload: []byte{0, 1, 0, 0}, Src: members[0], Dst: md}, count: dataplane.DropJunk},
		{name: "first octet 192", pk: dataplane.RxPacket{Payload: []byte{192, 1}, Src: members[0], Dst: md}, count: dataplane.DropJunk},
		{name: "first octet 127", pk: dataplane.RxPacket{Payload: []byte{127, 1}, Src: members[0], Dst: md}, count: dataplane.DropJunk},
		{name: "empty", pk: dataplane.RxPacket{Payload: []byte{}, Src: members[0], Dst: md}, count: dataplane.DropEmpty},
		{name: "frame the port could not parse", pk: dataplane.RxPacket{Drop: dataplane.DropFrameBadUDP}, count: dataplane.DropFrameBadUDP},
		{name: "tx ring full", pk: dataplane.RxPacket{Payload: rtp(4, 60), Src: members[0], Dst: md}, setup: func(p *memPort) { p.full = true }, count: dataplane.DropTxFull, n: 3},
		{name: "no neighbour for one member", pk: dataplane.RxPacket{Payload: rtp(5, 60), Src: members[0], Dst: md},
			setup: func(p *memPort) { p.noNeighbour = members[2] }, want: []int{1, 3}, count: dataplane.DropNoNeighbour},
		{name: "frame too small", pk: dataplane.RxPacket{Payload: rtp(6, 1400), Src: members[1], Dst: md}, setup: func(p *memPort) { p.room = 1000 }, count: dataplane.DropTooBig, n: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newMemPort(16)
			if tc.setup != nil {
				tc.setup(p)
			}
			l := newReflectLoop(p, members, 8)
			p.push(tc.pk)
			if err := l.poll(); err != nil {
				t.Fatal(err)
			}
			if p.flushes != 1 || p.releases != 1 || p.released != 1 {
				t.Fatalf("flushes %d, releases %d of %d packets; want one flush and one release per batch", p.flushes, p.releases, p.released)
			}
			if p.flushed != len(tc.want) {
				t.Fatalf("sent %d datagrams, want %d", p.flushed, len(tc.want))
			}
			for k, m := range tc.want {
				if p.txDst[k] != members[m] {
					t.Errorf("datagram %d to %s, want %s", k, p.txDst[k], members[m])
				}
				if got := p.txBuf[k][:p.txLen[k]]; !bytes.Equal(got, tc.pk.Payload) {
					t.Errorf("datagram %d to %s is not the received one", k, p.txDst[k])
				}
			}
			st := l.Stats()
			if want := max(tc.n, 1); st[tc.count] != want {
				t.Errorf("%s = %d, want %d (counters %v)", tc.count, st[tc.count], want, st.NonZero())
			}
			if got := st[dataplane.TxPackets]; got != uint64(len(tc.want)) {
				t.Errorf("tx_packets %d, want %d", got, len(tc.want))
			}
			if tc.count != dataplane.Forwarded && len(tc.want) == 0 && st[dataplane.Forwarded] != 0 {
				t.Errorf("forwarded %d", st[dataplane.Forwarded])
			}
		})
	}
}

// TestReflectBatch: one batch of datagrams from several members is
// reflected in order and flushed once; an idle poll flushes (reaping
// completions) and releases nothing.
func TestReflectBatch(t *testing.T) {
	p := newMemPort(64)
	l := newReflectLoop(p, members, 8)
	var sent [][]byte
	for i := range 5 {
		b := rtp(byte(i), 100+i)
		sent = append(sent, b)
		p.push(dataplane.RxPacket{Payload: b, Src: members[i%len(members)], Dst: md})
	}
	if err := l.poll(); err != nil {
		t.Fatal(err)
	}
	if p.flushes != 1 || p.flushed != 5*3 || p.released != 5 {
		t.Fatalf("flushes %d with %d datagrams, released %d", p.flushes, p.flushed, p.released)
	}
	for k := range p.flushed {
		i := k / 3
		if !bytes.Equal(p.txBuf[k][:p.txLen[k]], sent[i]) || p.txDst[k] == members[i%len(members)] {
			t.Fatalf("datagram %d: to %s, %d octets", k, p.txDst[k], p.txLen[k])
		}
	}
	if err := l.poll(); err != nil {
		t.Fatal(err)
	}
	if p.flushes != 2 || p.releases != 1 {
		t.Fatalf("idle poll: flushes %d, releases %d", p.flushes, p.releases)
	}
	var stop atomic.Bool
	stop.Store(true)
	if err := l.run(&stop); err != nil {
		t.Fatal(err)
	}
}

// TestReflectAllocs: the reflect loop allocates nothing per batch (a full
// batch of 32 datagrams fanned out to 3 members each).
func TestReflectAllocs(t *testing.T) {
	p := newMemPort(128)
	l := newReflectLoop(p, members, 32)
	pks := make([]dataplane.RxPacket, 32)
	for i := range pks {
		pks[i] = dataplane.RxPacket{Payload: rtp(byte(i), 160+12), Src: members[i%len(members)], Dst: md}
	}
	allocs := testing.AllocsPerRun(200, func() {
		for i := range pks {
			p.push(pks[i])
		}
		if err := l.poll(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
	if st := l.Stats(); st[dataplane.Forwarded] < 200*32 || st[dataplane.TxPackets] != 3*st[dataplane.Forwarded] {
		t.Fatalf("counters %v", st.NonZero())
	}
}

// counters is s's non-zero counters by name.
func counters(s dataplane.Stats) map[string]uint64 { return s.NonZero() }
