package srtpfast

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
)

// fuzzOpener returns an Opener for p with a fixed key and a few packets
// already accepted, and valid seed packets for the corpus.
func fuzzOpener(t testing.TB, p Profile, mki []byte) (*Opener, [][]byte, [][]byte) {
	r := rand.New(rand.NewPCG(uint64(p), 42))
	k, _, _ := testKeys(t, r, p, mki)
	o := NewOpener(k, 4)
	var rtpSeeds, rtcpSeeds [][]byte
	for i := range 6 {
		plain := rtpPacket(r, 0x1234, uint16(65533+i), r.IntN(100))
		if p.IsDouble() {
			plain = append(plain, make([]byte, 16)...)
			plain = append(plain, byte(i&3)) // OHB config, maybe lying
		}
		sealed := sealRTP(t, k, plain, uint32((65533+i)>>16))
		if i < 3 {
			if _, err := o.OpenRTP(append([]byte(nil), sealed...)); err != nil && !p.IsDouble() {
				t.Fatal(err)
			}
		}
		rtpSeeds = append(rtpSeeds, sealed)
		c, err := k.SealRTCP(nil, nil, rtcpCompound(r, 0x1234), uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if _, err := o.OpenRTCP(append([]byte(nil), c...)); err != nil {
				t.Fatal(err)
			}
		}
		rtcpSeeds = append(rtcpSeeds, c)
	}
	return o, rtpSeeds, rtcpSeeds
}

func fuzzOpenRTP(f *testing.F, p Profile, mki []byte) {
	o, seeds, _ := fuzzOpener(f, p, mki)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := snapshot(o)
		buf := append([]byte(nil), pkt...)
		info, err := o.OpenRTP(buf)
		if err != nil {
			if _, ok := err.(Error); !ok {
				t.Fatalf("untyped error %v", err)
			}
			if !reflect.DeepEqual(before, snapshot(o)) {
				t.Fatal("state changed on failure")
			}
			return
		}
		if info.Len < info.HeaderLen || info.Len+tagLen+len(mki) != len(pkt) || !bytes.Equal(buf[:info.HeaderLen], pkt[:info.HeaderLen]) {
			t.Fatalf("bad info %+v for %d octets", info, len(pkt))
		}
		// Re-sealing must give back the input exactly, and re-opening it
		// must be a replay.
		out, err := o.keys.SealRTP(nil, nil, buf[:info.Len], info.ROC)
		if err != nil || !bytes.Equal(out, pkt) {
			t.Fatalf("re-seal %x, %v; want %x", out, err, pkt)
		}
		if _, err := o.OpenRTP(out); err != ErrReplay {
			t.Fatalf("re-open: %v, want ErrReplay", err)
		}
		if p.IsDouble() {
			rw := Rewrite{SetPT: true, PT: 1, SetSeq: true, Seq: 2, SetMarker: true, Marker: true}
			if _, err := RewriteDouble(grow(buf[:info.Len], 3), rw); err != nil {
				t.Fatalf("rewrite of an opened packet: %v", err)
			}
		}
	})
}

func fuzzOpenRTCP(f *testing.F, p Profile, mki []byte) {
	o, _, seeds := fuzzOpener(f, p, mki)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := snapshot(o)
		buf := append([]byte(nil), pkt...)
		info, err := o.OpenRTCP(buf)
		if err != nil {
			if _, ok := err.(Error); !ok {
				t.Fatalf("untyped error %v", err)
			}
			if !reflect.DeepEqual(before, snapshot(o)) {
				t.Fatal("state changed on failure")
			}
			return
		}
		if info.Len+tagLen+srtcpIdxLen+len(mki) != len(pkt) {
			t.Fatalf("bad info %+v for %d octets", info, len(pkt))
		}
		if info.Encrypted {
			out, err := o.keys.SealRTCP(nil, nil, buf[:info.Len], info.Index)
			if err != nil || !bytes.Equal(out, pkt) {
				t.Fatalf("re-seal %x, %v; want %x", out, err, pkt)
			}
		}
		if _, err := o.OpenRTCP(append([]byte(nil), pkt...)); err != ErrReplay {
			t.Fatalf("re-open: %v, want ErrReplay", err)
		}
	})
}

