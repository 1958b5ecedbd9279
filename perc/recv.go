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
	keys     []*inKey          // newest first
	epochs   map[uint16]uint16 // highest FullEKTField epoch seen, by SPI
	tag      []byte            // the last EKTCiphertext accepted, to skip unwrapping repeats
	tagSPI   uint16
	lastSeen time.Time
}

// inKey is one end-to-end key of a sender, with the end-to-end replay
// window of what it opened (RFC 8871 section 8.2.2: the MD could replay an
// inner ciphertext under a fresh outer layer and an OHB naming the
// original SEQ).
type inKey struct {
	spi     uint16
	setSeq  uint64 // arrival order of its parameter set
	master  []byte
	keys    *double.Session
	expires time.Time // zero while it is the newest
	replay  replayWindow
	// roc is the sender's rollover counter in the FullEKTField that
	// installed the key (RFC 8870 section 4.1): the inner layer's ROC
	// until the key opened a packet.
	roc uint32
}

// innerIndex is the sender's original SRTP index (inner ROC << 16 | the
// original SEQ from the OHB) as this key sees it. RFC 8723 section 3 keeps
// the inner and outer SEQ and ROC independent: a Media Distributor that
// rewrote SEQ (for example to give a re-used SSRC indices above an earlier
// sender's) leaves the outer ROC unrelated to the sender's, so the inner
// ROC is estimated from what this key opened (RFC 3711 appendix A), or,
// before that, taken from the FullEKTField that carried the key.
func (k *inKey) innerIndex(seq uint16) uint64 {
	if !k.replay.seen {
		return uint64(k.roc)<<16 | uint64(seq)
	}
	roc, top := k.replay.top>>16, uint16(k.replay.top)
	switch d := int32(seq) - int32(top); {
	case d > 32768 && roc > 0:
		roc--
	case d < -32768 && roc < 0xffffffff:
		roc++
	}
	return roc<<16 | uint64(seq)
}

func (k *inKey) zero() { clear(k.master) }

// replayWindow is a 64-packet sliding window over 48-bit SRTP indices
// (RFC 3711 section 3.3.2), updated only after authentication.
type replayWindow struct {
	seen bool
	top  uint64
	bits uint64
}

func (w *replayWindow) check(idx uint64) bool {
	switch {
	case !w.seen || idx > w.top:
		return true
	case w.top-idx >= 64:
		return false
	}
	return w.bits&(1<<(w.top-idx)) == 0
}

