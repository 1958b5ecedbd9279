package srtpfast

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Profile is a DTLS-SRTP protection profile code point (RFC 5764 section
// 4.1.2, RFC 7714 section 14.2, RFC 8723 section 10).
type Profile uint16

// The profiles srtpfast implements. For the double profiles srtpfast only
// implements the outer, hop-by-hop (HBH) layer.
const (
	ProfileAEADAES128GCM       Profile = 0x0007 // AEAD_AES_128_GCM
	ProfileAEADAES256GCM       Profile = 0x0008 // AEAD_AES_256_GCM
	ProfileDoubleAEADAES128GCM Profile = 0x0009 // DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM
	ProfileDoubleAEADAES256GCM Profile = 0x000A // DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM
)

// String returns the RFC name of the profile, or "Profile(0xNNNN)" for an
// unknown code point.
func (p Profile) String() string {
	switch p {
	case ProfileAEADAES128GCM:
		return "AEAD_AES_128_GCM"
	case ProfileAEADAES256GCM:
		return "AEAD_AES_256_GCM"
	case ProfileDoubleAEADAES128GCM:
		return "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM"
	case ProfileDoubleAEADAES256GCM:
		return "DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM"
	}
	const hex = "0123456789ABCDEF"
	b := []byte("Profile(0x0000)")
	b[10] = hex[p>>12&0xf]
	b[11] = hex[p>>8&0xf]
	b[12] = hex[p>>4&0xf]
	b[13] = hex[p&0xf]
	return string(b)
}

// Supported reports whether srtpfast implements p.
func (p Profile) Supported() bool {
	return p.HBHKeyLen() != 0
}

// IsDouble reports whether p is one of the RFC 8723 double profiles, whose
// packets carry an inner (end-to-end) ciphertext and an OHB inside the
// hop-by-hop encryption.
func (p Profile) IsDouble() bool {
	return p == ProfileDoubleAEADAES128GCM || p == ProfileDoubleAEADAES256GCM
}

// HBHKeyLen returns the length in octets of the hop-by-hop (outer) master key
// for p, which is what a MediaKeys message carries: 16 for the 128-bit
// profiles, 32 for the 256-bit ones, 0 for an unsupported profile.
func (p Profile) HBHKeyLen() int {
	switch p {
	case ProfileAEADAES128GCM, ProfileDoubleAEADAES128GCM:
		return 16
	case ProfileAEADAES256GCM, ProfileDoubleAEADAES256GCM:
		return 32
	}
	return 0
}

// HBHSaltLen returns the length in octets of the hop-by-hop (outer) master
// salt for p: 12 for every supported profile, 0 for an unsupported one.
func (p Profile) HBHSaltLen() int {
	if p.HBHKeyLen() == 0 {
		return 0
	}
	return 12
}

// Wire constants.
const (
	tagLen      = 16 // AES-GCM authentication tag (RFC 7714 section 7)
	saltLen     = 12 // session salt and IV length (RFC 7714 section 8.1)
	rtpHdrLen   = 12 // fixed RTP header
	rtcpHdrLen  = 8  // RTCP header + sender SSRC, the SRTCP AAD prefix
	srtcpIdxLen = 4  // E flag + 31-bit SRTCP index

	// MaxMKILen is the longest MKI accepted; the tunnel carries it as
	// mki<0..255>.
	MaxMKILen = 255

	// Tailroom is the number of octets SealRTP and SealRTCP append to a
	// plaintext packet, not counting the MKI: the 16-octet tag, plus the
	// 4-octet E+index word for SRTCP (see Keys.RTPOverhead and
	// Keys.RTCPOverhead for the exact value for a given Keys).
	Tailroom = tagLen + srtcpIdxLen
)

// RFC 3711 section 4.3.2 key derivation labels.
const (
	labelRTPKey   = 0x00
	labelRTPSalt  = 0x02
	labelRTCPKey  = 0x03
	labelRTCPSalt = 0x05
)

// Keys is one direction's hop-by-hop key material for one association, fully
// expanded: the RTP and RTCP session keys and salts are derived once with the
// RFC 3711 AES-CM KDF (an AES-256 PRF for 256-bit master keys, key derivation
// rate 0) and the AES-GCM AEADs are constructed, so nothing is derived on the
// hot path.
//
// For the double profiles the master key and salt given to NewKeys are the
// OUTER (hop-by-hop) halves, i.e. what a MediaKeys message carries.
//
// A Keys is immutable after NewKeys and safe for concurrent use by any number
// of goroutines: it holds no per-packet or per-SSRC state. Receive state
// (ROC, replay windows) lives in an Opener, owned by one worker.
type Keys struct {
	profile  Profile
	rtp      cipher.AEAD
	rtcp     cipher.AEAD
	rtpSalt  salt
	rtcpSalt salt
	mki      []byte // nil when the association has no MKI; never written after NewKeys
	// id is a digest of what the keys are (profile, session keys and
	// salts, MKI), for Same. SHA-256 is one-way: it reveals nothing of the
	// keys; it is neither exported nor logged.
	id [sha256.Size]byte
}

// Same reports whether k and o are the same keys: built for the same
// profile from the same key material (and MKI), so that each opens and
// seals exactly what the other does. The comparison is constant-time. A
// caller installing keys for a stream it already has keys for uses it to
// refuse a repeat: fresh state (replay windows) for the same keys would
// accept every packet seen before once more. False when either is nil.
func (k *Keys) Same(o *Keys) bool {
	return k != nil && o != nil && subtle.ConstantTimeCompare(k.id[:], o.id[:]) == 1
}

// NewKeys derives the session keys and builds the AEADs for profile p from a
// master key and salt. masterKey must be p.HBHKeyLen() octets and masterSalt
// p.HBHSaltLen() octets; for the double profiles they are the outer
// (hop-by-hop) halves. mki is the Master Key Identifier carried in every
// packet, or empty for none; it is copied.
func NewKeys(p Profile, masterKey, masterSalt, mki []byte) (*Keys, error) {
	if !p.Supported() {
		return nil, fmt.Errorf("srtpfast: new keys: %w: %v", ErrUnsupportedProfile, p)
	}
	if len(masterKey) != p.HBHKeyLen() {
		return nil, fmt.Errorf("srtpfast: new keys for %v: %w: master key is %d octets, want %d",
			p, ErrKeyLength, len(masterKey), p.HBHKeyLen())
	}
	if len(masterSalt) != p.HBHSaltLen() {
		return nil, fmt.Errorf("srtpfast: new keys for %v: %w: master salt is %d octets, want %d",
			p, ErrKeyLength, len(masterSalt), p.HBHSaltLen())
	}
	if len(mki) > MaxMKILen {
		return nil, fmt.Errorf("srtpfast: new keys for %v: %w: MKI is %d octets, at most %d",
			p, ErrKeyLength, len(mki), MaxMKILen)
	}
	prf, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("srtpfast: new keys for %v: KDF PRF: %w", p, err)
	}
	n := len(masterKey)
	var rtpKey, rtcpKey [32]byte
	var rtpSalt, rtcpSalt [saltLen]byte
	kdf(prf, masterSalt, labelRTPKey, rtpKey[:n])
	kdf(prf, masterSalt, labelRTCPKey, rtcpKey[:n])
	kdf(prf, masterSalt, labelRTPSalt, rtpSalt[:])
	kdf(prf, masterSalt, labelRTCPSalt, rtcpSalt[:])
	k, err := newKeysFromSession(p, rtpKey[:n], rtpSalt[:], rtcpKey[:n], rtcpSalt[:], mki)
	clear(rtpKey[:])
	clear(rtcpKey[:])
	if err != nil {
		return nil, fmt.Errorf("srtpfast: new keys for %v: %w", p, err)
	}
	return k, nil
}

