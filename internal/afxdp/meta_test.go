package afxdp

import (
	"encoding/binary"
	"testing"
)

// metaSocket is a Socket with a UMEM of four 2048-octet frames and nothing
// else: enough for Metadata and RxTime.
func metaSocket() *Socket {
	return &Socket{umem: make([]byte, 4*2048), frames: newFrames(4, 2048)}
}

// putMeta writes receive-time metadata in front of addr.
func putMeta(s *Socket, addr uint64, magic uint32, ns uint64) {
	m := s.umem[addr-RxMetaLen : addr]
	binary.NativeEndian.PutUint32(m[0:], magic)
	binary.NativeEndian.PutUint32(m[4:], 0)
	binary.NativeEndian.PutUint64(m[8:], ns)
}

func TestRxTime(t *testing.T) {
	const head = 256 // XDP_PACKET_HEADROOM: where copy mode puts packets
	for _, tc := range []struct {
		name  string
		addr  uint64
		magic uint32 // written in front of addr when addr allows
		want  int64
	}{
		{"metadata", 2048 + head, RxMetaMagic, 12345},
		{"first frame", head, RxMetaMagic, 12345},
		{"last frame", 3*2048 + head, RxMetaMagic, 12345},
		{"no magic", 2048 + head, 0, 0},
		{"other magic", 2048 + head, RxMetaMagic ^ 1, 0},
		{"exactly room", 2048 + RxMetaLen, RxMetaMagic, 12345},
		{"headroom too small", 2048 + RxMetaLen - 1, 0, 0},
		{"frame start", 2048, 0, 0},
		{"umem start", 0, 0, 0},
		{"outside umem", 4 * 2048, 0, 0},
		{"far outside", 1 << 62, 0, 0},
		{"max", ^uint64(0), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := metaSocket()
			if tc.magic != 0 {
				putMeta(s, tc.addr, tc.magic, 12345)
			}
			d := Desc{Addr: tc.addr, Len: 100}
			if got := s.RxTime(d); got != tc.want {
				t.Fatalf("RxTime = %d, want %d", got, tc.want)
			}
			// Read once: the marker is gone, a later packet without
			// metadata in the same frame has no time.
			if got := s.RxTime(d); got != 0 {
				t.Fatalf("second RxTime = %d, want 0", got)
			}
		})
	}
}

func TestMetadataBounds(t *testing.T) {
	s := metaSocket()
	for _, tc := range []struct {
		name string
		addr uint64
		n    int
		ok   bool
	}{
		{"16", 2048 + 256, 16, true},
		{"32", 2048 + 256, 32, true},
		{"33", 2048 + 256, 33, false},
		{"0", 2048 + 256, 0, false},
		{"negative", 2048 + 256, -1, false},
		{"crosses into previous frame", 2048 + 8, 16, false},
		{"outside", 4*2048 + 256, 16, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := s.Metadata(Desc{Addr: tc.addr}, tc.n)
			if (m != nil) != tc.ok || (m != nil && (len(m) != tc.n || cap(m) != tc.n)) {
				t.Fatalf("Metadata = %d octets (cap %d), want ok=%v", len(m), cap(m), tc.ok)
			}
		})
	}
}

// FuzzRxTime reads receive times from arbitrary UMEM contents at arbitrary
// addresses: no panic, and a time only where the marker was.
func FuzzRxTime(f *testing.F) {
	f.Add([]byte{0x6d, 0x64, 0x54, 0x31, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, uint64(2048+256))
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{1}, ^uint64(0))
	f.Fuzz(func(t *testing.T, fill []byte, addr uint64) {
		s := metaSocket()
		if len(fill) > 0 {
			for i := range s.umem {
				s.umem[i] = fill[i%len(fill)]
			}
		}
		d := Desc{Addr: addr}
		m := s.Metadata(d, RxMetaLen)
		marked := m != nil && binary.NativeEndian.Uint32(m) == RxMetaMagic
		if got := s.RxTime(d); got != 0 && !marked {
			t.Fatalf("time %d without a marker", got)
		}
		if s.RxTime(d) != 0 {
			t.Fatal("marker not cleared")
		}
	})
}
