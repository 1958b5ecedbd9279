package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// naive is RFC 1071 written the obvious way, as the reference.
func naive(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		init := r.Uint32() & 0xfffff
		if got, want := Checksum(b, init), naive(b, init); got != want {
			t.Fatalf("len %d: Checksum = %#04x, reference %#04x", n, got, want)
		}
	}
	// RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != ^uint16(0xddf2) {
		t.Fatalf("RFC 1071 example: %#04x", got)
	}
}

func headers(v6, vlan bool) Headers {
	h := Headers{Dst: MAC{2, 0, 0, 0, 0, 1}, Src: MAC{2, 0, 0, 0, 0, 2}, TOS: 0xb8, TTL: 64}
	if v6 {
		h.SrcAddr = netip.MustParseAddrPort("[2001:db8::1]:5004")
		h.DstAddr = netip.MustParseAddrPort("[2001:db8::2]:40000")
	} else {
		h.SrcAddr = netip.MustParseAddrPort("198.18.0.1:5004")
		h.DstAddr = netip.MustParseAddrPort("198.18.0.2:40000")
	}
	if vlan {
		h.VLANProto, h.VLANTCI = EtherTypeVLAN, 0x2064
	}
	return h
}

func TestWriteParseRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, vlan := range []bool{false, true} {
			for _, n := range []int{0, 1, 160, 1201} {
				h := headers(v6, vlan)
				buf := make([]byte, h.Len()+n+4) // +4: Ethernet padding is ignored
				for i := range n {
					buf[h.Len()+i] = byte(i * 7)
				}
				if err := Write(buf, &h, n, true); err != nil {
					t.Fatal(err)
				}
				var got Headers
				off, pn, err := Parse(buf, &got)
				if err != nil {
					t.Fatalf("v6=%v vlan=%v n=%d: Parse: %v", v6, vlan, n, err)
				}
				if off != h.Len() || pn != n || got != h {
					t.Fatalf("v6=%v vlan=%v n=%d: got off=%d n=%d %+v, want off=%d %+v", v6, vlan, n, off, pn, got, h.Len(), h)
				}
				verifyChecksums(t, buf, &h, n)
			}
		}
	}
}

// verifyChecksums checks that the IPv4 header and the UDP datagram sum to
// zero with the reference implementation, as a receiver checks them.
func verifyChecksums(t *testing.T, buf []byte, h *Headers, n int) {
	t.Helper()
	ipOff := ethHeaderLen
	if h.VLANProto != 0 {
		ipOff += vlanTagLen
	}
	udp := buf[h.Len()-udpHeaderLen : h.Len()+n]
	var pseudo []byte
	if h.IsIPv6() {
		pseudo = append(pseudo, buf[ipOff+8:ipOff+40]...)
	} else {
		if c := naive(buf[ipOff:ipOff+ipv4HeaderLen], 0); c != 0 {
			t.Fatalf("IPv4 header checksum does not verify (%#04x)", c)
		}
		pseudo = append(pseudo, buf[ipOff+12:ipOff+20]...)
	}
	pseudo = append(pseudo, 0, protoUDP)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
	if c := naive(append(pseudo, udp...), 0); c != 0 {
		t.Fatalf("UDP checksum does not verify (%#04x)", c)
	}
}

func TestWriteIPv4WithoutUDPChecksum(t *testing.T) {
	h := headers(false, false)
	buf := make([]byte, h.Len()+10)
	if err := Write(buf, &h, 10, false); err != nil {
		t.Fatal(err)
	}
	if c := binary.BigEndian.Uint16(buf[h.Len()-2:]); c != 0 {
		t.Fatalf("UDP checksum %#04x, want 0 (none)", c)
	}
	h6 := headers(true, false)
	buf = make([]byte, h6.Len()+10)
	Write(buf, &h6, 10, false)
	verifyChecksums(t, buf, &h6, 10) // IPv6 always gets one
}

func TestWriteNoRoom(t *testing.T) {
	h := headers(false, false)
	if err := Write(make([]byte, h.Len()+9), &h, 10, true); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Write into a short buffer: %v, want ErrNoRoom", err)
	}
	if err := Write(make([]byte, h.Len()), &h, -1, true); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Write with n=-1: %v, want ErrNoRoom", err)
	}
}

func validFrame(v6, vlan bool) []byte {
	h := headers(v6, vlan)
	buf := make([]byte, h.Len()+20)
	Write(buf, &h, 20, true)
	return buf
}

