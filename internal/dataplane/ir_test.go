package dataplane

// Instruction counts per forwarded packet (`make bench-ir`, bench/ir).
//
// bench/ir runs this package's test binary under callgrind
// (--collect-atstart=no) with MDFAST_IR_CASES naming the measurements;
// TestIRCallgrind then runs, for each, a warm-up batch and two phases of N
// and 2N packets. Each batch is staged outside the measured part (the
// NIC's part: frames written into receive buffers) and processed with
// callgrind collecting on this thread only (client requests, package
// testutil/valgrind); each phase ends in a dump named after it, and
// (B − A) / N is the cost of one packet with every per-phase constant
// cancelled.
//
// Three implementations of "open once, seal per receiver" are measured:
//
//   - mdfast: Worker.poll on the real key table (keytable.Table through
//     KeyTable) with a port that serves pre-built Ethernet/IPv4/UDP frames
//     from memory, parsed with frame.Parse as the AF_XDP port does, and
//     writes each receiver's headers with txHeaders and frame.Write (next
//     hops from an atomic-pointer map, as neigh.Table.Lookup);
//   - gcm: crypto/cipher AES-128-GCM alone: one Open and, per receiver, a
//     header copy and one Seal, IVs as RFC 7714 builds them (the floor);
//   - pion: pion/srtp v3, DecryptRTP once and EncryptRTP per receiver.
//
// Each is measured with one sender and with several whose packets
// alternate one by one in every batch (irCase): the worker's per-batch
// caches of routes and Openers are then looked up, not just reused.
//
// TestIREntries runs every measurement natively and checks what it
// forwarded and that the measured calls do not allocate.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/uuid"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/neigh"
	"github.com/mdfast/mdfast/internal/testutil/valgrind"
)

// irBatch is the receive batch of every measurement (the worker's default).
const irBatch = 64

// irMeta is the room in front of each received frame for the XDP
// metadata (afxdp.RxMetaLen): irPort stages a receive time there, as the
// classifier does, and reads it as XDPPort does, so the dwell measurement
// is counted.
const irMeta = afxdp.RxMetaLen

// irImpls are the implementations measured, in table order.
var irImpls = []string{"mdfast", "gcm", "pion"}

// irCase is one measurement: implementation, SRTP packet size (the UDP
// payload, tag included), number of receivers of each packet and number
// of senders whose packets alternate one by one.
//
// With S senders and fan-out F the members are grouped in conferences of
// F+1 (every sender's receivers are the other members of its conference,
// so the fan-out stays exactly F), as many conferences as S senders need:
// S = 4, F = 1 is two conferences of two members who both send; S = 4,
// F = 16 one conference of 17 of whom four send.
type irCase struct {
	impl    string
	size    int
	fanout  int
	senders int
}

func (c irCase) String() string {
	return fmt.Sprintf("%s/%d/%d/%d", c.impl, c.size, c.fanout, c.senders)
}

// conferences is the number of conferences of fanout+1 members the
// case's senders are spread over.
func (c irCase) conferences() int { return (c.senders + c.fanout) / (c.fanout + 1) }

// members is the number of endpoints of the case.
func (c irCase) members() int { return c.conferences() * (c.fanout + 1) }

// sender returns the member index of sender s: senders are spread over
// the conferences in turn (s = 0, 1, … alternate between them).
func (c irCase) sender(s int) int {
	nc := c.conferences()
	return (s%nc)*(c.fanout+1) + s/nc
}

// receivers returns the member indexes that member m's packets go to.
func (c irCase) receivers(m int) []int {
	base := m / (c.fanout + 1) * (c.fanout + 1)
	var out []int
	for i := base; i < base+c.fanout+1; i++ {
		if i != m {
			out = append(out, i)
		}
	}
	return out
}

