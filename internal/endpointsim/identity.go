package endpointsim

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/mdfast/mdfast/internal/identity"
)

// Identity is what the Key Distributor knows an endpoint by: the tls-id it
// sends as external_session_id and the fingerprint of its DTLS client
// certificate.
type Identity struct {
	// TLSID is sent in the ClientHello's external_session_id.
	TLSID string
	// Cert is the DTLS client certificate and its key.
	Cert tls.Certificate
}

// NewIdentity makes an identity with a fresh tls-id and a self-signed
// ECDSA P-256 certificate valid for validity.
func NewIdentity(validity time.Duration) (Identity, error) {
	c, err := identity.GenerateCertificate(validity)
	if err != nil {
		return Identity{}, fmt.Errorf("endpointsim: certificate: %w", err)
	}
	return Identity{TLSID: identity.NewTLSID(), Cert: c}, nil
}

// Fingerprint is the SHA-256 fingerprint of the certificate, as the
// registry lists it.
func (id *Identity) Fingerprint() identity.Fingerprint { return identity.CertFingerprint(id.Cert) }
