package srtpfast

import (
	"math/rand/v2"
	"testing"
)

// TestZeroAllocs asserts that the per-packet path allocates nothing: open
// with the sender's Opener, (double: rewrite,) seal with a receiver's Keys,
// for SRTP and SRTCP, in place and into a separate buffer.
func TestZeroAllocs(t *testing.T) {
	const runs = 200
	for _, p := range []Profile{ProfileAEADAES128GCM, ProfileAEADAES256GCM, ProfileDoubleAEADAES128GCM} {
		t.Run(p.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(p), 0))
			mki := []byte{1, 2, 3, 4}
			sk, _, _ := testKeys(t, r, p, mki)
			rk, _, _ := testKeys(t, r, p, nil)
			o := NewOpener(sk, 4)
			var sc Scratch
			rtp := make([][]byte, runs+1)
			rtcp := make([][]byte, runs+1)
			for i := range rtp {
				plain := rtpPacket(r, 77, uint16(65500+i), 200)
				if p.IsDouble() {
					plain = append(plain, make([]byte, 17)...) // inner tag, empty OHB
				}
				rtp[i] = grow(sealRTP(t, sk, plain, uint32((65500+i)>>16)), 64)
				c, err := sk.SealRTCP(nil, nil, rtcpCompound(r, 77), uint32(i))
				if err != nil {
					t.Fatal(err)
				}
				rtcp[i] = grow(c, 64)
			}
			out := make([]byte, 0, 2048)
			i := 0
			allocs := testing.AllocsPerRun(runs, func() {
				pkt := rtp[i]
				info, err := o.OpenRTP(pkt)
				if err != nil {
					t.Fatal(err)
				}
				n := info.Len
				if p.IsDouble() {
					if n, err = RewriteDouble(pkt[:n], Rewrite{SetPT: true, PT: 100, SetMarker: true, Marker: true}); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := rk.SealRTP(&sc, out[:0], pkt[:n], info.ROC); err != nil {
					t.Fatal(err)
				}
				if _, err := rk.SealRTP(&sc, pkt[:0], pkt[:n], info.ROC); err != nil {
					t.Fatal(err)
				}
				c := rtcp[i]
				rinfo, err := o.OpenRTCP(c)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := rk.SealRTCP(&sc, c[:0], c[:rinfo.Len], rinfo.Index); err != nil {
					t.Fatal(err)
				}
				// A drop is allocation-free too.
				if _, err := o.OpenRTCP(c); err == nil {
					t.Fatal("opened a packet sealed for someone else")
				}
				i++
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per packet, want 0", allocs)
			}
		})
	}
}
