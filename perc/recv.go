package perc

import (
	"bytes"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
)

// receiver is the receiving side, owned by the reader goroutine: per
// sender SSRC the end-to-end keys learnt from its EKT tags.
type receiver struct {
	senders map[uint32]*inSender
	dsc     double.Scratch
	synth   []byte
	buf     []byte
	hdr     []byte
}

// maxKeysPerSender bounds the end-to-end keys kept per sender: the newest
// and those in their grace period.
const maxKeysPerSender = 3

// inSender is what a receiver knows of one sender SSRC.
type inSender struct {
	keys   []*inKey          // newest first
	epochs map[uint16]uint16 // highest FullEKTField epoch seen, by SPI
	tag    []byte            // the last EKTCiphertext accepted, to skip unwrapping repeats
	tagSPI uint16
}

// inKey is one end-to-end key of a sender.
type inKey struct {
	spi     uint16
	master  []byte
	keys    *double.Session
	expires time.Time // zero while it is the newest
}

func (k *inKey) zero() { clear(k.master) }

// receive handles one RTP or RTCP datagram from the Media Distributor.
func (s *Session) receive(b []byte) {
	c := &s.c
	if len(b) >= 2 && b[1] >= 192 && b[1] <= 223 {
		info, err := s.in.OpenRTCP(b)
		if err != nil {
			c.dropOuter.Add(1)
			return
		}
		if s.cfg.OnRTCP != nil {
			s.cfg.OnRTCP(b[:info.Len])
		}
		return
	}
	if !s.double {
		info, err := s.in.OpenRTP(b)
		if err != nil {
			c.dropOuter.Add(1)
			return
		}
		c.received.Add(1)
		if s.cfg.OnRTP != nil {
			s.cfg.OnRTP(RTPPacket{Header: b[:info.HeaderLen], Payload: b[info.HeaderLen : info.Len-info.PaddingLen],
				SSRC: info.SSRC, Seq: info.Seq, ROC: info.ROC})
		}
		return
	}
	s.receiveDouble(b, time.Now())
}

// receiveDouble is RFC 8723 section 5.3 with RFC 8870 section 4.3: take
// the EKTField off, open the outer layer, learn the sender's key from a
// FullEKTField, restore the original header from the OHB, open the inner
// layer.
func (s *Session) receiveDouble(b []byte, now time.Time) {
	c, rx := &s.c, &s.rx
	n, typ, err := ekt.FieldLen(b)
	if err != nil {
		c.dropEKTField.Add(1)
		return
	}
	field, pkt := b[len(b)-n:], b[:len(b)-n]
	info, err := s.in.OpenRTP(pkt)
	if err != nil {
		c.dropOuter.Add(1)
		return
	}
	snd := rx.senders[info.SSRC]
	if typ == ekt.TypeFull {
		var ok bool
		if snd, ok = s.learnKey(snd, info.SSRC, field, now); !ok {
			return
		}
	}
	if snd == nil || len(snd.keys) == 0 {
		c.dropNoKey.Add(1)
		return
	}
	// The original header the sender sealed (RFC 8723 section 4), then
	// the inner layer under one of the sender's end-to-end keys.
	plain := pkt[info.HeaderLen:info.Len]
	o, end, err := double.ParseOHB(plain)
	if err != nil {
		c.dropOuter.Add(1)
		return
	}
	synth := double.OriginalHeader(&rx.dsc, pkt, o)
	origSeq := info.Seq
	if o.HasSeq {
		origSeq = o.Seq
	}
	origROC := originalROC(info.ROC, info.Seq, origSeq)
	rx.synth = append(rx.synth[:0], synth...)
	for i, k := range snd.keys {
		if !k.expires.IsZero() && now.After(k.expires) {
			continue
		}
		// Each attempt opens a copy: a failed open leaves it unspecified.
		rx.buf = append(rx.buf[:0], plain[:end]...)
		payload, err := double.OpenInner(&rx.dsc, k.keys, rx.synth, rx.buf, origROC)
		if err != nil {
			continue
		}
		if i > 0 && k.expires.IsZero() {
			k.expires = now.Add(s.cfg.KeyGrace)
		}
		c.received.Add(1)
		if s.cfg.OnRTP != nil {
			// The header as sent: the received header with the original
			// PT, SEQ and marker.
			rx.hdr = append(rx.hdr[:0], pkt[:info.HeaderLen]...)
			rx.hdr[1], rx.hdr[2], rx.hdr[3] = rx.synth[1], rx.synth[2], rx.synth[3]
			s.cfg.OnRTP(RTPPacket{Header: rx.hdr, Payload: payload, SSRC: info.SSRC, Seq: origSeq, ROC: origROC})
		}
		return
	}
	c.dropInner.Add(1)
}

