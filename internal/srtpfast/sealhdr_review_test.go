package srtpfast

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSealRTPHeaderPion checks SealRTPHeader, which copies the header and
// the MKI in 8-octet words and writes the MKI before sealing, against
// pion/srtp (an independent implementation) for MKI lengths 1 to 17 and
// 255, and headers of every CSRC count, with and without extensions (so
// header lengths that are and are not multiples of 8), into a separate
// buffer and in place. It also checks that nothing past the sealed packet
// is written (the buffer is longer and filled with a marker) and that a
// separate input packet is left as it was.
func TestSealRTPHeaderPion(t *testing.T) {
	mkiLens := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 255}
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileAEADAES256GCM} {
		for _, ml := range mkiLens {
			t.Run(fmt.Sprintf("%v/mki%d", p, ml), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(p), uint64(ml)))
				mki := randBytes(r, ml)
				k, key, salt := testKeys(t, r, p, mki)
				pion := pionContext(t, p, key, salt, mki)
				var sc Scratch
				for i := range 60 {
					// A new SSRC each time: pion's ROC is 0 for it.
					pkt := rtpPacket(r, uint32(i+1)<<8|uint32(ml), uint16(r.Uint32()), r.IntN(70))
					want, err := pion.EncryptRTP(nil, pkt, nil)
					if err != nil {
						t.Fatal(err)
					}
					hdr, err := RTPHeaderLen(pkt)
					if err != nil {
						t.Fatal(err)
					}
					orig := bytes.Clone(pkt)
					const extra = 13
					out := bytes.Repeat([]byte{0xa5}, len(pkt)+k.RTPOverhead()+extra)
					n, err := k.SealRTPHeader(&sc, out, pkt, hdr, 0)
					if err != nil || !bytes.Equal(out[:n], want) {
						t.Fatalf("packet %d (header %d, payload %d): %v; sealed differs from pion's", i, hdr, len(pkt)-hdr, err)
					}
					if !bytes.Equal(out[n:], bytes.Repeat([]byte{0xa5}, extra)) || !bytes.Equal(pkt, orig) {
						t.Fatalf("packet %d (header %d): wrote past the sealed packet or into the input", i, hdr)
					}
					in := append(grow(pkt, k.RTPOverhead()+extra), bytes.Repeat([]byte{0x5a}, k.RTPOverhead()+extra)...)[:len(pkt)]
					n, err = k.SealRTPHeader(&sc, in[:cap(in)], in, hdr, 0)
					if err != nil || !bytes.Equal(in[:n], want) {
						t.Fatalf("packet %d (header %d) in place: %v; sealed differs from pion's", i, hdr, err)
					}
					if !bytes.Equal(in[n:cap(in)], bytes.Repeat([]byte{0x5a}, extra)) {
						t.Fatalf("packet %d (header %d) in place: wrote past the sealed packet", i, hdr)
					}
				}
			})
		}
	}
}

// TestOpenRTPToOverwrites: OpenRTPTo, which writes RTPInfo field by field,
// leaves no field of an earlier packet behind on success (the worker keeps
// one RTPInfo for every packet), and leaves it untouched on failure.
func TestOpenRTPToOverwrites(t *testing.T) {
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileDoubleAEADAES128GCM} {
		r := rand.New(rand.NewPCG(uint64(p), 77))
		k, _, _ := testKeys(t, r, p, nil)
		o1, o2 := NewOpener(k, 8), NewOpener(k, 8)
		var sc Scratch
		junk := RTPInfo{SSRC: 0xffffffff, Seq: 0xffff, ROC: 0xffffffff, PT: 0x7f, Marker: true, HeaderLen: -1, Len: -1, PaddingLen: 99, OHBLen: 99}
		for i := range 200 {
			var plain []byte
			if p.IsDouble() {
				plain = doublePlain(r, uint32(i%3+1), uint16(i))
			} else {
				plain = rtpPacket(r, uint32(i%3+1), uint16(i), r.IntN(40))
			}
			enc, err := k.SealRTP(&sc, nil, plain, 0)
			if err != nil {
				t.Fatal(err)
			}
			want, err := o1.OpenRTP(bytes.Clone(enc))
			if err != nil {
				t.Fatalf("%v packet %d: %v", p, i, err)
			}
			info := junk
			if err := o2.OpenRTPTo(&info, bytes.Clone(enc)); err != nil || info != want {
				t.Fatalf("%v packet %d: OpenRTPTo over a used RTPInfo = %+v, %v; want %+v", p, i, info, err, want)
			}
			// The same packet again is a replay: info stays as it was.
			before := info
			if err := o2.OpenRTPTo(&info, bytes.Clone(enc)); err != ErrReplay || info != before {
				t.Fatalf("%v packet %d replayed: %v, info %+v; want ErrReplay and %+v", p, i, err, info, before)
			}
		}
	}
}

// doublePlain is the plaintext of a double (RFC 8723) packet as the MD
// sees it after the outer layer: header | inner ciphertext | inner tag |
// OHB (one config octet: nothing changed).
func doublePlain(r *rand.Rand, ssrc uint32, seq uint16) []byte {
	return append(append(rtpHeader(r, ssrc, seq, r.IntN(3)), randBytes(r, r.IntN(40)+tagLen)...), 0)
}
