package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/testutil"
)

const mediaPort = 5004

// XDP verdicts as returned by Program.Test.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// frame describes a test frame; the zero value plus a payload is an
// untagged Ethernet/IPv4/UDP frame to mediaPort.
type frame struct {
	vlan     []uint16 // TPIDs of VLAN tags, outermost first
	v6       bool
	etype    uint16 // overrides the EtherType after the tags
	ipOpts   int    // octets of IPv4 options (multiple of 4)
	ihl      int    // overrides the IHL
	version  int    // overrides the IP version nibble
	fragOff  uint16 // IPv4 flags+fragment offset field (host order)
	v6ext    []uint8
	proto    uint8 // 0 means UDP
	dport    uint16
	udpLen   int // overrides the UDP length when > 0 (or -1 for 0)
	ipLenAdj int // added to the IP total/payload length
	payload  []byte
	pad      int // trailing octets after the IP datagram (Ethernet padding)
	raw      []byte
}

func (f frame) build() []byte {
	if f.raw != nil {
		return f.raw
	}
	b := []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}
	for _, tpid := range f.vlan {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 42)
	}
	etype := uint16(0x0800)
	if f.v6 {
		etype = 0x86dd
	}
	if f.etype != 0 {
		etype = f.etype
	}
	b = binary.BigEndian.AppendUint16(b, etype)

	proto := f.proto
	if proto == 0 {
		proto = 17
	}
	dport := f.dport
	if dport == 0 {
		dport = mediaPort
	}
	l4 := binary.BigEndian.AppendUint16(nil, 40000)
	l4 = binary.BigEndian.AppendUint16(l4, dport)
	ulen := 8 + len(f.payload)
	switch {
	case f.udpLen > 0:
		ulen = f.udpLen
	case f.udpLen < 0:
		ulen = 0
	}
	l4 = binary.BigEndian.AppendUint16(l4, uint16(ulen))
	l4 = append(l4, 0, 0)
	l4 = append(l4, f.payload...)

	if f.v6 {
		version := 6
		if f.version != 0 {
			version = f.version
		}
		var ext []byte
		next := proto
		for i := len(f.v6ext) - 1; i >= 0; i-- {
			var h []byte
			switch f.v6ext[i] {
			case 44: // fragment header: 8 octets, offset 0, M set
				h = []byte{next, 0, 0, 1, 0, 0, 0, 1}
			case 51: // AH: payload length 1 -> 12 octets
				h = []byte{next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
			default: // hop-by-hop, routing, destination options: 16 octets
				h = append([]byte{next, 1}, make([]byte, 14)...)
			}
			ext = append(h, ext...)
			next = f.v6ext[i]
		}
		plen := len(ext) + len(l4) + f.ipLenAdj
		b = append(b, byte(version<<4), 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(plen))
		b = append(b, next, 64)
		b = append(b, make([]byte, 32)...) // addresses (zero is fine here)
		b = append(b, ext...)
	} else {
		version := 4
		if f.version != 0 {
			version = f.version
		}
		ihl := (20 + f.ipOpts) / 4
		if f.ihl != 0 {
			ihl = f.ihl
		}
		tot := 20 + f.ipOpts + len(l4) + f.ipLenAdj
		b = append(b, byte(version<<4|ihl), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(tot))
		b = append(b, 0, 1)
		b = binary.BigEndian.AppendUint16(b, f.fragOff)
		b = append(b, 64, proto, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1)
		for i := 0; i < f.ipOpts; i++ {
			b = append(b, 1) // NOP options
		}
	}
	b = append(b, l4...)
	return append(b, make([]byte, f.pad)...)
}

