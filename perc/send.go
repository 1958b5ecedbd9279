package perc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// own is the set of SSRCs this Session sends (the keys of streams and
	// rtcpIdx), copied on write for the reader goroutine; collided are
	// those another participant turned out to use as well.
	own      atomic.Pointer[map[uint32]struct{}]
	collided map[uint32]bool
	sc       srtpfast.Scratch
	dsc      double.Scratch
	out      []byte
	rtcpIdx  map[uint32]uint32
}

// outStream is one SSRC this endpoint sends.
type outStream struct {
	started  bool
	top      uint64 // highest index sent (ROC << 16 | SEQ)
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
	// ErrSSRCCollision: another participant sends under this SSRC (RFC
	// 3550 section 8.2); continue under a new random one.
	ErrSSRCCollision = errors.New("perc: SSRC collision: choose another SSRC")
	// ErrSeqNotIncreasing: an RTP packet whose SEQ is not ahead of the
	// stream's highest by 1 to 2^15-1 (a repeat, an older packet, or a
	// jump that would make its ROC ambiguous).
	ErrSeqNotIncreasing = errors.New("perc: RTP sequence number not increasing")
)

// index returns the 48-bit SRTP index (ROC and SEQ) of the next packet
// of the stream. SEQ must move forward by less than 2^15 from the highest
// sent so far: a repeated or older SEQ would seal a second plaintext under
// an (SSRC, ROC, SEQ) already used, which GCM cannot survive.
func (st *outStream) index(seq uint16) (uint64, error) {
	if !st.started {
		st.started, st.top = true, uint64(seq)
		return st.top, nil
	}
	d := seq - uint16(st.top) // forward distance, mod 2^16
	if d == 0 || d >= 0x8000 {
		return 0, ErrSeqNotIncreasing
	}
	if st.top+uint64(d) >= 1<<48 {
		return 0, fmt.Errorf("perc: write: %w", srtpfast.ErrIndexExhausted)
	}
	st.top += uint64(d)
	return st.top, nil
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
	if w.streams == nil || s.failed.Load() != nil {
		return ErrClosed
	}
	if w.collided[ssrc] {
		return ErrSSRCCollision
	}
	st := w.streams[ssrc]
	if st == nil {
		if len(w.streams) >= maxStreams {
			return ErrTooManyStreams
		}
		st = &outStream{}
		w.streams[ssrc] = st
		w.addOwn(ssrc)
	}
	idx, err := st.index(seq)
	if err != nil {
		return err
	}
	roc := uint32(idx >> 16)
	if !s.double {
		w.out, err = s.out.SealRTP(&w.sc, w.out[:0], pkt, roc)
		if err != nil {
			return fmt.Errorf("perc: seal: %w", err)
		}
		return s.send1(w.out)
	}
	sk, err := s.sendKeysNow(now)
	if err != nil {
		return err
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
			if st.tag, err = ekt.SealKey(sk.kek, sk.master, ssrc, roc); err != nil {
				return fmt.Errorf("perc: EKT tag: %w", err)
			}
			st.tagROC = roc
		}
		// Epoch 0: this endpoint changes its key only with a new EKTKey
		// (a new SPI), which resets the epoch (RFC 8870 section 4.1).
		if w.out, err = ekt.AppendFull(w.out, ekt.Full{Ciphertext: st.tag, SPI: sk.spi}); err != nil {
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
	if w.streams == nil || s.failed.Load() != nil {
		return ErrClosed
	}
	if w.rtcpIdx == nil {
		w.rtcpIdx = map[uint32]uint32{}
	}
	if w.collided[ssrc] {
		return ErrSSRCCollision
	}
	idx, ok := w.rtcpIdx[ssrc]
	if !ok && len(w.rtcpIdx) >= maxStreams {
		return ErrTooManyStreams
	}
	if !ok {
		w.addOwn(ssrc)
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

// addOwn records that this Session sends under ssrc. Called with w.mu held.
func (w *writer) addOwn(ssrc uint32) {
	old := w.own.Load()
	m := make(map[uint32]struct{}, 1+len(ownOrNil(old)))
	for k := range ownOrNil(old) {
		m[k] = struct{}{}
	}
	m[ssrc] = struct{}{}
	w.own.Store(&m)
}

func ownOrNil(p *map[uint32]struct{}) map[uint32]struct{} {
	if p == nil {
		return nil
	}
	return *p
}

// checkCollision handles a packet received under ssrc (RFC 3550 section
// 8.2), once it authenticated (in double mode, its inner layer: a member
// sent it): if this Session sends under ssrc too, another participant
// uses it.
// The packet is dropped (it reports true); the first time, the SSRC is
// retired for writing and the application told. A sender must not keep an
// SSRC someone else uses: with EKT, receivers keep the first end-to-end
// key they learn for an (SPI, SSRC) and refuse any other (RFC 8870
// section 4.3.2), so one of the two would not be heard; moving is what
// resolves it. It does not allocate when there is no collision.
func (s *Session) checkCollision(ssrc uint32) bool {
	if _, mine := ownOrNil(s.w.own.Load())[ssrc]; !mine {
		return false
	}
	w := &s.w
	w.mu.Lock()
	first := !w.collided[ssrc]
	if first {
		if w.collided == nil {
			w.collided = map[uint32]bool{}
		}
		w.collided[ssrc] = true
	}
	w.mu.Unlock()
	if first {
		s.c.collisions.Add(1)
		if s.cfg.OnSSRCCollision != nil {
			s.cfg.OnSSRCCollision(ssrc)
		}
	}
	return true
}
