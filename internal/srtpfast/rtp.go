package srtpfast

import (
	"crypto/subtle"
	"encoding/binary"
)

// RTPInfo describes an opened SRTP packet. After a successful OpenRTP the
// plaintext RTP packet (header and payload, without tag and MKI) is
// pkt[:Len].
type RTPInfo struct {
	SSRC   uint32
	Seq    uint16
	ROC    uint32 // rollover counter of this packet: pass it to SealRTP
	PT     uint8
	Marker bool

	// HeaderLen is the length of the RTP header: fixed part, CSRCs and
	// header extension.
	HeaderLen int
	// Len is the length of the plaintext packet: HeaderLen + payload.
	Len int
	// PaddingLen is the number of RTP padding octets at the end of the
	// payload (0 when the P bit is clear). Always 0 for the double profiles,
	// whose padding is inside the inner ciphertext.
	PaddingLen int
	// OHBLen is the length of the Original Header Block at the end of the
	// payload for the double profiles (1 to 4), 0 otherwise. For the double
	// profiles the payload is inner ciphertext | inner tag (16) | OHB.
	OHBLen int
}

// Index returns the 48-bit SRTP packet index ROC<<16 | SEQ.
func (i *RTPInfo) Index() uint64 { return uint64(i.ROC)<<16 | uint64(i.Seq) }

// PayloadLen returns the length of the payload (Len - HeaderLen), padding and
// OHB included.
func (i *RTPInfo) PayloadLen() int { return i.Len - i.HeaderLen }

// rtpHeaderLen validates the RTP header of pkt and returns its length.
// It is small enough to be inlined (the per-packet path calls it for the
// open and for every seal).
func rtpHeaderLen(pkt []byte) (int, Error) {
	if len(pkt) < rtpHdrLen {
		return 0, ErrShort
	}
	if pkt[0]>>6 != 2 {
		return 0, ErrVersion
	}
	n := rtpHdrLen + 4*int(pkt[0]&0x0f)
	if n > len(pkt) {
		return 0, ErrCSRCOverflow
	}
	if pkt[0]&0x10 != 0 {
		// The extension header (4 octets), then its length in words.
		if n += 4; n <= len(pkt) {
			n += 4 * int(binary.BigEndian.Uint16(pkt[n-2:]))
		}
		if n > len(pkt) {
			return 0, ErrExtensionOverflow
		}
	}
	return n, 0
}

// salt is a session salt split at the IV field boundaries, so that forming
// an IV is four XORs and stores: (00 00 | SSRC | ROC-or-0 | SEQ-or-index)
// XOR salt (RFC 7714 sections 8.1 and 9.1; for SRTCP the last two fields
// are 00 00 | index, so a 48-bit view is used there).
type salt struct {
	s0 uint16 // octets 0-1
	s1 uint32 // octets 2-5: SSRC
	s2 uint32 // octets 6-9: ROC
	s3 uint16 // octets 10-11: SEQ
}

func newSalt(b []byte) salt {
	return salt{
		s0: binary.BigEndian.Uint16(b[0:]),
		s1: binary.BigEndian.Uint32(b[2:]),
		s2: binary.BigEndian.Uint32(b[6:]),
		s3: binary.BigEndian.Uint16(b[10:]),
	}
}

// iv writes the RTP IV for (ssrc, roc, seq) to iv. For SRTCP pass
// roc = index >> 16 and seq = index & 0xffff.
func (s *salt) iv(iv *[saltLen]byte, ssrc, roc, seq uint32) {
	binary.BigEndian.PutUint16(iv[0:], s.s0)
	binary.BigEndian.PutUint32(iv[2:], ssrc^s.s1)
	binary.BigEndian.PutUint32(iv[6:], roc^s.s2)
	binary.BigEndian.PutUint16(iv[10:], uint16(seq)^s.s3)
}

// estimateIndex guesses the 48-bit index of a packet with sequence number
// seq given the highest index accepted so far (RFC 3711 appendix A).
func estimateIndex(top uint64, seq uint16) (uint64, Error) {
	roc, sl := top>>16, int(uint16(top))
	s := int(seq)
	v := roc
	if sl < 32768 {
		if s-sl > 32768 {
			if roc == 0 {
				return 0, ErrTooOld // would be ROC -1: before the stream began
			}
			v = roc - 1
		}
	} else if sl-32768 > s {
		v = roc + 1
		if v > 0xffffffff {
			return 0, ErrIndexExhausted
		}
	}
	return v<<16 | uint64(seq), 0
}

