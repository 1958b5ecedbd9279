// Package double is the endpoint side of RFC 8723 double encryption
// (DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM and its 256-bit sibling) for the
// load generator: an Endpoint seals what it sends per section 5.1 (the inner
// transform with the conference's end-to-end key, an empty Original Header
// Block, then the outer transform with its own hop-by-hop client_write key)
// and opens what it receives per section 5.3 (the outer transform with its
// hop-by-hop server_write key, the OHB applied to rebuild the original
// header, then the inner transform with the end-to-end key).
//
// It is written with crypto/cipher directly, independently of
// internal/srtpfast (the Media Distributor's side, which the benchmark
// measures): the RFC 3711 key derivation and the RFC 7714 IV are
// re-implemented here. Sealing and opening allocate nothing; an Endpoint
// is not safe for concurrent use (its nonce and header scratch are shared
// by its calls).
package double

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/mdfast/mdfast/internal/ekt"
)

// TagLen is the GCM tag of either layer.
const TagLen = 16

// Overhead is what Seal adds to a plaintext RTP packet: the inner tag, the
// one-octet empty OHB, the outer tag and a ShortEKTField (RFC 8870 section
// 4.1: every double-profile SRTP packet ends in an EKTField).
const Overhead = TagLen + 1 + TagLen + 1

// saltLen is the RFC 7714 master salt of one layer.
const saltLen = 12

// Errors of Open; callers count them.
var (
	ErrHeader = errors.New("double: bad RTP header")
	ErrOuter  = errors.New("double: outer (hop-by-hop) authentication failed")
	ErrOHB    = errors.New("double: bad original header block")
	ErrInner  = errors.New("double: inner (end-to-end) authentication failed")
	ErrEKT    = errors.New("double: missing or malformed EKTField")
)

// session is one RFC 7714 AES-GCM session: the session key and salt
// derived from a master key and salt.
type session struct {
	aead cipher.AEAD
	salt [saltLen]byte
}

// newSession is the RFC 3711 section 4.3 AES-CM key derivation (key
// derivation rate 0; AES-256 as the PRF for a 32-octet master key) with the
// 12-octet master salt of RFC 7714 section 11 in the first 12 octets of the
// PRF input, for the SRTP labels 0x00 (key) and 0x02 (salt).
func newSession(masterKey, masterSalt []byte) (session, error) {
	if len(masterSalt) != saltLen {
		return session{}, fmt.Errorf("double: master salt is %d octets, want %d", len(masterSalt), saltLen)
	}
	prf, err := aes.NewCipher(masterKey)
	if err != nil {
		return session{}, fmt.Errorf("double: master key: %w", err)
	}
	gen := func(label byte, n int) []byte {
		out := make([]byte, 0, n+aes.BlockSize)
		for i := 0; len(out) < n; i++ {
			var x, b [aes.BlockSize]byte
			copy(x[:], masterSalt)
			x[7] ^= label
			binary.BigEndian.PutUint16(x[14:], uint16(i))
			prf.Encrypt(b[:], x[:])
			out = append(out, b[:]...)
		}
		return out[:n]
	}
	blk, err := aes.NewCipher(gen(0x00, len(masterKey)))
	if err != nil {
		return session{}, fmt.Errorf("double: session key: %w", err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		return session{}, fmt.Errorf("double: GCM: %w", err)
	}
	s := session{aead: a}
	copy(s.salt[:], gen(0x02, saltLen))
	return s, nil
}

// nonce writes the RFC 7714 section 8.1 IV, (00 00 | SSRC | ROC | SEQ) XOR
// salt, into iv.
func (s *session) nonce(iv *[12]byte, ssrc, roc uint32, seq uint16) []byte {
	iv[0], iv[1] = 0, 0
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint32(iv[6:], roc)
	binary.BigEndian.PutUint16(iv[10:], seq)
	for i := range iv {
		iv[i] ^= s.salt[i]
	}
	return iv[:]
}

// Keys are one endpoint's master keys and salts, each half of the RFC 8723
// double master key: the conference's end-to-end (inner) half, shared by
// all its endpoints, and the endpoint's own hop-by-hop (outer) halves of
// client_write (what it sends) and server_write (what the Media
// Distributor sends to it).
type Keys struct {
	E2EKey, E2ESalt             []byte
	ClientHBHKey, ClientHBHSalt []byte
	ServerHBHKey, ServerHBHSalt []byte
}

// Endpoint seals and opens the packets of one endpoint.
type Endpoint struct {
	e2e, up, down session
	iv            [12]byte
	// synth is the header the inner transform authenticates: the fixed
	// header with its CSRCs, X = 0 (at most 12 + 15·4 octets).
	synth [12 + 15*4]byte
}

// New builds an Endpoint from its keys (16 or 32-octet keys, 12-octet
// salts; all three layers the same key length).
func New(k Keys) (*Endpoint, error) {
	if len(k.E2EKey) != len(k.ClientHBHKey) || len(k.E2EKey) != len(k.ServerHBHKey) {
		return nil, errors.New("double: key lengths differ between layers")
	}
	var e Endpoint
	var err error
	if e.e2e, err = newSession(k.E2EKey, k.E2ESalt); err != nil {
		return nil, err
	}
	if e.up, err = newSession(k.ClientHBHKey, k.ClientHBHSalt); err != nil {
		return nil, err
	}
	if e.down, err = newSession(k.ServerHBHKey, k.ServerHBHSalt); err != nil {
		return nil, err
	}
	return &e, nil
}

// headerLens returns the length of the fixed header with its CSRCs and of
// the whole header with the extension, or ok false when pkt is too short
// or not RTP version 2.
func headerLens(pkt []byte) (fixed, full int, ok bool) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return 0, 0, false
	}
	fixed = 12 + 4*int(pkt[0]&0x0f)
	full = fixed
	if pkt[0]&0x10 != 0 {
		if len(pkt) < fixed+4 {
			return 0, 0, false
		}
		full += 4 + 4*int(binary.BigEndian.Uint16(pkt[fixed+2:]))
	}
	return fixed, full, full <= len(pkt)
}

