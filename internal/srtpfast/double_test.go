package srtpfast

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/mdfast/mdfast/internal/double"
)

// The endpoint side of RFC 8723 is internal/double, written with
// crypto/cipher directly: it shares no packet code with srtpfast.

type e2eSession = *double.Session

func testDerive(t testing.TB, masterKey, masterSalt []byte) e2eSession {
	t.Helper()
	s, err := double.NewSession(masterKey, masterSalt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testHdrLen reads the header length even of a header whose version the
// tamper test broke.
func testHdrLen(p []byte) (fixed, full int) {
	fixed = 12 + 4*int(p[0]&0x0f)
	full = fixed
	if p[0]&0x10 != 0 {
		full += 4 + 4*int(binary.BigEndian.Uint16(p[fixed+2:]))
	}
	return fixed, full
}

// doubleSeal is RFC 8723 section 5.1 at a sending endpoint.
func doubleSeal(inner, outer e2eSession, pkt []byte, roc uint32) []byte {
	var sc double.Scratch
	out, err := double.Seal(&sc, inner, outer, nil, pkt, roc)
	if err != nil {
		panic(err)
	}
	return out
}

// doubleOpen is RFC 8723 section 5.3 at a receiving endpoint: it returns the
// reconstructed original packet (synthetic header, X = 0, without
// extensions) and its payload, given the outer ROC the receiver estimated
// and the original ROC for the inner transform.
func doubleOpen(inner, outer e2eSession, pkt []byte, outerROC, innerROC uint32) (synth, payload []byte, err error) {
	var sc double.Scratch
	o, err := double.Open(&sc, inner, outer, bytes.Clone(pkt), outerROC, innerROC)
	if err != nil {
		return nil, nil, err
	}
	return bytes.Clone(o.Header), o.Payload, nil
}

type doubleParties struct {
	inner         e2eSession // the conference's E2E key, shared by endpoints
	senderOuter   e2eSession // sender <-> MD hop
	receiverOuter e2eSession // MD <-> receiver hop
	senderKeys    *Keys      // srtpfast, sender's HBH halves
	receiverKeys  *Keys
}

func newDoubleParties(t testing.TB, r *rand.Rand, p Profile) doubleParties {
	t.Helper()
	n := p.HBHKeyLen()
	var d doubleParties
	// Full double master key and salt: inner half first, outer half second.
	sKey, sSalt := randBytes(r, 2*n), randBytes(r, 24)
	rKey, rSalt := randBytes(r, 2*n), randBytes(r, 24)
	copy(rKey[:n], sKey[:n]) // the E2E half is the same for everyone
	copy(rSalt[:12], sSalt[:12])
	d.inner = testDerive(t, sKey[:n], sSalt[:12])
	d.senderOuter = testDerive(t, sKey[n:], sSalt[12:])
	d.receiverOuter = testDerive(t, rKey[n:], rSalt[12:])
	var err error
	if d.senderKeys, err = NewKeys(p, sKey[n:], sSalt[12:], nil); err != nil {
		t.Fatal(err)
	}
	if d.receiverKeys, err = NewKeys(p, rKey[n:], rSalt[12:], nil); err != nil {
		t.Fatal(err)
	}
	return d
}

func synthOf(pkt []byte) []byte {
	fixed, _ := testHdrLen(pkt)
	s := append([]byte(nil), pkt[:fixed]...)
	s[0] &^= 0x10
	return s
}

// TestDoubleRelay sends RFC 8723 packets from an endpoint through the MD,
// which rewrites PT, SEQ (shifting the sequence so that the output wraps at
// a different packet than the input) and M, and checks that the receiving
// endpoint recovers the original header and payload.
func TestDoubleRelay(t *testing.T) {
	for _, p := range []Profile{ProfileDoubleAEADAES128GCM, ProfileDoubleAEADAES256GCM} {
		t.Run(p.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(p), 1))
			d := newDoubleParties(t, r, p)
			o := NewOpener(d.senderKeys, 4)
			var sc Scratch
			ssrc := r.Uint32()
			const shift = 40000 // output index = input index + shift
			seq := uint16(65535 - 30)
			var inIndex uint64 = uint64(seq)
			outWrapped := false
			for i := range 200 {
				orig := rtpPacket(r, ssrc, seq, r.IntN(300))
				roc := uint32(inIndex >> 16)
				wire := grow(doubleSeal(d.inner, d.senderOuter, orig, roc), 64)

				info, err := o.OpenRTP(wire)
				if err != nil {
					t.Fatalf("packet %d: MD open: %v", i, err)
				}
				if info.ROC != roc || info.OHBLen != 1 {
					t.Fatalf("packet %d: info %+v, want ROC %d", i, info, roc)
				}
				outIndex := inIndex + shift
				rw := Rewrite{SetSeq: true, Seq: uint16(outIndex)}
				switch i % 4 {
				case 1:
					rw.SetPT, rw.PT = true, 127-info.PT
				case 2:
					rw.SetMarker, rw.Marker = true, !info.Marker
				case 3:
					rw.SetPT, rw.PT, rw.SetMarker, rw.Marker = true, info.PT, true, info.Marker // no change
				}
				n, err := RewriteDouble(wire[:info.Len], rw)
				if err != nil {
					t.Fatalf("packet %d: rewrite: %v", i, err)
				}
				outROC := uint32(outIndex >> 16)
				if outROC != roc {
					outWrapped = true
				}
				out, err := d.receiverKeys.SealRTP(&sc, wire[:0], wire[:n], outROC)
				if err != nil {
					t.Fatal(err)
				}

				synth, payload, err := doubleOpen(d.inner, d.receiverOuter, out, outROC, roc)
				if err != nil {
					t.Fatalf("packet %d: receiver: %v", i, err)
				}
				_, full := testHdrLen(orig)
				if !bytes.Equal(payload, orig[full:]) || !bytes.Equal(synth, synthOf(orig)) {
					t.Fatalf("packet %d: receiver got a different packet", i)
				}
				// The receiver sees the rewritten header fields.
				if got := binary.BigEndian.Uint16(out[2:]); got != uint16(outIndex) {
					t.Fatalf("packet %d: SEQ %d on the wire, want %d", i, got, uint16(outIndex))
				}
				if rw.SetPT && out[1]&0x7f != rw.PT&0x7f || rw.SetMarker && (out[1]&0x80 != 0) != rw.Marker {
					t.Fatalf("packet %d: PT/M not rewritten", i)
				}
				if !bytes.Equal(out[12:full], orig[12:full]) || !bytes.Equal(out[4:12], orig[4:12]) {
					t.Fatalf("packet %d: other header fields changed", i)
				}
				seq++
				inIndex++
			}
			if !outWrapped {
				t.Fatal("output ROC never differed from input ROC")
			}
		})
	}
}