// parseIRCases parses "impl/size/fanout/senders,..." (the MDFAST_IR_CASES
// syntax bench/ir writes).
func parseIRCases(s string) ([]irCase, error) {
	var out []irCase
	for _, f := range strings.Split(s, ",") {
		p := strings.Split(f, "/")
		if len(p) != 4 {
			return nil, fmt.Errorf("ir case %q: want impl/size/fanout/senders", f)
		}
		size, err1 := strconv.Atoi(p[1])
		fan, err2 := strconv.Atoi(p[2])
		snd, err3 := strconv.Atoi(p[3])
		if err1 != nil || err2 != nil || err3 != nil || size < 12+16+1 || size > 1400 || fan < 1 || fan > 64 || snd < 1 || snd > 16 {
			return nil, fmt.Errorf("ir case %q: size in [29, 1400], fan-out in [1, 64], senders in [1, 16]", f)
		}
		c := irCase{impl: p[0], size: size, fanout: fan, senders: snd}
		if !strings.Contains(","+strings.Join(irImpls, ",")+",", ","+c.impl+",") {
			return nil, fmt.Errorf("ir case %q: implementation is one of %v", f, irImpls)
		}
		out = append(out, c)
	}
	return out, nil
}

// irRunner is one measurement's state.
type irRunner interface {
	// stage makes the next k packets ready (not measured).
	stage(k int)
	// step processes the staged packets (measured).
	step()
	// counts returns the packets opened and the datagrams sealed so far,
	// and the first failure seen (nil if none).
	counts() (opened, sealed uint64, err error)
}

// newIRRunner builds the measurement c with packets for npkts packets.
func newIRRunner(t testing.TB, c irCase, npkts int) irRunner {
	t.Helper()
	switch c.impl {
	case "mdfast":
		return newIRWorker(t, c, npkts)
	case "gcm":
		return newIRGCM(t, c, npkts)
	case "pion":
		return newIRPion(t, c, npkts)
	}
	t.Fatalf("unknown implementation %q", c.impl)
	return nil
}

// irPackets is the number of packets a measurement of n packets uses.
func irPackets(n int) int { return irBatch + 3*n }

// irMeasure runs the warm-up batch, then phase A (n packets) and phase B
// (2n packets), each processed with callgrind collecting on this thread
// only while step runs, and dumped as "ir <label> A" and "ir <label> B".
// Natively the requests do nothing. It reports whether every step ran on
// one thread (callgrind's collection is per thread).
func irMeasure(r irRunner, n int, label string) bool {
	irPhase(r, irBatch, false)
	ok := irPhase(r, n, true)
	valgrind.DumpStatsAt("ir " + label + " A")
	ok = irPhase(r, 2*n, true) && ok
	valgrind.DumpStatsAt("ir " + label + " B")
	return ok
}

// irPhase stages and processes n packets in batches, collecting only
// around step when collect is set. Each step starts with a fresh
// scheduling quantum (Gosched), so that the scheduler seldom preempts it:
// a preemption's instructions run on this thread and would be counted.
// It is not locked to its thread: with GOMAXPROCS 1 a goroutine preempted
// resumes on the same one (a locked one is handed between threads, which
// costs ten times more); it reports whether each step ended on the thread
// it began on.
func irPhase(r irRunner, n int, collect bool) bool {
	ok := true
	for i := 0; i < n; {
		k := min(irBatch, n-i)
		r.stage(k)
		if collect {
			runtime.Gosched()
			tid := syscall.Gettid()
			valgrind.ToggleCollect()
			r.step()
			valgrind.ToggleCollect()
			ok = ok && syscall.Gettid() == tid
		} else {
			r.step()
		}
		i += k
	}
	return ok
}

// irBuffers returns n 2048-octet buffers cut from one page-aligned
// allocation: every run places them at the same offsets within their
// pages, and the AEAD's partial-block code takes a path that depends on
// them (how near the data ends to a page end).
func irBuffers(n int) [][]byte {
	slab := make([]byte, n*2048+4096)
	off := int((4096 - uintptr(unsafe.Pointer(&slab[0]))%4096) % 4096)
	out := make([][]byte, n)
	for i := range out {
		b := off + i*2048
		out[i] = slab[b : b+2048 : b+2048]
	}
	return out
}

// irEndpoints returns n endpoints (fixed keys, SSRCs and addresses).
func irEndpoints(t testing.TB, n int) []*endpoint {
	return newConference(t, newMemTable(), addrs(n))
}

// --- mdfast: the worker -------------------------------------------------

type irWorker struct {
	port    *irPort
	w       *Worker
	frames  [][]byte
	next    int
	fanout  int
	members int
}

