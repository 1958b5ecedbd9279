package frame

import (
	"encoding/binary"
	"net/netip"
)

// EtherType values.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86DD
	EtherTypeVLAN  = 0x8100
	EtherTypeQinQ  = 0x88A8
	ethHeaderLen   = 14
	vlanTagLen     = 4
	ipv4HeaderLen  = 20 // without options; Write never emits options
	ipv6HeaderLen  = 40
	udpHeaderLen   = 8
	protoUDP       = 17
	maxIPv6ExtHdrs = 3
)

// MAC is an Ethernet address.
type MAC [6]byte

// Headers is the header information of one UDP frame.
type Headers struct {
	Dst, Src MAC
	// VLANProto is 0 for an untagged frame, else EtherTypeVLAN or
	// EtherTypeQinQ, and VLANTCI holds the tag control information.
	VLANProto uint16
	VLANTCI   uint16
	// SrcAddr and DstAddr are the IP addresses and UDP ports. An IPv4
	// frame has 4-byte addresses (never IPv4-mapped).
	SrcAddr, DstAddr netip.AddrPort
	// TOS is the IPv4 type of service or the IPv6 traffic class; TTL the
	// IPv4 TTL or the IPv6 hop limit.
	TOS, TTL uint8
}

// IsIPv6 reports whether the frame is IPv6.
func (h *Headers) IsIPv6() bool { return h.DstAddr.Addr().Is6() }

// Len is the header length Write produces for h: Ethernet, the optional
// VLAN tag, IPv4 (no options) or IPv6 (no extension headers), UDP.
func (h *Headers) Len() int {
	n := ethHeaderLen + udpHeaderLen
	if h.VLANProto != 0 {
		n += vlanTagLen
	}
	if h.IsIPv6() {
		return n + ipv6HeaderLen
	}
	return n + ipv4HeaderLen
}

// Parse reads the headers of frame into h and returns the offset and the
// length of the UDP payload (by the UDP length field, so Ethernet padding is
// excluded). It checks every length before reading.
//
// An untagged IPv4 frame without IP options (nearly all media) takes a
// path with one length check for all its fixed-offset fields; it returns
// exactly what the general path does (FuzzParse compares the two).
func Parse(frame []byte, h *Headers) (off, n int, err error) {
	const (
		ipOff  = ethHeaderLen
		udpOff = ipOff + ipv4HeaderLen
		minLen = udpOff + udpHeaderLen
	)
	if len(frame) < minLen || frame[12] != EtherTypeIPv4>>8 || frame[13] != EtherTypeIPv4&0xff || frame[ipOff] != 0x45 {
		return parse(frame, h)
	}
	// The checks of parseIPv4 and parse, in their order (same errors).
	total := int(binary.BigEndian.Uint16(frame[ipOff+2:]))
	switch {
	case total < ipv4HeaderLen:
		return 0, 0, ErrBadIPHeader
	case len(frame)-ipOff < total:
		return 0, 0, ErrTruncated
	case binary.BigEndian.Uint16(frame[ipOff+6:])&0x3fff != 0: // MF or offset
		return 0, 0, ErrFragment
	case frame[ipOff+9] != protoUDP:
		return 0, 0, ErrNotUDP
	case total < ipv4HeaderLen+udpHeaderLen:
		return 0, 0, ErrTruncated
	}
	ulen := int(binary.BigEndian.Uint16(frame[udpOff+4:]))
	if ulen < udpHeaderLen || ulen > total-ipv4HeaderLen {
		return 0, 0, ErrBadUDP
	}
	// One statement per field: a tuple assignment copies the MACs
	// through the stack.
	h.Dst = MAC(frame[0:6])
	h.Src = MAC(frame[6:12])
	h.VLANProto, h.VLANTCI = 0, 0
	h.TOS, h.TTL = frame[ipOff+1], frame[ipOff+8]
	h.SrcAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(frame[ipOff+12:ipOff+16])), binary.BigEndian.Uint16(frame[udpOff:]))
	h.DstAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(frame[ipOff+16:ipOff+20])), binary.BigEndian.Uint16(frame[udpOff+2:]))
	return minLen, ulen - udpHeaderLen, nil
}

