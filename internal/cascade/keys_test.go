package cascade

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

func TestTag(t *testing.T) {
	// Independent computation of the definition.
	sum := sha256.Sum256([]byte("mdfast cascade tag v1" + "room-1"))
	if got, want := Tag("room-1"), binary.BigEndian.Uint32(sum[:4]); got != want {
		t.Fatalf("Tag(room-1) = %#x, want %#x", got, want)
	}
	seen := map[uint32]string{}
	for _, n := range []string{"", "a", "b", "room-1", "room-2", "a/b", "ü"} {
		tg := Tag(n)
		if tg == 0 {
			t.Fatalf("Tag(%q) = 0", n)
		}
		if o, ok := seen[tg]; ok {
			t.Fatalf("Tag(%q) = Tag(%q)", n, o)
		}
		seen[tg] = n
	}
}

// rtp returns a plain RTP packet whose payload ends in an empty OHB
// (valid for the double profile's outer layer too).
func rtp(ssrc uint32, seq uint16) []byte {
	p := make([]byte, 12+40)
	p[0] = 0x80
	p[1] = 96
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	for i := 12; i < len(p)-1; i++ {
		p[i] = byte(i)
	}
	return p
}

// opens reports whether recv opens what send sealed.
func opens(t *testing.T, send, recv *srtpfast.Keys) bool {
	t.Helper()
	plain := rtp(0x1234, 7)
	sealed, err := send.SealRTP(nil, nil, plain, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, err := srtpfast.NewOpener(recv, 4).OpenRTP(sealed)
	if err != nil {
		return false
	}
	if !bytes.Equal(sealed[:info.Len], plain) {
		t.Fatal("opened packet differs from the sealed one")
	}
	return true
}

func TestDeriveKeys(t *testing.T) {
	ekm := make([]byte, ExportLen)
	for i := range ekm {
		ekm[i] = byte(i * 7)
	}
	keep := bytes.Clone(ekm)
	for _, double := range []bool{false, true} {
		cs, cr, err := DeriveKeys(ekm, true, "room-1", double)
		if err != nil {
			t.Fatal(err)
		}
		ss, sr, err := DeriveKeys(ekm, false, "room-1", double)
		if err != nil {
			t.Fatal(err)
		}
		want := srtpfast.ProfileAEADAES128GCM
		if double {
			want = srtpfast.ProfileDoubleAEADAES128GCM
		}
		if cs.Profile() != want || sr.Profile() != want {
			t.Fatalf("double=%v: profile %v, want %v", double, cs.Profile(), want)
		}
		if !opens(t, cs, sr) || !opens(t, ss, cr) {
			t.Fatalf("double=%v: the two sides' keys do not match", double)
		}
		if opens(t, cs, cr) {
			t.Fatalf("double=%v: both directions have the same key", double)
		}
		_, or, err := DeriveKeys(ekm, false, "room-2", double)
		if err != nil {
			t.Fatal(err)
		}
		if opens(t, cs, or) {
			t.Fatalf("double=%v: two conferences share a key", double)
		}
		other := bytes.Clone(ekm)
		other[0] ^= 1
		_, xr, _ := DeriveKeys(other, false, "room-1", double)
		if opens(t, cs, xr) {
			t.Fatalf("double=%v: the key does not depend on the keying material", double)
		}
	}
	if !bytes.Equal(ekm, keep) {
		t.Fatal("DeriveKeys modified its input")
	}
	if _, _, err := DeriveKeys(ekm[:ExportLen-1], true, "x", false); err == nil {
		t.Fatal("short keying material accepted")
	}
}

func TestIsClientHello(t *testing.T) {
	hello := make([]byte, 14)
	hello[0], hello[13] = 22, 1
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"client hello", hello, true},
		{"empty", nil, false},
		{"short", hello[:13], false},
		{"epoch 1", func() []byte { b := bytes.Clone(hello); b[4] = 1; return b }(), false},
		{"application data", func() []byte { b := bytes.Clone(hello); b[0] = 23; return b }(), false},
		{"server hello", func() []byte { b := bytes.Clone(hello); b[13] = 2; return b }(), false},
	}
	for _, c := range cases {
		if got := isClientHello(c.b); got != c.want {
			t.Errorf("%s: isClientHello = %v, want %v", c.name, got, c.want)
		}
	}
}
