package dataplane

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// TestLinkTagParsers: the tag readers on bad input, and strip/insert as
// inverses.
func TestLinkTagParsers(t *testing.T) {
	hdr := func(cc int, extra ...byte) []byte {
		b := []byte{0x80 | byte(cc), 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}
		for i := range cc {
			b = append(b, 0, 0, byte(i>>8), byte(i+1))
		}
		return append(b, extra...)
	}
	for _, c := range []struct {
		name   string
		b      []byte
		tag    uint32
		reason Reason
	}{
		{"empty", nil, 0, DropMalformed},
		{"short header", []byte{0x81, 96, 0, 1}, 0, DropMalformed},
		{"no CSRC", hdr(0, 1, 2, 3), 0, DropLinkNoTag},
		{"CSRC count past the end", hdr(3)[:12+8], 0, DropMalformed},
		{"one CSRC", hdr(1), 1, 0},
		{"fifteen CSRCs", hdr(15, 9), 15, 0},
	} {
		tag, reason := rtpLinkTag(c.b)
		if tag != c.tag || reason != c.reason {
			t.Errorf("rtpLinkTag %s = %#x, %v; want %#x, %v", c.name, tag, reason, c.tag, c.reason)
		}
	}
	for _, c := range []struct {
		name   string
		b      []byte
		n      int
		tag    uint32
		reason Reason
	}{
		{"empty", nil, 0, 0, DropLinkNoTag},
		{"header only", []byte{0x80, 200, 0, 1, 0, 0, 0, 1}, 0, 0, DropLinkNoTag},
		{"header and tag", []byte{0x80, 200, 0, 1, 0, 0, 0, 1, 0xa, 0xb, 0xc, 0xd}, 8, 0x0a0b0c0d, 0},
	} {
		rest, tag, reason := rtcpLinkTag(c.b)
		if len(rest) != c.n || tag != c.tag || reason != c.reason {
			t.Errorf("rtcpLinkTag %s = %d octets, %#x, %v", c.name, len(rest), tag, reason)
		}
	}
	for cc := range 15 {
		for _, ext := range []bool{false, true} {
			orig := hdr(cc)
			if ext {
				orig[0] |= 0x10
				orig = append(orig, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0)
			}
			orig = append(orig, []byte("payload")...)
			withTag := insertLinkTag(make([]byte, 0, len(orig)+4), orig, 0xfeedf00d)
			if tag, reason := rtpLinkTag(withTag); reason != 0 || tag != 0xfeedf00d || int(withTag[0]&0x0f) != cc+1 {
				t.Fatalf("cc %d ext %t: tag %#x %v after insert", cc, ext, tag, reason)
			}
			if got := stripLinkTag(bytes.Clone(withTag)); !bytes.Equal(got, orig) {
				t.Fatalf("cc %d ext %t: strip(insert) = % x, want % x", cc, ext, got, orig)
			}
		}
	}
}

// linkFuzzFixture is two MDs linked for one conference, A on MD0 and B on
// MD1, with A's stream under way; held is a link datagram MD0 sent and
// MD1 has not seen yet.
type linkFuzzFixture struct {
	m    *mesh
	a, b *endpoint
	held []byte
}

func newLinkFuzzFixture(tb testing.TB, p srtpfast.Profile) *linkFuzzFixture {
	m := newMesh(tb, 2)
	r := rand.New(rand.NewPCG(5, 6))
	a := newEndpoint(tb, r, 1, netip.MustParseAddrPort("198.18.1.10:40000"))
	b := newEndpoint(tb, r, 2, netip.MustParseAddrPort("198.18.1.11:40000"))
	m.join(0, a.peer)
	m.join(1, b.peer)
	m.link(0, 1, p, 0x4c494e4b)
	_, w := a.sealRTP(tb, 50)
	m.send(0, w, a.peer.Addr)
	if len(m.take(b.peer.Addr)) != 1 {
		tb.Fatal("fixture: first packet not delivered")
	}
	f := &linkFuzzFixture{m: m, a: a, b: b}
	f.held = f.onLink(tb, true)
	return f
}

// onLink returns what MD0 sends on the link for A's next packet (SRTP or
// SRTCP), without delivering it.
func (f *linkFuzzFixture) onLink(tb testing.TB, rtp bool) []byte {
	var w []byte
	if rtp {
		_, w = f.a.sealRTP(tb, 60)
	} else {
		_, w = f.a.sealRTCP(tb)
	}
	md0 := f.m.mds[0]
	md0.port.reset()
	md0.port.push(w, f.a.peer.Addr)
	if err := md0.w.poll(); err != nil {
		tb.Fatal(err)
	}
	bufs, dsts := md0.port.sent()
	md0.port.reset()
	if len(bufs) != 1 || dsts[0] != f.m.mds[1].addr {
		tb.Fatalf("fixture: %d datagrams for the link", len(bufs))
	}
	return bytes.Clone(bufs[0])
}

// FuzzLinkReceive feeds arbitrary datagrams from the peer MD's media
// address into the receiving MD: none may panic or be forwarded unless it
// is a genuine link packet, and none may disturb the link: the genuine
// packet held back still opens and reaches B afterwards, and the key
// table's claims are those of the genuine packets only.
func FuzzLinkReceive(f *testing.F) {
	fx := newLinkFuzzFixture(f, srtpfast.ProfileAEADAES128GCM)
	f.Add(fx.onLink(f, true))
	f.Add(fx.onLink(f, false))
	f.Add(fx.held)
	for _, s := range [][]byte{{0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2}, {0x81, 96}, {0x8f, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4},
		{0x80, 200, 0, 1, 0, 0, 0, 1, 0x4c, 0x49, 0x4e, 0x4b}, {0x81, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x4c, 0x49, 0x4e, 0x4b}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 2000 {
			in = in[:2000]
		}
		fx := newLinkFuzzFixture(t, srtpfast.ProfileAEADAES128GCM)
		m := fx.m
		claims := m.mds[1].kt.Stats().SSRCClaims
		m.send(1, in, m.mds[0].addr)
		got := m.take(fx.b.peer.Addr)
		// The genuine packets: the one held back and those the seeds
		// took from an identical fixture (the keys are deterministic).
		ref := newLinkFuzzFixture(t, srtpfast.ProfileAEADAES128GCM)
		genuine := bytes.Equal(in, fx.held) || bytes.Equal(in, ref.onLink(t, true)) || bytes.Equal(in, ref.onLink(t, false))
		if len(got) != 0 && !genuine {
			t.Fatalf("forwarded %d datagrams of unauthenticated input", len(got))
		}
		if s := m.mds[1].kt.Stats(); s.SSRCClaims != claims || s.SSRCCollisions != 0 {
			t.Fatalf("the key table changed: %+v", s)
		}
		if bytes.Equal(in, fx.held) {
			return
		}
		m.send(1, fx.held, m.mds[0].addr)
		if got := m.take(fx.b.peer.Addr); len(got) != 1 {
			t.Fatalf("the genuine packet after %x: %d copies", in, len(got))
		}
	})
}
