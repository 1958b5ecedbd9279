package keydist

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mdfast/mdfast/internal/dtls"
)

// What the Key Distributor replicas keep in etcd is outside bytes: anyone
// who can write the store (a mistaken RBAC rule, a restored backup) can put
// anything there. Every value is parsed with bounds checks into typed
// errors, and the EKT parameter sets are sealed besides: their keys must
// not be readable by the Media Distributors, which may read etcd.
//
// A sealed EKT parameter set (key <prefix>kd/ekt/set/<conference>):
//
//	offset  size  field
//	0       1     version (1)
//	1       1     EKT cipher (RFC 8870 section 7.3 registry value)
//	2       2     SPI, big endian
//	4       8     created, Unix nanoseconds, big endian
//	12      4     TTL in seconds, big endian
//	16      12    AES-GCM nonce (random)
//	28      n+16  AES-256-GCM(store key, nonce, EKTKey || master salt,
//	              AAD = "mdfast kd ekt v1" 0 prefix 0 conference 0 octets 0..15)
//
// The associated data binds the value to its conference and (through the
// header) to its SPI, cipher, creation time and TTL: a value copied under
// another conference's key, or with any bit changed, does not open.

// Errors of values read back from the store.
var (
	// ErrStoreValue: a value in the store that does not parse (bounds,
	// version, lengths, fields) or does not open under the store key.
	ErrStoreValue = errors.New("keydist: invalid value in the store")
	// ErrStoreUnavailable: the store did not answer within the bound, or
	// this replica holds no lease; nothing was changed.
	ErrStoreUnavailable = errors.New("keydist: store unavailable")
)

const (
	sealedVersion   = 1
	sealedHeaderLen = 16
	sealedNonceLen  = 12
	sealedTagLen    = 16
	// StoreKeyLen is the length of the key that seals EKT parameter sets.
	StoreKeyLen = 32
	// maxStoreValue bounds every value read from the store.
	maxStoreValue  = 4096
	sealedAADLabel = "mdfast kd ekt v1"
)

// sealedLen is the length of a sealed value for cipher c.
func sealedLen(c dtls.EKTCipher) int {
	return sealedHeaderLen + sealedNonceLen + c.KeyLen() + e2eSaltLen + sealedTagLen
}

func sealedAAD(prefix, conference string, header []byte) []byte {
	aad := make([]byte, 0, len(sealedAADLabel)+len(prefix)+len(conference)+3+len(header))
	aad = append(aad, sealedAADLabel...)
	aad = append(aad, 0)
	aad = append(aad, prefix...)
	aad = append(aad, 0)
	aad = append(aad, conference...)
	aad = append(aad, 0)
	return append(aad, header...)
}

// sealParams seals p for conference under aead.
func sealParams(aead cipher.AEAD, prefix, conference string, p *EKTParams) ([]byte, error) {
	if p.Cipher.KeyLen() == 0 || len(p.Key) != p.Cipher.KeyLen() || len(p.Salt) != e2eSaltLen {
		return nil, fmt.Errorf("seal EKT parameter set: cipher %v with a %d-octet key and %d-octet salt", p.Cipher, len(p.Key), len(p.Salt))
	}
	ttl := p.TTL / time.Second
	if ttl <= 0 || ttl > 1<<32-1 {
		return nil, fmt.Errorf("seal EKT parameter set: TTL %v out of range", p.TTL)
	}
	out := make([]byte, sealedHeaderLen+sealedNonceLen, sealedLen(p.Cipher))
	out[0] = sealedVersion
	out[1] = byte(p.Cipher)
	binary.BigEndian.PutUint16(out[2:], p.SPI)
	binary.BigEndian.PutUint64(out[4:], uint64(p.Created.UnixNano()))
	binary.BigEndian.PutUint32(out[12:], uint32(ttl))
	nonce := out[sealedHeaderLen : sealedHeaderLen+sealedNonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal EKT parameter set: %w", err)
	}
	plain := make([]byte, 0, len(p.Key)+len(p.Salt))
	plain = append(append(plain, p.Key...), p.Salt...)
	out = aead.Seal(out, nonce, plain, sealedAAD(prefix, conference, out[:sealedHeaderLen]))
	clear(plain)
	return out, nil
}