func newIRWorker(t testing.TB, c irCase, npkts int) *irWorker {
	kt, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eps := irEndpoints(t, c.members())
	nb := make(map[netip.Addr]neigh.Entry)
	for i, e := range eps {
		var id uuid.UUID
		id[0], id[15] = 0x1d, byte(i+1)
		if _, err := kt.Install(context.Background(), keytable.Association{
			ID: id, Addr: e.peer.Addr, Conference: keytable.ConferenceID(7 + i/(c.fanout+1)), Recv: e.peer.Recv, Send: e.peer.Send,
		}); err != nil {
			t.Fatal(err)
		}
		nb[e.peer.Addr.Addr()] = neigh.Entry{MAC: frame.MAC{2, 0, 0xc6, 0x12, 1, byte(i)}}
	}
	port := newIRPort(frame.MAC{2, 0, 0xc6, 0x12, 0, 1}, nb)
	r := &irWorker{port: port, fanout: c.fanout, members: len(eps), frames: make([][]byte, npkts)}
	for i := range r.frames {
		m := c.sender(i % c.senders)
		s := eps[m]
		h := frame.Headers{Dst: port.mac, Src: frame.MAC{2, 0, 0xc6, 0x12, 1, byte(m)},
			SrcAddr: s.peer.Addr, DstAddr: port.local, TTL: 64}
		_, pkt := s.sealRTP(t, c.size-12-16)
		f := make([]byte, h.Len()+len(pkt))
		copy(f[h.Len():], pkt)
		if err := frame.Write(f, &h, len(pkt), true); err != nil {
			t.Fatal(err)
		}
		r.frames[i] = f
	}
	r.w = NewWorker(0, port, KeyTable{kt}.NewReader(), WorkerConfig{BatchSize: irBatch})
	return r
}

func (r *irWorker) stage(k int) {
	for range k {
		r.port.stage(r.frames[r.next])
		r.next++
	}
}

func (r *irWorker) step() { _ = r.w.poll() }

func (r *irWorker) counts() (uint64, uint64, error) {
	st := r.w.Stats()
	if st.Drops() != 0 {
		return st[Forwarded], r.port.sent, fmt.Errorf("drops: %s", nonZero(&st))
	}
	if r.port.sent != st[Forwarded]*uint64(r.fanout) {
		return st[Forwarded], r.port.sent, fmt.Errorf("%d frames sent for %d packets forwarded to %d receivers", r.port.sent, st[Forwarded], r.fanout)
	}
	var h dwell.Hist
	r.w.Dwell(&h)
	if h.Count() != st[Forwarded] {
		return st[Forwarded], r.port.sent, fmt.Errorf("%d dwell observations for %d packets forwarded", h.Count(), st[Forwarded])
	}
	return st[Forwarded], r.port.sent, nil
}

// irPort is a Port in memory with the AF_XDP port's per-packet work:
// staged Ethernet frames are parsed by Receive with frame.Parse, and each
// datagram sent gets its headers from the port's txCache, as XDPPort (UDP
// checksums off on IPv4, mdfast's default), in a TX ring of 64 frames
// flushed when full and at the end of each batch. It allocates nothing
// after newIRPort.
type irPort struct {
	c     *Counts
	mac   frame.MAC
	local netip.AddrPort
	nb    irNeighbours

	rx    [irBatch][]byte
	rxLen [irBatch]int
	nrx   int
	hdr   frame.Headers // parse scratch

	tx     [irBatch][]byte
	txLen  [irBatch]int
	ntx    int
	curHdr *frame.Template
	curBuf []byte
	hdrs   txCache
	sent   uint64
	// flushed, if set, sees the frames of each flush (tests only).
	flushed func(frames [][]byte, lens []int)
}

func newIRPort(mac frame.MAC, nb map[netip.Addr]neigh.Entry) *irPort {
	p := &irPort{c: new(Counts), mac: mac, local: netip.MustParseAddrPort("198.18.0.1:5004")}
	p.nb.m.Store(&nb)
	p.hdrs = newTxCache(&p.nb, mac, false)
	bufs := irBuffers(2 * irBatch)
	copy(p.rx[:], bufs[:irBatch])
	copy(p.tx[:], bufs[irBatch:])
	return p
}

// stage writes a frame into the next receive buffer (what the NIC does).
func (p *irPort) stage(f []byte) {
	m := p.rx[p.nrx][:irMeta]
	binary.NativeEndian.PutUint32(m[0:], afxdp.RxMetaMagic)
	binary.NativeEndian.PutUint64(m[8:], uint64(dwell.Now()))
	p.rxLen[p.nrx] = copy(p.rx[p.nrx][irMeta:], f)
	p.nrx++
}

