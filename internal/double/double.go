// Package double is the endpoint side of RFC 8723 double encryption
// (DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM and its 256-bit sibling): the
// one implementation every endpoint of the project uses (package perc, the
// load generator, and the tests of the Media Distributor's side).
//
//   - Seal is section 5.1: the inner transform over the synthetic packet
//     (the original fixed header and CSRCs with X cleared, then the
//     payload) under the end-to-end session, an empty Original Header
//     Block, then the outer transform over the whole header under the
//     sender's hop-by-hop session. SealInner and SealOuter are its steps.
//   - Open is section 5.3: OpenOuter removes the hop-by-hop layer,
//     ParseOHB and OriginalHeader rebuild the header the sender sealed,
//     OpenInner removes the end-to-end layer.
//   - Endpoint is a conference member for the load generator: one
//     end-to-end session for everyone, its own hop-by-hop sessions, and a
//     ShortEKTField after every packet (RFC 8870 section 4.1).
//
// It is written with crypto/cipher directly, independently of
// internal/srtpfast (the Media Distributor's side): the RFC 3711 key
// derivation and the RFC 7714 IV are re-implemented here, so that every
// test of the MD checks one implementation against another. Sealing and
// opening allocate nothing with a Scratch of their own; a Session is
// immutable and safe for concurrent use, a Scratch is not.
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
// one-octet empty OHB and the outer tag.
const Overhead = TagLen + 1 + TagLen

// SaltLen is the RFC 7714 master salt of one layer.
const SaltLen = 12

// OHB config octet bits (RFC 8723 section 4): R R R R B M P Q.
const (
	ohbSeq      = 1 << 0
	ohbPT       = 1 << 1
	ohbMarker   = 1 << 2
	ohbMarkerB  = 1 << 3
	ohbReserved = 0xf0
)

// Errors of the Open functions; callers count them.
var (
	ErrHeader = errors.New("double: bad RTP header")
	ErrOuter  = errors.New("double: outer (hop-by-hop) authentication failed")
	ErrOHB    = errors.New("double: bad original header block")
	ErrInner  = errors.New("double: inner (end-to-end) authentication failed")
	ErrEKT    = errors.New("double: missing or malformed EKTField")
)

// Session is one RFC 7714 AES-GCM SRTP session: the session key and salt
// derived from a master key and salt (RFC 3711 section 4.3, key derivation
// rate 0; AES-256 as the PRF for a 32-octet master key; the 12-octet
// master salt of RFC 7714 section 11 in the first 12 octets of the PRF
// input; labels 0x00 and 0x02).
type Session struct {
	aead cipher.AEAD
	salt [SaltLen]byte
}

// NewSession derives a session from a 16- or 32-octet master key and a
// 12-octet master salt.
func NewSession(masterKey, masterSalt []byte) (*Session, error) {
	if len(masterSalt) != SaltLen {
		return nil, fmt.Errorf("double: master salt is %d octets, want %d", len(masterSalt), SaltLen)
	}
	prf, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("double: master key: %w", err)
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
	key := gen(0x00, len(masterKey))
	blk, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("double: session key: %w", err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, fmt.Errorf("double: GCM: %w", err)
	}
	s := &Session{aead: a}
	copy(s.salt[:], gen(0x02, SaltLen))
	return s, nil
}

// Scratch is the per-goroutine scratch of sealing and opening: the IV and
// the synthetic header (at most 12 + 15·4 octets).
type Scratch struct {
	iv    [12]byte
	synth [12 + 15*4]byte
}

// nonce writes the RFC 7714 section 8.1 IV, (00 00 | SSRC | ROC | SEQ) XOR
// salt.
func (s *Session) nonce(sc *Scratch, ssrc, roc uint32, seq uint16) []byte {
	iv := &sc.iv
	iv[0], iv[1] = 0, 0
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint32(iv[6:], roc)
	binary.BigEndian.PutUint16(iv[10:], seq)
	for i := range iv {
		iv[i] ^= s.salt[i]
	}
	return iv[:]
}

