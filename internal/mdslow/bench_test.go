package mdslow

import (
	"net/netip"
	"testing"

	"github.com/mdfast/mdfast/internal/slowpkt"
)

// BenchmarkHelloVerify is the slow path's cost of a ClientHello without a
// cookie from a new source (a spoofed flood): parse, HMAC, answer.
func BenchmarkHelloVerify(b *testing.B) {
	e := newEnv(&testing.T{}, Limits{})
	ch := clientHelloWith(&testing.T{}, "some-tls-id-of-twenty-octets", 0, [32]byte{1}, nil)
	to := netip.MustParseAddrPort("198.18.0.1:5004")
	b.ReportAllocs()
	err := e.r.do(b.Context(), func() {
		for i := 0; b.Loop(); i++ {
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(1024+i))
			e.r.handlePacket(slowpkt.Packet{Data: ch, From: from, To: to})
			if i%1024 == 0 {
				e.snd.take()
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}