func (p *irPort) Bind(c *Counts) { p.c = c }

func (p *irPort) Receive(rx []RxPacket) (int, error) {
	n := min(p.nrx, len(rx))
	h := &p.hdr
	for i := range n {
		buf := p.rx[i][irMeta : irMeta+p.rxLen[i]]
		off, ln, err := frame.Parse(buf, h)
		if err != nil {
			rx[i] = RxPacket{Drop: parseReason(err)}
			continue
		}
		rx[i].setFrame(buf[off:off+ln], h, afxdp.TakeRxTime(p.rx[i][:irMeta]))
	}
	p.nrx = 0
	return n, nil
}

func (p *irPort) Release([]RxPacket) {}

func (p *irPort) TxBuffer(dst netip.AddrPort, in *RxPacket) ([]byte, Reason) {
	t, r := p.hdrs.headers(dst, in)
	if r != 0 {
		return nil, r
	}
	p.curHdr = t
	p.curBuf = p.tx[p.ntx]
	return p.curBuf[t.Len():t.Len()], 0
}

func (p *irPort) Commit(n int) {
	if p.curHdr.Write(p.curBuf, n) != nil {
		p.c[DropTooBig]++
		return
	}
	p.txLen[p.ntx] = p.curHdr.Len() + n
	p.c[TxBytes] += uint64(n)
	p.ntx++
	if p.ntx == len(p.tx) {
		_ = p.Flush()
	}
}

func (p *irPort) Flush() error {
	p.hdrs.done()
	if p.flushed != nil && p.ntx > 0 {
		p.flushed(p.tx[:p.ntx], p.txLen[:p.ntx])
	}
	p.c[TxPackets] += uint64(p.ntx)
	p.sent += uint64(p.ntx)
	p.ntx = 0
	return nil
}

func (p *irPort) Interrupt()      {}
func (p *irPort) Wake()           {}
func (p *irPort) WaitUntil(int64) {}
func (p *irPort) Close() error    { return nil }

// irNeighbours is a fixed neighbour table read as neigh.Table reads its
// snapshot (an atomic pointer to a map).
type irNeighbours struct {
	m   atomic.Pointer[map[netip.Addr]neigh.Entry]
	gen atomic.Uint64
}

func (n *irNeighbours) Lookup(dst netip.Addr) (neigh.Entry, bool) {
	e, ok := (*n.m.Load())[dst]
	return e, ok
}

func (n *irNeighbours) Miss(netip.Addr) {}

func (n *irNeighbours) Gen() uint64 { return n.gen.Load() }

// --- gcm: crypto/cipher alone ------------------------------------------

// irAEAD is an AES-128-GCM key with its RFC 7714 salt, kept as the
// words the IV is built from.
type irAEAD struct {
	aead cipher.AEAD
	salt [12]byte
	s0   uint16
	s1   uint32 // XORed with the SSRC
	s2   uint32 // with the ROC
	s3   uint16 // with the SEQ
}

// iv writes the RFC 7714 IV: salt XOR (00 00 || SSRC || ROC || SEQ).
func (k *irAEAD) iv(iv *[12]byte, ssrc, roc uint32, seq uint16) {
	binary.BigEndian.PutUint16(iv[0:], k.s0)
	binary.BigEndian.PutUint32(iv[2:], ssrc^k.s1)
	binary.BigEndian.PutUint32(iv[6:], roc^k.s2)
	binary.BigEndian.PutUint16(iv[10:], seq^k.s3)
}

func newIRAEAD(t testing.TB, r *rand.Rand) *irAEAD {
	key := make([]byte, 16)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	k := &irAEAD{}
	if k.aead, err = cipher.NewGCM(b); err != nil {
		t.Fatal(err)
	}
	for i := range k.salt {
		k.salt[i] = byte(r.Uint32())
	}
	k.s0, k.s1 = binary.BigEndian.Uint16(k.salt[0:]), binary.BigEndian.Uint32(k.salt[2:])
	k.s2, k.s3 = binary.BigEndian.Uint32(k.salt[6:]), binary.BigEndian.Uint16(k.salt[10:])
	return k
}