// parse is Parse for any frame: VLAN tags, IPv4 options, IPv6.
func parse(frame []byte, h *Headers) (off, n int, err error) {
	if len(frame) < ethHeaderLen {
		return 0, 0, ErrTruncated
	}
	copy(h.Dst[:], frame[0:6])
	copy(h.Src[:], frame[6:12])
	et := binary.BigEndian.Uint16(frame[12:14])
	off = ethHeaderLen
	h.VLANProto, h.VLANTCI = 0, 0
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		if len(frame) < off+vlanTagLen {
			return 0, 0, ErrTruncated
		}
		h.VLANProto = et
		h.VLANTCI = binary.BigEndian.Uint16(frame[off:])
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += vlanTagLen
	}
	var ipEnd int
	switch et {
	case EtherTypeIPv4:
		off, ipEnd, err = parseIPv4(frame, off, h)
	case EtherTypeIPv6:
		off, ipEnd, err = parseIPv6(frame, off, h)
	default:
		return 0, 0, ErrNotIP
	}
	if err != nil {
		return 0, 0, err
	}
	if ipEnd-off < udpHeaderLen {
		return 0, 0, ErrTruncated
	}
	u := frame[off:]
	sport := binary.BigEndian.Uint16(u[0:2])
	dport := binary.BigEndian.Uint16(u[2:4])
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < udpHeaderLen || off+ulen > ipEnd {
		return 0, 0, ErrBadUDP
	}
	h.SrcAddr = netip.AddrPortFrom(h.SrcAddr.Addr(), sport)
	h.DstAddr = netip.AddrPortFrom(h.DstAddr.Addr(), dport)
	return off + udpHeaderLen, ulen - udpHeaderLen, nil
}

// parseIPv4 returns the offset of the UDP header and the end of the IP
// packet within frame.
func parseIPv4(frame []byte, off int, h *Headers) (int, int, error) {
	if len(frame) < off+ipv4HeaderLen {
		return 0, 0, ErrTruncated
	}
	ip := frame[off:]
	if ip[0]>>4 != 4 {
		return 0, 0, ErrBadIPHeader
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < ipv4HeaderLen || total < ihl {
		return 0, 0, ErrBadIPHeader
	}
	if len(ip) < total {
		return 0, 0, ErrTruncated
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // MF or offset
		return 0, 0, ErrFragment
	}
	if ip[9] != protoUDP {
		return 0, 0, ErrNotUDP
	}
	h.TOS, h.TTL = ip[1], ip[8]
	h.SrcAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), 0)
	h.DstAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), 0)
	return off + ihl, off + total, nil
}

func parseIPv6(frame []byte, off int, h *Headers) (int, int, error) {
	if len(frame) < off+ipv6HeaderLen {
		return 0, 0, ErrTruncated
	}
	ip := frame[off:]
	if ip[0]>>4 != 6 {
		return 0, 0, ErrBadIPHeader
	}
	end := off + ipv6HeaderLen + int(binary.BigEndian.Uint16(ip[4:6]))
	if len(frame) < end {
		return 0, 0, ErrTruncated
	}
	h.TOS = ip[0]<<4 | ip[1]>>4
	h.TTL = ip[7]
	h.SrcAddr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), 0)
	h.DstAddr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), 0)
	next := ip[6]
	off += ipv6HeaderLen
	for i := 0; ; i++ {
		switch next {
		case protoUDP:
			return off, end, nil
		case 44: // fragment
			return 0, 0, ErrFragment
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if i == maxIPv6ExtHdrs {
				return 0, 0, ErrNotUDP
			}
			if end < off+8 {
				return 0, 0, ErrTruncated
			}
			next = frame[off]
			off += (int(frame[off+1]) + 1) * 8
			if off > end {
				return 0, 0, ErrTruncated
			}
		default:
			return 0, 0, ErrNotUDP
		}
	}
}

