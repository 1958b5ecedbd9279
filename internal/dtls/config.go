package dtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// Defaults of the zero fields of Config.
const (
	DefaultMTU                  = 1200
	DefaultRetransmitTimeout    = time.Second      // RFC 6347 section 4.2.4.1
	DefaultMaxRetransmitTimeout = 60 * time.Second // ditto
	DefaultMaxRetransmissions   = 7
	DefaultMaxHandshakeMessage  = 16 << 10
	// MinMTU is the smallest MTU accepted: every EKTKey fits in one record.
	MinMTU = 600
)

// Config configures a Conn. The same Config may serve many Conns; it must
// not change once in use.
type Config struct {
	// Certificate is this side's certificate chain and private key (a
	// crypto.Signer: ECDSA P-256/P-384 or RSA of 2048 bits or more).
	// Required for both roles: DTLS-SRTP authenticates both ends.
	Certificate tls.Certificate
	// VerifyPeer receives the peer's certificate chain (DER, leaf first)
	// once the peer has proven it holds the leaf's key: on the client when
	// the ServerKeyExchange signature verifies, on the server when the
	// CertificateVerify does, before its final flight is built. A non-nil
	// error fails the handshake with bad_certificate, or with the alert of
	// an error made by Alert. Required: without it anybody is accepted.
	// PinSHA256 builds the usual one, a certificate fingerprint.
	VerifyPeer func(chain [][]byte) error

	// CipherSuites, in preference order (DefaultCipherSuites).
	CipherSuites []uint16
	// Groups for ECDHE, in preference order (DefaultGroups).
	Groups []Group

	// SRTPProfiles: the client's offer in preference order; the server's
	// acceptable profiles, in its preference order, when ClientHello is
	// nil. Required.
	SRTPProfiles []uint16
	// SRTPMKI is the client's srtp_mki (RFC 5764 section 4.1.1), 0..255
	// octets.
	SRTPMKI []byte
	// ExternalSessionID: the client's tls-id, sent in external_session_id
	// (RFC 8844, 20..255 octets; nil sends none); the server's answer when
	// ClientHello is nil (sent only to a client that sent its own).
	ExternalSessionID []byte
	// EKTCiphers: the client's supported_ekt_ciphers offer (none: no EKT);
	// the server's acceptable ciphers when ClientHello is nil.
	EKTCiphers []EKTCipher

	// ClientHello (server) decides from the client's validated ClientHello
	// what to answer, or refuses it: an error fails the handshake with
	// handshake_failure, or with the alert of an error made by Alert.
	ClientHello func(*ClientHelloInfo) (ServerSelection, error)
	// HoldFinalFlight (server): stop after verifying the client's Finished
	// with EventKeysReady; ReleaseFinalFlight sends the server's
	// ChangeCipherSpec and Finished.
	HoldFinalFlight bool
	// Cookies (server) makes the HelloVerifyRequest cookies; nil uses a
	// process-wide jar.
	Cookies *CookieJar
	// DisableHelloVerify (server) skips the cookie exchange. Only for a
	// transport that already proved the client's address.
	DisableHelloVerify bool
	// RelayVerifiesCookies (server): the relay that carries the datagrams
	// (a PERC Media Distributor) runs the cookie exchange itself and
	// forwards only ClientHellos whose cookie it verified, so a
	// ClientHello with a non-empty cookie this server did not make is
	// taken as proof of the client's address. One without a cookie still
	// gets this server's HelloVerifyRequest.
	RelayVerifiesCookies bool

	// MTU is the largest datagram sent (DefaultMTU, at least MinMTU).
	MTU int
	// RetransmitTimeout is the first retransmission timeout
	// (DefaultRetransmitTimeout); each retransmission doubles it up to
	// MaxRetransmitTimeout (DefaultMaxRetransmitTimeout).
	RetransmitTimeout    time.Duration
	MaxRetransmitTimeout time.Duration
	// MaxRetransmissions bounds the retransmissions of one flight or one
	// EKTKey before the Conn fails with ErrTimeout
	// (DefaultMaxRetransmissions).
	MaxRetransmissions int
	// MaxHandshakeMessage bounds one incoming handshake message
	// (DefaultMaxHandshakeMessage); twice that bounds all buffered ones.
	MaxHandshakeMessage int

	// CountDrop, if set, is called for every incoming record or fragment
	// dropped without failing the Conn, with the reason.
	CountDrop func(DropReason)

	settledFor uint8 // set by Settle: 1 client, 2 server
}

// DropReason says why an incoming record or fragment was dropped.
type DropReason uint8

// Drop reasons.
const (
	DropMalformed       DropReason = iota + 1 // not a record or not a message
	DropEpoch                                 // wrong or unknown epoch for its content
	DropAuth                                  // failed AEAD authentication
	DropReplay                                // seen before, or older than the window
	DropWindow                                // handshake message beyond the reassembly window or budget
	DropUnexpected                            // content not wanted now (application data, stray CCS, ...)
	DropUnauthenticated                       // plaintext alert or handshake after the handshake
)

func (r DropReason) String() string {
	switch r {
	case DropMalformed:
		return "malformed"
	case DropEpoch:
		return "epoch"
	case DropAuth:
		return "auth"
	case DropReplay:
		return "replay"
	case DropWindow:
		return "window"
	case DropUnexpected:
		return "unexpected"
	case DropUnauthenticated:
		return "unauthenticated"
	}
	return "unknown"
}