// irGCMSender is one sender's key and the keys of its receivers.
type irGCMSender struct {
	open *irAEAD
	seal []*irAEAD
}

type irGCM struct {
	snd   []irGCMSender
	pkts  [][]byte
	from  []*irGCMSender // the sender of each packet (a demultiplexing that costs nothing)
	next  int
	cur   [][]byte
	curFr []*irGCMSender
	iv    [12]byte
	plain []byte
	out   [][]byte

	opened, sealed uint64
	err            error
}

// newIRGCM builds the raw AEAD measurement: every member has a key the
// MD opens with and one it seals with, and sender s's packets are sealed
// to the other members of its conference (irCase).
func newIRGCM(t testing.TB, c irCase, npkts int) *irGCM {
	r := rand.New(rand.NewPCG(2, uint64(c.fanout)))
	bufs := irBuffers(npkts + 1 + c.fanout)
	g := &irGCM{pkts: bufs[:npkts], plain: bufs[npkts], out: bufs[npkts+1:], from: make([]*irGCMSender, npkts)}
	open, seal := make([]*irAEAD, c.members()), make([]*irAEAD, c.members())
	for m := range open {
		open[m], seal[m] = newIRAEAD(t, r), newIRAEAD(t, r)
	}
	for s := range c.senders {
		m := c.sender(s)
		snd := irGCMSender{open: open[m]}
		for _, rc := range c.receivers(m) {
			snd.seal = append(snd.seal, seal[rc])
		}
		g.snd = append(g.snd, snd)
	}
	for i := range g.pkts {
		s := i % c.senders
		ssrc := uint32(0x1001 + s)
		seq := uint16(i/c.senders + 1)
		hdr := []byte{0x80, 96, byte(seq >> 8), byte(seq), 0, 0, 0, byte(i), 0, 0, byte(ssrc >> 8), byte(ssrc)}
		payload := make([]byte, c.size-12-16)
		for j := range payload {
			payload[j] = byte(j) ^ byte(seq)
		}
		g.from[i] = &g.snd[s]
		g.from[i].open.iv(&g.iv, ssrc, 0, seq)
		n := copy(g.pkts[i], hdr)
		g.pkts[i] = g.from[i].open.aead.Seal(g.pkts[i][:n], g.iv[:], payload, hdr)
	}
	return g
}

func (g *irGCM) stage(k int) {
	g.cur, g.curFr = g.pkts[g.next:g.next+k], g.from[g.next:g.next+k]
	g.next += k
}

func (g *irGCM) step() {
	for j, p := range g.cur {
		snd := g.curFr[j]
		ssrc, seq := binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint16(p[2:])
		snd.open.iv(&g.iv, ssrc, 0, seq)
		plain, err := snd.open.aead.Open(g.plain[:0], g.iv[:], p[12:], p[:12])
		if err != nil {
			g.err = err
			continue
		}
		g.opened++
		for i, k := range snd.seal {
			out := g.out[i]
			copy(out, p[:12])
			k.iv(&g.iv, ssrc, 0, seq)
			k.aead.Seal(out[12:12], g.iv[:], plain, out[:12])
			g.sealed++
		}
	}
}

func (g *irGCM) counts() (uint64, uint64, error) { return g.opened, g.sealed, g.err }

// checkLast opens what was sealed to each receiver for the last packet.
func (g *irGCM) checkLast(t *testing.T) {
	p, snd := g.pkts[g.next-1], g.from[g.next-1]
	ssrc, seq := binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint16(p[2:])
	snd.open.iv(&g.iv, ssrc, 0, seq)
	want, err := snd.open.aead.Open(nil, g.iv[:], p[12:], p[:12])
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range snd.seal {
		out := g.out[i][:len(p)]
		k.iv(&g.iv, ssrc, 0, seq)
		got, err := k.aead.Open(nil, g.iv[:], out[12:], out[:12])
		if err != nil || !bytes.Equal(got, want) || !bytes.Equal(out[:12], p[:12]) {
			t.Fatalf("receiver %d: %v", i, err)
		}
	}
}

// --- pion: pion/srtp v3 --------------------------------------------------

// irPionSender is the MD's pion/srtp contexts for one sender: the
// sender's keys to decrypt (a context of its own, not the one that
// encrypted), each receiver's to encrypt.
type irPionSender struct {
	dec *srtp.Context
	enc []*srtp.Context
}

