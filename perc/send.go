package perc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// writer is the sending side: per-SSRC stream state and scratch buffers,
// used under mu by WriteRTP and WriteRTCP.
type writer struct {
	mu      sync.Mutex
	streams map[uint32]*outStream
	sc      srtpfast.Scratch
	dsc     double.Scratch
	out     []byte
	rtcpIdx map[uint32]uint32
}

// outStream is one SSRC this endpoint sends.
type outStream struct {
	started  bool
	lastSeq  uint16
	roc      uint32
	gen      uint64 // sendKeys generation the counters below refer to
	fullLeft int
	lastFull time.Time
	tagROC   uint32
	tag      []byte // cached EKTCiphertext for (gen, tagROC)
}

// maxStreams bounds the SSRCs one Session sends.
const maxStreams = 64

// Errors of WriteRTP and WriteRTCP.
var (
	// ErrTooManyStreams: more SSRCs than a Session sends.
	ErrTooManyStreams = errors.New("perc: too many SSRCs")
	// ErrNotRTP: what was given to write is not an RTP (or RTCP) packet.
	ErrNotRTP = errors.New("perc: not an RTP packet")
)

// nextROC is the rollover counter for seq on a stream that sends its
// packets in order, give or take reordering (RFC 3711 section 3.3.1).
func (st *outStream) nextROC(seq uint16) uint32 {
	if !st.started {
		st.started, st.lastSeq = true, seq
		return st.roc
	}
	d := int32(int16(seq - st.lastSeq))
	switch {
	case d > 0:
		if seq < st.lastSeq {
			st.roc++ // wrapped
		}
		st.lastSeq = seq
		return st.roc
	case seq > st.lastSeq && st.roc > 0:
		return st.roc - 1 // a late packet from before the wrap
	}
	return st.roc
}

// WriteRTP sends one RTP packet (header and payload, in plaintext). In
// double mode it seals the inner layer with this endpoint's end-to-end key
// over the original header without its extension (RFC 8723 section 5.1),
// appends an empty OHB, seals the outer layer with the hop-by-hop key over
// the whole header, and appends an EKTField: a FullEKTField on the first
// packets after a key change and every FullEKTInterval, a ShortEKTField
// otherwise. Safe for concurrent use.
func (s *Session) WriteRTP(pkt []byte) error {
	if _, _, ok := double.HeaderLens(pkt); !ok {
		return ErrNotRTP
	}
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	now := time.Now()
	w := &s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.streams == nil {
		return ErrClosed
	}
	st := w.streams[ssrc]
	if st == nil {
		if len(w.streams) >= maxStreams {
			return ErrTooManyStreams
		}
		st = &outStream{}
		w.streams[ssrc] = st
	}
	roc := st.nextROC(seq)
	var err error
	if !s.double {
		w.out, err = s.out.SealRTP(&w.sc, w.out[:0], pkt, roc)
		if err != nil {
			return fmt.Errorf("perc: seal: %w", err)
		}
		return s.send1(w.out)
	}
	sk := s.sendKeysNow(now)
	if sk == nil {
		return ErrNoEKTKey
	}
	if st.gen != sk.gen {
		st.gen, st.fullLeft, st.tag = sk.gen, fullEKTPackets, nil
	}
	// RFC 8723 section 5.1: inner layer under our end-to-end key, an
	// empty OHB, outer layer under our hop-by-hop key (internal/double).
	w.out, err = double.Seal(&w.dsc, sk.inner, s.dout, w.out[:0], pkt, roc)
	if err != nil {
		return fmt.Errorf("perc: seal: %w", err)
	}
	if st.fullLeft > 0 || now.Sub(st.lastFull) >= s.cfg.FullEKTInterval {
		if st.tag == nil || st.tagROC != roc {
			if st.tag, err = ekt.SealKey(sk.set.key, sk.master, ssrc, roc); err != nil {
				return fmt.Errorf("perc: EKT tag: %w", err)
			}
			st.tagROC = roc
		}
		// Epoch 0: this endpoint changes its key only with a new EKTKey
		// (a new SPI), which resets the epoch (RFC 8870 section 4.1).
		if w.out, err = ekt.AppendFull(w.out, ekt.Full{Ciphertext: st.tag, SPI: sk.set.spi}); err != nil {
			return fmt.Errorf("perc: EKT tag: %w", err)
		}
		st.fullLeft = max(st.fullLeft-1, 0)
		st.lastFull = now
		s.c.fullEKT.Add(1)
	} else {
		w.out = ekt.AppendShort(w.out)
	}
	return s.send1(w.out)
}

func (s *Session) send1(b []byte) error {
	if _, err := s.pc.WriteTo(b, s.md); err != nil {
		return fmt.Errorf("perc: send: %w", err)
	}
	s.c.sent.Add(1)
	return nil
}

// WriteRTCP sends one RTCP packet (a compound packet, in plaintext),
// protected by the hop-by-hop layer only (RFC 8723 section 5.4; in legacy
// mode, plain SRTCP). Safe for concurrent use.
func (s *Session) WriteRTCP(pkt []byte) error {
	if len(pkt) < 8 {
		return ErrNotRTP
	}
	ssrc := binary.BigEndian.Uint32(pkt[4:])
	w := &s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.streams == nil {
		return ErrClosed
	}
	if w.rtcpIdx == nil {
		w.rtcpIdx = map[uint32]uint32{}
	}
	idx, ok := w.rtcpIdx[ssrc]
	if !ok && len(w.rtcpIdx) >= maxStreams {
		return ErrTooManyStreams
	}
	if idx >= 1<<31 {
		return fmt.Errorf("perc: write RTCP: %w", srtpfast.ErrIndexExhausted)
	}
	w.rtcpIdx[ssrc] = idx + 1
	var err error
	if w.out, err = s.out.SealRTCP(&w.sc, w.out[:0], pkt, idx); err != nil {
		return fmt.Errorf("perc: seal RTCP: %w", err)
	}
	return s.send1(w.out)
}
