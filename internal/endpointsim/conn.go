package endpointsim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/mdfast/mdfast/internal/dtlsmsg/piondtls"
	"github.com/mdfast/mdfast/internal/keydist"
)

// Defaults of the zero fields of HandshakeConfig.
const (
	DefaultFlightInterval   = 250 * time.Millisecond
	DefaultHandshakeTimeout = 15 * time.Second
)

// Conn is an endpoint's UDP socket towards one Media Distributor: a reader
// goroutine hands DTLS records (first octet 20..63, RFC 7983) to the DTLS
// client and RTP/RTCP (128..191) to the media function.
type Conn struct {
	udp   *net.UDPConn
	md    *net.UDPAddr
	media func([]byte)
	dc    *dtlsConn
	wg    sync.WaitGroup

	mu   sync.Mutex
	conn *dtls.Conn
}

// Dial starts demultiplexing udp, a socket the caller opened (in the
// namespace and at the address it chose), towards the Media Distributor at
// md. media, when not nil, is called on the reader goroutine with every
// RTP/RTCP datagram; the slice is valid only during the call. Close stops
// the reader.
func Dial(udp *net.UDPConn, md netip.AddrPort, media func([]byte)) *Conn {
	addr := net.UDPAddrFromAddrPort(md)
	c := &Conn{udp: udp, md: addr, media: media,
		dc: &dtlsConn{udp: udp, in: make(chan []byte, 64), from: addr, closed: make(chan struct{})}}
	c.wg.Go(c.readLoop)
	return c
}

// HandshakeConfig configures Handshake.
type HandshakeConfig struct {
	// Identity is the endpoint's tls-id and client certificate.
	Identity Identity
	// KDFingerprint is the Key Distributor's DTLS certificate
	// fingerprint, checked instead of a chain (as DTLS-SRTP does).
	KDFingerprint keydist.Fingerprint
	// FlightInterval is the DTLS retransmission interval
	// (DefaultFlightInterval).
	FlightInterval time.Duration
	// Timeout bounds the handshake (DefaultHandshakeTimeout).
	Timeout time.Duration
}

// Session is a completed handshake.
type Session struct {
	// Keys are the exported SRTP keys.
	Keys Keys
	// Duration is from the start of the handshake (the first ClientHello)
	// to the exported keys.
	Duration time.Duration
}

// Handshake runs the DTLS-SRTP handshake with the Key Distributor through
// the Media Distributor, offering AEAD_AES_128_GCM, and exports the SRTP
// keys. The DTLS association stays open until Close.
func (c *Conn) Handshake(ctx context.Context, cfg HandshakeConfig) (*Session, error) {
	if cfg.FlightInterval <= 0 {
		cfg.FlightInterval = DefaultFlightInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHandshakeTimeout
	}
	hook, err := piondtls.ClientHelloHook([]byte(cfg.Identity.TLSID))
	if err != nil {
		return nil, fmt.Errorf("endpointsim: ClientHello hook: %w", err)
	}
	kdFP := cfg.KDFingerprint
	start := time.Now()
	conn, err := dtls.ClientWithOptions(c.dc, c.md,
		dtls.WithCertificates(cfg.Identity.Cert),
		dtls.WithInsecureSkipVerify(true), // checked by fingerprint below, as DTLS-SRTP does
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || keydist.CertificateFingerprint(raw[0]) != kdFP {
				return errors.New("KD certificate fingerprint mismatch")
			}
			return nil
		}),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithFlightInterval(cfg.FlightInterval),
		dtls.WithClientHelloMessageHook(hook),
	)
	if err != nil {
		return nil, fmt.Errorf("endpointsim: DTLS client: %w", err)
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("endpointsim: DTLS handshake: %w", err)
	}
	st, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("endpointsim: no DTLS connection state after the handshake")
	}
	m, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(KeyLen+SaltLen))
	if err != nil {
		return nil, fmt.Errorf("endpointsim: export keying material: %w", err)
	}
	return &Session{Keys: splitKeys(m), Duration: time.Since(start)}, nil
}

// WriteMedia sends an SRTP or SRTCP datagram to the Media Distributor.
func (c *Conn) WriteMedia(b []byte) error {
	if _, err := c.udp.WriteTo(b, c.md); err != nil {
		return fmt.Errorf("endpointsim: send: %w", err)
	}
	return nil
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() netip.AddrPort { return c.udp.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket first, so that no close_notify reaches the Media
// Distributor (the association stays installed there until it idles out),
// then stops the reader and the DTLS client.
func (c *Conn) Close() error {
	err := c.udp.Close()
	_ = c.dc.Close()
	c.wg.Wait()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// readLoop demultiplexes the socket until it is closed.
func (c *Conn) readLoop() {
	buf := make([]byte, 2048)
	for {
		n, _, err := c.udp.ReadFromUDP(buf)
		if err != nil {
			return // closed (or broken): nothing more to hand on
		}
		if n == 0 {
			continue
		}
		switch b := buf[0]; {
		case b >= 20 && b <= 63:
			select {
			case c.dc.in <- append([]byte(nil), buf[:n]...):
			default: // DTLS retransmits what is lost
			}
		case b >= 128 && b <= 191:
			if c.media != nil {
				c.media(buf[:n])
			}
		}
	}
}

// dtlsConn is the DTLS side of the socket: the reader hands it the DTLS
// datagrams; it writes straight to the socket. A new read deadline wakes a
// blocked ReadFrom (pion ends its reader that way when a handshake fails).
type dtlsConn struct {
	udp    *net.UDPConn
	in     chan []byte
	from   net.Addr
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	dl     time.Time
	wake   chan struct{} // closed and replaced when dl changes
}

func (c *dtlsConn) deadline() (time.Time, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.dl, c.wake
}

func (c *dtlsConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		dl, wake := c.deadline()
		var timeout <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(d)
			timeout = t.C
		}
		n, err, again := 0, error(nil), false
		select {
		case b := <-c.in:
			n = copy(p, b)
		case <-c.closed:
			err = net.ErrClosed
		case <-timeout:
			err = os.ErrDeadlineExceeded
		case <-wake: // the deadline changed: wait again under the new one
			again = true
		}
		if t != nil {
			t.Stop()
		}
		if again {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		return n, c.from, nil
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
	if c.wake != nil {
		close(c.wake)
	}
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}
