package srtpfast

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pion/srtp/v3"
)

func pionProfile(p Profile) srtp.ProtectionProfile {
	if p == ProfileAEADAES256GCM {
		return srtp.ProtectionProfileAeadAes256Gcm
	}
	return srtp.ProtectionProfileAeadAes128Gcm
}

func pionContext(t testing.TB, p Profile, key, salt, mki []byte) *srtp.Context {
	t.Helper()
	var opts []srtp.ContextOption
	if len(mki) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(mki))
	}
	c, err := srtp.CreateContext(key, salt, pionProfile(p), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPionRTP cross-checks SRTP both ways against pion/srtp: pion seals,
// srtpfast opens, re-seals with the same keys and must reproduce pion's
// bytes exactly; srtpfast seals, pion opens. Sequences start just before
// 65535 so every SSRC wraps (ROC 0 -> 1), with some reordering.
func TestPionRTP(t *testing.T) {
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileAEADAES256GCM} {
		for _, mkiLen := range []int{0, 4} {
			t.Run(fmt.Sprintf("%v/mki%d", p, mkiLen), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(p), uint64(mkiLen)))
				mki := randBytes(r, mkiLen)
				k, key, salt := testKeys(t, r, p, mki)
				pionEnc := pionContext(t, p, key, salt, mki)
				pionDec := pionContext(t, p, key, salt, mki)
				o := NewOpener(k, 8)
				var sc Scratch
				ssrcs := []uint32{r.Uint32(), r.Uint32(), 0}
				seqs := []uint16{65535 - 40, 65500, 65535}
				// Phase 1: pion protects the packets in sending order.
				type sent struct {
					plain, enc []byte
					ssrc       uint32
					roc        uint32
				}
				var pkts []sent
				for i := range 600 {
					s := r.IntN(len(ssrcs))
					n := r.IntN(1401)
					switch i {
					case 0:
						n = 0
					case 1:
						n = 1400
					}
					plain := rtpPacket(r, ssrcs[s], seqs[s], n)
					seqs[s]++
					enc, err := pionEnc.EncryptRTP(nil, plain, nil)
					if err != nil {
						t.Fatal(err)
					}
					roc, _ := pionEnc.ROC(ssrcs[s])
					pkts = append(pkts, sent{plain, enc, ssrcs[s], roc})
				}
				// The network reorders some neighbours (across the wrap too),
				// but not an SSRC's first packet: a receiver takes the
				// first packet it sees to have ROC 0 (RFC 3711 section
				// 3.3.1), so a first packet that is really from after the
				// wrap cannot authenticate, in pion either.
				first := map[uint32]int{}
				for i, pk := range pkts {
					if _, ok := first[pk.ssrc]; !ok {
						first[pk.ssrc] = i
					}
				}
				for i := 1; i < len(pkts); i++ {
					if first[pkts[i].ssrc] != i && first[pkts[i-1].ssrc] != i-1 && r.IntN(6) == 0 {
						pkts[i-1], pkts[i] = pkts[i], pkts[i-1]
					}
				}
				// Phase 2: srtpfast opens and re-seals; pion opens srtpfast's.
				wrapped := 0
				for i, pk := range pkts {
					plain, enc := pk.plain, pk.enc
					buf := grow(enc, 64)
					info, err := o.OpenRTP(buf)
					if err != nil {
						t.Fatalf("packet %d: open pion packet: %v", i, err)
					}
					if !bytes.Equal(buf[:info.Len], plain) {
						t.Fatalf("packet %d: plaintext differs", i)
					}
					if info.ROC != pk.roc || info.SSRC != pk.ssrc || info.HeaderLen > len(plain) {
						t.Fatalf("packet %d: info %+v, pion ROC %d", i, info, pk.roc)
					}
					if info.ROC > 0 {
						wrapped++
					}
					// In-place re-seal with the same keys reproduces pion.
					out, err := k.SealRTP(&sc, buf[:0], buf[:info.Len], info.ROC)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, enc) {
						t.Fatalf("packet %d: re-seal differs from pion", i)
					}
					// srtpfast -> pion, into a separate buffer.
					sealed, err := k.SealRTP(&sc, make([]byte, 3, 3+len(plain)+32), plain, info.ROC)
					if err != nil {
						t.Fatal(err)
					}
					dec, err := pionDec.DecryptRTP(nil, sealed[3:], nil)
					if err != nil {
						t.Fatalf("packet %d: pion open: %v", i, err)
					}
					if !bytes.Equal(dec, plain) {
						t.Fatalf("packet %d: pion plaintext differs", i)
					}
				}
				if wrapped == 0 {
					t.Fatal("no packet crossed the sequence wrap")
				}
			})
		}
	}
}

// TestPionRTCP cross-checks SRTCP compound packets both ways.
func TestPionRTCP(t *testing.T) {
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileAEADAES256GCM} {
		for _, mkiLen := range []int{0, 3} {
			t.Run(fmt.Sprintf("%v/mki%d", p, mkiLen), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(p)+7, uint64(mkiLen)))
				mki := randBytes(r, mkiLen)
				k, key, salt := testKeys(t, r, p, mki)
				pionEnc := pionContext(t, p, key, salt, mki)
				pionDec := pionContext(t, p, key, salt, mki)
				o := NewOpener(k, 4)
				var sc Scratch
				ssrcs := []uint32{r.Uint32(), r.Uint32()}
				for i := range 300 {
					ssrc := ssrcs[r.IntN(2)]
					plain := rtcpCompound(r, ssrc)
					enc, err := pionEnc.EncryptRTCP(nil, plain, nil)
					if err != nil {
						t.Fatal(err)
					}
					buf := grow(enc, 64)
					info, err := o.OpenRTCP(buf)
					if err != nil {
						t.Fatalf("packet %d: open pion packet: %v", i, err)
					}
					wantIdx, _ := pionEnc.Index(ssrc)
					if !bytes.Equal(buf[:info.Len], plain) || info.SSRC != ssrc || info.Index != wantIdx || !info.Encrypted {
						t.Fatalf("packet %d: info %+v (pion index %d) or plaintext differs", i, info, wantIdx)
					}
					out, err := k.SealRTCP(&sc, buf[:0], buf[:info.Len], info.Index)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, enc) {
						t.Fatalf("packet %d: re-seal differs from pion", i)
					}
					sealed, err := k.SealRTCP(&sc, nil, plain, info.Index)
					if err != nil {
						t.Fatal(err)
					}
					dec, err := pionDec.DecryptRTCP(nil, sealed, nil)
					if err != nil {
						t.Fatalf("packet %d: pion open: %v", i, err)
					}
					if !bytes.Equal(dec, plain) {
						t.Fatalf("packet %d: pion plaintext differs", i)
					}
				}
			})
		}
	}
}