// OpenRTP authenticates and decrypts the SRTP packet pkt in place. On success
// the plaintext RTP packet is pkt[:info.Len] and the state of the packet's
// SSRC is updated (created if new); the octets after it (tag, MKI) are left
// as they were. On failure it returns one of the Error constants, o is
// unchanged, and after ErrAuth the payload octets of pkt are unspecified.
//
// For the double profiles this opens the outer (hop-by-hop) layer: the
// payload is then inner ciphertext | inner tag | OHB, which is validated.
func (o *Opener) OpenRTP(pkt []byte) (info RTPInfo, err error) {
	err = o.openRTP(&info, pkt, 0)
	return info, err
}

// OpenRTPTo is OpenRTP writing the description of the opened packet to
// *info (left unchanged on failure) instead of returning it: for a caller
// that keeps one RTPInfo and copies none per packet.
func (o *Opener) OpenRTPTo(info *RTPInfo, pkt []byte) error {
	return o.openRTP(info, pkt, 0)
}

// OpenRTPFrom is OpenRTP where the caller knows the rollover counter of an
// SSRC that o holds no state for yet (an endpoint joining a stream late
// learns it from the sender's EKT tag, RFC 8870 section 4.1): the packet's
// index is then (firstROC, SEQ) rather than (0, SEQ). For an SSRC o knows
// it is OpenRTP. The MD never needs it: it sees every stream from its
// start.
func (o *Opener) OpenRTPFrom(pkt []byte, firstROC uint32) (info RTPInfo, err error) {
	err = o.openRTP(&info, pkt, firstROC)
	return info, err
}

// Knows reports whether o holds SRTP state for ssrc.
func (o *Opener) Knows(ssrc uint32) bool {
	st := o.table.lookup(ssrc)
	return st != nil && st.hasRTP
}