// originalROC is the rollover counter of the sender's original SEQ, given
// the ROC and SEQ of the packet as received (equal unless the Media
// Distributor rewrote SEQ): the one that puts the original index nearest.
func originalROC(roc uint32, seq, orig uint16) uint32 {
	if seq == orig {
		return roc
	}
	d := int32(int16(orig - seq)) // signed distance, mod 2^16
	idx := int64(roc)<<16 | int64(seq)
	o := idx + int64(d)
	if o < 0 {
		return 0
	}
	return uint32(o >> 16)
}

// learnKey processes a FullEKTField (RFC 8870 section 4.3): find the
// parameter set by SPI, unwrap the sender's master key, check the SSRC
// and the epoch, and install the key if it is new. ok false means the
// packet must be dropped.
func (s *Session) learnKey(snd *inSender, ssrc uint32, field []byte, now time.Time) (*inSender, bool) {
	c, rx := &s.c, &s.rx
	f, err := ekt.ParseFull(field)
	if err != nil {
		c.dropEKTField.Add(1)
		return snd, false
	}
	if snd != nil && f.SPI == snd.tagSPI && bytes.Equal(f.Ciphertext, snd.tag) {
		return snd, true // a repeat of the tag already learnt
	}
	set := s.ektSetFor(f.SPI, now)
	if set == nil {
		// "If there is no matching SPI, then the verification function
		// MUST return an indication of authentication failure."
		c.dropUnknownSPI.Add(1)
		return snd, false
	}
	master, tagSSRC, _, err := ekt.OpenKey(set.key, f.Ciphertext)
	if err != nil {
		c.dropEKTAuth.Add(1)
		return snd, false
	}
	defer clear(master)
	if tagSSRC != ssrc {
		// The field is discarded; the packet may still open with a key
		// already known.
		c.ektWrongSSRC.Add(1)
		return snd, true
	}
	if len(master) != s.keyLen {
		c.dropEKTAuth.Add(1)
		return snd, false
	}
	if snd == nil {
		if len(rx.senders) >= s.cfg.MaxSenders {
			c.dropNoKey.Add(1)
			return snd, false
		}
		snd = &inSender{epochs: map[uint16]uint16{}}
		rx.senders[ssrc] = snd
	}
	if e, seen := snd.epochs[f.SPI]; seen {
		if f.Epoch < e {
			// "MUST reject any future FullEKTField for this SPI and SSRC
			// that has an equal or lower epoch": an old key never comes
			// back.
			c.ektEpoch.Add(1)
			return snd, true
		}
		if f.Epoch == e {
			// Same SPI and epoch: the key already installed, unless this
			// one differs, which is refused likewise.
			for _, k := range snd.keys {
				if k.spi == f.SPI && bytes.Equal(k.master, master) {
					snd.tag, snd.tagSPI = append(snd.tag[:0], f.Ciphertext...), f.SPI
					return snd, true
				}
			}
			c.ektEpoch.Add(1)
			return snd, true
		}
	}
	keys, err := double.NewSession(master, set.salt)
	if err != nil {
		c.dropEKTAuth.Add(1)
		return snd, false
	}
	if len(snd.epochs) >= maxEKTSets {
		clear(snd.epochs)
	}
	snd.epochs[f.SPI] = f.Epoch
	for _, k := range snd.keys {
		if k.expires.IsZero() {
			k.expires = now.Add(s.cfg.KeyGrace)
		}
	}
	nk := &inKey{spi: f.SPI, master: append([]byte(nil), master...), keys: keys}
	snd.keys = append([]*inKey{nk}, snd.keys...)
	for len(snd.keys) > maxKeysPerSender {
		snd.keys[len(snd.keys)-1].zero()
		snd.keys = snd.keys[:len(snd.keys)-1]
	}
	snd.tag, snd.tagSPI = append(snd.tag[:0], f.Ciphertext...), f.SPI
	return snd, true
}