// ClientHelloInfo is what the server's ClientHello hook sees: a ClientHello
// that carried a valid cookie (or arrived with DisableHelloVerify). Slices
// are valid only during the call.
type ClientHelloInfo struct {
	// ExternalSessionID is the client's tls-id (RFC 8844), nil if absent.
	ExternalSessionID []byte
	// SRTPProfiles is the use_srtp offer, in the client's preference order.
	SRTPProfiles []uint16
	// SRTPMKI is the client's srtp_mki, nil if empty.
	SRTPMKI []byte
	// EKTCiphers is the supported_ekt_ciphers offer (nil if absent).
	EKTCiphers []EKTCipher
	// Hello is the whole parsed ClientHello.
	Hello *dtlsmsg.ClientHello
}

// ServerSelection is the server's answer to a ClientHello.
type ServerSelection struct {
	// SRTPProfile must be one the client offered.
	SRTPProfile uint16
	// EKTCipher is 0 for no EKT, else one the client offered.
	EKTCipher EKTCipher
	// ExternalSessionID is the server's tls-id, sent only to a client that
	// sent its own (nil: none).
	ExternalSessionID []byte
}

var (
	defaultJarOnce sync.Once
	defaultJar     *CookieJar
	defaultJarErr  error
)

func processCookieJar() (*CookieJar, error) {
	defaultJarOnce.Do(func() { defaultJar, defaultJarErr = NewCookieJar(0) })
	return defaultJar, defaultJarErr
}

// settled checks cfg and returns a copy with the defaults filled in.
func (cfg *Config) settled(server bool) (*Config, error) {
	c := *cfg
	bad := func(format string, args ...any) (*Config, error) {
		return nil, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Certificate.Certificate) == 0 || c.Certificate.PrivateKey == nil {
		return bad("Certificate is required")
	}
	signer, ok := c.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return bad("the certificate's private key is not a crypto.Signer")
	}
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return bad("ECDSA key on %s (want P-256 or P-384)", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return bad("RSA key of %d bits", k.N.BitLen())
		}
	default:
		return bad("key of type %T", k)
	}
	if c.VerifyPeer == nil {
		return bad("VerifyPeer is required")
	}
	if len(c.CipherSuites) == 0 {
		c.CipherSuites = DefaultCipherSuites
	}
	for _, s := range c.CipherSuites {
		if _, ok := suiteByID(s); !ok {
			return bad("cipher suite %#04x not implemented", s)
		}
	}
	if len(c.Groups) == 0 {
		c.Groups = DefaultGroups
	}
	for _, g := range c.Groups {
		if _, ok := curveOf(g); !ok {
			return bad("group %d not implemented", g)
		}
	}
	if len(c.SRTPProfiles) == 0 && (!server || c.ClientHello == nil) {
		return bad("SRTPProfiles is required")
	}
	for _, p := range c.SRTPProfiles {
		if !SRTPProfileKnown(p) {
			return bad("SRTP profile %#04x not implemented", p)
		}
	}
	if len(c.SRTPMKI) > 255 {
		return bad("SRTPMKI of %d octets", len(c.SRTPMKI))
	}
	if n := len(c.ExternalSessionID); n != 0 && (n < dtlsmsg.ExternalSessionIDMinLen || n > dtlsmsg.ExternalSessionIDMaxLen) {
		return bad("ExternalSessionID of %d octets (want 20..255)", n)
	}
	for _, e := range c.EKTCiphers {
		if e.KeyLen() == 0 {
			return bad("EKT cipher %d not implemented", e)
		}
	}
	if len(c.EKTCiphers) > 0 && len(c.SRTPMKI) > 0 && !server {
		return bad("EKT must not be used with an SRTP MKI (RFC 8870 section 4)")
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < MinMTU || c.MTU > 65507 {
		return bad("MTU %d (want %d..65507)", c.MTU, MinMTU)
	}
	if c.RetransmitTimeout <= 0 {
		c.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if c.MaxRetransmitTimeout <= 0 {
		c.MaxRetransmitTimeout = DefaultMaxRetransmitTimeout
	}
	c.MaxRetransmitTimeout = max(c.MaxRetransmitTimeout, c.RetransmitTimeout)
	if c.MaxRetransmissions <= 0 {
		c.MaxRetransmissions = DefaultMaxRetransmissions
	}
	if c.MaxHandshakeMessage <= 0 {
		c.MaxHandshakeMessage = DefaultMaxHandshakeMessage
	}
	c.MaxHandshakeMessage = min(c.MaxHandshakeMessage, 1<<24-1)
	if server && !c.DisableHelloVerify && c.Cookies == nil {
		j, err := processCookieJar()
		if err != nil {
			return nil, err
		}
		c.Cookies = j
	}
	c.CipherSuites = slices.Clip(c.CipherSuites)
	return &c, nil
}

// Settle checks cfg once and returns the copy with its defaults that
// NewServer and NewClient would make, so that many Conns can share one
// checked Config (NewServer and NewClient do not copy a settled Config
// again).
func (cfg *Config) Settle(server bool) (*Config, error) {
	c, err := cfg.settled(server)
	if err != nil {
		return nil, err
	}
	c.settledFor = roleOf(server)
	return c, nil
}

func roleOf(server bool) uint8 {
	if server {
		return 2
	}
	return 1
}

// ErrFingerprint is the error of a VerifyPeer made by PinSHA256 for a peer
// whose certificate is not the pinned one.
var ErrFingerprint = errors.New("dtls: the peer's certificate does not have the pinned SHA-256 fingerprint")

// PinSHA256 returns a VerifyPeer that accepts exactly the leaf certificate
// whose SHA-256 digest is want: DTLS-SRTP authenticates a peer by the
// fingerprint its signalling carries (RFC 8122 a=fingerprint, RFC 8842),
// not by a chain.
func PinSHA256(want [sha256.Size]byte) func(chain [][]byte) error {
	return func(chain [][]byte) error {
		if len(chain) == 0 {
			return ErrFingerprint
		}
		got := sha256.Sum256(chain[0])
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return ErrFingerprint
		}
		return nil
	}
}
