package benchkeys

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

func TestHandshakeFile(t *testing.T) {
	md := netip.MustParseAddrPort("198.18.0.1:5004")
	var kd keydist.Fingerprint
	kd[0] = 0xab
	f, err := GenerateHandshake(Profile, 3, netip.MustParseAddr("198.18.0.2"), 40000, md, kd)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Handshake || len(g.Endpoints) != 3 || len(g.Endpoints[0].ClientKey) != 0 {
		t.Fatalf("loaded %+v", g)
	}
	if fp, err := keydist.ParseFingerprint(g.KDFingerprint); err != nil || fp != kd {
		t.Fatalf("KD fingerprint %q: %v", g.KDFingerprint, err)
	}
	ids, err := g.Identities()
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if id.TLSID != f.Endpoints[i].TLSID || keydist.CertificateFingerprint(f.Endpoints[i].Cert) != id.Fingerprint() {
			t.Fatalf("identity %d does not round-trip", i)
		}
	}
	k := endpointsim.Keys{Profile: endpointsim.ProfileAEADAES128GCM,
		ClientKey: bytes.Repeat([]byte{1}, keyLen), ClientSalt: bytes.Repeat([]byte{2}, saltLen),
		ServerKey: bytes.Repeat([]byte{3}, keyLen), ServerSalt: bytes.Repeat([]byte{4}, saltLen)}
	e := &g.Endpoints[0]
	if err := g.SetKeys(0, &k); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ClientKeys(srtpfast.ProfileAEADAES128GCM); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ServerContext(); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeFileBad(t *testing.T) {
	md := netip.MustParseAddrPort("198.18.0.1:5004")
	tests := []struct {
		name  string
		edit  func(*File)
		error string
	}{
		{"no identity", func(f *File) { f.Endpoints[1].Cert = nil }, "no DTLS identity"},
		{"no tls-id", func(f *File) { f.Endpoints[0].TLSID = "" }, "no DTLS identity"},
		{"bad KD fingerprint", func(f *File) { f.KDFingerprint = "md5 00" }, "KD fingerprint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := GenerateHandshake(Profile, 2, netip.MustParseAddr("198.18.0.2"), 40000, md, keydist.Fingerprint{})
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(f)
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := f.Write(path); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("Load: %v, want %q", err, tc.error)
			}
		})
	}
}

// TestDoubleHandshakeFile: a double handshake file has its end-to-end key
// but no salt until the KD's EKTKey gives the conference's; the keys set
// are the hop-by-hop halves.
func TestDoubleHandshakeFile(t *testing.T) {
	md := netip.MustParseAddrPort("198.18.0.1:5004")
	f, err := GenerateHandshake(ProfileDouble, 2, netip.MustParseAddr("198.18.0.2"), 40000, md, keydist.Fingerprint{1})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.E2EKey) != keyLen || f.E2ESalt != nil {
		t.Fatalf("e2e key %d octets, salt %x", len(f.E2EKey), f.E2ESalt)
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	single := endpointsim.Keys{Profile: endpointsim.ProfileAEADAES128GCM}
	if err := g.SetKeys(0, &single); err == nil {
		t.Fatal("single-profile keys accepted in a double file")
	}
	k := endpointsim.Keys{Profile: endpointsim.ProfileDoubleAEADAES128GCM,
		ClientKey: bytes.Repeat([]byte{1}, keyLen), ClientSalt: bytes.Repeat([]byte{2}, saltLen),
		ServerKey: bytes.Repeat([]byte{3}, keyLen), ServerSalt: bytes.Repeat([]byte{4}, saltLen)}
	for i := range g.Endpoints {
		if err := g.SetKeys(i, &k); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.SetE2ESalt(bytes.Repeat([]byte{5}, 14)); err != nil {
		t.Fatal(err)
	}
	g.Handshake = false
	if err := g.check(); err != nil {
		t.Fatal(err)
	}
	if dk, err := g.DoubleKeys(1); err != nil || len(dk.E2ESalt) != saltLen {
		t.Fatalf("double keys: %v", err)
	}
}
