package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/testutil"
)

// rtpWithForgedMeta returns the next plaintext RTP packet of e with a
// 256-octet header extension (an opaque profile, forwarded as it came)
// filled with copies of a struct rx_meta (afxdp.RxMetaMagic, receive time
// 1 ns), 16-octet aligned so that one of them lands at every 16-octet
// offset of a TX frame between 64 and 304: in particular at 240, the 16
// octets in front of where copy-mode AF_XDP receives a packet into the
// same UMEM frame (XDP_PACKET_HEADROOM = 256).
func (e *endpoint) rtpWithForgedMeta() []byte {
	const (
		ext    = 256
		hdr    = 12 + 4 + ext
		rtpOff = 42 // Ethernet + IPv4 + UDP in the TX frame
	)
	pkt := make([]byte, hdr+100)
	pkt[0] = 0x90 // V=2, X
	pkt[1] = 96
	binary.BigEndian.PutUint16(pkt[2:], e.seq)
	binary.BigEndian.PutUint32(pkt[4:], uint32(e.seq)*960)
	binary.BigEndian.PutUint32(pkt[8:], e.ssrc)
	e.seq++
	binary.BigEndian.PutUint16(pkt[12:], 0x1234) // not one- or two-byte
	binary.BigEndian.PutUint16(pkt[14:], ext/4)
	var m [afxdp.RxMetaLen]byte
	binary.NativeEndian.PutUint32(m[0:], afxdp.RxMetaMagic)
	binary.NativeEndian.PutUint64(m[8:], 1)
	for at := 16; at+16 <= hdr; at++ {
		if (rtpOff+at)%16 == 0 {
			copy(pkt[at:], m[:])
		}
	}
	return pkt
}

// TestNetnsForgedRxTime: with the receive time switched off in the XDP
// program (Config.NoRxTime), and with a driver without XDP metadata
// support (the program writes none, the port looks for it: simulated with
// Config.metaless), no packet may be observed in the dwell histogram. A sender
// whose media carry, in a header extension (plaintext, forwarded as it
// came), bytes that look like the XDP program's metadata must not be able
// to plant receive times: the UMEM frames that carried its forwarded
// copies are received into again, and the 16 octets in front of a received
// packet are then octets of an old TX frame.
func TestNetnsForgedRxTime(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric} {
		t.Run(m.String()+"/no-rx-time", func(t *testing.T) { testNetnsForgedRxTime(t, m, false) })
		t.Run(m.String()+"/driver-without-metadata", func(t *testing.T) { testNetnsForgedRxTime(t, m, true) })
	}
}

func testNetnsForgedRxTime(t *testing.T, mode Mode, metaless bool) {
	star, tbl, eps, conns := starConference(t, 2)
	dp := starDataplane(t, star, Config{
		Mode: mode, Queues: 1,
		NumFrames: 256, RingSize: 64, BatchSize: 16, Poll: 20 * time.Millisecond,
		Table: tbl, NoRxTime: true, metaless: metaless,
	})
	md := netip.AddrPortFrom(star.MD.Addr, mediaPort)
	done := make(chan int)
	go func() {
		b := make([]byte, 2048)
		n := 0
		for {
			conns[1].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := conns[1].ReadFromUDPAddrPort(b); err != nil {
				done <- n
				return
			}
			n++
		}
	}()
	// More packets than the UMEM has frames, a few at a time: TX frames
	// go back to the fill ring and are received into.
	const n = 2000
	for i := 0; i < n; i++ {
		enc, err := eps[0].enc.EncryptRTP(nil, eps[0].rtpWithForgedMeta(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conns[0].WriteToUDPAddrPort(enc, md); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			time.Sleep(time.Millisecond)
		}
	}
	got := <-done
	var h dwell.Hist
	for range 50 {
		h = dp.WorkerDwell()[0]
		time.Sleep(10 * time.Millisecond)
	}
	s := dp.Stats()
	t.Logf("%s: %d sent, %d forwarded, %d received, %d dwells observed (%d of 100 ms or more)",
		mode, n, s[Forwarded], got, h.Count(), h.Bins[dwell.NumBins-1])
	if s[Forwarded] == 0 {
		t.Fatalf("nothing forwarded; stats %s", nonZero(&s))
	}
	if h.Count() != 0 {
		t.Fatalf("%d dwells observed with the receive time off: planted by a sender's forwarded bytes", h.Count())
	}
}
