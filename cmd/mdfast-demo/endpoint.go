package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/perc"
)

// endpoint is one simulated conference participant (a perc.Session) that
// records what it receives.
type endpoint struct {
	idx  int
	ns   string
	id   endpointsim.Identity
	ssrc uint32

	udp *net.UDPConn
	s   atomic.Pointer[perc.Session]

	joined  atomic.Int64 // UnixNano when its keys were ready (0: not joined)
	sent    atomic.Uint64
	authErr atomic.Uint64
	// got[sender][seq] records deliveries; guarded by gotMu.
	gotMu sync.Mutex
	got   map[uint32]map[uint16]bool
	dup   atomic.Uint64
}

func newEndpoint(idx int, ns string) (*endpoint, error) {
	id, err := endpointsim.NewIdentity(24 * time.Hour)
	if err != nil {
		return nil, err
	}
	return &endpoint{idx: idx, ns: ns, id: id, ssrc: 0x5eed0000 + uint32(idx),
		got: map[uint32]map[uint16]bool{}}, nil
}

// open binds the endpoint's UDP socket inside its namespace.
func (e *endpoint) open(local string) error {
	return syssim.InNetns(e.ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(local)})
		if err != nil {
			return fmt.Errorf("endpoint %d socket: %w", e.idx, err)
		}
		e.udp = c
		return nil
	})
}

// handshake joins the conference: the DTLS-SRTP handshake with the KD
// through the MD and, in double mode, the conference's EKTKey.
func (e *endpoint) handshake(ctx context.Context, md netip.AddrPort, kdFP keydist.Fingerprint, profiles []uint16) error {
	s, err := perc.Dial(ctx, e.udp, md, perc.Config{
		Certificate:   e.id.Cert,
		TLSID:         e.id.TLSID,
		KDFingerprint: kdFP,
		Profiles:      profiles,
		OnRTP:         e.onRTP,
	})
	if err != nil {
		return fmt.Errorf("endpoint %d: %w", e.idx, err)
	}
	e.s.Store(s)
	e.joined.Store(time.Now().UnixNano())
	return nil
}

// onRTP records a packet that opened (on the session's reader).
func (e *endpoint) onRTP(p perc.RTPPacket) {
	if len(p.Payload) < 8 || binary.BigEndian.Uint32(p.Payload) != p.SSRC {
		e.authErr.Add(1) // opened but not what was sent
		return
	}
	e.gotMu.Lock()
	m := e.got[p.SSRC]
	if m == nil {
		m = map[uint16]bool{}
		e.got[p.SSRC] = m
	}
	if m[p.Seq] {
		e.dup.Add(1)
	}
	m[p.Seq] = true
	e.gotMu.Unlock()
}

// authFailures are the packets that reached the endpoint and did not open
// (either layer), or opened to something that was not sent.
func (e *endpoint) authFailures() uint64 {
	n := e.authErr.Load()
	if s := e.s.Load(); s != nil {
		st := s.Stats()
		n += st.DropOuter + st.DropInner + st.DropEKTAuth
	}
	return n
}

// sendLog is what a sender sent: seq -> send time.
type sendLog struct {
	mu    sync.Mutex
	times []int64
}

// send sends one RTP packet with sequence number seq.
func (e *endpoint) send(seq uint16, log *sendLog) error {
	pl := make([]byte, 160)
	binary.BigEndian.PutUint32(pl, e.ssrc)
	binary.BigEndian.PutUint32(pl[4:], uint32(seq))
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
		Timestamp: uint32(seq) * 960, SSRC: e.ssrc}, Payload: pl}
	raw, err := p.Marshal()
	if err != nil {
		return err
	}
	log.mu.Lock()
	log.times = append(log.times, time.Now().UnixNano())
	log.mu.Unlock()
	if err := e.s.Load().WriteRTP(raw); err != nil {
		return err
	}
	e.sent.Add(1)
	return nil
}

func (e *endpoint) received(ssrc uint32, seq uint16) bool {
	e.gotMu.Lock()
	defer e.gotMu.Unlock()
	return e.got[ssrc][seq]
}

// close leaves the conference.
func (e *endpoint) close() {
	if s := e.s.Load(); s != nil {
		_ = s.Close()
	} else if e.udp != nil {
		_ = e.udp.Close()
	}
}