func FuzzOpenRTPAES128GCM(f *testing.F)       { fuzzOpenRTP(f, ProfileAEADAES128GCM, nil) }
func FuzzOpenRTPAES256GCM(f *testing.F)       { fuzzOpenRTP(f, ProfileAEADAES256GCM, []byte{7, 7, 7}) }
func FuzzOpenRTPDoubleAES128GCM(f *testing.F) { fuzzOpenRTP(f, ProfileDoubleAEADAES128GCM, nil) }
func FuzzOpenRTPDoubleAES256GCM(f *testing.F) { fuzzOpenRTP(f, ProfileDoubleAEADAES256GCM, nil) }

func FuzzOpenRTCPAES128GCM(f *testing.F)       { fuzzOpenRTCP(f, ProfileAEADAES128GCM, nil) }
func FuzzOpenRTCPAES256GCM(f *testing.F)       { fuzzOpenRTCP(f, ProfileAEADAES256GCM, []byte{7, 7, 7}) }
func FuzzOpenRTCPDoubleAES128GCM(f *testing.F) { fuzzOpenRTCP(f, ProfileDoubleAEADAES128GCM, nil) }
func FuzzOpenRTCPDoubleAES256GCM(f *testing.F) { fuzzOpenRTCP(f, ProfileDoubleAEADAES256GCM, nil) }

// FuzzRewriteDouble: any input either fails with a typed error leaving pkt
// unchanged, or yields a packet whose OHB parses.
func FuzzRewriteDouble(f *testing.F) {
	f.Add(append(plainRTP(1, 2, 16), 0), uint8(3), uint16(4), true, byte(7))
	f.Fuzz(func(t *testing.T, pkt []byte, pt uint8, seq uint16, m bool, set byte) {
		in := append([]byte(nil), pkt...)
		buf := grow(pkt, 3)
		rw := Rewrite{SetPT: set&1 != 0, PT: pt, SetSeq: set&2 != 0, Seq: seq, SetMarker: set&4 != 0, Marker: m}
		n, err := RewriteDouble(buf, rw)
		if err != nil {
			if _, ok := err.(Error); !ok || !bytes.Equal(buf, in) {
				t.Fatalf("error %v, packet changed: %v", err, !bytes.Equal(buf, in))
			}
			return
		}
		hdr, e := rtpHeaderLen(buf[:n])
		if e != 0 {
			t.Fatal(e)
		}
		if _, e := ohbLen(buf[hdr:n]); e != 0 {
			t.Fatal(e)
		}
	})
}

// rtpHeaderLenRef is rtpHeaderLen as RFC 3550 section 5.1 reads, step by
// step: the reference the inlinable one is compared with.
func rtpHeaderLenRef(pkt []byte) (int, Error) {
	if len(pkt) < 12 {
		return 0, ErrShort
	}
	if pkt[0]>>6 != 2 {
		return 0, ErrVersion
	}
	n := 12 + 4*int(pkt[0]&0x0f)
	if n > len(pkt) {
		return 0, ErrCSRCOverflow
	}
	if pkt[0]&0x10 == 0 {
		return n, 0
	}
	if n+4 > len(pkt) {
		return 0, ErrExtensionOverflow
	}
	n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:]))
	if n > len(pkt) {
		return 0, ErrExtensionOverflow
	}
	return n, 0
}

// FuzzRTPHeaderLen: rtpHeaderLen agrees with the reference on any input.
func FuzzRTPHeaderLen(f *testing.F) {
	f.Add([]byte{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x91, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 1, 2, 3, 4})
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 2, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		n, e := rtpHeaderLen(pkt)
		if wn, we := rtpHeaderLenRef(pkt); n != wn || e != we {
			t.Fatalf("rtpHeaderLen(% x) = %d, %v; want %d, %v", pkt, n, e, wn, we)
		}
	})
}