// HeaderLens returns the length of the fixed header with its CSRCs and of
// the whole header with the extension, or ok false when pkt is too short
// or not RTP version 2.
func HeaderLens(pkt []byte) (fixed, full int, ok bool) {
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

// SealInner appends to dst the inner (end-to-end) ciphertext and tag of
// the plaintext RTP packet pkt: its payload sealed under inner with the
// synthetic header (fixed header and CSRCs, X = 0) as additional data.
func SealInner(sc *Scratch, inner *Session, dst, pkt []byte, roc uint32) ([]byte, error) {
	fixed, full, ok := HeaderLens(pkt)
	if !ok {
		return dst, ErrHeader
	}
	synth := sc.synth[:fixed]
	copy(synth, pkt[:fixed])
	synth[0] &^= 0x10
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	return inner.aead.Seal(dst, inner.nonce(sc, ssrc, roc, seq), pkt[full:], synth), nil
}

// SealOuter appends header and the outer (hop-by-hop) encryption of plain
// (inner ciphertext | inner tag | OHB) under outer to dst, with header
// (the whole RTP header) as additional data. plain must not overlap dst's
// spare capacity except exactly at header's end (in place).
func SealOuter(sc *Scratch, outer *Session, dst, header, plain []byte, roc uint32) []byte {
	ssrc, seq := binary.BigEndian.Uint32(header[8:]), binary.BigEndian.Uint16(header[2:])
	start := len(dst)
	dst = append(dst, header...)
	return outer.aead.Seal(dst, outer.nonce(sc, ssrc, roc, seq), plain, dst[start:start+len(header)])
}

// Seal is RFC 8723 section 5.1: it appends to dst the packet pkt (a
// plaintext RTP packet: header and payload) sealed with the inner
// transform under inner, an empty OHB, and the outer transform under
// outer. roc is the packet's rollover counter. dst must not overlap pkt;
// with len(pkt)+Overhead octets of spare capacity Seal does not allocate.
func Seal(sc *Scratch, inner, outer *Session, dst, pkt []byte, roc uint32) ([]byte, error) {
	_, full, ok := HeaderLens(pkt)
	if !ok {
		return dst, ErrHeader
	}
	// Grow once: the outer transform below works in place.
	dst = slices.Grow(dst, len(pkt)+Overhead)
	start := len(dst)
	dst = append(dst, pkt[:full]...)
	hdr := start + full
	dst, _ = SealInner(sc, inner, dst, pkt, roc)
	dst = append(dst, 0x00) // OHB: nothing changed
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	out := outer.aead.Seal(dst[hdr:hdr], outer.nonce(sc, ssrc, roc, seq), dst[hdr:], dst[start:hdr])
	return dst[:hdr+len(out)], nil
}

// OpenOuter removes the outer layer of pkt in place (roc is the rollover
// counter of the SEQ in pkt's header) and returns the header length and
// the plaintext (inner ciphertext | inner tag | OHB), which aliases pkt.
func OpenOuter(sc *Scratch, outer *Session, pkt []byte, roc uint32) (full int, plain []byte, err error) {
	_, full, ok := HeaderLens(pkt)
	if !ok || len(pkt) < full+Overhead {
		return 0, nil, ErrHeader
	}
	ssrc, seq := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:])
	plain, err = outer.aead.Open(pkt[full:full], outer.nonce(sc, ssrc, roc, seq), pkt[full:], pkt[:full])
	if err != nil {
		return 0, nil, ErrOuter
	}
	return full, plain, nil
}

// OHB is a parsed Original Header Block (RFC 8723 section 4): the original
// values of what the Media Distributor changed.
type OHB struct {
	HasPT, HasSeq, HasMarker bool
	PT                       uint8
	Seq                      uint16
	Marker                   bool
}

// ParseOHB parses the OHB that ends plain (inner ciphertext | inner tag |
// OHB) and returns it with the length of what precedes it.
func ParseOHB(plain []byte) (OHB, int, error) {
	if len(plain) < TagLen+1 {
		return OHB{}, 0, ErrOHB
	}
	cfg, end := plain[len(plain)-1], len(plain)-1
	if cfg&ohbReserved != 0 {
		return OHB{}, 0, ErrOHB
	}
	var o OHB
	if cfg&ohbSeq != 0 {
		end -= 2
		if end < TagLen {
			return OHB{}, 0, ErrOHB
		}
		o.HasSeq, o.Seq = true, binary.BigEndian.Uint16(plain[end:])
	}
	if cfg&ohbPT != 0 {
		end--
		if end < TagLen {
			return OHB{}, 0, ErrOHB
		}
		o.HasPT, o.PT = true, plain[end]&0x7f
	}
	if cfg&ohbMarker != 0 {
		o.HasMarker, o.Marker = true, cfg&ohbMarkerB != 0
	}
	return o, end, nil
}

// OriginalHeader returns, in sc, the synthetic header the sender sealed
// the inner layer over: pkt's fixed header and CSRCs, X cleared, with the
// OHB's original PT, SEQ and marker. It aliases sc until its next use.
func OriginalHeader(sc *Scratch, pkt []byte, o OHB) []byte {
	fixed := 12 + 4*int(pkt[0]&0x0f)
	synth := sc.synth[:fixed]
	copy(synth, pkt[:fixed])
	synth[0] &^= 0x10
	if o.HasSeq {
		binary.BigEndian.PutUint16(synth[2:], o.Seq)
	}
	if o.HasPT {
		synth[1] = synth[1]&0x80 | o.PT
	}
	if o.HasMarker {
		synth[1] &^= 0x80
		if o.Marker {
			synth[1] |= 0x80
		}
	}
	return synth
}

