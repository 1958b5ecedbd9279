package perc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// SRTP protection profiles a Session offers.
const (
	ProfileDoubleAES128GCM uint16 = 0x0009 // RFC 8723, the default
	ProfileDoubleAES256GCM uint16 = 0x000A
	ProfileAES128GCM       uint16 = 0x0007 // legacy: the MD holds the whole key
	ProfileAES256GCM       uint16 = 0x0008
)

// Defaults of the zero fields of Config.
const (
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultRekeyDelay       = 250 * time.Millisecond // RFC 8870 section 4.3.1
	DefaultKeyGrace         = 10 * time.Second
	DefaultFullEKTInterval  = 100 * time.Millisecond // RFC 8870 section 4.7, audio
	DefaultMaxSenders       = 256
	fullEKTPackets          = 3 // RFC 8870 section 4.7: three consecutive packets
	// maxOuterSSRCs is the hop-by-hop receive state: as many SSRCs as
	// the Media Distributor lets one conference claim.
	maxOuterSSRCs = 4096
)

// Config configures a Session.
type Config struct {
	// Certificate is the endpoint's DTLS certificate (self-signed; its
	// fingerprint goes into the SDP offer and the KD's registry).
	Certificate tls.Certificate
	// TLSID is the endpoint's SDP tls-id, sent as external_session_id
	// (RFC 8844); 20..255 characters.
	TLSID string
	// KDFingerprint is the SHA-256 fingerprint of the Key Distributor's
	// certificate (the SDP answer's a=fingerprint).
	KDFingerprint [32]byte
	// Profiles is the use_srtp offer in preference order (default: the
	// double profile 0x0009 only). Add 0x0007 or 0x0008 to accept legacy
	// mode where the conference allows it.
	Profiles []uint16
	// EKTCiphers is the supported_ekt_ciphers offer (default AESKW_128 and
	// AESKW_256).
	EKTCiphers []dtls.EKTCipher
	// HandshakeTimeout bounds Dial: the handshake and, in double mode, the
	// first EKTKey (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// RetransmitTimeout is the first DTLS retransmission timeout (the DTLS
	// default when 0).
	RetransmitTimeout time.Duration
	// RekeyDelay is how long after a new EKTKey the endpoint keeps sending
	// with its old key before it switches (DefaultRekeyDelay): time for
	// every member to receive the new EKTKey.
	RekeyDelay time.Duration
	// KeyGrace is how long superseded keys and EKT parameter sets stay
	// usable for packets in flight (DefaultKeyGrace).
	KeyGrace time.Duration
	// FullEKTInterval is how often a stream repeats its FullEKTField for
	// receivers that join later (DefaultFullEKTInterval).
	FullEKTInterval time.Duration
	// MaxSenders bounds the senders whose keys the endpoint keeps
	// (DefaultMaxSenders).
	MaxSenders int
	// OnRTP receives every RTP packet that opened, on the Session's reader
	// goroutine; the slices are valid only during the call.
	OnRTP func(RTPPacket)
	// OnRTCP receives every RTCP packet that opened (plaintext), likewise.
	OnRTCP func([]byte)
	// OnSSRCCollision is told, once per SSRC, that another participant
	// sends under an SSRC this Session sends (RFC 3550 section 8.2): from
	// then on WriteRTP and WriteRTCP refuse that SSRC
	// (ErrSSRCCollision) and the application continues under a new random
	// one. Called on the reader goroutine.
	OnSSRCCollision func(ssrc uint32)
}

// RTPPacket is a received RTP packet.
type RTPPacket struct {
	// Header is the RTP header as the sender sent it (PT, SEQ and marker
	// restored from the OHB if the MD changed them).
	Header []byte
	// Payload is the plaintext payload.
	Payload []byte
	SSRC    uint32
	Seq     uint16
	ROC     uint32
}

// Stats counts what a Session did.
type Stats struct {
	Sent, Received                      uint64
	DropReplay                          uint64 // end-to-end replays (an inner ciphertext opened before)
	FullEKTSent                         uint64
	DropOuter, DropInner, DropNoKey     uint64 // failed layers; no end-to-end key for the sender yet
	DropEKTField, DropUnknownSPI        uint64 // malformed EKTField; a FullEKTField naming an SPI we lack
	DropEKTAuth, EKTWrongSSRC, EKTEpoch uint64 // EKT tags refused (counted, never a key replaced)
	EKTKeys, Rekeys                     uint64 // EKTKeys from the KD; own end-to-end key changes
	SSRCCollisions                      uint64 // own SSRCs found in use by another participant
}

type counters struct {
	sent, received, fullEKT, dropReplay                atomic.Uint64
	dropOuter, dropInner, dropNoKey                    atomic.Uint64
	dropEKTField, dropUnknownSPI                       atomic.Uint64
	dropEKTAuth, ektWrongSSRC, ektEpoch, ektKeys, reks atomic.Uint64
	collisions                                         atomic.Uint64
}

