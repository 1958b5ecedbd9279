package attacktest

import (
	"context"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/perc"
)

// endpoint is one legitimate participant: a perc.Session that records
// when it sent each sequence number and when it received each packet.
type endpoint struct {
	name string
	id   endpointsim.Identity
	conf string
	addr netip.Addr
	// local is the socket's address and port.
	local netip.AddrPort
	ssrc  uint32        // the SSRC it was given
	cur   atomic.Uint32 // the SSRC it sends under now (it moves on a collision)
	pc    *net.UDPConn
	sess  atomic.Pointer[perc.Session]

	joinedAt atomic.Int64 // UnixNano when Dial returned (0: not joined)
	joinTime time.Duration

	sendMu sync.Mutex
	sent   []int64 // seq -> send time (UnixNano)

	mu   sync.Mutex
	got  map[uint32]map[uint16]int64 // sender SSRC -> seq -> arrival
	last map[uint32]int64            // sender SSRC -> last arrival
	bad  atomic.Uint64               // opened, but not what was sent
}

// newEndpoint takes the next identity of conference ci and opens its
// socket on its own address in the endpoints' namespace.
func (s *sys) newEndpoint(ci, k int) (*endpoint, error) {
	c := s.confs[ci]
	i := s.nextEP
	s.nextEP++
	e := &endpoint{name: fmt.Sprintf("%s/%d", c.name, k), id: c.ids[k], conf: c.name, addr: epAddr(i),
		ssrc: 0x5eed0000 + uint32(i), got: map[uint32]map[uint16]int64{}, last: map[uint32]int64{}}
	e.cur.Store(e.ssrc)
	var err error
	if e.pc, err = s.ep.NS.ListenUDP(e.addr, 0); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", e.name, err)
	}
	ap := e.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	e.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s.t.Cleanup(e.close)
	return e, nil
}

// endpoints makes n endpoints of conference ci, identities from first.
func (s *sys) endpoints(ci, first, n int) []*endpoint {
	s.t.Helper()
	var eps []*endpoint
	for k := first; k < first+n; k++ {
		e, err := s.newEndpoint(ci, k)
		if err != nil {
			s.t.Fatal(err)
		}
		eps = append(eps, e)
	}
	return eps
}

// join runs e's DTLS-SRTP handshake with the KD through the MD (and, with
// the double profile, waits for the EKTKey) and records how long it took.
func (e *endpoint) join(ctx context.Context, kdFP [32]byte) error {
	start := time.Now()
	sess, err := perc.Dial(ctx, e.pc, netip.AddrPortFrom(mdIP, mediaPort), perc.Config{
		Certificate:      e.id.Cert,
		TLSID:            e.id.TLSID,
		KDFingerprint:    kdFP,
		HandshakeTimeout: 10 * time.Second,
		OnRTP:            e.onRTP,
		// RFC 3550 section 8.2, as an application does: another
		// participant uses our SSRC, so we move to a new random one.
		OnSSRCCollision: func(x uint32) {
			if e.cur.Load() == x {
				e.cur.Store(x ^ uint32(mrand.Uint32()|1))
			}
		},
	})
	if err != nil {
		return fmt.Errorf("endpoint %s join: %w", e.name, err)
	}
	e.joinTime = time.Since(start)
	e.sess.Store(sess)
	e.joinedAt.Store(time.Now().UnixNano())
	return nil
}

// joinAll joins eps, at most par at a time, and returns the first error.
func (s *sys) joinAll(ctx context.Context, eps []*endpoint, par int) error {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	errs := make([]error, len(eps))
	for i, e := range eps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = e.join(ctx, s.files.KDFingerprint)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// onRTP records a packet that opened, if it is octet for octet what
// some sender's send (or sendAs) sealed: 160 octets, the SSRC, the SEQ,
// zeros. Anything else is counted in bad.
func (e *endpoint) onRTP(p perc.RTPPacket) {
	if !validPayload(p.Payload, p.SSRC, p.Seq) {
		e.bad.Add(1)
		return
	}
	now := time.Now().UnixNano()
	e.mu.Lock()
	m := e.got[p.SSRC]
	if m == nil {
		m = map[uint16]int64{}
		e.got[p.SSRC] = m
	}
	m[p.Seq] = now
	e.last[p.SSRC] = now
	e.mu.Unlock()
}

// payloadLen is the size of every test packet's payload.
const payloadLen = 160

// testPayload is the payload of the packet (ssrc, seq): the SSRC, the
// SEQ (32 bits), zeros.
func testPayload(ssrc uint32, seq uint16) []byte {
	pl := make([]byte, payloadLen)
	binary.BigEndian.PutUint32(pl, ssrc)
	binary.BigEndian.PutUint32(pl[4:], uint32(seq))
	return pl
}

// validPayload reports whether pl is testPayload(ssrc, seq).
func validPayload(pl []byte, ssrc uint32, seq uint16) bool {
	if len(pl) != payloadLen || binary.BigEndian.Uint32(pl) != ssrc || binary.BigEndian.Uint32(pl[4:]) != uint32(seq) {
		return false
	}
	for _, b := range pl[8:] {
		if b != 0 {
			return false
		}
	}
	return true
}

// setSSRC gives e SSRC x (before it sends).
func (e *endpoint) setSSRC(x uint32) {
	e.ssrc = x
	e.cur.Store(x)
}

// send sends the next RTP packet (160 bytes of payload).
func (e *endpoint) send() error {
	sess := e.sess.Load()
	if sess == nil {
		return errNotJoined
	}
	e.sendMu.Lock()
	seq := uint16(len(e.sent))
	e.sent = append(e.sent, time.Now().UnixNano())
	e.sendMu.Unlock()
	if err := e.sendAs(sess, e.cur.Load(), seq); err != nil {
		return fmt.Errorf("endpoint %s: send: %w", e.name, err)
	}
	return nil
}

// sendAs seals and sends the test packet (ssrc, seq) on sess, whatever
// SSRC e normally sends (perc takes the SSRC from the RTP header, up to 64
// per session). It does not record the packet in e.sent.
func (e *endpoint) sendAs(sess *perc.Session, ssrc uint32, seq uint16) error {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
		Timestamp: uint32(seq) * 960, SSRC: ssrc}, Payload: testPayload(ssrc, seq)}
	raw, err := p.Marshal()
	if err != nil {
		return fmt.Errorf("marshal RTP: %w", err)
	}
	return sess.WriteRTP(raw)
}

