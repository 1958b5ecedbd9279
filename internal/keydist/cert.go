package keydist

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/mdfast/mdfast/internal/identity"
)

// GenerateCertificate returns a fresh self-signed ECDSA P-256 certificate
// for the KD's DTLS server (see identity.GenerateCertificate).
func GenerateCertificate(validity time.Duration) (tls.Certificate, error) {
	return identity.GenerateCertificate(validity)
}

// LoadCertificate loads the KD's DTLS certificate and key (PEM). The key
// must be ECDSA P-256.
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load KD certificate: %w", err)
	}
	k, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return tls.Certificate{}, fmt.Errorf("load KD certificate %s: key is not ECDSA P-256", certFile)
	}
	return c, nil
}

// CertFingerprint returns the SHA-256 fingerprint of the leaf of c.
func CertFingerprint(c tls.Certificate) Fingerprint { return identity.CertFingerprint(c) }
