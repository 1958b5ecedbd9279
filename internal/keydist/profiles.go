package keydist

import (
	"fmt"
	"slices"
)

// SRTP protection profiles (RFC 5764, RFC 7714, RFC 8723) the KD knows.
const (
	ProfileAES128CMSHA180     uint16 = 0x0001
	ProfileAES128CMSHA132     uint16 = 0x0002
	ProfileAEADAES128GCM      uint16 = 0x0007
	ProfileAEADAES256GCM      uint16 = 0x0008
	ProfileDoubleAES128GCM    uint16 = 0x0009
	ProfileDoubleAES256GCM    uint16 = 0x000A
	exporterLabelDTLSSRTP            = "EXTRACTOR-dtls_srtp"
	maxExportedKeyingMaterial        = 2 * (64 + 24)
)

// profileInfo is what the KD needs to know about a profile: the master key
// and salt lengths exported per direction, and whether it is double.
type profileInfo struct {
	keyLen, saltLen int
	double          bool
}

var knownProfiles = map[uint16]profileInfo{
	ProfileAES128CMSHA180:  {keyLen: 16, saltLen: 14},
	ProfileAES128CMSHA132:  {keyLen: 16, saltLen: 14},
	ProfileAEADAES128GCM:   {keyLen: 16, saltLen: 12},
	ProfileAEADAES256GCM:   {keyLen: 32, saltLen: 12},
	ProfileDoubleAES128GCM: {keyLen: 32, saltLen: 24, double: true},
	ProfileDoubleAES256GCM: {keyLen: 64, saltLen: 24, double: true},
}

// DefaultProfiles is the KD's default set of profiles (no preference: the
// endpoint's offer order decides): all it knows, the RFC 8723 double
// profiles included.
var DefaultProfiles = []uint16{ProfileDoubleAES128GCM, ProfileDoubleAES256GCM, ProfileAEADAES128GCM, ProfileAEADAES256GCM,
	ProfileAES128CMSHA180, ProfileAES128CMSHA132}

// ProfileKeyLengths returns the master key and master salt lengths, in
// octets and per direction, of an SRTP protection profile.
func ProfileKeyLengths(profile uint16) (keyLen, saltLen int, ok bool) {
	p, ok := knownProfiles[profile]
	return p.keyLen, p.saltLen, ok
}

// ProfileNegotiable reports whether the KD's DTLS stack (internal/dtls)
// can negotiate the profile: every profile it knows.
func ProfileNegotiable(profile uint16) bool {
	_, ok := knownProfiles[profile]
	return ok
}

// intersectProfiles returns the profiles of offer (in the offer's order,
// which is the endpoint's preference) that every one of the other sets
// contains, without duplicates.
func intersectProfiles(offer []uint16, sets ...[]uint16) []uint16 {
	var out []uint16
next:
	for _, p := range offer {
		if slices.Contains(out, p) {
			continue
		}
		for _, s := range sets {
			if !slices.Contains(s, p) {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

// KeyingMaterial is the DTLS-SRTP keying material of one association, split
// per direction. The client is the endpoint, the server the KD (whose
// "server write" keys the MD uses towards the endpoint).
type KeyingMaterial struct {
	Profile    uint16
	ClientKey  []byte
	ServerKey  []byte
	ClientSalt []byte
	ServerSalt []byte
	buf        []byte
}

// SplitKeyingMaterial splits the output of the EXTRACTOR-dtls_srtp exporter
// (client_write_key | server_write_key | client_write_salt |
// server_write_salt, RFC 5764 section 4.2) for profile. The returned
// KeyingMaterial aliases material; Zero clears it.
func SplitKeyingMaterial(profile uint16, material []byte) (*KeyingMaterial, error) {
	kl, sl, ok := ProfileKeyLengths(profile)
	if !ok {
		return nil, fmt.Errorf("split keying material for profile 0x%04x: %w", profile, ErrUnknownProfile)
	}
	if len(material) != 2*(kl+sl) {
		return nil, fmt.Errorf("split keying material for profile 0x%04x: %d octets, want %d: %w",
			profile, len(material), 2*(kl+sl), ErrKeyingMaterialLength)
	}
	return &KeyingMaterial{
		Profile:    profile,
		ClientKey:  material[0:kl:kl],
		ServerKey:  material[kl : 2*kl : 2*kl],
		ClientSalt: material[2*kl : 2*kl+sl : 2*kl+sl],
		ServerSalt: material[2*kl+sl : 2*(kl+sl) : 2*(kl+sl)],
		buf:        material,
	}, nil
}

// SplitDouble splits the keying material of a double profile (RFC 8723
// section 5.2: the first half of each master key and salt is the inner,
// end-to-end key, the second half the outer, hop-by-hop key) and returns
// the two halves. Only outer ever goes to a Media Distributor. Both alias k.
func (k *KeyingMaterial) SplitDouble() (inner, outer *KeyingMaterial, err error) {
	if !knownProfiles[k.Profile].double {
		return nil, nil, fmt.Errorf("split double keys for profile 0x%04x: %w", k.Profile, ErrNotDouble)
	}
	half := func(b []byte, second bool) []byte {
		h := len(b) / 2
		if second {
			return b[h:len(b):len(b)]
		}
		return b[:h:h]
	}
	mk := func(second bool) *KeyingMaterial {
		return &KeyingMaterial{
			Profile:    k.Profile,
			ClientKey:  half(k.ClientKey, second),
			ServerKey:  half(k.ServerKey, second),
			ClientSalt: half(k.ClientSalt, second),
			ServerSalt: half(k.ServerSalt, second),
		}
	}
	return mk(false), mk(true), nil
}

// HopByHop returns the part of the keying material a Media Distributor may
// hold: all of it for a single-layer profile, the outer halves for a double
// profile. The result aliases k.
func (k *KeyingMaterial) HopByHop() *KeyingMaterial {
	if knownProfiles[k.Profile].double {
		_, outer, _ := k.SplitDouble()
		return outer
	}
	return k
}

// Zero overwrites the keying material with zeros.
func (k *KeyingMaterial) Zero() {
	for _, b := range [][]byte{k.buf, k.ClientKey, k.ServerKey, k.ClientSalt, k.ServerSalt} {
		clear(b)
	}
}

// String never prints key material.
func (k *KeyingMaterial) String() string {
	return fmt.Sprintf("KeyingMaterial{profile 0x%04x, %d/%d octets}", k.Profile, len(k.ClientKey), len(k.ClientSalt))
}

// LogValue keeps key material out of structured logs.
func (k *KeyingMaterial) LogValue() string { return k.String() }
