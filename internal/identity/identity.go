// Package identity holds what names a DTLS endpoint or Key Distributor in
// PERC signalling: the SHA-256 certificate fingerprint of SDP's
// a=fingerprint, the tls-id of RFC 8842, and self-signed certificates to
// be named by them. The Key Distributor, the endpoint simulator and the
// tests share it without depending on one another.
package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// The errors keep the "keydist:" wording they had before this package
// existed (callers and logs know it); keydist re-exports them.
var (
	// ErrInvalidTLSID: a tls-id that is not 20..255 tls-id-char (RFC 8842).
	ErrInvalidTLSID = errors.New("keydist: invalid tls-id")
	// ErrInvalidFingerprint: a certificate fingerprint that is not SHA-256.
	ErrInvalidFingerprint = errors.New("keydist: invalid certificate fingerprint")
)

// Fingerprint is the SHA-256 fingerprint of an endpoint's DER certificate,
// the value of its SDP a=fingerprint:sha-256 attribute.
type Fingerprint [sha256.Size]byte

// CertificateFingerprint returns the SHA-256 fingerprint of a DER
// certificate.
func CertificateFingerprint(der []byte) Fingerprint { return sha256.Sum256(der) }

// ParseFingerprint parses a SHA-256 fingerprint as SDP writes it
// ("sha-256 AB:CD:..."), without the hash name ("AB:CD:..."), or as 64
// hexadecimal digits. Case does not matter.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	t := strings.TrimSpace(s)
	if name, rest, ok := strings.Cut(t, " "); ok {
		if !strings.EqualFold(name, "sha-256") {
			return f, fmt.Errorf("parse fingerprint %.80q: hash %.20q is not sha-256: %w", s, name, ErrInvalidFingerprint)
		}
		t = strings.TrimSpace(rest)
	}
	switch len(t) {
	case 2*sha256.Size + sha256.Size - 1:
		var b strings.Builder
		for i := 0; i < len(t); i++ {
			if i%3 == 2 {
				if t[i] != ':' {
					return f, fmt.Errorf("parse fingerprint %.80q: %w", s, ErrInvalidFingerprint)
				}
				continue
			}
			b.WriteByte(t[i])
		}
		t = b.String()
	case 2 * sha256.Size:
	default:
		return f, fmt.Errorf("parse fingerprint %.80q: length: %w", s, ErrInvalidFingerprint)
	}
	if _, err := hex.Decode(f[:], []byte(t)); err != nil {
		return f, fmt.Errorf("parse fingerprint %.80q: %w", s, ErrInvalidFingerprint)
	}
	return f, nil
}

// String returns the fingerprint as SDP writes it after "sha-256 ":
// upper-case hexadecimal octets separated by colons.
func (f Fingerprint) String() string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(f)-1)
	for i, c := range f {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return string(b)
}

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (JSON, YAML).
func (f *Fingerprint) UnmarshalText(b []byte) error {
	v, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// ValidateTLSID checks a tls-id value (RFC 8842 section 5: 20 to 255
// characters of ALPHA / DIGIT / "+" / "/" / "-" / "_"). The octets of this
// string are what external_session_id carries (RFC 8844 section 4).
func ValidateTLSID(id string) error {
	if len(id) < 20 || len(id) > 255 {
		return fmt.Errorf("tls-id of %d characters, want 20..255: %w", len(id), ErrInvalidTLSID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_') {
			return fmt.Errorf("tls-id character %d (0x%02x) not allowed: %w", i, c, ErrInvalidTLSID)
		}
	}
	return nil
}

// NewTLSID returns a fresh KD tls-id: 32 random octets, base64url without
// padding (43 characters, all valid tls-id characters).
func NewTLSID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// GenerateCertificate returns a fresh self-signed ECDSA P-256 certificate
// for the KD's DTLS server, valid for validity from now. Endpoints check it
// by the fingerprint the signalling puts in SDP, not by a CA.
func GenerateCertificate(validity time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate KD key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate KD certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "mdfast keydist"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate KD certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse generated KD certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Fingerprint returns the SHA-256 fingerprint of the leaf of c, for the
// a=fingerprint:sha-256 attribute of SDP.
func CertFingerprint(c tls.Certificate) Fingerprint {
	if len(c.Certificate) == 0 {
		return Fingerprint{}
	}
	return CertificateFingerprint(c.Certificate[0])
}