var (
	rtp  = []byte{0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 'm', 'e', 'd', 'i', 'a'}
	rtcp = []byte{0x80, 0xc8, 0x00, 0x06, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
)

func loadTest(t testing.TB) *Classifier {
	t.Helper()
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	c, err := Load(Options{Ports: []uint16{mediaPort, 5006}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// monotonicNow reads CLOCK_MONOTONIC, bpf_ktime_get_ns's clock.
func monotonicNow(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

// run runs the classifier once on in and returns the verdict and the one
// counter that moved (it fails unless exactly one moved by one).
func run(t *testing.T, c *Classifier, in []byte) (uint32, Counter) {
	t.Helper()
	before, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t0 := monotonicNow(t)
	ret, out, err := c.Program().Test(in)
	if err != nil {
		t.Fatalf("Program.Test(%d octets): %v", len(in), err)
	}
	t1 := monotonicNow(t)
	// BPF_PROG_TEST_RUN returns the frame from its metadata on: a
	// redirected frame carries its receive time in front (struct rx_meta,
	// afxdp.RxMetaLen octets), every other frame none.
	if ret == xdpRedirect && c.rxTime {
		if len(out) != len(in)+afxdp.RxMetaLen {
			t.Fatalf("redirected frame of %d octets with %d octets of metadata, want %d", len(in), len(out)-len(in), afxdp.RxMetaLen)
		}
		meta := out[:afxdp.RxMetaLen]
		out = out[afxdp.RxMetaLen:]
		magic, rsv := binary.NativeEndian.Uint32(meta), binary.NativeEndian.Uint32(meta[4:])
		ns := int64(binary.NativeEndian.Uint64(meta[8:]))
		if magic != afxdp.RxMetaMagic || rsv != 0 || ns < t0 || ns > t1 {
			t.Errorf("metadata magic %#x reserved %d time %d, want %#x 0 in [%d, %d]", magic, rsv, ns, afxdp.RxMetaMagic, t0, t1)
		}
	}
	if !bytes.Equal(out, in) {
		t.Errorf("the program modified the frame (or left metadata on a verdict %d)", ret)
	}
	after, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	moved := Counter(NumCounters)
	for i := range NumCounters {
		d := after[i] - before[i]
		switch {
		case d == 0:
		case d == 1 && moved == NumCounters:
			moved = i
		default:
			t.Fatalf("counter %s moved by %d (another already moved: %s)", i, d, moved)
		}
	}
	if moved == NumCounters {
		t.Fatalf("no counter moved")
	}
	return ret, moved
}

func TestClassify(t *testing.T) {
	c := loadTest(t)
	payload := func(first byte) []byte { return append([]byte{first}, rtp[1:]...) }
	tests := []struct {
		name    string
		f       frame
		verdict uint32
		counter Counter
	}{
		{"rtp", frame{payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtcp", frame{payload: rtcp}, xdpPass, CounterPassNoSocket},
		{"rtp second port", frame{dport: 5006, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp 128", frame{payload: payload(128)}, xdpPass, CounterPassNoSocket},
		{"rtp 191", frame{payload: payload(191)}, xdpPass, CounterPassNoSocket},
		{"one octet rtp", frame{payload: []byte{0x80}}, xdpPass, CounterPassNoSocket},
		{"rtp ipv6", frame{v6: true, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp 802.1q", frame{vlan: []uint16{0x8100}, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp 802.1ad", frame{vlan: []uint16{0x88a8}, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp 802.1q ipv6", frame{vlan: []uint16{0x8100}, v6: true, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp two vlan tags", frame{vlan: []uint16{0x88a8, 0x8100}, payload: rtp}, xdpPass, CounterPassOther},
		{"rtp ipv4 options 4", frame{ipOpts: 4, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp ipv4 options 40", frame{ipOpts: 40, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp ipv4 DF", frame{fragOff: 0x4000, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp ipv4 padded", frame{payload: []byte{0x80}, pad: 20}, xdpPass, CounterPassNoSocket},
		{"rtp ipv6 hop-by-hop dstopts", frame{v6: true, v6ext: []uint8{0, 60}, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp ipv6 3 ext headers", frame{v6: true, v6ext: []uint8{0, 43, 60}, payload: rtp}, xdpPass, CounterPassNoSocket},
		{"rtp ipv6 4 ext headers", frame{v6: true, v6ext: []uint8{0, 43, 60, 60}, payload: rtp}, xdpPass, CounterPassOther},
		{"rtp ipv6 AH", frame{v6: true, v6ext: []uint8{51}, payload: rtp}, xdpPass, CounterPassOther},
		{"dtls", frame{payload: payload(22)}, xdpPass, CounterPassDTLS},
		{"dtls 20", frame{payload: payload(20)}, xdpPass, CounterPassDTLS},
		{"dtls 63", frame{payload: payload(63)}, xdpPass, CounterPassDTLS},
		{"dtls ipv6", frame{v6: true, payload: payload(22)}, xdpPass, CounterPassDTLS},
		{"stun 0", frame{payload: payload(0)}, xdpPass, CounterPassSTUN},
		{"stun 1", frame{payload: payload(1)}, xdpPass, CounterPassSTUN},
		{"stun 3", frame{payload: payload(3)}, xdpPass, CounterPassSTUN},
		{"stun vlan ipv6", frame{vlan: []uint16{0x8100}, v6: true, payload: payload(0)}, xdpPass, CounterPassSTUN},
		{"junk 4", frame{payload: payload(4)}, xdpDrop, CounterDropJunk},
		{"zrtp 16", frame{payload: payload(16)}, xdpDrop, CounterDropJunk},
		{"junk 19", frame{payload: payload(19)}, xdpDrop, CounterDropJunk},
		{"turn channel 64", frame{payload: payload(64)}, xdpDrop, CounterDropJunk},
		{"junk 127", frame{payload: payload(127)}, xdpDrop, CounterDropJunk},
		{"junk 192", frame{payload: payload(192)}, xdpDrop, CounterDropJunk},
		{"junk 255", frame{payload: payload(255)}, xdpDrop, CounterDropJunk},
		{"junk ipv6", frame{v6: true, payload: payload(0x42)}, xdpDrop, CounterDropJunk},
		{"empty", frame{}, xdpDrop, CounterDropEmpty},
		{"empty padded", frame{pad: 18}, xdpDrop, CounterDropEmpty},
		{"empty ipv6", frame{v6: true}, xdpDrop, CounterDropEmpty},
		{"udp length 7", frame{udpLen: 7, payload: rtp}, xdpDrop, CounterDropMalformed},
		{"udp length 0", frame{udpLen: -1, payload: rtp}, xdpDrop, CounterDropMalformed},
		{"udp length beyond ip", frame{udpLen: 8 + len(rtp) + 1, ipLenAdj: 0, pad: 4, payload: rtp}, xdpDrop, CounterDropMalformed},
		{"ip length short of udp", frame{ipLenAdj: -1, payload: rtp}, xdpDrop, CounterDropMalformed},
		{"ip length beyond frame", frame{udpLen: 8 + len(rtp) + 4, ipLenAdj: 4, payload: rtp}, xdpDrop, CounterDropMalformed},
		{"other port", frame{dport: 5005, payload: rtp}, xdpPass, CounterPassOther},
		{"other port ipv6", frame{v6: true, dport: 443, payload: rtp}, xdpPass, CounterPassOther},
		{"other port junk", frame{dport: 53, payload: payload(0x42)}, xdpPass, CounterPassOther},
		{"tcp", frame{proto: 6, payload: append(make([]byte, 12), rtp...)}, xdpPass, CounterPassOther},
		{"tcp ipv6", frame{v6: true, proto: 6, payload: append(make([]byte, 12), rtp...)}, xdpPass, CounterPassOther},
		{"icmp", frame{proto: 1, payload: rtp}, xdpPass, CounterPassOther},
		{"arp", frame{etype: 0x0806, raw: append([]byte{
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x08, 0x06,
			0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 198, 18, 0, 2}, make([]byte, 10)...)}, xdpPass, CounterPassOther},
		{"lldp", frame{etype: 0x88cc, payload: rtp}, xdpPass, CounterPassOther},
		{"ipv4 version 6", frame{version: 6, payload: rtp}, xdpPass, CounterPassOther},
		{"ipv6 version 4", frame{v6: true, version: 4, payload: rtp}, xdpPass, CounterPassOther},
		{"ipv4 ihl 4", frame{ihl: 4, payload: rtp}, xdpPass, CounterPassOther},
		{"ipv4 ihl beyond frame", frame{ihl: 15, payload: []byte{0x80}}, xdpPass, CounterPassTruncated},
		{"ipv4 first fragment", frame{fragOff: 0x2000, payload: rtp}, xdpPass, CounterPassFragment},
		{"ipv4 non-first fragment", frame{fragOff: 185, payload: rtp}, xdpPass, CounterPassFragment},
		{"ipv4 last fragment", frame{fragOff: 0x0001, payload: rtp}, xdpPass, CounterPassFragment},
		{"ipv4 fragment of tcp", frame{proto: 6, fragOff: 0x2000, payload: rtp}, xdpPass, CounterPassFragment},
		{"ipv6 fragment", frame{v6: true, v6ext: []uint8{44}, payload: rtp}, xdpPass, CounterPassFragment},
		{"ipv6 hop-by-hop fragment", frame{v6: true, v6ext: []uint8{0, 44}, payload: rtp}, xdpPass, CounterPassFragment},
		{"vlan only", frame{raw: []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0, 42}}, xdpPass, CounterPassTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.f.build()
			verdict, counter := run(t, c, in)
			if verdict != tt.verdict || counter != tt.counter {
				t.Errorf("got verdict %d counter %s, want %d %s\n% x", verdict, counter, tt.verdict, tt.counter, in)
			}
		})
	}
}

// TestTruncation runs the classifier on every prefix of valid RTP frames: a
// frame that ends before the UDP header is complete is passed untouched
// (counted as truncated); one whose UDP header is complete but whose
// datagram is not is dropped as malformed; only the whole frame is RTP.
// None is ever redirected.
func TestTruncation(t *testing.T) {
	c := loadTest(t)
	testTruncation(t, c, xdpPass, CounterPassNoSocket)
}

// testTruncation runs the truncation cases; full and fullCounter are the
// verdict and counter of the whole frame.
func testTruncation(t *testing.T, c *Classifier, full uint32, fullCounter Counter) {
	frames := map[string]struct {
		f      frame
		udpEnd int
	}{
		"ipv4":         {frame{payload: rtp}, 14 + 20 + 8},
		"ipv4 options": {frame{ipOpts: 12, payload: rtp}, 14 + 32 + 8},
		"vlan ipv4":    {frame{vlan: []uint16{0x8100}, payload: rtp}, 18 + 20 + 8},
		"ipv6":         {frame{v6: true, payload: rtp}, 14 + 40 + 8},
		"ipv6 ext":     {frame{v6: true, v6ext: []uint8{0, 60}, payload: rtp}, 14 + 40 + 32 + 8},
	}
	for name, tc := range frames {
		t.Run(name, func(t *testing.T) {
			frame := tc.f.build()
			for n := 0; n <= len(frame); n++ {
				in := frame[:n]
				if n < 14 {
					// BPF_PROG_TEST_RUN refuses frames shorter than an
					// Ethernet header; no driver delivers them either.
					if _, _, err := c.Program().Test(in); err == nil {
						t.Errorf("%d octets: Program.Test accepted a frame shorter than Ethernet", n)
					}
					continue
				}
				verdict, counter := run(t, c, in)
				var wantV uint32
				var wantC Counter
				switch {
				case n < tc.udpEnd:
					wantV, wantC = xdpPass, CounterPassTruncated
				case n < len(frame):
					wantV, wantC = xdpDrop, CounterDropMalformed
				default:
					wantV, wantC = full, fullCounter
				}
				if (verdict == xdpRedirect && n < len(frame)) || verdict != wantV || counter != wantC {
					t.Errorf("%d of %d octets: got verdict %d counter %s, want %d %s", n, len(frame), verdict, counter, wantV, wantC)
				}
			}
		})
	}
}

func TestPorts(t *testing.T) {
	c := loadTest(t)
	in := frame{dport: 6000, payload: rtp}.build()
	if _, got := run(t, c, in); got != CounterPassOther {
		t.Fatalf("before AddPort: %s", got)
	}
	if err := c.AddPort(6000); err != nil {
		t.Fatal(err)
	}
	if _, got := run(t, c, in); got != CounterPassNoSocket {
		t.Fatalf("after AddPort: %s", got)
	}
	if err := c.SetPorts(6000, 7000); err != nil {
		t.Fatal(err)
	}
	ports, err := c.Ports()
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0]+ports[1] != 13000 {
		t.Fatalf("Ports after SetPorts(6000, 7000) = %v", ports)
	}
	if _, got := run(t, c, frame{payload: rtp}.build()); got != CounterPassOther {
		t.Fatalf("port %d still classified after SetPorts: %s", mediaPort, got)
	}
	if err := c.RemovePort(6000); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePort(6000); err != nil {
		t.Fatalf("RemovePort of an absent port: %v", err)
	}
	if _, got := run(t, c, in); got != CounterPassOther {
		t.Fatalf("after RemovePort: %s", got)
	}
	if err := c.AddPort(0); !errors.Is(err, ErrInvalidPort) {
		t.Fatalf("AddPort(0) = %v", err)
	}
	if err := c.SetPorts(1, 0); !errors.Is(err, ErrInvalidPort) {
		t.Fatalf("SetPorts(1, 0) = %v", err)
	}
	if err := c.RegisterSocket(DefaultQueueSlots, 0); !errors.Is(err, ErrQueueOutOfRange) {
		t.Fatalf("RegisterSocket out of range = %v", err)
	}
	if err := c.UnregisterSocket(3); err != nil {
		t.Fatalf("UnregisterSocket of an empty slot: %v", err)
	}
	// A non-XSK fd is refused by the kernel.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.RegisterSocket(0, int(f.Fd())); err == nil {
		t.Fatal("RegisterSocket accepted /dev/null")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPort(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddPort after Close = %v", err)
	}
	if _, err := c.Counters(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Counters after Close = %v", err)
	}
}

func TestQueueSlots(t *testing.T) {
	testutil.NeedRoot(t, "loading XDP programs needs CAP_BPF and CAP_NET_ADMIN")
	c, err := Load(Options{QueueSlots: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.QueueSlots() != 4 {
		t.Fatalf("QueueSlots = %d", c.QueueSlots())
	}
	if c.Program() == nil || c.objs.Xsks.MaxEntries() != 4 {
		t.Fatalf("XSKMAP has %d entries, want 4", c.objs.Xsks.MaxEntries())
	}
	if err := c.RegisterSocket(4, 0); !errors.Is(err, ErrQueueOutOfRange) {
		t.Fatalf("RegisterSocket(4) = %v", err)
	}
}

// TestCounterMirror checks that the Go constants mirror enum counter.
func TestCounterMirror(t *testing.T) {
	want := map[Counter]classifyCounter{
		CounterRedirect:      classifyCounterCOUNTER_REDIRECT,
		CounterPassNoSocket:  classifyCounterCOUNTER_PASS_NO_SOCKET,
		CounterPassDTLS:      classifyCounterCOUNTER_PASS_DTLS,
		CounterPassSTUN:      classifyCounterCOUNTER_PASS_STUN,
		CounterPassFragment:  classifyCounterCOUNTER_PASS_FRAGMENT,
		CounterPassTruncated: classifyCounterCOUNTER_PASS_TRUNCATED,
		CounterPassOther:     classifyCounterCOUNTER_PASS_OTHER,
		CounterDropJunk:      classifyCounterCOUNTER_DROP_JUNK,
		CounterDropEmpty:     classifyCounterCOUNTER_DROP_EMPTY,
		CounterDropMalformed: classifyCounterCOUNTER_DROP_MALFORMED,
		CounterRedirectSlow:  classifyCounterCOUNTER_REDIRECT_SLOW,
		NumCounters:          classifyCounterCOUNTER_MAX,
	}
	for g, c := range want {
		if uint32(g) != uint32(c) {
			t.Errorf("Counter %s = %d, enum counter has %d", g, g, c)
		}
	}
	spec, err := loadClassify()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[classifyMapCounters].MaxEntries; got != uint32(NumCounters) {
		t.Errorf("counters map has %d entries, NumCounters is %d", got, NumCounters)
	}
	if spec.Maps[classifyMapCounters].Type != ebpf.PerCPUArray {
		t.Errorf("counters map is a %s", spec.Maps[classifyMapCounters].Type)
	}
	seen := map[string]bool{}
	for i := range NumCounters + 1 {
		s := i.String()
		if seen[s] {
			t.Errorf("duplicate counter name %q", s)
		}
		seen[s] = true
	}
}

// fragment builds the IP fragments of one UDP datagram to mediaPort whose
// payload is payload: each fragment carries at most chunk octets of the
// UDP datagram (chunk a multiple of 8), IPv4 or IPv6 (fragment header).
func fragment(v6 bool, payload []byte, chunk int) [][]byte {
	l4 := binary.BigEndian.AppendUint16(nil, 40000)
	l4 = binary.BigEndian.AppendUint16(l4, mediaPort)
	l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(payload)))
	l4 = append(l4, 0, 0)
	l4 = append(l4, payload...)
	var out [][]byte
	for off := 0; off < len(l4); off += chunk {
		piece := l4[off:min(off+chunk, len(l4))]
		more := off+chunk < len(l4)
		b := []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}
		if v6 {
			b = binary.BigEndian.AppendUint16(b, 0x86dd)
			b = append(b, 6<<4, 0, 0, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(8+len(piece)))
			b = append(b, 44, 64)
			b = append(b, make([]byte, 32)...)
			fo := uint16(off/8) << 3
			if more {
				fo |= 1
			}
			b = append(b, 17, 0)
			b = binary.BigEndian.AppendUint16(b, fo)
			b = append(b, 0, 0, 0x12, 0x34) // identification
		} else {
			b = binary.BigEndian.AppendUint16(b, 0x0800)
			b = append(b, 0x45, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(20+len(piece)))
			b = append(b, 0x12, 0x34)
			fo := uint16(off / 8)
			if more {
				fo |= 0x2000
			}
			b = binary.BigEndian.AppendUint16(b, fo)
			b = append(b, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1)
		}
		out = append(out, append(b, piece...))
	}
	return out
}

// TestClassifyFragments runs the classifier on the fragments of real UDP
// datagrams to a media port: first, middle and last, IPv4 and IPv6 (and an
// IPv6 atomic fragment). Every one is passed to the kernel and counted as a
// fragment, whatever its payload looks like: the first fragment's UDP
// length exceeds the fragment (it must not be dropped as malformed), and
// the middle fragment is crafted so that its data reads like a UDP header
// to the media port followed by RTP (it must not be redirected or dropped
// by a parser that ignored the offset). The kernel reassembles them; what
// the MD does with the datagram then is the data plane's rule for
// fragmented media (dataplane.DropFrameFragment), the same in every mode.
func TestClassifyFragments(t *testing.T) {
	c := loadTest(t)
	const chunk = 600
	media := make([]byte, 1600)
	media[0], media[1] = 0x80, 0x60
	// Data at datagram offset chunk (payload offset chunk-8): a fake UDP
	// header to the media port, length 20, then an RTP first octet.
	fake := media[chunk-8:]
	binary.BigEndian.PutUint16(fake[0:], 40000)
	binary.BigEndian.PutUint16(fake[2:], mediaPort)
	binary.BigEndian.PutUint16(fake[4:], 20)
	fake[8] = 0x80
	dtls := append([]byte{22, 0xfe, 0xfd}, make([]byte, 1600)...)
	junk := append([]byte{0x42}, make([]byte, 1600)...)
	for _, v6 := range []bool{false, true} {
		ip := "ipv4"
		if v6 {
			ip = "ipv6"
		}
		for _, p := range []struct {
			name    string
			payload []byte
		}{{"media", media}, {"dtls", dtls}, {"junk", junk}} {
			frags := fragment(v6, p.payload, chunk)
			if len(frags) < 3 {
				t.Fatalf("%d fragments, want first, middle(s) and last", len(frags))
			}
			for i, f := range frags {
				pos := "middle"
				switch i {
				case 0:
					pos = "first"
				case len(frags) - 1:
					pos = "last"
				}
				t.Run(ip+" "+p.name+" "+pos, func(t *testing.T) {
					verdict, counter := run(t, c, f)
					if verdict != xdpPass || counter != CounterPassFragment {
						t.Errorf("verdict %d counter %s, want XDP_PASS %s", verdict, counter, CounterPassFragment)
					}
				})
			}
		}
	}
	t.Run("ipv6 atomic fragment", func(t *testing.T) {
		f := fragment(true, rtp, 2048) // one fragment: offset 0, M clear
		if len(f) != 1 {
			t.Fatalf("%d fragments", len(f))
		}
		if verdict, counter := run(t, c, f[0]); verdict != xdpPass || counter != CounterPassFragment {
			t.Errorf("verdict %d counter %s, want XDP_PASS %s", verdict, counter, CounterPassFragment)
		}
	})
	t.Run("ipv4 datagram with DF, not a fragment", func(t *testing.T) {
		f := frame{fragOff: 0x4000, payload: rtp}.build()
		if verdict, counter := run(t, c, f); verdict != xdpPass || counter != CounterPassNoSocket {
			t.Errorf("verdict %d counter %s, want XDP_PASS %s", verdict, counter, CounterPassNoSocket)
		}
	})
}
