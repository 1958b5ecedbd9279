package benchkeys

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/internal/cascade"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

var cascadeMDs = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:5004"), netip.MustParseAddrPort("198.18.0.3:5004")}

func TestCascadeWriteLoad(t *testing.T) {
	for _, profile := range []string{Profile, ProfileDouble} {
		t.Run(profile, func(t *testing.T) {
			f, err := GenerateCascade(profile, 5, netip.MustParseAddr("198.18.0.2"), 40000, cascadeMDs, []int{0, 0, 1, 1, 1})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "keys.json")
			if err := f.Write(p); err != nil {
				t.Fatal(err)
			}
			g, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if g.MDCount() != 2 || g.MD != cascadeMDs[0] || g.MDOf(1) != cascadeMDs[0] || g.MDOf(2) != cascadeMDs[1] {
				t.Fatalf("MDs: count %d, MD %s, endpoint 1 at %s, 2 at %s", g.MDCount(), g.MD, g.MDOf(1), g.MDOf(2))
			}
			if m0, m1 := g.Members(0), g.Members(1); len(m0) != 2 || len(m1) != 3 || m1[0] != 2 {
				t.Fatalf("members %v %v", m0, m1)
			}
			l0, err := g.Links(0)
			if err != nil {
				t.Fatal(err)
			}
			l1, err := g.Links(1)
			if err != nil {
				t.Fatal(err)
			}
			if len(l0) != 1 || len(l1) != 1 || l0[0].Peer != 1 || l0[0].Addr != cascadeMDs[1] || l1[0].Addr != cascadeMDs[0] ||
				l0[0].Tag != cascade.Tag("bench-1") || l1[0].Tag != l0[0].Tag {
				t.Fatalf("links %+v %+v", l0, l1)
			}
			if l0[0].Send.Profile() != g.SRTPProfile() {
				t.Fatalf("link profile %v, want %v", l0[0].Send.Profile(), g.SRTPProfile())
			}
			// Each direction opens with the other side's keys, and only
			// with them.
			if !linkOpens(t, l0[0].Send, l1[0].Recv) || !linkOpens(t, l1[0].Send, l0[0].Recv) {
				t.Fatal("a link direction does not open on the other MD")
			}
			if linkOpens(t, l0[0].Send, l0[0].Recv) {
				t.Fatal("both directions have the same key")
			}
		})
	}
}

// linkOpens reports whether recv opens what send sealed.
func linkOpens(t *testing.T, send, recv *srtpfast.Keys) bool {
	t.Helper()
	plain := make([]byte, 12+40)
	plain[0], plain[1] = 0x80, 96
	binary.BigEndian.PutUint32(plain[8:], 0x1234)
	sealed, err := send.SealRTP(nil, nil, plain, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = srtpfast.NewOpener(recv, 4).OpenRTP(sealed)
	return err == nil
}

// TestLinksAreCascadeKeys: a file's links carry internal/cascade's keys
// and tag for the pair's keying material, the smaller index as the DTLS
// client; every pair has its own material.
func TestLinksAreCascadeKeys(t *testing.T) {
	mds := append(slices.Clone(cascadeMDs), netip.MustParseAddrPort("198.18.0.5:5004"))
	f, err := GenerateCascade(Profile, 3, netip.MustParseAddr("198.18.0.2"), 40000, mds, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	ekm, err := pairEKM(f.Cascade.Secret, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	send, recv, err := cascade.DeriveKeys(ekm, true, f.Cascade.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	l0, err := f.Links(0)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := f.Links(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(l0) != 2 || l0[1].Peer != 2 || l2[0].Peer != 0 || l0[1].Tag != cascade.Tag(f.Cascade.Name) {
		t.Fatalf("links %+v, %+v", l0, l2)
	}
	// MD 0 is the client of the pair (0, 2): cascade's client send key
	// seals what MD 2 opens, and its client recv key opens what MD 2
	// seals; and MD 0's own keys pair with MD 2's.
	if !linkOpens(t, send, l2[0].Recv) || !linkOpens(t, l2[0].Send, recv) || linkOpens(t, send, l0[1].Recv) ||
		!linkOpens(t, l0[1].Send, l2[0].Recv) || !linkOpens(t, l2[0].Send, l0[1].Recv) {
		t.Fatal("links are not cascade.DeriveKeys of the pair's keying material")
	}
	// Pair (0, 1) has other keys than pair (0, 2).
	if linkOpens(t, l0[0].Send, l2[0].Recv) {
		t.Fatal("two pairs share a link key")
	}
	other, err := pairEKM(f.Cascade.Secret, 0, 1)
	if err != nil || len(other) != ExportLen || slices.Equal(other, ekm) {
		t.Fatalf("pair keying material: %d octets, equal %v, %v", len(other), slices.Equal(other, ekm), err)
	}
}

func TestCascadeBad(t *testing.T) {
	good, err := GenerateCascade(Profile, 3, netip.MustParseAddr("198.18.0.2"), 40000, cascadeMDs, []int{0, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(f *File)
	}{
		{"one MD", "at least 2", func(f *File) { f.Cascade.MDs = f.Cascade.MDs[:1] }},
		{"short secret", "secret", func(f *File) { f.Cascade.Secret = f.Cascade.Secret[:8] }},
		{"no name", "name", func(f *File) { f.Cascade.Name = "" }},
		{"duplicate MD", "duplicate", func(f *File) { f.Cascade.MDs[1] = f.Cascade.MDs[0] }},
		{"MD without port", "bad or duplicate", func(f *File) { f.Cascade.MDs[1] = netip.AddrPortFrom(f.Cascade.MDs[1].Addr(), 0) }},
		{"endpoint at a missing MD", "at MD 2", func(f *File) { f.Endpoints[2].MD = 2 }},
		{"negative MD", "at MD -1", func(f *File) { f.Endpoints[0].MD = -1 }},
		{"MD without cascade", "without a cascade", func(f *File) { f.Cascade = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(good)
			var f File
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			tc.edit(&f)
			p := filepath.Join(t.TempDir(), "keys.json")
			b, _ = json.Marshal(&f)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := GenerateCascade(Profile, 3, netip.MustParseAddr("198.18.0.2"), 40000, cascadeMDs, []int{0, 1}); err == nil {
		t.Fatal("GenerateCascade with a short assignment")
	}
	if _, err := good.Links(2); err == nil {
		t.Fatal("links of MD 2 of 2")
	}
	if _, err := (&File{}).Links(0); err == nil {
		t.Fatal("links without a cascade")
	}
}
