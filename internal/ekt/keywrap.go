package ekt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// AES Key Wrap with Padding (RFC 5649), the EKT cipher of RFC 8870 section
// 4.4.1 (AESKW128 with a 16-octet key, AESKW256 with a 32-octet one). It
// wraps a plaintext of 1 to 2^32-1 octets into a ciphertext 8 octets longer
// than the plaintext padded to a multiple of 8, and detects any change on
// unwrap (the integrity check of RFC 5649 section 3).

// aiv is the high half of the Alternative Initial Value (RFC 5649 section
// 3); the low half is the plaintext length (MLI).
var aiv = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// ErrUnwrap: the ciphertext was not made by wrapping with this key (the
// integrity check failed), or its length cannot be one of a wrap.
var ErrUnwrap = errors.New("ekt: key unwrap failed")

// maxWrapPlaintext bounds what Wrap accepts: far above any EKTPlaintext
// (at most 251 octets), and short of the 2^32-1 MLI limit.
const maxWrapPlaintext = 1 << 16

// Wrap returns the RFC 5649 wrap of plaintext (1..65536 octets) under kek
// (16, 24 or 32 octets).
func Wrap(kek, plaintext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("ekt: wrap: %w", err)
	}
	m := len(plaintext)
	if m == 0 || m > maxWrapPlaintext {
		return nil, fmt.Errorf("ekt: wrap: plaintext of %d octets", m)
	}
	n := (m + 7) / 8 // 64-bit blocks of the padded plaintext
	out := make([]byte, 8+8*n)
	copy(out[:4], aiv[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(m))
	copy(out[8:], plaintext) // zero padding: out is zeroed
	if n == 1 {
		// One block: a single AES encryption of AIV | P (RFC 5649 section
		// 4.1).
		b.Encrypt(out, out)
		return out, nil
	}
	wrapBlocks(b, out, n)
	return out, nil
}

// wrapBlocks is the RFC 3394 wrapping process (W) over out = A | R[1..n].
func wrapBlocks(b cipher.Block, out []byte, n int) {
	var blk [16]byte
	a := out[:8]
	for j := range 6 {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(blk[:8], a)
			copy(blk[8:], r)
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(blk[:8])^t)
			copy(r, blk[8:])
		}
	}
	clear(blk[:])
}

// Unwrap returns the plaintext wrapped in ciphertext under kek, or
// ErrUnwrap.
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("ekt: unwrap: %w", err)
	}
	c := len(ciphertext)
	if c < 16 || c%8 != 0 || c > 8+maxWrapPlaintext+8 {
		return nil, ErrUnwrap
	}
	n := c/8 - 1
	buf := make([]byte, c)
	copy(buf, ciphertext)
	if n == 1 {
		b.Decrypt(buf, buf)
	} else {
		unwrapBlocks(b, buf, n)
	}
	// Integrity check (RFC 5649 section 3): the AIV's constant half, a
	// length that fits the blocks, and zero padding; in constant time as
	// far as the result is concerned.
	mli := int(binary.BigEndian.Uint32(buf[4:8]))
	ok := subtle.ConstantTimeCompare(buf[:4], aiv[:])
	fits := 1
	if mli <= 8*(n-1) || mli > 8*n {
		fits = 0
	}
	pad := byte(0)
	if fits == 1 {
		for _, x := range buf[8+mli:] {
			pad |= x
		}
	}
	if ok&fits&subtle.ConstantTimeByteEq(pad, 0) != 1 {
		clear(buf)
		return nil, ErrUnwrap
	}
	p := make([]byte, mli)
	copy(p, buf[8:8+mli])
	clear(buf)
	return p, nil
}

// unwrapBlocks is the RFC 3394 unwrapping process (W^-1) over buf.
func unwrapBlocks(b cipher.Block, buf []byte, n int) {
	var blk [16]byte
	a := buf[:8]
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := buf[8*i : 8*i+8]
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(a)^t)
			copy(blk[8:], r)
			b.Decrypt(blk[:], blk[:])
			copy(a, blk[:8])
			copy(r, blk[8:])
		}
	}
	clear(blk[:])
}