// forget drops what e received under ssrc (for an SSRC that a new sender
// starts over at SEQ 0, once the previous one is gone and drained).
func (e *endpoint) forget(ssrc uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.got, ssrc)
	delete(e.last, ssrc)
}

// arrivals returns the SEQs e received under ssrc and their arrival times.
func (e *endpoint) arrivals(ssrc uint32) map[uint16]time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[uint16]time.Time, len(e.got[ssrc]))
	for seq, at := range e.got[ssrc] {
		out[seq] = time.Unix(0, at)
	}
	return out
}

// ssrcs are the SSRCs e received anything under.
func (e *endpoint) ssrcs() []uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []uint32
	for s, m := range e.got {
		if len(m) > 0 {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// lastFrom is when e last received a packet from snd (zero: never).
func (e *endpoint) lastFrom(snd *endpoint) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.last[snd.cur.Load()]; t != 0 {
		return time.Unix(0, t)
	}
	return time.Time{}
}

func (e *endpoint) received(snd *endpoint, seq uint16) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.got[snd.cur.Load()][seq]
	return ok
}

// close leaves the conference (or closes the socket of an endpoint that
// never joined).
func (e *endpoint) close() {
	if sess := e.sess.Swap(nil); sess != nil {
		_ = sess.Close()
	} else if e.pc != nil {
		_ = e.pc.Close()
	}
	e.pc = nil
}

// media makes every sender send 50 packets/s until stop.
type media struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error
}

func startMedia(senders ...*endpoint) *media {
	m := &media{stopc: make(chan struct{})}
	for _, e := range senders {
		m.wg.Go(func() {
			t := time.NewTicker(packetGap)
			defer t.Stop()
			for {
				select {
				case <-m.stopc:
					return
				case <-t.C:
				}
				if err := e.send(); err != nil {
					m.mu.Lock()
					m.errs = append(m.errs, err)
					m.mu.Unlock()
					return
				}
			}
		})
	}
	return m
}

// stop stops the senders, waits for them and returns their errors.
func (m *media) stop() []error {
	select {
	case <-m.stopc:
	default:
		close(m.stopc)
	}
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.errs)
}

// loss is the media accounting of a window.
type loss struct {
	expected, lost int
	pairs          map[string]int // "snd->rcv" -> lost
}

func (l loss) String() string {
	var ks []string
	for k, v := range l.pairs {
		if v > 0 {
			ks = append(ks, fmt.Sprintf("%s:%d", k, v))
		}
	}
	sort.Strings(ks)
	return fmt.Sprintf("expected=%d lost=%d (%.2f%%) %s", l.expected, l.lost, 100*float64(l.lost)/max(1, float64(l.expected)), strings.Join(ks, " "))
}

// account counts, for packets every sender sent in [from, to), the
// receivers (joined before the packet was sent) that did not get it.
// Call it after the senders stopped and in-flight packets drained.
func account(senders, receivers []*endpoint, from, to time.Time) loss {
	l := loss{pairs: map[string]int{}}
	for _, snd := range senders {
		snd.sendMu.Lock()
		sent := slices.Clone(snd.sent)
		snd.sendMu.Unlock()
		for seq, at := range sent {
			if at < from.UnixNano() || at >= to.UnixNano() {
				continue
			}
			for _, rcv := range receivers {
				if rcv == snd {
					continue
				}
				if j := rcv.joinedAt.Load(); j == 0 || j > at {
					continue
				}
				l.expected++
				if !rcv.received(snd, uint16(seq)) {
					l.lost++
					l.pairs[snd.name+"->"+rcv.name]++
				}
			}
		}
	}
	return l
}

// percentiles are p50, p99 and max of ds.
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	idx := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return idx(0.50), idx(0.99), s[len(s)-1]
}
