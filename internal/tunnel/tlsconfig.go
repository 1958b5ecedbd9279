package tunnel

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// SPKIFingerprint is the SHA-256 digest of a certificate's DER-encoded
// SubjectPublicKeyInfo, the value used for pinning (as in HPKP and
// `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`).
type SPKIFingerprint [sha256.Size]byte

// SPKIOf returns the SPKI fingerprint of cert.
func SPKIOf(cert *x509.Certificate) SPKIFingerprint {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// String returns the lowercase hex form.
func (f SPKIFingerprint) String() string { return hex.EncodeToString(f[:]) }

// ParseSPKIFingerprint parses 64 hex digits, with or without ':' separators.
func ParseSPKIFingerprint(s string) (SPKIFingerprint, error) {
	var f SPKIFingerprint
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil {
		return f, fmt.Errorf("tunnel: parse SPKI fingerprint %q: %w", s, err)
	}
	if len(b) != len(f) {
		return f, fmt.Errorf("tunnel: parse SPKI fingerprint %q: %d octets, want %d", s, len(b), len(f))
	}
	copy(f[:], b)
	return f, nil
}

// PeerPolicy restricts which authenticated peers are accepted, on top of the
// CA check. The zero value accepts every peer whose certificate chains to the
// CA. When the policy has entries, the peer's leaf certificate must match at
// least one: its SPKI fingerprint is in SPKI, or its subject common name or
// one of its DNS SANs is in Names (exact, case-insensitive match).
//
// Use SPKI alone to pin the key distributor on the MD side; use SPKI and/or
// Names as the allow-list of media distributors on the KD side.
type PeerPolicy struct {
	SPKI  []SPKIFingerprint
	Names []string
}

// Empty reports whether the policy accepts every CA-verified peer.
func (p *PeerPolicy) Empty() bool { return p == nil || (len(p.SPKI) == 0 && len(p.Names) == 0) }

// Check returns nil if cert is acceptable, else an error wrapping
// ErrUnauthorizedPeer.
func (p *PeerPolicy) Check(cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrUnauthorizedPeer)
	}
	if p.Empty() {
		return nil
	}
	fp := SPKIOf(cert)
	for _, want := range p.SPKI {
		if subtle.ConstantTimeCompare(fp[:], want[:]) == 1 {
			return nil
		}
	}
	for _, n := range p.Names {
		if strings.EqualFold(n, cert.Subject.CommonName) && cert.Subject.CommonName != "" {
			return nil
		}
		if slices.ContainsFunc(cert.DNSNames, func(d string) bool { return strings.EqualFold(d, n) }) {
			return nil
		}
	}
	return fmt.Errorf("%w: certificate %q (SPKI %s) is not on the allow list", ErrUnauthorizedPeer, cert.Subject.CommonName, fp)
}

// TLSOptions describes one node's side of a mutually authenticated tunnel.
type TLSOptions struct {
	// Certificates holds this node's certificate chain and key. Required:
	// the tunnel is mutually authenticated (section 5.2).
	Certificates []tls.Certificate
	// CAs is the pool the peer's certificate must chain to. Required.
	CAs *x509.CertPool
	// Peer optionally pins or allow-lists the peer beyond the CA check.
	Peer PeerPolicy
	// ServerName is the name expected in the peer's certificate when this
	// node is the TLS client. Empty means the host part of the dialed
	// address.
	ServerName string
}

// NewTLSConfig returns a *tls.Config for either role: as a TLS server it
// requires and verifies a client certificate against CAs
// (RequireAndVerifyClientCert), as a client it verifies the server against
// CAs (RootCAs). TLS 1.2 is the minimum; Go negotiates TLS 1.3 whenever the
// peer supports it. When opts.Peer has entries, VerifyConnection refuses any
// peer that does not match it, so the handshake fails before a single tunnel
// message is exchanged.
//
// The same config serves the MD (dialing the KD, or accepting it in reverse
// mode) and the KD (accepting MDs, or dialing them in reverse mode).
func NewTLSConfig(opts TLSOptions) (*tls.Config, error) {
	if len(opts.Certificates) == 0 {
		return nil, fmt.Errorf("%w: TLS: no certificate (the tunnel must be mutually authenticated)", ErrInvalidConfig)
	}
	if opts.CAs == nil {
		return nil, fmt.Errorf("%w: TLS: no CA pool to verify the peer", ErrInvalidConfig)
	}
	policy := PeerPolicy{SPKI: slices.Clone(opts.Peer.SPKI), Names: slices.Clone(opts.Peer.Names)}
	return &tls.Config{
		Certificates: opts.Certificates,
		RootCAs:      opts.CAs,
		ClientCAs:    opts.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   opts.ServerName,
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: peer sent no certificate", ErrUnauthorizedPeer)
			}
			return policy.Check(cs.PeerCertificates[0])
		},
	}, nil
}

// verifyPeer checks, after the handshake, that the connection is mutually
// authenticated: the peer presented a certificate that was verified against
// a CA pool. It guards against a caller-supplied *tls.Config that forgot
// ClientAuth or set InsecureSkipVerify.
func verifyPeer(cs tls.ConnectionState, policy *PeerPolicy) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: peer presented no certificate", ErrUnauthorizedPeer)
	}
	if len(cs.VerifiedChains) == 0 {
		return nil, fmt.Errorf("%w: peer certificate %q was not verified against a CA", ErrUnauthorizedPeer, cs.PeerCertificates[0].Subject.CommonName)
	}
	leaf := cs.PeerCertificates[0]
	if err := policy.Check(leaf); err != nil {
		return nil, err
	}
	return leaf, nil
}