func (w *replayWindow) mark(idx uint64) {
	switch {
	case !w.seen:
		w.seen, w.top, w.bits = true, idx, 1
	case idx > w.top:
		if d := idx - w.top; d >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<d | 1
		}
		w.top = idx
	default:
		w.bits |= 1 << (w.top - idx)
	}
}

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
		if s.checkCollision(info.SSRC) {
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
	var f ekt.Full
	if typ == ekt.TypeFull {
		if f, err = ekt.ParseFull(field); err != nil {
			c.dropEKTField.Add(1)
			return
		}
	}
	if len(pkt) < 12 {
		c.dropOuter.Add(1)
		return
	}
	ssrc := uint32(pkt[8])<<24 | uint32(pkt[9])<<16 | uint32(pkt[10])<<8 | uint32(pkt[11])
	firstROC := uint32(0)
	if typ == ekt.TypeFull && !s.in.Knows(ssrc) {
		// A stream joined late: its FullEKTField tells the ROC the
		// hop-by-hop layer was sealed with (RFC 8870 section 4.1).
		if set, ok := s.ektSetFor(f.SPI, now); ok {
			if mk, tagSSRC, roc, err := ekt.OpenKey(set.key, f.Ciphertext); err == nil {
				clear(mk)
				if tagSSRC == ssrc {
					firstROC = roc
				}
			}
			clear(set.key)
		}
	}
	info, err := s.in.OpenRTPFrom(pkt, firstROC)
	if err != nil {
		c.dropOuter.Add(1)
		return
	}
	snd := rx.senders[info.SSRC]
	if typ == ekt.TypeFull {
		var ok bool
		if snd, ok = s.learnKey(snd, info.SSRC, f, now); !ok {
			return
		}
	}
	if snd == nil || len(snd.keys) == 0 {
		c.dropNoKey.Add(1)
		return
	}
	snd.lastSeen = now
	// The original header the sender sealed (RFC 8723 section 4), then
	// the inner layer under one of the sender's end-to-end keys.
	plain := pkt[info.HeaderLen:info.Len]
	o, end, err := double.ParseOHB(plain)
	if err != nil {
		c.dropOuter.Add(1)
		return
	}
	origSeq := info.Seq
	if o.HasSeq {
		origSeq = o.Seq
	}
	rx.synth = append(rx.synth[:0], double.OriginalHeader(&rx.dsc, pkt, o)...)
	replayed := false
	for i, k := range snd.keys {
		if !k.expires.IsZero() && now.After(k.expires) || !s.setUsable(k.spi, now) {
			continue
		}
		idx := k.innerIndex(origSeq)
		origROC := uint32(idx >> 16)
		if !k.replay.check(idx) {
			replayed = true
			continue
		}
		// Each attempt opens a copy: a failed open leaves it unspecified.
		rx.buf = append(rx.buf[:0], plain[:end]...)
		payload, err := double.OpenInner(&rx.dsc, k.keys, rx.synth, rx.buf, origROC)
		if err != nil {
			continue
		}
		k.replay.mark(idx)
		if i > 0 && k.expires.IsZero() {
			k.expires = now.Add(s.cfg.KeyGrace)
		}
		// Checked once the inner layer authenticated a member's packet:
		// the Media Distributor alone cannot make us give up an SSRC.
		if s.checkCollision(info.SSRC) {
			return
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
	if replayed {
		c.dropReplay.Add(1)
		return
	}
	c.dropInner.Add(1)
}

// learnKey processes a FullEKTField (RFC 8870 section 4.3): find the
// parameter set by SPI, unwrap the sender's master key, check the SSRC,
// the epoch and that the set is not older than one the sender already
// uses, and install the key if it is new. ok false means the packet must
// be dropped.
func (s *Session) learnKey(snd *inSender, ssrc uint32, f ekt.Full, now time.Time) (*inSender, bool) {
	c := &s.c
	if snd != nil && f.SPI == snd.tagSPI && bytes.Equal(f.Ciphertext, snd.tag) && s.setUsable(f.SPI, now) {
		return snd, true // a repeat of the tag already learnt
	}
	set, ok := s.ektSetFor(f.SPI, now)
	if !ok {
		// "If there is no matching SPI, then the verification function
		// MUST return an indication of authentication failure."
		c.dropUnknownSPI.Add(1)
		return snd, false
	}
	defer clear(set.key)
	master, tagSSRC, tagROC, err := ekt.OpenKey(set.key, f.Ciphertext)
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
		snd = s.newSender(ssrc, now)
		if snd == nil {
			c.dropNoKey.Add(1)
			return nil, false
		}
	}
	newest := uint64(0)
	for _, k := range snd.keys {
		newest = max(newest, k.setSeq)
	}
	for i, k := range snd.keys {
		if k.spi == f.SPI && bytes.Equal(k.master, master) {
			// Known: if it is under the newest set the sender uses, it is
			// the sender's current key again.
			if i > 0 && set.seq >= newest {
				copy(snd.keys[1:i+1], snd.keys[:i])
				snd.keys[0] = k
				k.expires = time.Time{}
				for _, o := range snd.keys[1:] {
					if o.expires.IsZero() {
						o.expires = now.Add(s.cfg.KeyGrace)
					}
				}
			}
			snd.tag, snd.tagSPI = append(snd.tag[:0], f.Ciphertext...), f.SPI
			return snd, true
		}
	}
	if set.seq < newest {
		// A new key under a parameter set older than one the sender
		// already moved to: a sender changes key only with a new
		// EKTKey, so this comes from someone who still holds the old
		// set (a member who left), not from the sender.
		c.ektEpoch.Add(1)
		return snd, true
	}
	if e, seen := snd.epochs[f.SPI]; seen && f.Epoch <= e {
		// "MUST reject any future FullEKTField for this SPI and SSRC that
		// has an equal or lower epoch value to an epoch already seen":
		// a key never comes back, nor changes under the same epoch.
		c.ektEpoch.Add(1)
		return snd, true
	}
	keys, err := double.NewSession(master, set.salt)
	clear(set.salt)
	if err != nil {
		c.dropEKTAuth.Add(1)
		return snd, false
	}
	if len(snd.epochs) >= maxEKTSets {
		for spi := range snd.epochs { // forget the epochs of sets gone
			if !s.setUsable(spi, now) {
				delete(snd.epochs, spi)
			}
		}
	}
	if len(snd.epochs) < 2*maxEKTSets {
		snd.epochs[f.SPI] = f.Epoch
	}
	for _, k := range snd.keys {
		if k.expires.IsZero() {
			k.expires = now.Add(s.cfg.KeyGrace)
		}
	}
	nk := &inKey{spi: f.SPI, setSeq: set.seq, master: bytes.Clone(master), keys: keys, roc: tagROC}
	snd.keys = append([]*inKey{nk}, snd.keys...)
	for len(snd.keys) > maxKeysPerSender {
		snd.keys[len(snd.keys)-1].zero()
		snd.keys = snd.keys[:len(snd.keys)-1]
	}
	snd.tag, snd.tagSPI = append(snd.tag[:0], f.Ciphertext...), f.SPI
	return snd, true
}

// newSender makes the state of a new sender SSRC, evicting the one heard
// from least recently when MaxSenders are held; nil if the table is full
// of senders heard within KeyGrace.
func (s *Session) newSender(ssrc uint32, now time.Time) *inSender {
	rx := &s.rx
	if len(rx.senders) >= s.cfg.MaxSenders {
		var old uint32
		var oldest *inSender
		for id, snd := range rx.senders {
			if oldest == nil || snd.lastSeen.Before(oldest.lastSeen) {
				old, oldest = id, snd
			}
		}
		if oldest == nil || now.Sub(oldest.lastSeen) < s.cfg.KeyGrace {
			return nil
		}
		for _, k := range oldest.keys {
			k.zero()
		}
		delete(rx.senders, old)
	}
	snd := &inSender{epochs: map[uint16]uint16{}, lastSeen: now}
	rx.senders[ssrc] = snd
	return snd
}
