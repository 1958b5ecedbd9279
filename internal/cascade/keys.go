package cascade

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Key derivation constants.
const (
	// ExporterLabel is the RFC 5764 exporter label of DTLS-SRTP.
	ExporterLabel = "EXTRACTOR-dtls_srtp"
	// ExportLen is what is exported from the association: the keying
	// material of SRTP_AEAD_AES_128_GCM (2 × (16 + 12) octets).
	ExportLen = 2 * (linkKeyLen + linkSaltLen)
	// LinkProfile is the DTLS-SRTP profile links negotiate.
	LinkProfile = uint16(srtpfast.ProfileAEADAES128GCM)

	infoLabel   = "mdfast cascade v1"
	linkKeyLen  = 16
	linkSaltLen = 12
)

// Direction octets of the HKDF info.
const (
	dirClientToServer byte = 1
	dirServerToClient byte = 2
)

// DeriveKeys derives one conference's link keys from the association's
// exported keying material ekm: send seals what this side sends, recv opens
// what it receives (client is whether this side was the DTLS client).
// double selects the RFC 8723 double profile (the derived key is its outer
// half). ekm is not modified; every intermediate secret is zeroed.
func DeriveKeys(ekm []byte, client bool, conference string, double bool) (send, recv *srtpfast.Keys, err error) {
	if len(ekm) < ExportLen {
		return nil, nil, fmt.Errorf("cascade: derive keys: %d octets of keying material, want %d", len(ekm), ExportLen)
	}
	p := srtpfast.ProfileAEADAES128GCM
	if double {
		p = srtpfast.ProfileDoubleAEADAES128GCM
	}
	c2s, err := deriveDir(ekm, dirClientToServer, conference, p)
	if err != nil {
		return nil, nil, err
	}
	s2c, err := deriveDir(ekm, dirServerToClient, conference, p)
	if err != nil {
		return nil, nil, err
	}
	if client {
		return c2s, s2c, nil
	}
	return s2c, c2s, nil
}

func deriveDir(ekm []byte, dir byte, conference string, p srtpfast.Profile) (*srtpfast.Keys, error) {
	info := make([]byte, 0, len(infoLabel)+1+len(conference))
	info = append(info, infoLabel...)
	info = append(info, dir)
	info = append(info, conference...)
	okm, err := hkdf.Key(sha256.New, ekm, nil, string(info), linkKeyLen+linkSaltLen)
	if err != nil {
		return nil, fmt.Errorf("cascade: derive keys: %w", err)
	}
	defer clear(okm)
	k, err := srtpfast.NewKeys(p, okm[:linkKeyLen], okm[linkKeyLen:], nil)
	if err != nil {
		return nil, fmt.Errorf("cascade: derive keys: %w", err)
	}
	return k, nil
}
