package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/dtlsmsg/piondtls"
	"github.com/mdfast/mdfast/internal/keydist"
)

// dtlsConn is the DTLS side of an endpoint's UDP socket: the endpoint's
// reader hands it the datagrams whose first octet is DTLS (RFC 7983); it
// writes straight to the socket.
type dtlsConn struct {
	udp    *net.UDPConn
	in     chan []byte
	from   net.Addr
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	dl     time.Time
}

func (c *dtlsConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	dl := c.dl
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case b := <-c.in:
		return copy(p, b), c.from, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-timeout:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *dtlsConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.udp.WriteTo(p, addr) }
func (c *dtlsConn) Close() error                                 { c.once.Do(func() { close(c.closed) }); return nil }
func (c *dtlsConn) LocalAddr() net.Addr                          { return c.udp.LocalAddr() }
func (c *dtlsConn) SetDeadline(t time.Time) error                { return c.SetReadDeadline(t) }
func (c *dtlsConn) SetWriteDeadline(time.Time) error             { return nil }
func (c *dtlsConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.dl = t
	c.mu.Unlock()
	return nil
}

// endpoint is one simulated conference participant.
type endpoint struct {
	idx   int
	ns    string
	tlsID string
	cert  tls.Certificate
	ssrc  uint32

	udp  *net.UDPConn
	dc   *dtlsConn
	conn *dtls.Conn
	tx   *srtp.Context
	rxMu sync.Mutex
	rx   *srtp.Context

	joined  atomic.Int64 // UnixNano when its keys were ready (0: not joined)
	sent    atomic.Uint64
	authErr atomic.Uint64
	// got[sender][seq] records deliveries; guarded by gotMu.
	gotMu sync.Mutex
	got   map[uint32]map[uint16]bool
	dup   atomic.Uint64
	wg    sync.WaitGroup
}

func newEndpoint(idx int, ns string) (*endpoint, error) {
	cert, err := keydist.GenerateCertificate(24 * time.Hour)
	if err != nil {
		return nil, err
	}
	return &endpoint{idx: idx, ns: ns, tlsID: keydist.NewTLSID(), cert: cert, ssrc: 0x5eed0000 + uint32(idx),
		got: map[uint32]map[uint16]bool{}}, nil
}

// open binds the endpoint's UDP socket inside its namespace.
func (e *endpoint) open(local string) error {
	return inNetns(e.ns, func() error {
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
func (e *endpoint) handshake(ctx context.Context, md *net.UDPAddr, kdFP keydist.Fingerprint) error {
	e.dc = &dtlsConn{udp: e.udp, in: make(chan []byte, 64), from: md, closed: make(chan struct{})}
	e.wg.Go(e.readLoop)
	hook, err := piondtls.ClientHelloHook([]byte(e.tlsID))
	if err != nil {
		return err
	}
	conn, err := dtls.ClientWithOptions(e.dc, md,
		dtls.WithCertificates(e.cert),
		dtls.WithInsecureSkipVerify(true), // checked by fingerprint below, as DTLS-SRTP does
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || keydist.CertificateFingerprint(raw[0]) != kdFP {
				return errors.New("KD certificate fingerprint mismatch")
			}
			return nil
		}),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithFlightInterval(250*time.Millisecond),
		dtls.WithClientHelloMessageHook(hook),
	)
	if err != nil {
		return fmt.Errorf("endpoint %d: DTLS client: %w", e.idx, err)
	}
	e.conn = conn
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("endpoint %d: DTLS handshake: %w", e.idx, err)
	}
	st, ok := conn.ConnectionState()
	if !ok {
		return fmt.Errorf("endpoint %d: no connection state", e.idx)
	}
	const keyLen, saltLen = 16, 12
	m, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(keyLen+saltLen))
	if err != nil {
		return fmt.Errorf("endpoint %d: export keying material: %w", e.idx, err)
	}
	ck, sk := m[:keyLen], m[keyLen:2*keyLen]
	cs, ss := m[2*keyLen:2*keyLen+saltLen], m[2*keyLen+saltLen:]
	if e.tx, err = srtp.CreateContext(ck, cs, srtp.ProtectionProfileAeadAes128Gcm); err != nil {
		return fmt.Errorf("endpoint %d: SRTP send context: %w", e.idx, err)
	}
	rx, err := srtp.CreateContext(sk, ss, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		return fmt.Errorf("endpoint %d: SRTP receive context: %w", e.idx, err)
	}
	e.rxMu.Lock()
	e.rx = rx
	e.rxMu.Unlock()
	e.joined.Store(time.Now().UnixNano())
	return nil
}

// readLoop demultiplexes the socket: DTLS to the DTLS conn, SRTP decrypted
// and recorded.
func (e *endpoint) readLoop() {
	buf := make([]byte, 2048)
	var dec []byte
	for {
		n, _, err := e.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n == 0 {
			continue
		}
		switch b := buf[0]; {
		case b >= 20 && b <= 63:
			select {
			case e.dc.in <- append([]byte(nil), buf[:n]...):
			default:
			}
		case b >= 128 && b <= 191:
			e.rxMu.Lock()
			rx := e.rx
			e.rxMu.Unlock()
			if rx == nil {
				continue // before our keys: not counted
			}
			var h rtp.Header
			out, err := rx.DecryptRTP(dec[:0], buf[:n], &h)
			if err != nil {
				e.authErr.Add(1)
				continue
			}
			dec = out[:0]
			pl := out[h.MarshalSize():]
			if len(pl) < 8 || binary.BigEndian.Uint32(pl) != h.SSRC {
				e.authErr.Add(1) // decrypted but not what was sent
				continue
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
	}
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
	if _, err := e.udp.WriteTo(enc, e.dc.from); err != nil {
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

func (e *endpoint) close() {
	if e.udp != nil {
		_ = e.udp.Close() // no close_notify: the MD must not see the endpoints leave before the summary
	}
	if e.dc != nil {
		_ = e.dc.Close()
	}
	e.wg.Wait()
	if e.conn != nil {
		_ = e.conn.Close()
	}
}
