package srtpfast

import (
	"crypto/subtle"
	"encoding/binary"
)

const srtcpEFlag = 1 << 31

// RTCPInfo describes an opened SRTCP packet. After a successful OpenRTCP the
// plaintext (compound) RTCP packet is pkt[:Len].
type RTCPInfo struct {
	SSRC  uint32 // sender SSRC, octets 4-7 of the first RTCP packet
	Index uint32 // 31-bit SRTCP index: pass it to SealRTCP
	// Encrypted reports the E flag: false means the packet was only
	// authenticated (RFC 7714 section 9.2).
	Encrypted bool
	// Len is the length of the plaintext RTCP packet.
	Len int
}

// rtcpIV forms the RFC 7714 section 9.1 IV:
// (00 00 | SSRC | 00 00 | 0 index(31)) XOR salt.
func rtcpIV(iv *[saltLen]byte, s *salt, ssrc, index uint32) {
	index &^= srtcpEFlag
	s.iv(iv, ssrc, index>>16, index&0xffff)
}

// OpenRTCP authenticates and, when the E flag is set, decrypts the SRTCP
// packet pkt (header(8) | ciphertext | tag | E+index | MKI) in place. On
// success the plaintext RTCP packet is pkt[:info.Len] and the SRTCP replay
// state of the sender SSRC is updated (created if new). On failure it
// returns one of the Error constants, o is unchanged, and after ErrAuth the
// payload octets of pkt are unspecified.
//
// Only the first RTCP header is checked (version); the compound packet
// behind it is authenticated but not parsed.
func (o *Opener) OpenRTCP(pkt []byte) (RTCPInfo, error) {
	info, e := o.openRTCP(pkt)
	if e != 0 {
		return RTCPInfo{}, e
	}
	return info, nil
}

func (o *Opener) openRTCP(pkt []byte) (RTCPInfo, Error) {
	if len(pkt) < rtcpHdrLen {
		return RTCPInfo{}, ErrShort
	}
	if pkt[0]>>6 != 2 {
		return RTCPInfo{}, ErrVersion
	}
	trailer := len(pkt) - o.mkiLen - srtcpIdxLen
	dataEnd := trailer - tagLen
	if dataEnd < rtcpHdrLen {
		return RTCPInfo{}, ErrShort
	}
	if o.mkiLen != 0 && subtle.ConstantTimeCompare(pkt[trailer+srtcpIdxLen:], o.keys.mki) != 1 {
		return RTCPInfo{}, ErrUnknownMKI
	}
	word := binary.BigEndian.Uint32(pkt[trailer:])
	index := word &^ srtcpEFlag
	ssrc := binary.BigEndian.Uint32(pkt[4:])

	st := o.table.lookup(ssrc)
	switch {
	case st == nil && o.table.full():
		return RTCPInfo{}, ErrSSRCLimit
	case st != nil && st.hasRTCP:
		if e := st.rtcp.check(uint64(index)); e != 0 {
			return RTCPInfo{}, e
		}
	}

	rtcpIV(&o.sc.iv, &o.keys.rtcpSalt, ssrc, index)
	encrypted := word&srtcpEFlag != 0
	if encrypted {
		// AAD: the first 8 octets and the E+index word (RFC 7714 section 9.3).
		copy(o.sc.aad[:rtcpHdrLen], pkt)
		binary.BigEndian.PutUint32(o.sc.aad[rtcpHdrLen:], word)
		if _, err := o.keys.rtcp.Open(pkt[rtcpHdrLen:rtcpHdrLen], o.sc.iv[:], pkt[rtcpHdrLen:trailer], o.sc.aad[:]); err != nil {
			return RTCPInfo{}, ErrAuth
		}
	} else {
		// Authentication only: AAD is the whole packet then the E+index
		// word, which follows the tag on the wire. Swap tag and word in
		// place so that the AAD is contiguous, then swap them back.
		var tag [tagLen]byte
		copy(tag[:], pkt[dataEnd:trailer])
		binary.BigEndian.PutUint32(pkt[dataEnd:], word)
		copy(pkt[dataEnd+srtcpIdxLen:], tag[:])
		_, err := o.keys.rtcp.Open(nil, o.sc.iv[:], pkt[dataEnd+srtcpIdxLen:trailer+srtcpIdxLen], pkt[:dataEnd+srtcpIdxLen])
		copy(pkt[dataEnd:], tag[:])
		binary.BigEndian.PutUint32(pkt[trailer:], word)
		if err != nil {
			return RTCPInfo{}, ErrAuth
		}
	}

	if st == nil {
		st = o.table.insert(ssrc)
	}
	if st.hasRTCP {
		st.rtcp.accept(uint64(index))
	} else {
		st.hasRTCP = true
		st.rtcp.reset(uint64(index))
	}
	return RTCPInfo{SSRC: ssrc, Index: index, Encrypted: encrypted, Len: dataEnd}, 0
}

// SealRTCP encrypts and authenticates the plaintext (compound) RTCP packet
// pkt with k using the SRTCP index index (< 2^31) and the sender SSRC in
// octets 4-7, and appends the result (header | ciphertext | tag | E+index |
// MKI, E set) to dst, which it returns. It works in place when dst is
// pkt[:0]; it does not allocate when cap(dst) - len(dst) >= len(pkt) +
// k.RTCPOverhead(). dst must either be pkt[:0] or not overlap pkt.
//
// Like SealRTP it keeps no state: index is the RTCPInfo.Index of a packet
// opened by the sender's Opener, unique per sender SSRC. s is the worker's
// scratch; nil uses a temporary (one allocation).
func (k *Keys) SealRTCP(s *Scratch, dst, pkt []byte, index uint32) ([]byte, error) {
	if s == nil {
		s = new(Scratch)
	}
	if len(pkt) < rtcpHdrLen {
		return dst, ErrShort
	}
	if pkt[0]>>6 != 2 {
		return dst, ErrVersion
	}
	if index&srtcpEFlag != 0 {
		return dst, ErrIndexExhausted
	}
	ret, out := sliceForAppend(dst, len(pkt)+k.RTCPOverhead())
	if inexactOverlap(out, pkt) {
		return dst, ErrOverlap
	}
	word := index | srtcpEFlag
	copy(s.aad[:rtcpHdrLen], pkt)
	binary.BigEndian.PutUint32(s.aad[rtcpHdrLen:], word)
	copy(out, pkt[:rtcpHdrLen])
	rtcpIV(&s.iv, &k.rtcpSalt, binary.BigEndian.Uint32(pkt[4:]), index)
	k.rtcp.Seal(out[rtcpHdrLen:rtcpHdrLen], s.iv[:], pkt[rtcpHdrLen:], s.aad[:])
	trailer := len(pkt) + tagLen
	binary.BigEndian.PutUint32(out[trailer:], word)
	copy(out[trailer+srtcpIdxLen:], k.mki)
	return ret, nil
}
