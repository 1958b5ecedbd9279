package afxdp

import "encoding/binary"

// The receive-time metadata the XDP program (bpf/classify.c, struct
// rx_meta) puts in front of every frame it redirects: the kernel copies
// XDP metadata into the UMEM right before the packet (copy mode) or leaves
// it there (zero-copy). Layout, in host byte order:
//
//	0  magic    RxMetaMagic
//	4  reserved 0
//	8  rx_ns    bpf_ktime_get_ns() at the redirect (CLOCK_MONOTONIC)
const (
	// RxMetaMagic marks the metadata ("mdT1" as a little-endian word).
	RxMetaMagic uint32 = 0x3154646d
	// RxMetaLen is the metadata's length in octets.
	RxMetaLen = 16
)

// Metadata returns the n octets in front of the received packet d names,
// where the XDP program's metadata is, or nil when they are not inside
// d's UMEM frame (n larger than the frame's headroom, a descriptor outside
// the UMEM) or n is not in 1..32, the kernel's limit on XDP metadata. The
// octets are whatever the frame holds there: only a marker the XDP program
// wrote (such as RxMetaMagic) says they are metadata of this packet.
func (s *Socket) Metadata(d Desc, n int) []byte {
	if n <= 0 || n > 32 || d.Addr >= uint64(len(s.umem)) {
		return nil
	}
	if d.Addr-(d.Addr>>s.frames.shift<<s.frames.shift) < uint64(n) {
		return nil
	}
	return s.umem[d.Addr-uint64(n) : d.Addr : d.Addr]
}

// RxTime returns the XDP receive time (CLOCK_MONOTONIC nanoseconds) of the
// received packet d names, or 0 when the frame carries no receive-time
// metadata (a driver without metadata support, a program that wrote none).
// It clears the marker: a later packet received into the same frame
// without metadata does not inherit this one's time.
func (s *Socket) RxTime(d Desc) int64 {
	return TakeRxTime(s.Metadata(d, RxMetaLen))
}

// TakeRxTime returns the receive time in the metadata m (the RxMetaLen
// octets in front of a received packet), or 0 when m is shorter or does
// not start with RxMetaMagic; it clears the marker.
func TakeRxTime(m []byte) int64 {
	if len(m) < RxMetaLen || binary.NativeEndian.Uint32(m[0:4]) != RxMetaMagic {
		return 0
	}
	binary.NativeEndian.PutUint32(m[0:4], 0)
	return int64(binary.NativeEndian.Uint64(m[8:16]))
}
