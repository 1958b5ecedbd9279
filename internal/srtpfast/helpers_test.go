package srtpfast

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testKeys returns NewKeys for p with random master material and the
// material itself.
func testKeys(t testing.TB, r *rand.Rand, p Profile, mki []byte) (*Keys, []byte, []byte) {
	t.Helper()
	key := randBytes(r, p.HBHKeyLen())
	salt := randBytes(r, p.HBHSaltLen())
	k, err := NewKeys(p, key, salt, mki)
	if err != nil {
		t.Fatal(err)
	}
	return k, key, salt
}

// rtpHeader builds a random, well-formed RTP header: CSRCs, and an RFC 8285
// one-byte or two-byte header extension with well-formed elements (so that
// pion's parser accepts it).
func rtpHeader(r *rand.Rand, ssrc uint32, seq uint16, extKind int) []byte {
	cc := r.IntN(16)
	h := make([]byte, 12+4*cc)
	h[0] = 0x80 | byte(cc)
	h[1] = byte(r.IntN(128))
	if r.IntN(4) == 0 {
		h[1] |= 0x80
	}
	binary.BigEndian.PutUint16(h[2:], seq)
	binary.BigEndian.PutUint32(h[4:], r.Uint32())
	binary.BigEndian.PutUint32(h[8:], ssrc)
	for i := range cc {
		binary.BigEndian.PutUint32(h[12+4*i:], r.Uint32())
	}
	var body []byte
	var profile uint16
	switch extKind {
	case 1: // one-byte (RFC 8285 section 4.2)
		profile = 0xBEDE
		for range r.IntN(5) + 1 {
			l := r.IntN(16) + 1
			body = append(body, byte(r.IntN(14)+1)<<4|byte(l-1))
			body = append(body, randBytes(r, l)...)
		}
	case 2: // two-byte (RFC 8285 section 4.3)
		profile = 0x1000
		for range r.IntN(4) + 1 {
			l := r.IntN(40)
			body = append(body, byte(r.IntN(255)+1), byte(l))
			body = append(body, randBytes(r, l)...)
		}
	default:
		return h
	}
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	h[0] |= 0x10
	h = binary.BigEndian.AppendUint16(h, profile)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)/4))
	return append(h, body...)
}

// rtpPacket is a header from rtpHeader and n payload octets, with valid
// padding sometimes.
func rtpPacket(r *rand.Rand, ssrc uint32, seq uint16, n int) []byte {
	p := append(rtpHeader(r, ssrc, seq, r.IntN(3)), randBytes(r, n)...)
	if n > 0 && r.IntN(5) == 0 {
		p[0] |= 0x20
		p[len(p)-1] = byte(r.IntN(min(n, 255)) + 1)
	}
	return p
}

// rtcpCompound builds a compound RTCP packet: an SR or RR first, then a
// few more packets of random types, each with a correct length field.
func rtcpCompound(r *rand.Rand, ssrc uint32) []byte {
	var out []byte
	for i := range r.IntN(4) + 1 {
		pt := byte(200 + r.IntN(7))
		if i == 0 {
			pt = byte(200 + r.IntN(2))
		}
		words := r.IntN(20) + 1 // length in 32-bit words minus one
		p := make([]byte, 4*(words+1))
		p[0] = 0x80 | byte(r.IntN(32))
		p[1] = pt
		binary.BigEndian.PutUint16(p[2:], uint16(words))
		binary.BigEndian.PutUint32(p[4:], ssrc)
		copy(p[8:], randBytes(r, len(p)-8))
		out = append(out, p...)
	}
	return out
}

// grow returns a copy of b with extra spare capacity.
func grow(b []byte, extra int) []byte {
	c := make([]byte, len(b), len(b)+extra)
	copy(c, b)
	return c
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
