package double

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

type testKeys struct {
	Keys
	pion srtp.ProtectionProfile
	fast srtpfast.Profile
}

func newTestKeys(t testing.TB, kl int) testKeys {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(kl), 8723))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	k := testKeys{Keys: Keys{E2EKey: rnd(kl), E2ESalt: rnd(12), ClientHBHKey: rnd(kl), ClientHBHSalt: rnd(12),
		ServerHBHKey: rnd(kl), ServerHBHSalt: rnd(12)},
		pion: srtp.ProtectionProfileAeadAes128Gcm, fast: srtpfast.ProfileDoubleAEADAES128GCM}
	if kl == 32 {
		k.pion, k.fast = srtp.ProtectionProfileAeadAes256Gcm, srtpfast.ProfileDoubleAEADAES256GCM
	}
	return k
}

func pionCtx(t testing.TB, key, salt []byte, p srtp.ProtectionProfile) *srtp.Context {
	t.Helper()
	c, err := srtp.CreateContext(key, salt, p, srtp.SRTPNoReplayProtection())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rtpPacket is a plaintext RTP packet (cc CSRCs, an extension when ext).
func rtpPacket(seq uint16, ssrc uint32, cc int, ext bool, n int) []byte {
	b0 := 0x80 | byte(cc)
	if ext {
		b0 |= 0x10
	}
	pkt := []byte{b0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(pkt[2:], seq)
	binary.BigEndian.PutUint32(pkt[4:], uint32(seq)*960)
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	for c := range cc {
		pkt = binary.BigEndian.AppendUint32(pkt, 0xc5c00000+uint32(c))
	}
	if ext {
		pkt = append(pkt, 0xbe, 0xde, 0, 1, 0x12, 0xaa, 0xbb, 0xcc)
	}
	for i := range n {
		pkt = append(pkt, byte(i)^byte(seq))
	}
	return pkt
}

// TestSealAgainstPion checks both layers of Seal with pion/srtp, an
// independent RFC 7714 implementation: the outer layer opens with the
// client_write HBH key as ordinary SRTP, leaving inner ciphertext | tag |
// OHB 0x00; that, under the synthetic header, opens with the E2E key.
func TestSealAgainstPion(t *testing.T) {
	for _, kl := range []int{16, 32} {
		k := newTestKeys(t, kl)
		e, err := New(k.Keys)
		if err != nil {
			t.Fatal(err)
		}
		outer := pionCtx(t, k.ClientHBHKey, k.ClientHBHSalt, k.pion)
		inner := pionCtx(t, k.E2EKey, k.E2ESalt, k.pion)
		for i, seq := range []uint16{65534, 65535, 0, 1} { // ROC 0 -> 1
			roc := uint32(0)
			if seq < 100 {
				roc = 1
			}
			pkt := rtpPacket(seq, 0x11223344, i%3, i%2 == 1, 40+i)
			wire, err := e.Seal(nil, pkt, roc)
			if err != nil {
				t.Fatal(err)
			}
			if len(wire) != len(pkt)+EndpointOverhead {
				t.Fatalf("sealed %d octets, want %d", len(wire), len(pkt)+EndpointOverhead)
			}
			if wire[len(wire)-1] != 0x00 {
				t.Fatalf("kl %d seq %d: no ShortEKTField at the end", kl, seq)
			}
			mid, err := outer.DecryptRTP(nil, wire[:len(wire)-1], nil)
			if err != nil {
				t.Fatalf("kl %d seq %d: outer: %v", kl, seq, err)
			}
			fixed, full, _ := HeaderLens(pkt)
			if !bytes.Equal(mid[:full], pkt[:full]) || mid[len(mid)-1] != 0x00 {
				t.Fatalf("kl %d seq %d: outer plaintext header or OHB wrong", kl, seq)
			}
			syn := append(append([]byte(nil), pkt[:fixed]...), mid[full:len(mid)-1]...)
			syn[0] &^= 0x10
			plain, err := inner.DecryptRTP(nil, syn, nil)
			if err != nil {
				t.Fatalf("kl %d seq %d: inner: %v", kl, seq, err)
			}
			if !bytes.Equal(plain[fixed:], pkt[full:]) {
				t.Fatalf("kl %d seq %d: payload differs", kl, seq)
			}
		}
	}
}

// TestThroughMD forwards sealed packets through the Media Distributor's
// side (srtpfast, the code under benchmark: open with the sender's HBH
// keys, rewrite PT, SEQ and M with the OHB update, seal with the
// receiver's) and opens them with Open: the original header and payload
// come back; bits flipped in either layer are caught by the right one.
func TestThroughMD(t *testing.T) {
	for _, kl := range []int{16, 32} {
		k := newTestKeys(t, kl)
		e, err := New(k.Keys)
		if err != nil {
			t.Fatal(err)
		}
		recv, err := srtpfast.NewKeys(k.fast, k.ClientHBHKey, k.ClientHBHSalt, nil)
		if err != nil {
			t.Fatal(err)
		}
		send, err := srtpfast.NewKeys(k.fast, k.ServerHBHKey, k.ServerHBHSalt, nil)
		if err != nil {
			t.Fatal(err)
		}
		op := srtpfast.NewOpener(recv, 8)
		var sc srtpfast.Scratch
		for i := range 8 {
			seq := uint16(65532 + i)
			roc := uint32(0)
			if seq < 100 {
				roc = 1
			}
			pkt := rtpPacket(seq, 0x55667788, i%2, i%3 == 0, 100+i)
			wire, err := e.Seal(make([]byte, 0, 2048), pkt, roc)
			if err != nil {
				t.Fatal(err)
			}
			wire = wire[:len(wire)-1] // the MD takes the ShortEKTField off, and puts it back
			info, err := op.OpenRTP(wire)
			if err != nil {
				t.Fatalf("kl %d seq %d: MD open: %v", kl, seq, err)
			}
			mid := wire[:info.Len]
			if i%2 == 1 { // rewrite PT and M (not SEQ: the ROC stays)
				n, err := srtpfast.RewriteDouble(mid, srtpfast.Rewrite{SetPT: true, PT: 111, SetMarker: true, Marker: true})
				if err != nil {
					t.Fatal(err)
				}
				mid = wire[:n]
			}
			out, err := send.SealRTP(&sc, nil, mid, info.ROC)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, 0x00)
			for _, flip := range []int{-1, len(out) - 4, len(out) - TagLen - 5} { // none, outer tag, inner layer
				b := append([]byte(nil), out...)
				want := error(nil)
				if flip >= 0 {
					b[flip] ^= 0x20
					want = ErrOuter
				}
				if flip == len(out)-TagLen-5 {
					// Inside the inner tag: re-seal the outer layer
					// over the flipped inner layer, as a bad E2E
					// sender would.
					m := append([]byte(nil), mid...)
					m[len(m)-4] ^= 0x20
					b, _ = send.SealRTP(&sc, nil, m, info.ROC)
					b = append(b, 0x00)
					want = ErrInner
				}
				got, err := e.Open(b, roc, roc)
				if !errors.Is(err, want) {
					t.Fatalf("kl %d seq %d flip %d: err %v, want %v", kl, seq, flip, err, want)
				}
				if want != nil {
					continue
				}
				fixed, full, _ := HeaderLens(pkt)
				syn := append([]byte(nil), pkt[:fixed]...)
				syn[0] &^= 0x10
				if !bytes.Equal(got.Header, syn) || !bytes.Equal(got.Payload, pkt[full:]) {
					t.Fatalf("kl %d seq %d: header or payload not recovered:\n% x\n% x", kl, seq, got.Header, syn)
				}
			}
		}
	}
}

func TestOpenShort(t *testing.T) {
	e, err := New(newTestKeys(t, 16).Keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{nil, make([]byte, 11), rtpPacket(1, 2, 0, false, 0), append(rtpPacket(1, 2, 0, false, 0), make([]byte, Overhead)...)} {
		if _, err := e.Open(b, 0, 0); err == nil {
			t.Fatalf("%d octets opened", len(b))
		}
	}
	if _, err := e.Seal(nil, []byte{0x40, 0, 0}, 0); !errors.Is(err, ErrHeader) {
		t.Fatalf("Seal of a bad header: %v", err)
	}
}

func TestNoAllocs(t *testing.T) {
	k := newTestKeys(t, 16)
	e, err := New(k.Keys)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver side: the MD's client and server keys swapped, so the
	// endpoint's own packets open.
	k2 := k.Keys
	k2.ServerHBHKey, k2.ServerHBHSalt = k.ClientHBHKey, k.ClientHBHSalt
	r, err := New(k2)
	if err != nil {
		t.Fatal(err)
	}
	pkt := rtpPacket(7, 9, 0, false, 160)
	buf := make([]byte, 0, 2048)
	rx := make([]byte, 2048)
	n := testing.AllocsPerRun(200, func() {
		w, err := e.Seal(buf[:0], pkt, 0)
		if err != nil {
			t.Fatal(err)
		}
		m := copy(rx, w)
		o, err := r.Open(rx[:m], 0, 0)
		if err != nil || len(o.Payload) != 160 {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per seal and open", n)
	}
}
