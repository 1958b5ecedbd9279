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
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/syssim"
)

// endpoint is one simulated conference participant (package endpointsim)
// that records what it receives.
type endpoint struct {
	idx  int
	ns   string
	id   endpointsim.Identity
	ssrc uint32

	udp  *net.UDPConn
	sim  *endpointsim.Conn
	tx   *srtp.Context
	rxMu sync.Mutex
	rx   *srtp.Context
	dec  []byte // the reader's scratch

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

// handshake runs the DTLS-SRTP handshake with the KD through the MD and
// builds the SRTP contexts. The socket reader runs until close.
func (e *endpoint) handshake(ctx context.Context, md netip.AddrPort, kdFP keydist.Fingerprint) error {
	e.sim = endpointsim.Dial(e.udp, md, e.onMedia)
	s, err := e.sim.Handshake(ctx, endpointsim.HandshakeConfig{Identity: e.id, KDFingerprint: kdFP})
	if err != nil {
		return fmt.Errorf("endpoint %d: %w", e.idx, err)
	}
	if e.tx, err = s.Keys.SendContext(); err != nil {
		return fmt.Errorf("endpoint %d: %w", e.idx, err)
	}
	rx, err := s.Keys.ReceiveContext()
	if err != nil {
		return fmt.Errorf("endpoint %d: %w", e.idx, err)
	}
	e.rxMu.Lock()
	e.rx = rx
	e.rxMu.Unlock()
	e.joined.Store(time.Now().UnixNano())
	return nil
}

// onMedia decrypts and records an SRTP packet (on the socket's reader).
func (e *endpoint) onMedia(b []byte) {
	e.rxMu.Lock()
	rx := e.rx
	e.rxMu.Unlock()
	if rx == nil {
		return // before our keys: not counted
	}
	var h rtp.Header
	out, err := rx.DecryptRTP(e.dec[:0], b, &h)
	if err != nil {
		e.authErr.Add(1)
		return
	}
	e.dec = out[:0]
	pl := out[h.MarshalSize():]
	if len(pl) < 8 || binary.BigEndian.Uint32(pl) != h.SSRC {
		e.authErr.Add(1) // decrypted but not what was sent
		return
	}
	e.gotMu.Lock()
	m := e.got[h.SSRC]
	if m == nil {
		m = map[uint16]bool{}
		e.got[h.SSRC] = m
	}
	if m[h.SequenceNumber] {
		e.dup.Add(1)
	}
	m[h.SequenceNumber] = true
	e.gotMu.Unlock()
}

// sendLog is what a sender sent: seq -> send time.
type sendLog struct {
	mu    sync.Mutex
	times []int64
}

// send sends one SRTP packet with sequence number seq.
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
	enc, err := e.tx.EncryptRTP(nil, raw, nil)
	if err != nil {
		return err
	}
	log.mu.Lock()
	log.times = append(log.times, time.Now().UnixNano())
	log.mu.Unlock()
	if err := e.sim.WriteMedia(enc); err != nil {
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

// close closes the socket without a close_notify: the MD must not see the
// endpoints leave before the summary.
func (e *endpoint) close() {
	if e.sim != nil {
		_ = e.sim.Close()
	} else if e.udp != nil {
		_ = e.udp.Close()
	}
}