// newKeysFromSession builds a Keys from already-derived session keys and
// salts (the RFC 7714 test vectors are given this way).
func newKeysFromSession(p Profile, rtpKey, rtpSalt, rtcpKey, rtcpSalt, mki []byte) (*Keys, error) {
	if len(rtpSalt) != saltLen || len(rtcpSalt) != saltLen {
		return nil, ErrKeyLength
	}
	rb, err := aes.NewCipher(rtpKey)
	if err != nil {
		return nil, err
	}
	ra, err := cipher.NewGCM(rb)
	if err != nil {
		return nil, err
	}
	cb, err := aes.NewCipher(rtcpKey)
	if err != nil {
		return nil, err
	}
	ca, err := cipher.NewGCM(cb)
	if err != nil {
		return nil, err
	}
	k := &Keys{profile: p, rtp: ra, rtcp: ca}
	k.rtpSalt = newSalt(rtpSalt)
	k.rtcpSalt = newSalt(rtcpSalt)
	if len(mki) > 0 {
		k.mki = append([]byte(nil), mki...)
	}
	k.id = keysID(p, rtpKey, rtpSalt, rtcpKey, rtcpSalt, mki)
	return k, nil
}

// keysID is Keys.id: SHA-256 over a label, the profile and each part with
// its length (so that no two different sets of parts hash the same
// input), built in a buffer on the stack that is cleared afterwards.
func keysID(p Profile, parts ...[]byte) [sha256.Size]byte {
	var buf [64 + 2*(1+32) + 2*(1+saltLen) + 1 + MaxMKILen]byte
	b := append(buf[:0], "mdfast srtpfast keys v1"...)
	b = append(b, byte(p>>8), byte(p))
	for _, x := range parts {
		b = append(b, byte(len(x)))
		b = append(b, x...)
	}
	id := sha256.Sum256(b)
	clear(buf[:])
	return id
}

// kdf is the RFC 3711 section 4.3.3 AES-CM PRF with key derivation rate 0:
// x = label XORed into octet 7 of the master salt (12-octet salts sit in the
// first 12 octets of the 16-octet block, RFC 7714 section 11), then
// AES-CM keystream with the block counter in the last two octets.
func kdf(prf cipher.Block, masterSalt []byte, label byte, out []byte) {
	var in, blk [aes.BlockSize]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	for i, off := uint16(0), 0; off < len(out); i, off = i+1, off+aes.BlockSize {
		binary.BigEndian.PutUint16(in[14:], i)
		prf.Encrypt(blk[:], in[:])
		copy(out[off:], blk[:])
	}
	clear(blk[:])
}

// Profile returns the protection profile k was built for.
func (k *Keys) Profile() Profile { return k.profile }

// MKI returns the Master Key Identifier carried in every packet, or nil. The
// caller must not modify it.
func (k *Keys) MKI() []byte { return k.mki }

// RTPOverhead is the number of octets SealRTP appends to an RTP packet: the
// tag plus the MKI.
func (k *Keys) RTPOverhead() int { return tagLen + len(k.mki) }

// RTCPOverhead is the number of octets SealRTCP appends to an RTCP packet:
// the tag, the E+index word and the MKI.
func (k *Keys) RTCPOverhead() int { return tagLen + srtcpIdxLen + len(k.mki) }