// openParams parses and opens a sealed value of conference. Only a value
// of the given cipher is accepted.
func openParams(aead cipher.AEAD, prefix, conference string, want dtls.EKTCipher, b []byte) (EKTParams, error) {
	if len(b) < sealedHeaderLen {
		return EKTParams{}, fmt.Errorf("sealed EKT set of %d octets, shorter than its header: %w", len(b), ErrStoreValue)
	}
	if b[0] != sealedVersion {
		return EKTParams{}, fmt.Errorf("sealed EKT set version %d: %w", b[0], ErrStoreValue)
	}
	c := dtls.EKTCipher(b[1])
	if c != want {
		return EKTParams{}, fmt.Errorf("sealed EKT set of cipher %d, want %v: %w", b[1], want, ErrStoreValue)
	}
	if len(b) != sealedLen(c) {
		return EKTParams{}, fmt.Errorf("sealed EKT set of %d octets, want %d: %w", len(b), sealedLen(c), ErrStoreValue)
	}
	ttl := binary.BigEndian.Uint32(b[12:])
	if ttl == 0 || ttl > 1<<24-1 {
		return EKTParams{}, fmt.Errorf("sealed EKT set with a TTL of %d s: %w", ttl, ErrStoreValue)
	}
	nonce := b[sealedHeaderLen : sealedHeaderLen+sealedNonceLen]
	plain, err := aead.Open(nil, nonce, b[sealedHeaderLen+sealedNonceLen:], sealedAAD(prefix, conference, b[:sealedHeaderLen]))
	if err != nil {
		return EKTParams{}, fmt.Errorf("sealed EKT set of conference %q does not open under the store key: %w", conference, ErrStoreValue)
	}
	kl := c.KeyLen()
	p := EKTParams{Cipher: c, Key: bytes.Clone(plain[:kl]), Salt: bytes.Clone(plain[kl:]),
		SPI: binary.BigEndian.Uint16(b[2:]), TTL: time.Duration(ttl) * time.Second,
		Created: time.Unix(0, int64(binary.BigEndian.Uint64(b[4:])))}
	clear(plain)
	return p, nil
}

// storedConference is a conference of the registry's dynamic layer in the
// store (key <prefix>kd/registry/conf/<conference>).
type storedConference struct {
	Conference  string `json:"conference"`
	AllowLegacy bool   `json:"allow_legacy"`
}

// storedEndpoint is one endpoint of the registry's dynamic layer (key
// <prefix>kd/registry/ep/<conference>/<entry id>), or a file entry hidden
// through the API (kd/registry/revoked/<conference>/<entry id>).
type storedEndpoint struct {
	Conference  string      `json:"conference"`
	TLSID       string      `json:"tls_id,omitempty"`
	Fingerprint Fingerprint `json:"fingerprint"`
	KDTLSID     string      `json:"kd_tls_id,omitempty"`
}

// entryID names a registry entry in store keys: tls-ids may contain "/",
// so the key holds a digest and the value the entry itself (checked
// against the key when read back).
func entryID(tlsID string, fp Fingerprint) string {
	h := sha256.New()
	h.Write([]byte("mdfast kd registry entry v1"))
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(tlsID)))
	h.Write(n[:])
	h.Write([]byte(tlsID))
	h.Write(fp[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// tlsIDClaim names the key that makes a tls-id unique across conferences
// and replicas.
func tlsIDClaim(tlsID string) string {
	s := sha256.Sum256([]byte("mdfast kd tls-id v1\x00" + tlsID))
	return hex.EncodeToString(s[:16])
}

// decodeStrict unmarshals one JSON object of at most maxStoreValue octets
// with no unknown fields and nothing after it.
func decodeStrict(b []byte, v any) error {
	if len(b) == 0 || len(b) > maxStoreValue {
		return fmt.Errorf("value of %d octets: %w", len(b), ErrStoreValue)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrStoreValue, err)
	}
	if dec.More() {
		return fmt.Errorf("trailing data: %w", ErrStoreValue)
	}
	return nil
}

// parseStoredConference parses the value of kd/registry/conf/<conference>.
func parseStoredConference(conference string, b []byte) (storedConference, error) {
	var c storedConference
	if err := decodeStrict(b, &c); err != nil {
		return c, fmt.Errorf("stored conference %q: %w", conference, err)
	}
	if c.Conference != conference {
		return c, fmt.Errorf("stored conference %q holds conference %q: %w", conference, c.Conference, ErrStoreValue)
	}
	return c, nil
}

// parseStoredEndpoint parses the value of an endpoint (or revocation) key
// of conference with entry id id, and validates it like the API does.
func parseStoredEndpoint(conference, id string, b []byte) (storedEndpoint, error) {
	var e storedEndpoint
	if err := decodeStrict(b, &e); err != nil {
		return e, fmt.Errorf("stored endpoint %s/%s: %w", conference, id, err)
	}
	if e.Conference != conference || entryID(e.TLSID, e.Fingerprint) != id {
		return e, fmt.Errorf("stored endpoint %s/%s does not match its key: %w", conference, id, ErrStoreValue)
	}
	ep := Endpoint{TLSID: e.TLSID, Fingerprint: e.Fingerprint, KDTLSID: e.KDTLSID}
	if err := validateEndpoint(&ep, true); err != nil {
		return e, fmt.Errorf("stored endpoint %s/%s: %w: %w", conference, id, ErrStoreValue, err)
	}
	return e, nil
}