// Errors.
var (
	// ErrClosed: the Session was closed or its association ended.
	ErrClosed = errors.New("perc: session closed")
	// ErrNoEKTKey: no EKTKey came from the Key Distributor in time.
	ErrNoEKTKey = errors.New("perc: no EKTKey from the Key Distributor")
)

// Session is one endpoint's membership of a conference.
type Session struct {
	cfg     Config
	pc      net.PacketConn
	md      net.Addr
	conn    *dtls.Conn
	r       *dtls.Runner
	profile srtpfast.Profile
	double  bool
	keyLen  int // master key length of either layer (double)
	c       counters
	wg      sync.WaitGroup

	// Hop-by-hop keys (legacy mode: the whole keys). out (legacy) and
	// dout (double, the endpoint side of internal/double) are immutable;
	// in belongs to the reader goroutine.
	out  *srtpfast.Keys
	dout *double.Session
	in   *srtpfast.Opener

	ready   chan struct{} // closed when the keys (and the first EKTKey) are in
	readyMu sync.Once
	failed  atomic.Pointer[error]

	mu      sync.Mutex
	sets    map[uint16]*ektSet // by SPI
	send    *sendKeys          // what WriteRTP seals with
	pending *sendKeys          // the next, from switchAt
	switch_ time.Time
	gen     uint64 // sendKeys made so far
	setSeq  uint64 // EKT parameter sets received so far
	closed  bool

	w  writer   // WriteRTP/WriteRTCP state, under w.mu
	rx receiver // reader goroutine only
}