// TestDoubleTamper flips every bit of a double packet: on the wire into the
// MD (the outer tag catches it), on the wire into the receiver (same), and,
// as a malicious MD would, in the opened packet before re-sealing it with
// the receiver's key (the inner tag catches it). Header extensions are
// excluded from the last case: RFC 8723 lets the MD change them.
func TestDoubleTamper(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	d := newDoubleParties(t, r, ProfileDoubleAEADAES128GCM)
	ssrc := r.Uint32()
	orig := append(rtpHeader(r, ssrc, 1000, 1), randBytes(r, 40)...)
	wire := doubleSeal(d.inner, d.senderOuter, orig, 0)
	fixed, _ := testHdrLen(orig)
	var sc Scratch

	relay := func(in []byte, tamper func(opened []byte)) ([]byte, error) {
		buf := grow(in, 64)
		o := NewOpener(d.senderKeys, 1)
		info, err := o.OpenRTP(buf)
		if err != nil {
			return nil, err
		}
		n, err := RewriteDouble(buf[:info.Len], Rewrite{SetPT: true, PT: 99, SetSeq: true, Seq: 7, SetMarker: true, Marker: true})
		if err != nil {
			return nil, err
		}
		if tamper != nil {
			tamper(buf[:n])
		}
		return d.receiverKeys.SealRTP(&sc, buf[:0], buf[:n], 0)
	}
	good, err := relay(wire, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := doubleOpen(d.inner, d.receiverOuter, good, 0, 0); err != nil {
		t.Fatal(err)
	}

	for bit := range 8 * len(wire) {
		in := append([]byte(nil), wire...)
		in[bit/8] ^= 1 << (bit % 8)
		if _, err := relay(in, nil); err == nil {
			t.Fatalf("MD accepted the sender's packet with bit %d flipped", bit)
		}
	}
	for bit := range 8 * len(good) {
		in := append([]byte(nil), good...)
		in[bit/8] ^= 1 << (bit % 8)
		if _, _, err := doubleOpen(d.inner, d.receiverOuter, in, 0, 0); err == nil {
			t.Fatalf("receiver accepted the MD's packet with bit %d flipped", bit)
		}
	}
	// A malicious MD: header (fixed part and CSRCs), inner ciphertext,
	// inner tag and OHB.
	_, full := testHdrLen(orig)
	openedLen := len(wire) - tagLen
	for bit := range 8 * openedLen {
		pos := bit / 8
		if pos >= fixed && pos < full {
			continue // header extension
		}
		// The MD opens and rewrites with srtpfast, tampers, then outer-seals
		// with its own code for the receiver (srtpfast would refuse to seal
		// some tampered headers, e.g. a wrong version).
		buf := grow(wire, 64)
		info, err := NewOpener(d.senderKeys, 1).OpenRTP(buf)
		if err != nil {
			t.Fatal(err)
		}
		b := buf[:info.Len]
		b[pos] ^= 1 << (bit % 8)
		_, hl := testHdrLen(b)
		if hl > len(b) {
			continue // the receiver cannot even parse the header
		}
		var sc double.Scratch
		out := double.SealOuter(&sc, d.receiverOuter, nil, b[:hl], b[hl:], 0)
		synth, payload, err := doubleOpen(d.inner, d.receiverOuter, out, 0, 0)
		if err == nil {
			// Accepted only if the receiver still reconstructs the exact
			// original: possible solely for config bits that restate the
			// original (M set with B equal to the original marker, B
			// without M).
			if pos != len(b)-1 || !bytes.Equal(synth, synthOf(orig)) || !bytes.Equal(payload, orig[full:]) {
				t.Fatalf("receiver accepted a packet whose opened octet %d bit %d the MD flipped", pos, bit%8)
			}
		}
	}
}

// TestRewriteDoubleOHB checks the section 5.2 OHB rules, including a chain of
// two MDs.
func TestRewriteDoubleOHB(t *testing.T) {
	// header PT 96 SEQ 0x1234 M 0, payload: 16 octets "inner tag" + OHB.
	base := func(ohb ...byte) []byte {
		p := []byte{0x80, 96, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 2}
		p = append(p, make([]byte, 16)...)
		return append(p, ohb...)
	}
	cases := []struct {
		name    string
		in      []byte
		rw      Rewrite
		wantHdr [4]byte
		wantOHB []byte
		err     error
	}{
		{"no change", base(0), Rewrite{}, [4]byte{0x80, 96, 0x12, 0x34}, []byte{0}, nil},
		{"same values", base(0), Rewrite{SetPT: true, PT: 96, SetSeq: true, Seq: 0x1234, SetMarker: true}, [4]byte{0x80, 96, 0x12, 0x34}, []byte{0}, nil},
		{"PT", base(0), Rewrite{SetPT: true, PT: 100}, [4]byte{0x80, 100, 0x12, 0x34}, []byte{96, ohbPT}, nil},
		{"SEQ", base(0), Rewrite{SetSeq: true, Seq: 1}, [4]byte{0x80, 96, 0, 1}, []byte{0x12, 0x34, ohbSeq}, nil},
		{"M", base(0), Rewrite{SetMarker: true, Marker: true}, [4]byte{0x80, 0x80 | 96, 0x12, 0x34}, []byte{ohbMarker}, nil},
		{"all", base(0), Rewrite{SetPT: true, PT: 1, SetSeq: true, Seq: 2, SetMarker: true, Marker: true},
			[4]byte{0x80, 0x81, 0, 2}, []byte{96, 0x12, 0x34, ohbPT | ohbSeq | ohbMarker}, nil},
		// Second MD: PT already recorded (original 50): changing again keeps 50.
		{"PT again", base(50, ohbPT), Rewrite{SetPT: true, PT: 7}, [4]byte{0x80, 7, 0x12, 0x34}, []byte{50, ohbPT}, nil},
		// Second MD sets PT back to the original: entry dropped (SHOULD).
		{"PT back", base(50, ohbPT), Rewrite{SetPT: true, PT: 50}, [4]byte{0x80, 50, 0x12, 0x34}, []byte{0}, nil},
		// Fields the MD does not set keep their entries.
		{"keep others", base(50, 0xab, 0xcd, ohbPT|ohbSeq|ohbMarker|ohbMarkerB), Rewrite{SetSeq: true, Seq: 0xabcd},
			[4]byte{0x80, 96, 0xab, 0xcd}, []byte{50, ohbPT | ohbMarker | ohbMarkerB}, nil},
		{"M back", base(ohbMarker | ohbMarkerB), Rewrite{SetMarker: true, Marker: true}, [4]byte{0x80, 0x80 | 96, 0x12, 0x34}, []byte{0}, nil},
		{"reserved bits", base(0x10), Rewrite{}, [4]byte{}, nil, ErrOHB},
		{"OHB past payload", []byte{0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, ohbSeq}, Rewrite{}, [4]byte{}, nil, ErrOHB},
		{"bad header", []byte{0x40, 96, 0, 0}, Rewrite{}, [4]byte{}, nil, ErrShort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pkt := grow(c.in, 3)
			n, err := RewriteDouble(pkt, c.rw)
			if err != c.err {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err != nil {
				if !bytes.Equal(pkt, c.in) || n != len(c.in) {
					t.Fatal("packet changed on error")
				}
				return
			}
			out := pkt[:n]
			if [4]byte(out[:4]) != c.wantHdr || !bytes.Equal(out[12+16:], c.wantOHB) {
				t.Fatalf("got header % x OHB % x, want % x, % x", out[:4], out[28:], c.wantHdr, c.wantOHB)
			}
		})
	}
	// Growing the OHB needs tailroom.
	pkt := base(0)
	if _, err := RewriteDouble(pkt[:len(pkt):len(pkt)], Rewrite{SetSeq: true, Seq: 9}); err != ErrTailroom {
		t.Fatalf("err %v, want ErrTailroom", err)
	}
}
