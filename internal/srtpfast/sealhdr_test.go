package srtpfast

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestSealRTPHeaderSame checks that SealRTPHeader with the header length
// RTPHeaderLen gives writes what SealRTP appends, octet for octet, for
// headers with and without CSRCs and extensions, with and without an MKI,
// into a separate buffer and in place.
func TestSealRTPHeaderSame(t *testing.T) {
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileAEADAES256GCM, ProfileDoubleAEADAES128GCM} {
		for _, mki := range [][]byte{nil, {9, 8, 7}} {
			r := rand.New(rand.NewPCG(uint64(p), uint64(len(mki))))
			k, _, _ := testKeys(t, r, p, mki)
			var sc Scratch
			for i := range 200 {
				pkt := rtpPacket(r, r.Uint32(), uint16(r.Uint32()), r.IntN(300))
				roc := r.Uint32()
				want, err := k.SealRTP(&sc, nil, pkt, roc)
				if err != nil {
					t.Fatal(err)
				}
				hdr, err := RTPHeaderLen(pkt)
				if err != nil {
					t.Fatal(err)
				}
				out := make([]byte, len(pkt)+k.RTPOverhead()+r.IntN(3))
				n, err := k.SealRTPHeader(&sc, out, pkt, hdr, roc)
				if err != nil || !bytes.Equal(out[:n], want) {
					t.Fatalf("%v packet %d (header %d): %v, output differs from SealRTP's", p, i, hdr, err)
				}
				in := grow(pkt, k.RTPOverhead())
				n, err = k.SealRTPHeader(&sc, in[:cap(in)], in, hdr, roc)
				if err != nil || !bytes.Equal(in[:n], want) {
					t.Fatalf("%v packet %d in place: %v, output differs from SealRTP's", p, i, err)
				}
			}
		}
	}
}

// TestSealRTPHeaderBad is the table of what SealRTPHeader refuses: a
// header length outside the packet, a buffer too short, an inexact
// overlap. None panics, and a header length that lies gives a packet the
// receiver cannot open.
func TestSealRTPHeaderBad(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	k, _, _ := testKeys(t, r, ProfileAEADAES128GCM, []byte{1})
	var sc Scratch
	pkt := grow(plainRTP(0x55, 9, 40), 64) // 12-octet header, 40 octets payload
	need := len(pkt) + k.RTPOverhead()
	for _, c := range []struct {
		name string
		out  []byte
		pkt  []byte
		hdr  int
		want error
	}{
		{"negative header", make([]byte, need), pkt, -1, ErrShort},
		{"header under 12", make([]byte, need), pkt, 11, ErrShort},
		{"header past the packet", make([]byte, need), pkt, len(pkt) + 1, ErrShort},
		{"empty packet", make([]byte, need), nil, 12, ErrShort},
		{"packet of 11", make([]byte, need), pkt[:11], 12, ErrShort},
		{"no room for the MKI", make([]byte, need-1), pkt, 12, ErrTailroom},
		{"nil out", nil, pkt, 12, ErrTailroom},
		{"overlap ahead", pkt[1:cap(pkt)], pkt, 12, ErrOverlap},
		{"separate buffer", grow(pkt, 64)[:cap(pkt)], pkt, 12, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := k.SealRTPHeader(&sc, c.out, c.pkt, c.hdr, 0)
			if c.want == nil {
				if err != nil || n != need {
					t.Fatalf("got %d, %v; want %d, nil", n, err, need)
				}
				return
			}
			if err != c.want || n != 0 {
				t.Fatalf("got %d, %v; want 0, %v", n, err, c.want)
			}
		})
	}
	// A header length that is not the packet's: sealed, never opened.
	o := NewOpener(k, 4)
	out := make([]byte, need)
	n, err := k.SealRTPHeader(&sc, out, pkt, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.OpenRTP(out[:n]); err != ErrAuth {
		t.Fatalf("opening a packet sealed with a wrong header length: %v, want ErrAuth", err)
	}
}

// TestRTPHeaderLenBad is the table of RTP headers RTPHeaderLen refuses.
func TestRTPHeaderLenBad(t *testing.T) {
	for _, c := range []struct {
		name string
		pkt  []byte
		want error
		n    int
	}{
		{"empty", nil, ErrShort, 0},
		{"11 octets", make([]byte, 11), ErrShort, 0},
		{"version 1", append([]byte{0x40}, make([]byte, 11)...), ErrVersion, 0},
		{"CSRC past the end", append([]byte{0x81}, make([]byte, 14)...), ErrCSRCOverflow, 0},
		{"extension header cut", append([]byte{0x90}, make([]byte, 13)...), ErrExtensionOverflow, 0},
		{"extension body cut", append([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 2}, make([]byte, 7)...), ErrExtensionOverflow, 0},
		{"fixed", append([]byte{0x80}, make([]byte, 11)...), nil, 12},
		{"2 CSRCs and an extension", append([]byte{0x92, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0xbe, 0xde, 0, 1}, make([]byte, 4)...), nil, 28},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := RTPHeaderLen(c.pkt)
			if err != c.want || n != c.n {
				t.Fatalf("got %d, %v; want %d, %v", n, err, c.n, c.want)
			}
		})
	}
}

// FuzzSealRTPHeader seals arbitrary octets under an arbitrary header
// length: it never panics, refuses what SealRTPHeaderBad lists, and when
// the length is the packet's own it writes what SealRTP appends.
func FuzzSealRTPHeader(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 4 {
		pkt := rtpPacket(r, 1, 2, r.IntN(64))
		hdr, _ := RTPHeaderLen(pkt)
		f.Add(pkt, hdr, uint32(0), 0)
	}
	f.Add([]byte{0x80}, 12, uint32(1), 3)
	k, _, _ := testKeys(f, rand.New(rand.NewPCG(7, 7)), ProfileAEADAES128GCM, []byte{5, 5})
	f.Fuzz(func(t *testing.T, pkt []byte, hdr int, roc uint32, slack int) {
		var sc Scratch
		need := len(pkt) + k.RTPOverhead()
		out := make([]byte, max(0, need+slack%8))
		n, err := k.SealRTPHeader(&sc, out, pkt, hdr, roc)
		switch {
		case hdr < 12 || hdr > len(pkt):
			if err != ErrShort {
				t.Fatalf("header %d of %d octets: %v, want ErrShort", hdr, len(pkt), err)
			}
		case len(out) < need:
			if err != ErrTailroom {
				t.Fatalf("out %d for %d: %v, want ErrTailroom", len(out), need, err)
			}
		case err != nil || n != need:
			t.Fatalf("got %d, %v; want %d", n, err, need)
		}
		if own, e := RTPHeaderLen(pkt); e == nil && own == hdr && err == nil {
			want, err := k.SealRTP(&sc, nil, pkt, roc)
			if err != nil || !bytes.Equal(out[:n], want) {
				t.Fatalf("differs from SealRTP (%v)", err)
			}
		}
	})
}