func TestParseBadInput(t *testing.T) {
	v4 := validFrame(false, false)
	v6 := validFrame(true, false)
	mod := func(b []byte, f func([]byte)) []byte { c := bytes.Clone(b); f(c); return c }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrTruncated},
		{"short ethernet", v4[:13], ErrTruncated},
		{"short vlan tag", mod(validFrame(false, true), func(b []byte) {})[:16], ErrTruncated},
		{"arp", mod(v4, func(b []byte) { b[12], b[13] = 0x08, 0x06 }), ErrNotIP},
		{"short ipv4", v4[:14+19], ErrTruncated},
		{"ipv4 version 5", mod(v4, func(b []byte) { b[14] = 0x55 }), ErrBadIPHeader},
		{"ipv4 ihl 4", mod(v4, func(b []byte) { b[14] = 0x44 }), ErrBadIPHeader},
		{"ipv4 total < ihl", mod(v4, func(b []byte) { b[16], b[17] = 0, 10 }), ErrBadIPHeader},
		{"ipv4 total past frame", mod(v4, func(b []byte) { b[16], b[17] = 0x05, 0xdc }), ErrTruncated},
		{"ipv4 MF", mod(v4, func(b []byte) { b[20] = 0x20 }), ErrFragment},
		{"ipv4 offset", mod(v4, func(b []byte) { b[21] = 1 }), ErrFragment},
		{"tcp", mod(v4, func(b []byte) { b[23] = 6 }), ErrNotUDP},
		{"ipv4 too short for udp", mod(v4, func(b []byte) { b[16], b[17] = 0, 24 }), ErrTruncated},
		{"udp length 7", mod(v4, func(b []byte) { b[38], b[39] = 0, 7 }), ErrBadUDP},
		{"udp length past ip", mod(v4, func(b []byte) { b[38], b[39] = 0, 29 }), ErrBadUDP},
		{"ipv4 total 19", mod(v4, func(b []byte) { b[16], b[17] = 0, 19 }), ErrBadIPHeader},
		{"ipv4 total 20", mod(v4, func(b []byte) { b[16], b[17] = 0, 20 }), ErrTruncated},
		{"ipv4 header only", v4[:14+20], ErrTruncated},
		{"ipv4 udp header cut", v4[:14+20+7], ErrTruncated},
		{"ipv4 udp length past ip, ip shortened", mod(v4, func(b []byte) { b[16], b[17] = 0, 28 }), ErrBadUDP},
		{"ipv4 options past frame", mod(v4[:14+24], func(b []byte) { b[14] = 0x46; b[16], b[17] = 0, 24 }), ErrTruncated},
		{"short ipv6", v6[:14+39], ErrTruncated},
		{"ipv6 version 4", mod(v6, func(b []byte) { b[14] = 0x40 }), ErrBadIPHeader},
		{"ipv6 payload past frame", mod(v6, func(b []byte) { b[18], b[19] = 0x05, 0 }), ErrTruncated},
		{"ipv6 fragment header", mod(v6, func(b []byte) { b[20] = 44 }), ErrFragment},
		{"ipv6 icmp", mod(v6, func(b []byte) { b[20] = 58 }), ErrNotUDP},
		{"ipv6 ext header past end", mod(v6, func(b []byte) { b[20] = 0; b[55] = 200 }), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Headers
			if _, _, err := Parse(tc.frame, &h); !errors.Is(err, tc.want) {
				t.Fatalf("Parse: %v, want %v", err, tc.want)
			}
			// The general path agrees (untagged IPv4 takes the fast one).
			if _, _, err := parse(tc.frame, &h); !errors.Is(err, tc.want) {
				t.Fatalf("parse: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseIPv6ExtensionHeaders(t *testing.T) {
	h := headers(true, false)
	n := 12
	// Hop-by-hop (8 octets) then UDP.
	base := make([]byte, h.Len()+n)
	Write(base, &h, n, true)
	ipOff := ethHeaderLen
	frame := append([]byte{}, base[:ipOff+ipv6HeaderLen]...)
	frame = append(frame, protoUDP, 0, 1, 4, 0, 0, 0, 0)
	frame = append(frame, base[ipOff+ipv6HeaderLen:]...)
	frame[ipOff+6] = 0
	binary.BigEndian.PutUint16(frame[ipOff+4:], uint16(8+udpHeaderLen+n))
	var got Headers
	off, pn, err := Parse(frame, &got)
	if err != nil || off != h.Len()+8 || pn != n {
		t.Fatalf("Parse with hop-by-hop = %d, %d, %v", off, pn, err)
	}
}

func TestZeroAllocs(t *testing.T) {
	h := headers(false, true)
	buf := make([]byte, h.Len()+1200)
	var got Headers
	if a := testing.AllocsPerRun(100, func() {
		Write(buf, &h, 1200, true)
		Parse(buf, &got)
	}); a != 0 {
		t.Fatalf("Write+Parse allocate %.1f times", a)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(validFrame(false, false))
	f.Add(validFrame(true, true))
	f.Add(validFrame(false, true))
	f.Add(validFrame(true, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h, want Headers
		off, n, err := Parse(b, &h)
		// Parse's fast path returns what the general one does.
		woff, wn, werr := parse(b, &want)
		if err != werr || (err == nil && (off != woff || n != wn || h != want)) {
			t.Fatalf("Parse = %d, %d, %v, %+v; the general path: %d, %d, %v, %+v", off, n, err, h, woff, wn, werr, want)
		}
		if err != nil {
			return
		}
		if off < 0 || n < 0 || off+n > len(b) {
			t.Fatalf("payload [%d:+%d] outside a %d-octet frame", off, n, len(b))
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{160, 1200} {
		h := headers(false, false)
		buf := make([]byte, h.Len()+n)
		b.Run(map[int]string{160: "160", 1200: "1200"}[n], func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				Write(buf, &h, n, true)
			}
		})
	}
}

// TestTemplateMatchesWrite: a Template stamps exactly what Write writes for
// the same Headers, whatever the family, tag, checksum setting, payload
// length and contents, and the addresses and ports (random ones exercise
// every carry of the partial sums).
func TestTemplateMatchesWrite(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 4000 {
		v6, vlan, csum := i&1 != 0, i&2 != 0, i&4 != 0
		h := headers(v6, vlan)
		var a4 [4]byte
		var a16 [16]byte
		for _, ap := range []*netip.AddrPort{&h.SrcAddr, &h.DstAddr} {
			port := uint16(r.Uint32())
			if v6 {
				for j := range a16 {
					a16[j] = byte(r.Uint32())
				}
				*ap = netip.AddrPortFrom(netip.AddrFrom16(a16), port)
			} else {
				binary.BigEndian.PutUint32(a4[:], r.Uint32())
				*ap = netip.AddrPortFrom(netip.AddrFrom4(a4), port)
			}
		}
		h.TOS, h.TTL = byte(r.Uint32()), byte(r.Uint32())
		n := r.IntN(1500)
		if i%97 == 0 {
			n = 0
		}
		want := make([]byte, h.Len()+n)
		for j := h.Len(); j < len(want); j++ {
			want[j] = byte(r.Uint32())
		}
		got := bytes.Clone(want)
		if err := Write(want, &h, n, csum); err != nil {
			t.Fatal(err)
		}
		var tp Template
		tp.Build(&h, csum)
		if tp.Len() != h.Len() {
			t.Fatalf("case %d: Len %d, want %d", i, tp.Len(), h.Len())
		}
		if err := tp.Write(got, n); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (v6=%v vlan=%v csum=%v n=%d):\n got %x\nwant %x", i, v6, vlan, csum, n, got[:h.Len()], want[:h.Len()])
		}
		// The same template serves the next datagram of the flow.
		if n > 0 {
			n2 := r.IntN(n)
			want2, got2 := bytes.Clone(want[:h.Len()+n2]), bytes.Clone(want[:h.Len()+n2])
			_ = Write(want2, &h, n2, csum)
			if err := tp.Write(got2, n2); err != nil || !bytes.Equal(got2, want2) {
				t.Fatalf("case %d, second datagram of %d: %v", i, n2, err)
			}
		}
	}
}

func TestTemplateNoRoom(t *testing.T) {
	var empty Template
	if err := empty.Write(make([]byte, 100), 10); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("unbuilt template: %v", err)
	}
	h := headers(false, false)
	var tp Template
	tp.Build(&h, false)
	for _, c := range []struct {
		name   string
		buf, n int
	}{
		{"negative", 100, -1},
		{"short buffer", tp.Len() + 9, 10},
		{"over 64 KiB", 70000, 0xffff},
	} {
		if err := tp.Write(make([]byte, c.buf), c.n); !errors.Is(err, ErrNoRoom) {
			t.Errorf("%s: %v, want ErrNoRoom", c.name, err)
		}
	}
	buf := make([]byte, tp.Len()+1200)
	if a := testing.AllocsPerRun(100, func() { tp.Build(&h, true); _ = tp.Write(buf, 1200) }); a != 0 {
		t.Fatalf("Template allocates %.1f times", a)
	}
}
