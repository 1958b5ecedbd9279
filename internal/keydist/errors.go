package keydist

import (
	"errors"

	"github.com/mdfast/mdfast/internal/identity"
)

// Errors callers branch on. Everything else is wrapped with the operation
// that failed.
var (
	// ErrUnknownProfile: an SRTP protection profile the KD does not know.
	ErrUnknownProfile = errors.New("keydist: unknown SRTP protection profile")
	// ErrKeyingMaterialLength: exported keying material of the wrong length.
	ErrKeyingMaterialLength = errors.New("keydist: keying material of the wrong length")
	// ErrNotDouble: a double-only operation on a single-layer profile.
	ErrNotDouble = errors.New("keydist: not a double (RFC 8723) profile")

	// ErrInvalidTLSID: a tls-id that is not 20..255 tls-id-char (RFC 8842).
	ErrInvalidTLSID = identity.ErrInvalidTLSID
	// ErrInvalidFingerprint: a certificate fingerprint that is not SHA-256.
	ErrInvalidFingerprint = identity.ErrInvalidFingerprint
	// ErrInvalidConference: an empty or malformed conference id.
	ErrInvalidConference = errors.New("keydist: invalid conference id")
	// ErrDuplicate: a tls-id (or a legacy fingerprint) already registered.
	ErrDuplicate = errors.New("keydist: endpoint already registered")
	// ErrNotFound: no such conference or endpoint.
	ErrNotFound = errors.New("keydist: not found")
	// ErrInvalidRegistryFile: the registry file did not parse or validate.
	ErrInvalidRegistryFile = errors.New("keydist: invalid registry file")

	// ErrClosed: the KeyDistributor was closed.
	ErrClosed = errors.New("keydist: closed")
	// ErrNoTunnel: no live tunnel to the association's Media Distributor.
	ErrNoTunnel = errors.New("keydist: no live tunnel to the media distributor")
	// ErrRejected: the association was rejected (registry, profile or limits).
	ErrRejected = errors.New("keydist: association rejected")
)
