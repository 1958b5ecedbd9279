package srtpfast

import "encoding/binary"

// OHB config octet bits (RFC 8723 section 4): R R R R B M P Q.
const (
	ohbSeq      = 1 << 0 // Q: original SEQ present
	ohbPT       = 1 << 1 // P: original PT present
	ohbMarker   = 1 << 2 // M: original marker present
	ohbMarkerB  = 1 << 3 // B: original marker value
	ohbReserved = 0xf0

	// MaxOHBLen is the largest Original Header Block: PT, SEQ and config.
	MaxOHBLen = 4
)

// ohbLen validates the OHB at the end of payload (inner ciphertext | inner
// tag | OHB) and returns its length.
func ohbLen(payload []byte) (int, Error) {
	if len(payload) < tagLen+1 {
		return 0, ErrOHB
	}
	cfg := payload[len(payload)-1]
	if cfg&ohbReserved != 0 {
		return 0, ErrOHB
	}
	n := 1
	if cfg&ohbPT != 0 {
		n++
	}
	if cfg&ohbSeq != 0 {
		n += 2
	}
	if len(payload) < tagLen+n {
		return 0, ErrOHB
	}
	return n, 0
}

// Rewrite is a change of RTP header fields that a Media Distributor makes to
// a double (RFC 8723) packet between opening it with the sender's Keys and
// sealing it with a receiver's. Only PT, SEQ and the marker bit may change;
// a field is changed only when its Set flag is true.
type Rewrite struct {
	SetPT     bool
	PT        uint8 // 7-bit payload type
	SetSeq    bool
	Seq       uint16
	SetMarker bool
	Marker    bool
}

// RewriteDouble applies r in place to pkt, an opened double packet (header |
// inner ciphertext | inner tag | OHB, i.e. pkt[:info.Len] after OpenRTP with
// a double-profile Opener), and updates the OHB as RFC 8723 section 5.2
// says: a changed field whose original value is not yet in the OHB gets its
// original value recorded; a field set back to the value recorded in the OHB
// has it removed; otherwise the OHB is not modified. It returns the new
// length of the packet, which differs from len(pkt) by at most 3 octets in
// either direction; growing needs that capacity beyond len(pkt)
// (ErrTailroom otherwise, pkt unchanged).
//
// The inner ciphertext and inner tag are never touched. If r changes SEQ,
// the ROC passed to SealRTP must be the one of the rewritten sequence (see
// the package documentation), not the sender's.
func RewriteDouble(pkt []byte, r Rewrite) (int, error) {
	hdr, e := rtpHeaderLen(pkt)
	if e != 0 {
		return len(pkt), e
	}
	old, e := ohbLen(pkt[hdr:])
	if e != 0 {
		return len(pkt), e
	}
	base := len(pkt) - old
	cfg := pkt[len(pkt)-1]

	// Original values recorded in the OHB, else the current header values.
	curPT := pkt[1] & 0x7f
	curSeq := binary.BigEndian.Uint16(pkt[2:])
	curM := pkt[1]&0x80 != 0
	origPT, origSeq, origM := curPT, curSeq, curM
	pos := base
	if cfg&ohbPT != 0 {
		origPT = pkt[pos] & 0x7f
		pos++
	}
	if cfg&ohbSeq != 0 {
		origSeq = binary.BigEndian.Uint16(pkt[pos:])
	}
	if cfg&ohbMarker != 0 {
		origM = cfg&ohbMarkerB != 0
	}

	newPT, newSeq, newM := curPT, curSeq, curM
	if r.SetPT {
		newPT = r.PT & 0x7f
	}
	if r.SetSeq {
		newSeq = r.Seq
	}
	if r.SetMarker {
		newM = r.Marker
	}

	// RFC 8723 section 5.2 step 3, per field the MD sets: record the
	// original if it is not recorded yet and the value changes; drop it if
	// the field goes back to the recorded original; fields the MD does not
	// set keep their OHB entry as it is.
	ncfg := cfg
	if r.SetPT {
		ncfg = updateOHBFlag(ncfg, ohbPT, newPT != origPT)
	}
	if r.SetSeq {
		ncfg = updateOHBFlag(ncfg, ohbSeq, newSeq != origSeq)
	}
	if r.SetMarker {
		ncfg = updateOHBFlag(ncfg, ohbMarker, newM != origM)
		ncfg &^= ohbMarkerB
		if ncfg&ohbMarker != 0 && origM {
			ncfg |= ohbMarkerB
		}
	}
	n := 1
	if ncfg&ohbPT != 0 {
		n++
	}
	if ncfg&ohbSeq != 0 {
		n += 2
	}
	if base+n > cap(pkt) {
		return len(pkt), ErrTailroom
	}
	out := pkt[:base+n]
	pos = base
	if ncfg&ohbPT != 0 {
		out[pos] = origPT
		pos++
	}
	if ncfg&ohbSeq != 0 {
		binary.BigEndian.PutUint16(out[pos:], origSeq)
		pos += 2
	}
	out[pos] = ncfg

	b1 := newPT
	if newM {
		b1 |= 0x80
	}
	out[1] = b1
	binary.BigEndian.PutUint16(out[2:], newSeq)
	return base + n, nil
}

// updateOHBFlag sets or clears flag in cfg for a field the MD sets:
// differs reports whether the new value differs from the original.
func updateOHBFlag(cfg, flag byte, differs bool) byte {
	if differs {
		return cfg | flag
	}
	return cfg &^ flag
}