// Dial joins a conference through the Media Distributor at md over pc (a
// socket the caller opened; the Session owns it from now on and closes it
// in Close). It returns once the handshake is done and, in double mode, the
// conference's first EKTKey is in.
func Dial(ctx context.Context, pc net.PacketConn, md netip.AddrPort, cfg Config) (*Session, error) {
	if len(cfg.Profiles) == 0 {
		cfg.Profiles = []uint16{ProfileDoubleAES128GCM}
	}
	if len(cfg.EKTCiphers) == 0 {
		cfg.EKTCiphers = []dtls.EKTCipher{dtls.EKTCipherAESKW128, dtls.EKTCipherAESKW256}
	}
	cfg.HandshakeTimeout = def(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.RekeyDelay = def(cfg.RekeyDelay, DefaultRekeyDelay)
	cfg.KeyGrace = def(cfg.KeyGrace, DefaultKeyGrace)
	cfg.FullEKTInterval = def(cfg.FullEKTInterval, DefaultFullEKTInterval)
	cfg.MaxSenders = def(cfg.MaxSenders, DefaultMaxSenders)
	offersDouble := false
	for _, p := range cfg.Profiles {
		switch p {
		case ProfileDoubleAES128GCM, ProfileDoubleAES256GCM:
			offersDouble = true
		case ProfileAES128GCM, ProfileAES256GCM:
		default:
			return nil, fmt.Errorf("perc: profile %#04x not supported", p)
		}
	}
	dc := &dtls.Config{
		Certificate:       cfg.Certificate,
		VerifyPeer:        dtls.PinSHA256(cfg.KDFingerprint), // the SDP answer's a=fingerprint
		SRTPProfiles:      cfg.Profiles,
		ExternalSessionID: []byte(cfg.TLSID),
		RetransmitTimeout: cfg.RetransmitTimeout,
	}
	if offersDouble {
		dc.EKTCiphers = cfg.EKTCiphers
	}
	conn, err := dtls.NewClient(dc)
	if err != nil {
		return nil, fmt.Errorf("perc: %w", err)
	}
	s := &Session{cfg: cfg, pc: pc, md: net.UDPAddrFromAddrPort(md), conn: conn,
		ready: make(chan struct{}), sets: map[uint16]*ektSet{}}
	s.w.streams = map[uint32]*outStream{}
	s.rx.senders = map[uint32]*inSender{}
	s.r = dtls.NewRunner(conn, func(b []byte) error {
		_, err := pc.WriteTo(b, s.md)
		return err
	}, s.onEvent)
	s.wg.Go(s.readLoop)

	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	select {
	case <-s.ready:
	case <-hctx.Done():
		_ = s.Close()
		if err := s.r.Err(); err != nil {
			return nil, fmt.Errorf("perc: handshake: %w", err)
		}
		if s.profile.IsDouble() {
			return nil, ErrNoEKTKey
		}
		return nil, fmt.Errorf("perc: handshake: %w", context.Cause(hctx))
	}
	if p := s.failed.Load(); p != nil {
		_ = s.Close()
		return nil, *p
	}
	return s, nil
}

func def[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// fail ends Dial with err (on the Runner's goroutine).
func (s *Session) fail(err error) {
	s.failed.CompareAndSwap(nil, &err)
	s.readyMu.Do(func() { close(s.ready) })
}

// onEvent runs on the Runner's goroutine.
func (s *Session) onEvent(ev dtls.Event) {
	switch ev.Kind {
	case dtls.EventHandshakeComplete:
		if err := s.setupKeys(); err != nil {
			s.fail(err)
			return
		}
		if !s.double {
			s.readyMu.Do(func() { close(s.ready) })
		}
	case dtls.EventEKTKey:
		s.c.ektKeys.Add(1)
		s.addEKTKey(ev.EKTKey)
		ev.EKTKey.Zero()
	case dtls.EventClosed:
		s.fail(fmt.Errorf("perc: association ended: %w", ev.Err))
	}
}

// setupKeys exports the DTLS-SRTP keys and keeps the hop-by-hop halves
// (RFC 8723 section 5.2; in legacy mode, the whole keys).
func (s *Session) setupKeys() error {
	st, ok := s.conn.State()
	if !ok {
		return ErrClosed
	}
	p := srtpfast.Profile(st.SRTPProfile)
	kl, sl := p.HBHKeyLen(), p.HBHSaltLen()
	if p.IsDouble() {
		kl, sl = 2*kl, 2*sl
	}
	m, err := s.conn.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(kl+sl))
	if err != nil {
		return fmt.Errorf("perc: export keys: %w", err)
	}
	defer clear(m)
	ck, sk, cs, ss := m[:kl], m[kl:2*kl], m[2*kl:2*kl+sl], m[2*kl+sl:]
	if p.IsDouble() {
		// The outer halves: the first halves would be a DTLS-derived
		// end-to-end key, which EKT replaces by our own (RFC 8870
		// section 4.3).
		ck, sk, cs, ss = ck[kl/2:], sk[kl/2:], cs[sl/2:], ss[sl/2:]
		dout, err := double.NewSession(ck, cs)
		if err != nil {
			return fmt.Errorf("perc: send keys: %w", err)
		}
		s.mu.Lock()
		s.dout, s.keyLen = dout, kl/2
		s.mu.Unlock()
	}
	out, err := srtpfast.NewKeys(p, ck, cs, nil)
	if err != nil {
		return fmt.Errorf("perc: send keys: %w", err)
	}
	in, err := srtpfast.NewKeys(p, sk, ss, nil)
	if err != nil {
		return fmt.Errorf("perc: receive keys: %w", err)
	}
	s.mu.Lock()
	s.profile, s.double, s.out = p, p.IsDouble(), out
	s.in = srtpfast.NewOpener(in, maxOuterSSRCs)
	s.mu.Unlock()
	return nil
}

// Profile is the negotiated SRTP protection profile.
func (s *Session) Profile() uint16 { return uint16(s.profile) }

// Stats returns the Session's counters.
func (s *Session) Stats() Stats {
	c := &s.c
	return Stats{Sent: c.sent.Load(), Received: c.received.Load(), FullEKTSent: c.fullEKT.Load(), DropReplay: c.dropReplay.Load(),
		DropOuter: c.dropOuter.Load(), DropInner: c.dropInner.Load(), DropNoKey: c.dropNoKey.Load(),
		DropEKTField: c.dropEKTField.Load(), DropUnknownSPI: c.dropUnknownSPI.Load(),
		DropEKTAuth: c.dropEKTAuth.Load(), EKTWrongSSRC: c.ektWrongSSRC.Load(), EKTEpoch: c.ektEpoch.Load(),
		EKTKeys: c.ektKeys.Load(), Rekeys: c.reks.Load(), SSRCCollisions: c.collisions.Load()}
}

// Close leaves the conference (close_notify to the Key Distributor),
// stops the reader, closes the socket and zeroes every key.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	_ = s.r.Close()
	err := s.pc.Close()
	s.wg.Wait()
	s.mu.Lock()
	for _, set := range s.sets {
		set.zero()
	}
	for _, k := range []*sendKeys{s.send, s.pending} {
		if k != nil {
			k.zero()
		}
	}
	s.sets, s.send, s.pending = nil, nil, nil
	s.mu.Unlock()
	for _, snd := range s.rx.senders { // the reader has stopped
		for _, k := range snd.keys {
			k.zero()
		}
	}
	s.rx.senders = nil
	s.w.mu.Lock()
	s.w.streams = nil
	s.w.mu.Unlock()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// readLoop demultiplexes the socket (RFC 7983) until it is closed: DTLS to
// the Runner, RTP and RTCP to receive.
func (s *Session) readLoop() {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if n == 0 || from.String() != s.md.String() {
			continue
		}
		switch b := buf[:n]; {
		case b[0] >= 20 && b[0] <= 63:
			s.r.Deliver(b)
		case b[0] >= 128 && b[0] <= 191:
			select {
			case <-s.ready:
				if s.failed.Load() == nil {
					s.receive(b)
				}
			default: // no keys yet
			}
		}
	}
}