// Seal is RFC 8723 section 5.1: it appends to dst the packet pkt (a
// plaintext RTP packet: header and payload) sealed with the inner transform
// under the end-to-end key (over the synthetic header: fixed header and
// CSRCs, X = 0), an empty OHB, and the outer transform under the
// endpoint's client_write hop-by-hop key (over the whole header). roc is
// the packet's rollover counter. dst must not overlap pkt; with
// len(pkt)+Overhead octets of spare capacity Seal does not allocate.
func (e *Endpoint) Seal(dst, pkt []byte, roc uint32) ([]byte, error) {
	fixed, full, ok := headerLens(pkt)
	if !ok {
		return dst, ErrHeader
	}
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	synth := e.synth[:fixed]
	copy(synth, pkt[:fixed])
	synth[0] &^= 0x10
	// Grow once: the outer transform below works in place.
	dst = slices.Grow(dst, len(pkt)+Overhead)
	start := len(dst)
	dst = append(dst, pkt[:full]...)
	hdr := start + full
	dst = e.e2e.aead.Seal(dst, e.e2e.nonce(&e.iv, ssrc, roc, seq), pkt[full:], synth)
	dst = append(dst, 0x00) // OHB: nothing changed
	out := e.up.aead.Seal(dst[hdr:hdr], e.up.nonce(&e.iv, ssrc, roc, seq), dst[hdr:], dst[start:hdr])
	return ekt.AppendShort(dst[:hdr+len(out)]), nil
}

// Opened describes a packet Open recovered.
type Opened struct {
	// Header is the original header the sender sealed: its fixed part
	// and CSRCs, with the OHB's original values applied (X = 0). It
	// aliases the Endpoint's scratch until the next call.
	Header []byte
	// Payload is the plaintext payload, in place in the packet.
	Payload []byte
}

// Open is RFC 8723 section 5.3, in place: it removes the outer layer with
// the endpoint's server_write hop-by-hop key (roc is the rollover counter
// of the SEQ in pkt's header), applies the OHB to rebuild the original
// header, and removes the inner layer with the end-to-end key (origROC is
// the rollover counter of the original SEQ; the same as roc unless the
// Media Distributor rewrote SEQ). It does not allocate. The errors are
// ErrHeader, ErrOuter, ErrOHB and ErrInner.
func (e *Endpoint) Open(pkt []byte, roc, origROC uint32) (Opened, error) {
	n, _, err := ekt.FieldLen(pkt)
	if err != nil {
		return Opened{}, ErrEKT
	}
	pkt = pkt[:len(pkt)-n]
	fixed, full, ok := headerLens(pkt)
	if !ok || len(pkt) < full+Overhead-1 {
		return Opened{}, ErrHeader
	}
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	plain, err := e.down.aead.Open(pkt[full:full], e.down.nonce(&e.iv, ssrc, roc, seq), pkt[full:], pkt[:full])
	if err != nil {
		return Opened{}, ErrOuter
	}
	if len(plain) < TagLen+1 || plain[len(plain)-1]&0xf0 != 0 {
		return Opened{}, ErrOHB
	}
	cfg, end := plain[len(plain)-1], len(plain)-1
	synth := e.synth[:fixed]
	copy(synth, pkt[:fixed])
	synth[0] &^= 0x10
	if cfg&0x01 != 0 { // Q: original SEQ
		end -= 2
		if end < TagLen {
			return Opened{}, ErrOHB
		}
		copy(synth[2:4], plain[end:end+2])
	}
	if cfg&0x02 != 0 { // P: original PT
		end--
		if end < TagLen {
			return Opened{}, ErrOHB
		}
		synth[1] = synth[1]&0x80 | plain[end]&0x7f
	}
	if cfg&0x04 != 0 { // M: original marker B
		synth[1] = synth[1]&0x7f | (cfg&0x08)<<4
	}
	inner := plain[:end]
	payload, err := e.e2e.aead.Open(inner[:0], e.e2e.nonce(&e.iv, ssrc, origROC, binary.BigEndian.Uint16(synth[2:])), inner, synth)
	if err != nil {
		return Opened{}, ErrInner
	}
	return Opened{Header: synth, Payload: payload}, nil
}
