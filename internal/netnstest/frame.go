package netnstest

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frame header sizes.
const (
	EthLen  = 14
	IPv4Len = 20
	UDPLen  = 8
	// UDP4HeadersLen is the length of the Ethernet, IPv4 (no options) and
	// UDP headers of a frame built by AppendUDP4.
	UDP4HeadersLen = EthLen + IPv4Len + UDPLen
)

// UDP4 describes an Ethernet/IPv4/UDP frame.
type UDP4 struct {
	SrcMAC, DstMAC   net.HardwareAddr
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	TTL              uint8 // 0 means 64
	ID               uint16
}

// AppendUDP4 appends the frame carrying payload to dst, with correct IPv4
// header and UDP checksums, and returns the extended slice.
func AppendUDP4(dst []byte, h UDP4, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, h.DstMAC[:6]...)
	dst = append(dst, h.SrcMAC[:6]...)
	dst = binary.BigEndian.AppendUint16(dst, 0x0800)

	ttl := h.TTL
	if ttl == 0 {
		ttl = 64
	}
	ip := start + EthLen
	dst = append(dst, 0x45, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(IPv4Len+UDPLen+len(payload)))
	dst = binary.BigEndian.AppendUint16(dst, h.ID)
	dst = append(dst, 0x40, 0, ttl, 17, 0, 0) // DF, protocol UDP, checksum 0
	src, dstIP := h.Src.As4(), h.Dst.As4()
	dst = append(dst, src[:]...)
	dst = append(dst, dstIP[:]...)
	binary.BigEndian.PutUint16(dst[ip+10:], Checksum(dst[ip:ip+IPv4Len], 0))

	dst = binary.BigEndian.AppendUint16(dst, h.SrcPort)
	dst = binary.BigEndian.AppendUint16(dst, h.DstPort)
	dst = binary.BigEndian.AppendUint16(dst, uint16(UDPLen+len(payload)))
	dst = append(dst, 0, 0)
	dst = append(dst, payload...)
	SetUDP4Checksum(dst[start:])
	return dst
}

// SetUDP4Checksum recomputes the UDP checksum of an untagged
// Ethernet/IPv4/UDP frame in place (the IPv4 header may carry options).
func SetUDP4Checksum(frame []byte) {
	ip := frame[EthLen:]
	ihl := int(ip[0]&0x0f) * 4
	udp := ip[ihl:]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	udp = udp[:ulen]
	udp[6], udp[7] = 0, 0
	var pseudo uint32
	pseudo += uint32(binary.BigEndian.Uint16(ip[12:])) + uint32(binary.BigEndian.Uint16(ip[14:]))
	pseudo += uint32(binary.BigEndian.Uint16(ip[16:])) + uint32(binary.BigEndian.Uint16(ip[18:]))
	pseudo += 17 + uint32(ulen)
	sum := Checksum(udp, pseudo)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial.
func Checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}