type irPion struct {
	pkts  [][]byte
	from  []*irPionSender // the sender of each packet (a demultiplexing that costs nothing)
	next  int
	cur   [][]byte
	curFr []*irPionSender
	hdr   rtp.Header
	plain []byte
	out   [][]byte

	opened, sealed uint64
	err            error
}

// newIRPion builds the pion/srtp measurement with the members, senders
// and receivers of the mdfast one (irCase).
func newIRPion(t testing.TB, c irCase, npkts int) *irPion {
	eps := irEndpoints(t, c.members())
	bufs := irBuffers(npkts + 1 + c.fanout)
	p := &irPion{pkts: bufs[:npkts], plain: bufs[npkts], out: bufs[npkts+1:], from: make([]*irPionSender, npkts)}
	snd := make([]irPionSender, c.senders)
	for s := range snd {
		m := c.sender(s)
		var err error
		if snd[s].dec, err = srtp.CreateContext(eps[m].clientKey, eps[m].clientSalt, srtp.ProtectionProfileAeadAes128Gcm); err != nil {
			t.Fatal(err)
		}
		for _, rc := range c.receivers(m) {
			snd[s].enc = append(snd[s].enc, eps[rc].dec) // server_write: what the MD seals to it
		}
	}
	for i := range p.pkts {
		s := i % c.senders
		_, enc := eps[c.sender(s)].sealRTP(t, c.size-12-16)
		p.pkts[i] = p.pkts[i][:copy(p.pkts[i], enc)]
		p.from[i] = &snd[s]
	}
	return p
}

func (p *irPion) stage(k int) {
	p.cur, p.curFr = p.pkts[p.next:p.next+k], p.from[p.next:p.next+k]
	p.next += k
}

func (p *irPion) step() {
	for j, b := range p.cur {
		snd := p.curFr[j]
		plain, err := snd.dec.DecryptRTP(p.plain, b, &p.hdr)
		if err != nil {
			p.err = err
			continue
		}
		p.opened++
		for i, c := range snd.enc {
			if _, err := c.EncryptRTP(p.out[i], plain, &p.hdr); err != nil {
				p.err = err
				continue
			}
			p.sealed++
		}
	}
}

func (p *irPion) counts() (uint64, uint64, error) { return p.opened, p.sealed, p.err }

// --- the tests -------------------------------------------------------------

// TestIRCallgrind runs the measurements MDFAST_IR_CASES names, MDFAST_IR_N
// packets per phase; bench/ir runs it under callgrind (make bench-ir).
func TestIRCallgrind(t *testing.T) {
	spec := os.Getenv("MDFAST_IR_CASES")
	if spec == "" {
		t.Skip("run by bench/ir under callgrind (make bench-ir): MDFAST_IR_CASES names the measurements")
	}
	cases, err := parseIRCases(spec)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(os.Getenv("MDFAST_IR_N"))
	if err != nil || n <= 0 || n%irBatch != 0 {
		t.Fatalf("MDFAST_IR_N=%q: want a positive multiple of %d", os.Getenv("MDFAST_IR_N"), irBatch)
	}
	// No garbage collection during a measurement: the garbage of setting
	// one up would otherwise be collected on this thread, mid-phase.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// One P: a goroutine the scheduler preempts resumes on its thread.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for i, c := range cases {
		r := newIRRunner(t, c, irPackets(n))
		runtime.GC()
		if !irMeasure(r, n, c.String()) {
			t.Fatalf("%s: a measured step changed threads: its instructions were not all counted", c)
		}
		opened, sealed, err := r.counts()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if want := uint64(irPackets(n)); opened != want || sealed != want*uint64(c.fanout) {
			t.Fatalf("%s: %d packets opened, %d sealed; want %d and %d", c, opened, sealed, want, want*uint64(c.fanout))
		}
		fmt.Printf("ir: measurement %d %s opened %d sealed %d\n", i+1, c, opened, sealed)
	}
}

