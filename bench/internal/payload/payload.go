// Package payload is the RTP payload the load generator sends: a header
// naming the stream, the packet's sequence number and its send time, then
// a filler derived from those, so a receiver can check every octet of what
// it decrypted without keeping a copy of what was sent.
//
// Layout (big-endian): magic "MDFB" (4) | stream (4) | seq (8) | send time,
// nanoseconds on the sender's clock (8) | filler. It must not allocate.
package payload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the smallest payload: the header without filler.
const HeaderLen = 24

const magic = 0x4d444642 // "MDFB"

// Errors returned by Check; callers count them.
var (
	// ErrShort: fewer than HeaderLen octets.
	ErrShort = errors.New("payload: shorter than its header")
	// ErrMagic: the payload is not one of ours.
	ErrMagic = errors.New("payload: bad magic")
	// ErrFiller: an octet of the filler differs from what was sent.
	ErrFiller = errors.New("payload: filler differs")
)

// Info is what a payload carries.
type Info struct {
	// Stream identifies the sender (the load generator uses the SSRC).
	Stream uint32
	// Seq is the sender's packet number (not wrapped, unlike RTP's).
	Seq uint64
	// SendNanos is the send time on the sender's monotonic clock.
	SendNanos int64
}

// Fill writes a payload for info into b (all of it: len(b) is the payload
// size, at least HeaderLen).
func Fill(b []byte, info Info) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("payload: size %d below %d: %w", len(b), HeaderLen, ErrShort)
	}
	binary.BigEndian.PutUint32(b[0:], magic)
	binary.BigEndian.PutUint32(b[4:], info.Stream)
	binary.BigEndian.PutUint64(b[8:], info.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(info.SendNanos))
	s := seed(info)
	for i := HeaderLen; i < len(b); i++ {
		b[i] = filler(s, i)
	}
	return nil
}

// SetSendTime rewrites only the send time of a filled payload (the filler
// does not depend on it).
func SetSendTime(b []byte, ns int64) {
	if len(b) >= HeaderLen {
		binary.BigEndian.PutUint64(b[16:], uint64(ns))
	}
}

// Check parses b and verifies every octet of the filler.
func Check(b []byte) (Info, error) {
	if len(b) < HeaderLen {
		return Info{}, ErrShort
	}
	if binary.BigEndian.Uint32(b) != magic {
		return Info{}, ErrMagic
	}
	info := Info{
		Stream:    binary.BigEndian.Uint32(b[4:]),
		Seq:       binary.BigEndian.Uint64(b[8:]),
		SendNanos: int64(binary.BigEndian.Uint64(b[16:])),
	}
	s := seed(info)
	for i := HeaderLen; i < len(b); i++ {
		if b[i] != filler(s, i) {
			return info, ErrFiller
		}
	}
	return info, nil
}

func seed(info Info) uint32 {
	return uint32(info.Seq)*0x9e3779b1 ^ info.Stream*0x85ebca6b ^ uint32(info.Seq>>32)
}

func filler(s uint32, i int) byte {
	x := s + uint32(i)*0x27d4eb2f
	return byte(x>>24) ^ byte(x>>11)
}
