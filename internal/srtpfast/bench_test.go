package srtpfast

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/pion/srtp/v3"
)

// The forwarding benchmarks all work the same way, so that their ratios
// mean something: a ring of benchRing packets with consecutive SEQs is
// sealed with the sender's key before the timer starts; each iteration
// copies the next one into a frame buffer (what the NIC would have done;
// opening destroys the ciphertext), opens it with the sender's state and
// seals it with the receiver's key. When the ring is used up the receive
// state is reset with the timer stopped, because the replay window would
// (rightly) reject the ring's packets a second time. Size is the RTP
// payload; the header is 12 octets.

const benchRing = 1024

var benchSizes = []int{160, 1200}

type benchRingPkts struct {
	pkts  [][]byte
	frame []byte
}

func newBenchRing(b *testing.B, size int, seal func(plain []byte) []byte) *benchRingPkts {
	r := rand.New(rand.NewPCG(1, uint64(size)))
	br := &benchRingPkts{frame: make([]byte, 0, 2048)}
	for i := range benchRing {
		plain := plainRTP(0xcafe, uint16(i), size)
		copy(plain[12:], randBytes(r, size))
		br.pkts = append(br.pkts, seal(plain))
	}
	return br
}

func resetOpener(o *Opener) {
	clear(o.table.slots)
	o.table.states = o.table.states[:0]
	o.table.last = nil
}

func benchKeys(b *testing.B, p Profile, seed uint64) (*Keys, []byte, []byte) {
	r := rand.New(rand.NewPCG(seed, 0))
	return testKeys(b, r, p, nil)
}

// BenchmarkForward: srtpfast open with the sender's Opener, seal in place
// with the receiver's Keys (AEAD_AES_128_GCM).
func BenchmarkForward(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			sk, _, _ := benchKeys(b, ProfileAEADAES128GCM, 1)
			rk, _, _ := benchKeys(b, ProfileAEADAES128GCM, 2)
			ring := newBenchRing(b, size, func(p []byte) []byte { return sealRTP(b, sk, p, 0) })
			o := NewOpener(sk, 4)
			var sc Scratch
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % benchRing
				if j == 0 {
					resetOpener(o) // a few ns per benchRing packets
				}
				pkt := append(ring.frame[:0], ring.pkts[j]...)
				info, err := o.OpenRTP(pkt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rk.SealRTP(&sc, pkt[:0], pkt[:info.Len], info.ROC); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawGCM is the CPU bound: the same copy, then crypto/cipher
// AES-128-GCM Open and Seal in place over the same octets, with nonces built
// inline and no SRTP parsing or state.
func BenchmarkRawGCM(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			newAEAD := func(seed byte) cipher.AEAD {
				key := make([]byte, 16)
				key[0] = seed
				blk, _ := aes.NewCipher(key)
				a, _ := cipher.NewGCM(blk)
				return a
			}
			sa, ra := newAEAD(1), newAEAD(2)
			nonce := make([]byte, 12)
			ring := newBenchRing(b, size, func(p []byte) []byte {
				binary.BigEndian.PutUint16(nonce[10:], binary.BigEndian.Uint16(p[2:]))
				return sa.Seal(append([]byte(nil), p[:12]...), nonce, p[12:], p[:12])
			})
			frame := ring.frame
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pkt := append(frame[:0], ring.pkts[i%benchRing]...)
				binary.BigEndian.PutUint16(nonce[10:], binary.BigEndian.Uint16(pkt[2:]))
				plain, err := sa.Open(pkt[12:12], nonce, pkt[12:], pkt[:12])
				if err != nil {
					b.Fatal(err)
				}
				ra.Seal(pkt[12:12], nonce, plain, pkt[:12])
			}
		})
	}
}

// BenchmarkPionForward: pion/srtp v3 DecryptRTP with the sender's context
// (replay protection on, as srtpfast always has) then EncryptRTP with the
// receiver's, both in place.
func BenchmarkPionForward(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			_, skey, ssalt := benchKeys(b, ProfileAEADAES128GCM, 1)
			_, rkey, rsalt := benchKeys(b, ProfileAEADAES128GCM, 2)
			newCtx := func(key, salt []byte, opts ...srtp.ContextOption) *srtp.Context {
				c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, opts...)
				if err != nil {
					b.Fatal(err)
				}
				return c
			}
			enc := newCtx(skey, ssalt)
			ring := newBenchRing(b, size, func(p []byte) []byte {
				out, err := enc.EncryptRTP(nil, p, nil)
				if err != nil {
					b.Fatal(err)
				}
				return out
			})
			dec := newCtx(skey, ssalt, srtp.SRTPReplayProtection(ReplayWindow))
			rcv := newCtx(rkey, rsalt)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % benchRing
				if j == 0 && i > 0 {
					b.StopTimer()
					dec = newCtx(skey, ssalt, srtp.SRTPReplayProtection(ReplayWindow))
					rcv = newCtx(rkey, rsalt)
					b.StartTimer()
				}
				pkt := append(ring.frame[:0], ring.pkts[j]...)
				plain, err := dec.DecryptRTP(pkt, pkt, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rcv.EncryptRTP(plain[:0], plain, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFanout: one open, N seals (one per receiver, each into its own
// output buffer), 1200-octet payload. Bytes are those sealed.
func BenchmarkFanout(b *testing.B) {
	const size = 1200
	for _, n := range []int{1, 4, 16} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			sk, _, _ := benchKeys(b, ProfileAEADAES128GCM, 1)
			rks := make([]*Keys, n)
			outs := make([][]byte, n)
			for i := range rks {
				rks[i], _, _ = benchKeys(b, ProfileAEADAES128GCM, uint64(10+i))
				outs[i] = make([]byte, 0, 2048)
			}
			ring := newBenchRing(b, size, func(p []byte) []byte { return sealRTP(b, sk, p, 0) })
			o := NewOpener(sk, 4)
			var sc Scratch
			b.SetBytes(int64(size * n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % benchRing
				if j == 0 {
					resetOpener(o) // a few ns per benchRing packets
				}
				pkt := append(ring.frame[:0], ring.pkts[j]...)
				info, err := o.OpenRTP(pkt)
				if err != nil {
					b.Fatal(err)
				}
				for r, rk := range rks {
					if _, err := rk.SealRTP(&sc, outs[r][:0], pkt[:info.Len], info.ROC); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