// TestIREntries runs every measurement bench/ir makes, natively: each
// opens and seals what it should, what mdfast sends decrypts at the
// receivers, and the measured calls allocate nothing.
func TestIREntries(t *testing.T) {
	const n = irBatch
	for _, impl := range irImpls {
		for _, size := range []int{160, 1200} {
			for _, fanout := range []int{1, 4, 16} {
				for _, senders := range []int{1, 4} {
					c := irCase{impl: impl, size: size, fanout: fanout, senders: senders}
					t.Run(c.String(), func(t *testing.T) {
						r := newIRRunner(t, c, irPackets(n)+2*irBatch)
						if w, ok := r.(*irWorker); ok {
							w.checkFrames(t)
						}
						if !irMeasure(r, n, c.String()) {
							t.Log("a step changed threads (harmless natively)")
						}
						opened, sealed, err := r.counts()
						if err != nil {
							t.Fatal(err)
						}
						if want := uint64(irPackets(n)); opened != want || sealed != want*uint64(fanout) {
							t.Fatalf("%d packets opened, %d sealed; want %d and %d", opened, sealed, want, want*uint64(fanout))
						}
						if w, ok := r.(*irWorker); ok {
							w.port.flushed = nil // the check allocates; the path must not
						}
						if g, ok := r.(*irGCM); ok {
							g.checkLast(t)
						}
						allocs := testing.AllocsPerRun(1, func() {
							r.stage(irBatch)
							r.step()
						})
						if impl == "pion" {
							t.Logf("pion/srtp: %v allocations per batch of %d", allocs, irBatch)
						} else if allocs != 0 {
							t.Fatalf("%v allocations per batch of %d", allocs, irBatch)
						}
					})
				}
			}
		}
	}
}

// checkFrames makes the worker's port decrypt-check every frame it sends:
// headers to the receiver's next hop and address, payload that the
// receiver's pion/srtp context opens.
func (r *irWorker) checkFrames(t *testing.T) {
	eps := irEndpoints(t, r.members) // the same keys and addresses
	byAddr := make(map[netip.AddrPort]*endpoint)
	for _, e := range eps {
		byAddr[e.peer.Addr] = e
	}
	r.port.flushed = func(frames [][]byte, lens []int) {
		for i, f := range frames {
			var h frame.Headers
			off, n, err := frame.Parse(f[:lens[i]], &h)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			e := byAddr[h.DstAddr]
			if e == nil || h.SrcAddr != r.port.local || h.Src != r.port.mac {
				t.Fatalf("frame %d from %v at %v to %v: not to a receiver", i, h.Src, h.SrcAddr, h.DstAddr)
			}
			if _, err := e.dec.DecryptRTP(nil, f[off:off+n], nil); err != nil {
				t.Fatalf("receiver %d: %v", e.peer.ID, err)
			}
		}
	}
}

// TestIRCaseLayout checks the members, senders and receivers of the
// measurements: distinct senders, each with exactly fan-out receivers in
// its own conference, and the case syntax bench/ir writes.
func TestIRCaseLayout(t *testing.T) {
	for _, fanout := range []int{1, 2, 4, 16} {
		for _, senders := range []int{1, 2, 3, 4, 5} {
			c := irCase{impl: "mdfast", size: 160, fanout: fanout, senders: senders}
			seen := map[int]bool{}
			for s := range senders {
				m := c.sender(s)
				if m < 0 || m >= c.members() || seen[m] {
					t.Fatalf("%s: sender %d is member %d of %d (seen %v)", c, s, m, c.members(), seen[m])
				}
				seen[m] = true
				rc := c.receivers(m)
				if len(rc) != fanout {
					t.Fatalf("%s: member %d has %d receivers", c, m, len(rc))
				}
				for _, r := range rc {
					if r == m || r/(fanout+1) != m/(fanout+1) || r >= c.members() {
						t.Fatalf("%s: member %d sends to %d", c, m, r)
					}
				}
			}
			if c.members() > senders+fanout {
				t.Fatalf("%s: %d members, more than needed", c, c.members())
			}
		}
	}
	got, err := parseIRCases("mdfast/160/4/4,gcm/1200/1/1")
	if err != nil || len(got) != 2 || got[0] != (irCase{"mdfast", 160, 4, 4}) || got[1] != (irCase{"gcm", 1200, 1, 1}) {
		t.Fatalf("parse: %v, %v", got, err)
	}
	for _, bad := range []string{"", "mdfast/160/4", "mdfast/160/4/0", "mdfast/160/4/17", "x/160/4/1", "mdfast/28/4/1", "mdfast/160/65/1", "mdfast/a/4/1"} {
		if _, err := parseIRCases(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