// OpenInner removes the inner layer in place: ct is the inner ciphertext
// and tag, synth the original header (OriginalHeader), roc the rollover
// counter of the original SEQ. The payload aliases ct.
func OpenInner(sc *Scratch, inner *Session, synth, ct []byte, roc uint32) ([]byte, error) {
	ssrc, seq := binary.BigEndian.Uint32(synth[8:]), binary.BigEndian.Uint16(synth[2:])
	// synth may live in sc: the nonce goes to sc.iv, which it does not
	// overlap.
	p, err := inner.aead.Open(ct[:0], inner.nonce(sc, ssrc, roc, seq), ct, synth)
	if err != nil {
		return nil, ErrInner
	}
	return p, nil
}

// Opened describes a packet Open recovered.
type Opened struct {
	// Header is the original header the sender sealed: its fixed part
	// and CSRCs, with the OHB's original values applied (X = 0). It
	// aliases the Scratch until its next use.
	Header []byte
	// Payload is the plaintext payload, in place in the packet.
	Payload []byte
}

// Open is RFC 8723 section 5.3, in place: OpenOuter under outer (roc of
// the SEQ in pkt), the OHB applied, OpenInner under inner (origROC, the
// rollover counter of the original SEQ; the same as roc unless the Media
// Distributor rewrote SEQ). It does not allocate. The errors are
// ErrHeader, ErrOuter, ErrOHB and ErrInner.
func Open(sc *Scratch, inner, outer *Session, pkt []byte, roc, origROC uint32) (Opened, error) {
	_, plain, err := OpenOuter(sc, outer, pkt, roc)
	if err != nil {
		return Opened{}, err
	}
	o, end, err := ParseOHB(plain)
	if err != nil {
		return Opened{}, err
	}
	synth := OriginalHeader(sc, pkt, o)
	payload, err := OpenInner(sc, inner, synth, plain[:end], origROC)
	if err != nil {
		return Opened{}, err
	}
	return Opened{Header: synth, Payload: payload}, nil
}

// Keys are one endpoint's master keys and salts, each half of the RFC 8723
// double master key: the conference's end-to-end (inner) half, shared by
// all its endpoints in the load generator's model, and the endpoint's own
// hop-by-hop (outer) halves of client_write (what it sends) and
// server_write (what the Media Distributor sends to it).
type Keys struct {
	E2EKey, E2ESalt             []byte
	ClientHBHKey, ClientHBHSalt []byte
	ServerHBHKey, ServerHBHSalt []byte
}

// Endpoint seals and opens the packets of one load-generator endpoint.
type Endpoint struct {
	e2e, up, down *Session
	sc            Scratch
}

// New builds an Endpoint from its keys (16 or 32-octet keys, 12-octet
// salts; all three layers the same key length).
func New(k Keys) (*Endpoint, error) {
	if len(k.E2EKey) != len(k.ClientHBHKey) || len(k.E2EKey) != len(k.ServerHBHKey) {
		return nil, errors.New("double: key lengths differ between layers")
	}
	var e Endpoint
	var err error
	if e.e2e, err = NewSession(k.E2EKey, k.E2ESalt); err != nil {
		return nil, err
	}
	if e.up, err = NewSession(k.ClientHBHKey, k.ClientHBHSalt); err != nil {
		return nil, err
	}
	if e.down, err = NewSession(k.ServerHBHKey, k.ServerHBHSalt); err != nil {
		return nil, err
	}
	return &e, nil
}

// EndpointOverhead is what Endpoint.Seal adds: Overhead and a
// ShortEKTField.
const EndpointOverhead = Overhead + 1

// Seal seals pkt (Seal, with the endpoint's end-to-end and client_write
// sessions) and appends a ShortEKTField. With EndpointOverhead octets of
// spare capacity beyond len(pkt) it does not allocate.
func (e *Endpoint) Seal(dst, pkt []byte, roc uint32) ([]byte, error) {
	out, err := Seal(&e.sc, e.e2e, e.up, dst, pkt, roc)
	if err != nil {
		return dst, err
	}
	return ekt.AppendShort(out), nil
}

// Open takes the EKTField off pkt and opens it (Open, with the
// endpoint's server_write and end-to-end sessions). ErrEKT means the
// EKTField was missing or malformed.
func (e *Endpoint) Open(pkt []byte, roc, origROC uint32) (Opened, error) {
	n, _, err := ekt.FieldLen(pkt)
	if err != nil {
		return Opened{}, ErrEKT
	}
	return Open(&e.sc, e.e2e, e.down, pkt[:len(pkt)-n], roc, origROC)
}
