package dataplane

import (
	"bytes"
	"testing"
)

// FuzzWorker feeds arbitrary datagrams, from a known sender and from a
// stranger, through the worker: none may panic, and nothing unauthenticated
// may be forwarded.
func FuzzWorker(f *testing.F) {
	fx := newFixture(f, 3)
	_, rtp := fx.eps[0].sealRTP(f, 40)
	_, rtcp := fx.eps[0].sealRTCP(f)
	for _, s := range [][]byte{rtp, rtcp, {22, 0xfe, 0xfd}, {0, 1}, {0x80}, {0x80, 200}, {0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff}} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, stranger bool) {
		fx := newFixture(t, 3)
		src := fx.eps[0].peer.Addr
		if stranger {
			src = addrs(4)[3]
		}
		if len(b) > 2000 {
			b = b[:2000]
		}
		valid := !stranger && (bytes.Equal(b, rtp) || bytes.Equal(b, rtcp)) // same keys: the fixture is deterministic
		fx.port.push(b, src)
		fx.poll(t)
		if bufs, _ := fx.port.sent(); len(bufs) != 0 && !valid {
			t.Fatalf("forwarded %d datagrams of unauthenticated input", len(bufs))
		}
	})
}
