package udpbatch

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message with an int payload, padded.
func cmsg(level, typ int32, v uint32) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], v)
	return b
}

func TestFragmented(t *testing.T) {
	frag4 := cmsg(unix.IPPROTO_IP, unix.IP_RECVFRAGSIZE, 1480)
	frag6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_RECVFRAGSIZE, 1280)
	other := cmsg(unix.IPPROTO_IP, unix.IP_TTL, 64)
	bad := cmsg(unix.IPPROTO_IP, unix.IP_RECVFRAGSIZE, 1480)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(len(bad) + 8) // longer than the buffer
	short := cmsg(unix.IPPROTO_IP, unix.IP_RECVFRAGSIZE, 1480)
	(*unix.Cmsghdr)(unsafe.Pointer(&short[0])).SetLen(4) // shorter than a header
	for _, tc := range []struct {
		name string
		oob  []byte
		want bool
	}{
		{"none", nil, false},
		{"IPv4 fragment size", frag4, true},
		{"IPv6 fragment size", frag6, true},
		{"other message only", other, false},
		{"other then fragment size", append(append([]byte{}, other...), frag4...), true},
		{"length past the buffer", bad, false},
		{"length below a header", short, false},
		{"cut header", frag4[:unix.SizeofCmsghdr-1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fragmented(tc.oob); got != tc.want {
				t.Errorf("Fragmented = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNotFragmented: with ReportFragmented on, ordinary datagrams (IPv4,
// IPv6, IPv4 on a dual-stack socket) are not reported as fragmented, and
// the control buffers do not disturb the data. (Real fragments are sent in
// the dataplane's netns tests.)
func TestNotFragmented(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"udp6", "udp6", "[::1]:0"},
		{"dual-stack socket, IPv4 peer", "udp", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listenT(t, tc.network, tc.addr, Options{BatchSize: 4, ReportFragmented: true})
			s, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c.LocalAddr()))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for range 3 {
				if _, err := s.Write([]byte{0x80, 1, 2, 3}); err != nil {
					t.Fatal(err)
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			ms := make([]Message, 4)
			got := 0
			for got < 3 {
				for i := range ms {
					ms[i] = Message{Buf: make([]byte, 64), Fragmented: true}
				}
				n, err := c.ReadBatch(ms)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range ms[:n] {
					if m.Fragmented || m.N != 4 || m.Buf[0] != 0x80 {
						t.Errorf("message %+v", m)
					}
				}
				got += n
			}
		})
	}
}