// Write fills buf[:h.Len()] with the headers of h for a UDP payload of n
// octets that the caller has already placed at buf[h.Len():h.Len()+n]. It
// writes the IPv4 header checksum and, when udpChecksum is true or the
// frame is IPv6 (where RFC 8200 requires it), the UDP checksum; an IPv4 UDP
// checksum of zero means "none" (RFC 768). The IPv4 identification field is
// zero and DF is set, as for any datagram that is never fragmented.
func Write(buf []byte, h *Headers, n int, udpChecksum bool) error {
	hl := h.Len()
	if n < 0 || len(buf) < hl+n || n > 0xffff-udpHeaderLen-ipv4HeaderLen {
		return ErrNoRoom
	}
	copy(buf[0:6], h.Dst[:])
	copy(buf[6:12], h.Src[:])
	off := 12
	if h.VLANProto != 0 {
		binary.BigEndian.PutUint16(buf[off:], h.VLANProto)
		binary.BigEndian.PutUint16(buf[off+2:], h.VLANTCI)
		off += vlanTagLen
	}
	ulen := udpHeaderLen + n
	var pseudo uint32
	if h.IsIPv6() {
		binary.BigEndian.PutUint16(buf[off:], EtherTypeIPv6)
		ip := buf[off+2 : off+2+ipv6HeaderLen]
		binary.BigEndian.PutUint32(ip[0:4], 6<<28|uint32(h.TOS)<<20)
		binary.BigEndian.PutUint16(ip[4:6], uint16(ulen))
		ip[6], ip[7] = protoUDP, h.TTL
		src, dst := h.SrcAddr.Addr().As16(), h.DstAddr.Addr().As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		pseudo = sum(ip[8:40], 0) + protoUDP + uint32(ulen)
		udpChecksum = true
	} else {
		binary.BigEndian.PutUint16(buf[off:], EtherTypeIPv4)
		ip := buf[off+2 : off+2+ipv4HeaderLen]
		ip[0], ip[1] = 0x45, h.TOS
		binary.BigEndian.PutUint16(ip[2:4], uint16(ipv4HeaderLen+ulen))
		binary.BigEndian.PutUint32(ip[4:8], 0x4000) // id 0, DF
		ip[8], ip[9] = h.TTL, protoUDP
		ip[10], ip[11] = 0, 0
		src, dst := h.SrcAddr.Addr().Unmap().As4(), h.DstAddr.Addr().Unmap().As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		binary.BigEndian.PutUint16(ip[10:12], fold(sum(ip, 0)))
		if udpChecksum { // else the pseudo-header sum is not needed
			pseudo = sum(ip[12:20], 0) + protoUDP + uint32(ulen)
		}
	}
	u := buf[hl-udpHeaderLen : hl+n]
	binary.BigEndian.PutUint16(u[0:2], h.SrcAddr.Port())
	binary.BigEndian.PutUint16(u[2:4], h.DstAddr.Port())
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	u[6], u[7] = 0, 0
	if udpChecksum {
		c := fold(sum(u, pseudo))
		if c == 0 {
			c = 0xffff // RFC 768: a computed zero is sent as all ones
		}
		binary.BigEndian.PutUint16(u[6:8], c)
	}
	return nil
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial.
func Checksum(b []byte, initial uint32) uint16 { return fold(sum(b, initial)) }

// sum adds b to the one's complement accumulator, 8 octets at a time.
func sum(b []byte, initial uint32) uint32 {
	acc := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		hi, lo := v>>32, v&0xffffffff
		acc += hi + lo
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc&0xffff) + uint32(acc>>16)
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// MaxHeaderLen is the longest header Write produces: Ethernet, a VLAN tag,
// IPv6 and UDP.
const MaxHeaderLen = ethHeaderLen + vlanTagLen + ipv6HeaderLen + udpHeaderLen

// minHeaderLen is the shortest: Ethernet, IPv4 and UDP.
const minHeaderLen = ethHeaderLen + ipv4HeaderLen + udpHeaderLen

// Template is the headers of a flow (one Headers value) built once, to be
// stamped in front of each datagram of the flow: Template.Write produces
// exactly what Write produces for the same Headers, but per datagram it
// only copies the prebuilt octets and fills in the lengths and checksums
// (the IPv4 header checksum from a partial sum kept with the template).
// The zero Template is empty: Build it before use.
type Template struct {
	b       [MaxHeaderLen]byte
	n       uint8  // header length, 0 when not built
	ip      uint8  // offset of the IP header
	v6      bool   // IPv6: the UDP checksum is always written
	udpSum  bool   // the UDP checksum is written
	ipSum   uint32 // IPv4: sum of the header without its length
	pseudo  uint32 // the pseudo-header sum without the UDP length
	dataMax int    // the longest payload the headers allow
}

// Build makes t the headers of h, with UDP checksums on IPv4 when
// udpChecksum (IPv6 always has them). It does not allocate.
func (t *Template) Build(h *Headers, udpChecksum bool) {
	*t = Template{}
	hl := h.Len()
	// Write into the template with an empty payload, then keep the sums
	// of the fields that do not change from one datagram to the next.
	var scratch [MaxHeaderLen]byte
	_ = Write(scratch[:hl], h, 0, false)
	copy(t.b[:], scratch[:hl])
	t.b[hl-2], t.b[hl-1] = 0, 0 // the UDP checksum, summed per datagram
	t.n = uint8(hl)
	t.ip = uint8(hl - udpHeaderLen - ipv4HeaderLen)
	t.dataMax = 0xffff - udpHeaderLen - ipv4HeaderLen
	if h.IsIPv6() {
		t.ip = uint8(hl - udpHeaderLen - ipv6HeaderLen)
		t.v6, t.udpSum = true, true
		ip := t.b[t.ip : int(t.ip)+ipv6HeaderLen]
		t.pseudo = sum(ip[8:40], 0) + protoUDP
		return
	}
	ip := t.b[t.ip : int(t.ip)+ipv4HeaderLen]
	ip[2], ip[3], ip[10], ip[11] = 0, 0, 0, 0
	t.ipSum = sum(ip, 0)
	t.udpSum = udpChecksum
	if udpChecksum {
		t.pseudo = sum(ip[12:20], 0) + protoUDP
	}
}

// Len is the header length: the payload goes at buf[t.Len():].
func (t *Template) Len() int { return int(t.n) }

// Write writes the headers in front of the n-octet UDP payload already at
// buf[t.Len():t.Len()+n], as Write would for the Headers t was built from.
func (t *Template) Write(buf []byte, n int) error {
	hl := int(t.n)
	if hl == 0 || n < 0 || len(buf) < hl+n || n > t.dataMax {
		return ErrNoRoom
	}
	if hl == minHeaderLen && !t.udpSum {
		// IPv4 without VLAN tag or UDP checksum, the usual case: with
		// constant offsets into an array, no bounds checks, and the copy
		// in three 16-octet moves (the last two overlap).
		d := (*[minHeaderLen]byte)(buf)
		*(*[16]byte)(d[0:]) = *(*[16]byte)(t.b[0:])
		*(*[16]byte)(d[16:]) = *(*[16]byte)(t.b[16:])
		*(*[16]byte)(d[26:]) = *(*[16]byte)(t.b[26:])
		ulen := udpHeaderLen + n
		tot := uint32(ipv4HeaderLen + ulen)
		binary.BigEndian.PutUint16(d[ethHeaderLen+2:], uint16(tot))
		binary.BigEndian.PutUint16(d[ethHeaderLen+10:], fold(t.ipSum+tot))
		binary.BigEndian.PutUint16(d[minHeaderLen-4:], uint16(ulen))
		return nil
	}
	// hl is 42 to 66 (minHeaderLen to MaxHeaderLen). Copied in 16-octet
	// moves, the last one ending at hl: a copy of hl octets would call
	// memmove.
	d := buf[:hl]
	for i := 0; i < hl-16; i += 16 {
		*(*[16]byte)(d[i:]) = *(*[16]byte)(t.b[i:])
	}
	*(*[16]byte)(d[hl-16:]) = *(*[16]byte)(t.b[hl-16:])
	ulen := udpHeaderLen + n
	binary.BigEndian.PutUint16(d[hl-4:], uint16(ulen)) // the UDP length
	ip := d[t.ip:]
	if t.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
	} else {
		tot := uint32(ipv4HeaderLen + ulen)
		binary.BigEndian.PutUint16(ip[2:], uint16(tot))
		binary.BigEndian.PutUint16(ip[10:], fold(t.ipSum+tot))
	}
	if t.udpSum {
		u := buf[hl-udpHeaderLen : hl+n]
		c := fold(sum(u, t.pseudo+uint32(ulen)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:8], c)
	}
	return nil
}
