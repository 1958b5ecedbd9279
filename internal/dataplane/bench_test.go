package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/neigh"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// BenchmarkWorker measures the worker's cost per received SRTP packet:
// open with the sender's keys, then copy and seal for each of fanout
// receivers. Bytes are the received packet's.
//
// memtable runs on the in-memory test table and the fake port (payloads
// only). keytable runs on what an XDP worker uses: the real key table
// (keytable.Table through KeyTable, endpoints installed with srtpfast
// keys), next hops from a neigh.Table resolved from the kernel of a test
// namespace, and Ethernet/IPv4/UDP headers written around each payload as
// the AF_XDP port does (txHeaders, frame.Write); only the AF_XDP rings are
// left out. It needs root for the namespace.
func BenchmarkWorker(b *testing.B) {
	for _, tbl := range []string{"memtable", "keytable"} {
		for _, size := range []int{160, 1200} {
			for _, fanout := range []int{1, 4, 16} {
				b.Run(fmt.Sprintf("%s/%dB/fanout%d", tbl, size, fanout), func(b *testing.B) {
					if tbl == "memtable" {
						benchWorker(b, size, fanout)
					} else {
						benchWorkerKeyTable(b, size, fanout)
					}
				})
			}
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

// realPath is a worker on the real key table, neighbour table and frame
// writer (see BenchmarkWorker).
type realPath struct {
	kt   *keytable.Table
	ids  []uuid.UUID
	eps  []*endpoint
	port *framePort
	w    *Worker
}

// newRealPath installs n endpoints in one conference of a keytable.Table
// and resolves their next hops (permanent neighbour entries on the MD end
// of a netnstest pair) in a neigh.Table.
func newRealPath(t testing.TB, n, queue, out int) *realPath {
	t.Helper()
	testutil.NeedRoot(t, "resolves next hops from the neighbour table of a network namespace")
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rp := &realPath{kt: kt, eps: newConference(t, newMemTable(), addrs(n))}
	for i := range rp.eps {
		rp.ids = append(rp.ids, uuid.New())
		rp.install(t, i)
	}
	pair := netnstest.NewPair(t)
	nl := pair.MD.NS.Netlink()
	nt, err := neigh.New(neigh.Options{Ifindex: pair.MD.Index, Handle: nl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nt.Close)
	for i, e := range rp.eps {
		a := e.peer.Addr.Addr()
		if err := nl.NeighSet(&netlink.Neigh{LinkIndex: pair.MD.Index, State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: net.HardwareAddr{2, 0, 0xc6, 0x12, 1, byte(i)}}); err != nil {
			t.Fatalf("neighbour %s: %v", a, err)
		}
		if _, ok, err := nt.Want(a); err != nil || !ok {
			t.Fatalf("resolve %s: %v %v (%d failures)", a, ok, err, nt.Failures())
		}
	}
	rp.port = newFramePort(queue, out, nt, frame.MAC(pair.MD.MAC))
	rp.w = NewWorker(0, rp.port, KeyTable{kt}.NewReader(), WorkerConfig{BatchSize: 64})
	return rp
}

// install (re)installs endpoint i's association: a new key generation.
func (rp *realPath) install(t testing.TB, i int) {
	e := rp.eps[i]
	if _, err := rp.kt.Install(context.Background(), keytable.Association{
		ID: rp.ids[i], Addr: e.peer.Addr, Conference: 7, Recv: e.peer.Recv, Send: e.peer.Send,
	}); err != nil {
		t.Fatal(err)
	}
}

func benchWorkerKeyTable(b *testing.B, size, fanout int) {
	const ring, batch = 1024, 64
	rp := newRealPath(b, fanout+1, ring, batch*16)
	s := rp.eps[0]
	pkts := make([][]byte, ring)
	for i := range pkts {
		_, pkts[i] = s.sealRTP(b, size-12-16)
	}
	b.SetBytes(int64(len(pkts[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		k := min(batch, b.N-i)
		for j := range k {
			p := (i + j) % ring
			if p == 0 && i+j > 0 {
				// The ring starts again: a new key generation (Install
				// publishes a new Endpoint, so a new Opener) accepts the
				// same sequence numbers. Not part of the per-packet cost.
				b.StopTimer()
				rp.install(b, 0)
				b.StartTimer()
			}
			rp.port.push(pkts[p], s.peer.Addr)
		}
		rp.port.reset()
		_ = rp.w.poll()
		i += k
	}
	b.StopTimer()
	if st := rp.w.Stats(); st.Drops() != 0 {
		b.Fatalf("drops: %s", nonZero(&st))
	}
	if got := rp.port.frames; got != uint64(b.N*fanout) {
		b.Fatalf("%d frames written for %d packets to %d receivers", got, b.N, fanout)
	}
}

// TestWorkerRealPathAllocs: on the real key table, neighbour table and
// frame writer, forwarding allocates nothing per packet, and the frames
// carry the resolved next hop's MAC and the receivers' addresses.
func TestWorkerRealPathAllocs(t *testing.T) {
	rp := newRealPath(t, 5, 256, 256)
	s := rp.eps[0]
	plain, enc := s.sealRTP(t, 160)
	rp.port.push(enc, s.peer.Addr)
	if err := rp.w.poll(); err != nil {
		t.Fatal(err)
	}
	frames, _ := rp.port.sent()
	if len(frames) != 4 {
		st := rp.w.Stats()
		t.Fatalf("%d frames for 4 receivers: %s", len(frames), nonZero(&st))
	}
	for i, fr := range frames {
		var h frame.Headers
		off, n, err := frame.Parse(fr, &h)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		r := rp.eps[i+1]
		if h.Dst != (frame.MAC{2, 0, 0xc6, 0x12, 1, byte(i + 1)}) || h.DstAddr != r.peer.Addr || h.SrcAddr != rp.port.local {
			t.Fatalf("frame %d: to %v at %v from %v", i, h.Dst, h.DstAddr, h.SrcAddr)
		}
		r.open(t, fr[off:off+n], plain)
	}
	pkts := make([][]byte, 102)
	for i := range pkts {
		_, pkts[i] = s.sealRTP(t, 1200)
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		rp.port.reset()
		rp.port.push(pkts[i], s.peer.Addr)
		i++
		_ = rp.w.poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
	if st := rp.w.Stats(); st.Drops() != 0 {
		t.Fatalf("drops: %s", nonZero(&st))
	}
}

// framePort is the fake port with the AF_XDP port's transmit path: each
// datagram goes into a 2048-octet frame after room for its headers, which
// Commit writes with frame.Write (next hop from a Neighbours, as XDPPort).
type framePort struct {
	*fakePort
	nb     Neighbours
	mac    frame.MAC
	hdr    frame.Headers
	off    int
	frames uint64
}

func newFramePort(queue, out int, nb Neighbours, mac frame.MAC) *framePort {
	return &framePort{fakePort: newFakePort(queue, out), nb: nb, mac: mac}
}

func (p *framePort) TxBuffer(dst netip.AddrPort, in *RxPacket) ([]byte, Reason) {
	if r := txHeaders(p.nb, p.mac, dst, in, &p.hdr); r != 0 {
		return nil, r
	}
	if p.ntx == len(p.txBuf) {
		return nil, DropTxFull
	}
	p.off = p.hdr.Len()
	return p.txBuf[p.ntx][p.off:p.off], 0
}

func (p *framePort) Commit(n int) {
	if frame.Write(p.txBuf[p.ntx], &p.hdr, n, true) != nil {
		p.c[DropTooBig]++
		return
	}
	p.frames++
	p.curDst = p.hdr.DstAddr
	p.fakePort.Commit(p.off + n)
}
