package endpointsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/identity"
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
	wg    sync.WaitGroup

	mu sync.Mutex
	r  *dtls.Runner
}

// Dial starts demultiplexing udp, a socket the caller opened (in the
// namespace and at the address it chose), towards the Media Distributor at
// md. media, when not nil, is called on the reader goroutine with every
// RTP/RTCP datagram; the slice is valid only during the call. Close stops
// the reader.
func Dial(udp *net.UDPConn, md netip.AddrPort, media func([]byte)) *Conn {
	c := &Conn{udp: udp, md: net.UDPAddrFromAddrPort(md), media: media}
	c.wg.Go(c.readLoop)
	return c
}

// HandshakeConfig configures Handshake.
type HandshakeConfig struct {
	// Identity is the endpoint's tls-id and client certificate.
	Identity Identity
	// KDFingerprint is the Key Distributor's DTLS certificate
	// fingerprint, checked instead of a chain (as DTLS-SRTP does).
	KDFingerprint identity.Fingerprint
	// FlightInterval is the DTLS retransmission interval
	// (DefaultFlightInterval).
	FlightInterval time.Duration
	// Timeout bounds the handshake (DefaultHandshakeTimeout).
	Timeout time.Duration
	// Double offers the RFC 8723 double profile (0x0009) with EKT instead
	// of AEAD_AES_128_GCM: the handshake then also waits for the
	// conference's EKTKey, and Keys are the hop-by-hop (outer) halves.
	Double bool
}

// Session is a completed handshake.
type Session struct {
	// Keys are the exported SRTP keys (for Double, the outer halves: the
	// keys the Media Distributor also holds).
	Keys Keys
	// EKTKey is the conference's EKTKey (Double only).
	EKTKey *dtls.EKTKey
	// Duration is from the start of the handshake (the first ClientHello)
	// to the exported keys (and, for Double, the EKTKey).
	Duration time.Duration
}

// Handshake runs the DTLS-SRTP handshake (internal/dtls, client role) with
// the Key Distributor through the Media Distributor, offering
// AEAD_AES_128_GCM, and exports the SRTP keys. The DTLS association stays
// open until Close.
func (c *Conn) Handshake(ctx context.Context, cfg HandshakeConfig) (*Session, error) {
	if cfg.FlightInterval <= 0 {
		cfg.FlightInterval = DefaultFlightInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHandshakeTimeout
	}
	dc := &dtls.Config{
		Certificate:       cfg.Identity.Cert,
		VerifyPeer:        dtls.PinSHA256(cfg.KDFingerprint),
		SRTPProfiles:      []uint16{uint16(ProfileAEADAES128GCM)},
		ExternalSessionID: []byte(cfg.Identity.TLSID),
		RetransmitTimeout: cfg.FlightInterval,
	}
	exportLen := 2 * (KeyLen + SaltLen)
	if cfg.Double {
		dc.SRTPProfiles = []uint16{uint16(ProfileDoubleAEADAES128GCM)}
		dc.EKTCiphers = []dtls.EKTCipher{dtls.EKTCipherAESKW128, dtls.EKTCipherAESKW256}
		exportLen *= 2
	}
	conn, err := dtls.NewClient(dc)
	if err != nil {
		return nil, fmt.Errorf("endpointsim: DTLS client: %w", err)
	}
	start := time.Now()
	var material []byte
	var exportErr error
	ekt := make(chan *dtls.EKTKey, 1)
	r := dtls.NewRunner(conn, func(b []byte) error {
		_, err := c.udp.WriteTo(b, c.md)
		return err
	}, func(ev dtls.Event) {
		if ev.Kind == dtls.EventHandshakeComplete {
			material, exportErr = conn.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, exportLen)
		}
		if ev.EKTKey != nil {
			select {
			case ekt <- ev.EKTKey:
			default:
				ev.EKTKey.Zero() // a re-key: the benchmark keeps the first
			}
		}
	})
	c.mu.Lock()
	c.r = r
	c.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := r.Handshake(hctx); err != nil {
		return nil, fmt.Errorf("endpointsim: DTLS handshake: %w", err)
	}
	if exportErr != nil {
		return nil, fmt.Errorf("endpointsim: export keying material: %w", exportErr)
	}
	if !cfg.Double {
		return &Session{Keys: splitKeys(material), Duration: time.Since(start)}, nil
	}
	s := &Session{Keys: splitDouble(material)}
	select {
	case s.EKTKey = <-ekt:
	case <-hctx.Done():
		return nil, fmt.Errorf("endpointsim: no EKTKey: %w", context.Cause(hctx))
	}
	s.Duration = time.Since(start)
	return s, nil
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
	c.wg.Wait()
	c.mu.Lock()
	r := c.r
	c.mu.Unlock()
	if r != nil {
		_ = r.Close()
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
			c.mu.Lock()
			r := c.r
			c.mu.Unlock()
			if r != nil {
				r.Deliver(buf[:n]) // a full queue drops: DTLS retransmits
			}
		case b >= 128 && b <= 191:
			if c.media != nil {
				c.media(buf[:n])
			}
		}
	}
}