// openRTP is OpenRTPFrom writing the description to *info, which it
// leaves unchanged on failure.
func (o *Opener) openRTP(info *RTPInfo, pkt []byte, firstROC uint32) error {
	hdr, e := rtpHeaderLen(pkt)
	if e != 0 {
		return e
	}
	end := len(pkt) - o.mkiLen
	if end-hdr < tagLen {
		return ErrShort
	}
	if o.mkiLen != 0 && subtle.ConstantTimeCompare(pkt[end:], o.keys.mki) != 1 {
		return ErrUnknownMKI
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	seq := binary.BigEndian.Uint16(pkt[2:])

	st := o.table.lookup(ssrc)
	// A new SSRC starts with ROC 0 (RFC 3711 section 3.3.1), unless the
	// caller knows better (OpenRTPFrom).
	idx := uint64(firstROC)<<16 | uint64(seq)
	switch {
	case st == nil && o.table.full():
		return ErrSSRCLimit
	case st != nil && st.hasRTP:
		if idx, e = estimateIndex(st.rtp.top, seq); e != 0 {
			return e
		}
		if e = st.rtp.check(idx); e != 0 {
			return e
		}
	}
	roc := uint32(idx >> 16)

	o.keys.rtpSalt.iv(&o.sc.iv, ssrc, roc, uint32(seq))
	if _, err := o.keys.rtp.Open(pkt[hdr:hdr], o.sc.iv[:], pkt[hdr:end], pkt[:hdr]); err != nil {
		return ErrAuth
	}
	plain := end - tagLen
	var ohb, padding int
	if o.double {
		if ohb, e = ohbLen(pkt[hdr:plain]); e != 0 {
			return e
		}
	} else if pkt[0]&0x20 != 0 {
		payload := plain - hdr
		padding = int(pkt[plain-1]) // never used when payload == 0: checked first
		if payload == 0 || padding == 0 || padding > payload {
			return ErrPadding
		}
	}

	if st == nil {
		st = o.table.insert(ssrc)
	}
	if st.hasRTP {
		st.rtp.accept(idx)
	} else {
		st.hasRTP = true
		st.rtp.reset(idx)
	}
	// Field by field: a composite literal is built on the stack, then
	// copied. Every field of RTPInfo is written here.
	info.SSRC, info.Seq, info.ROC = ssrc, seq, roc
	info.PT, info.Marker = pkt[1]&0x7f, pkt[1]&0x80 != 0
	info.HeaderLen, info.Len = hdr, plain
	info.PaddingLen, info.OHBLen = padding, ohb
	return nil
}

// SealRTP protects the plaintext RTP packet pkt (header and payload) with k,
// using the SSRC and SEQ in its header and the rollover counter roc, and
// appends the result (header | ciphertext | tag | MKI) to dst, which it
// returns. It works in place when dst is pkt[:0]; it does not allocate when
// cap(dst) - len(dst) >= len(pkt) + k.RTPOverhead(). dst must either be
// pkt[:0] or not overlap pkt (else ErrOverlap).
//
// SealRTP keeps no state: the caller guarantees that (SSRC, roc, SEQ) is
// never sealed twice with the same k with different contents, which holds
// when roc is the RTPInfo.ROC of a packet opened by the (single) Opener of
// the sender and each opened packet is sealed at most once per receiver (see
// the package documentation). s is the worker's scratch; nil uses a temporary
// (one allocation).
func (k *Keys) SealRTP(s *Scratch, dst, pkt []byte, roc uint32) ([]byte, error) {
	if s == nil {
		s = new(Scratch)
	}
	hdr, e := rtpHeaderLen(pkt)
	if e != 0 {
		return dst, e
	}
	ret, out := sliceForAppend(dst, len(pkt)+tagLen+len(k.mki))
	if _, err := k.SealRTPHeader(s, out, pkt, hdr, roc); err != nil {
		return dst, err
	}
	return ret, nil
}

// RTPHeaderLen validates the RTP header of the packet pkt (version, CSRC
// count and header extension within pkt) and returns its length, or one of
// ErrShort, ErrVersion, ErrCSRCOverflow, ErrExtensionOverflow.
func RTPHeaderLen(pkt []byte) (int, error) {
	n, e := rtpHeaderLen(pkt)
	if e != 0 {
		return 0, e
	}
	return n, nil
}

// SealRTPHeader is SealRTP for a caller that already knows the length hdr
// of pkt's RTP header (the RTPInfo.HeaderLen of the packet an Opener
// opened, or what RTPHeaderLen returned for pkt), for a fan-out that seals
// one packet for many receivers: it does not parse the header again. It
// seals pkt into out (header | ciphertext | tag | MKI, the octets SealRTP
// appends) and returns the length written, k.RTPOverhead() more than
// len(pkt). out must be that long (else ErrTailroom) and must either start
// at pkt or not overlap it (else ErrOverlap); hdr must be at least the
// fixed header and within pkt (else ErrShort). With a hdr that is not
// pkt's header length the output is not an SRTP packet anyone can open;
// it never panics. s is the worker's scratch; nil uses a temporary (one
// allocation). The output is the same as SealRTP's, octet for octet.
func (k *Keys) SealRTPHeader(s *Scratch, out, pkt []byte, hdr int, roc uint32) (int, error) {
	if s == nil {
		// Returned at once: no argument lives across the call, so none
		// is spilled on entry for a caller that passes its scratch.
		return k.sealRTPHeaderTemp(out, pkt, hdr, roc)
	}
	if hdr < rtpHdrLen || hdr > len(pkt) {
		return 0, ErrShort
	}
	n := len(pkt) + tagLen + len(k.mki)
	if len(out) < n {
		return 0, ErrTailroom
	}
	out = out[:n]
	if inexactOverlap(out, pkt) {
		return 0, ErrOverlap
	}
	// No call but the AEAD's, and that one last: an argument that lived
	// across a call (a memmove's) would be spilled on every entry. The
	// MKI goes in first: Seal writes only up to the tag.
	if len(k.mki) != 0 {
		copyWords(out[len(pkt)+tagLen:], k.mki)
	}
	if hdr == rtpHdrLen { // no CSRC, no extension: a fixed-size copy
		*(*[rtpHdrLen]byte)(out) = *(*[rtpHdrLen]byte)(pkt)
	} else {
		copyWords(out[:hdr], pkt[:hdr]) // in place: copies onto itself
	}
	k.rtpSalt.iv(&s.iv, binary.BigEndian.Uint32(pkt[8:]), roc, uint32(binary.BigEndian.Uint16(pkt[2:])))
	k.rtp.Seal(out[hdr:hdr], s.iv[:], pkt[hdr:], out[:hdr])
	return n, nil
}

// copyWords is copy(dst, src) for the few octets of an RTP header or an
// MKI, in 8-octet words then octets, without calling memmove. dst and src
// must be the same memory or not overlap.
func copyWords(dst, src []byte) {
	src = src[:min(len(src), len(dst))]
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < len(src); i++ {
		dst[i] = src[i]
	}
}

// sealRTPHeaderTemp is SealRTPHeader with a temporary scratch. Not
// inlined: its allocation would then be a call in SealRTPHeader after
// which the arguments live on.
//
//go:noinline
func (k *Keys) sealRTPHeaderTemp(out, pkt []byte, hdr int, roc uint32) (int, error) {
	return k.SealRTPHeader(new(Scratch), out, pkt, hdr, roc)
}
