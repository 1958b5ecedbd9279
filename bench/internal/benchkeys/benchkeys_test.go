package benchkeys

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// generateWriteLoad generates n endpoints of profile, writes and loads
// them, and returns both.
func generateWriteLoad(t *testing.T, profile string, n int) (f, g *File) {
	t.Helper()
	f, err := GenerateProfile(profile, n, netip.MustParseAddr("198.18.0.2"), 40000, netip.MustParseAddrPort("198.18.0.1:5004"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "keys.json")
	if err := f.Write(p); err != nil {
		t.Fatal(err)
	}
	if g, err = Load(p); err != nil {
		t.Fatal(err)
	}
	return f, g
}

func TestWriteLoad(t *testing.T) {
	f, g := generateWriteLoad(t, Profile, 3)
	if len(g.Endpoints) != 3 || g.Endpoints[2].Addr.Port() != 40002 || !bytes.Equal(g.Endpoints[1].ServerKey, f.Endpoints[1].ServerKey) {
		t.Fatalf("loaded %+v", g)
	}
	// srtpfast and pion agree on the same keys (the forwarders use one,
	// the endpoints the other).
	e := &g.Endpoints[0]
	k, err := e.ClientKeys(srtpfast.ProfileAEADAES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 9, SSRC: e.SSRC}, Payload: []byte("hello")}).Marshal()
	enc, err := k.SealRTP(nil, nil, pkt, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := e.ClientContext()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := ctx.DecryptRTP(nil, enc, nil)
	if err != nil || !bytes.Equal(dec, pkt) {
		t.Fatalf("pion could not open srtpfast's packet: %v", err)
	}
}

func TestLoadBad(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":    "{",
		"no profile":  `{"endpoints":[{"addr":"1.2.3.4:5"}]}`,
		"no endpoint": `{"profile":"AEAD_AES_128_GCM"}`,
		"short key":   `{"profile":"AEAD_AES_128_GCM","endpoints":[{"addr":"1.2.3.4:5","client_key":"AAAA"}]}`,
	} {
		p := filepath.Join(dir, "k.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestDouble: a double file round-trips with its end-to-end key, the
// forwarder's keys are the outer halves under 0x0009, and a packet the
// endpoint side seals opens at the forwarder.
func TestDouble(t *testing.T) {
	f, g := generateWriteLoad(t, ProfileDouble, 2)
	if !g.IsDouble() || g.SRTPProfile() != srtpfast.ProfileDoubleAEADAES128GCM || !bytes.Equal(g.E2EKey, f.E2EKey) {
		t.Fatalf("loaded %+v", g)
	}
	k, err := g.Endpoints[1].ClientKeys(g.SRTPProfile())
	if err != nil {
		t.Fatal(err)
	}
	dk, err := g.DoubleKeys(1)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := double.New(dk)
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 9, SSRC: g.Endpoints[1].SSRC}, Payload: []byte("hello")}).Marshal()
	wire, err := ep.Seal(nil, pkt, 0)
	if err != nil {
		t.Fatal(err)
	}
	if wire[len(wire)-1] != 0 {
		t.Fatal("no ShortEKTField at the end")
	}
	if _, err := srtpfast.NewOpener(k, 4).OpenRTP(wire[:len(wire)-1]); err != nil {
		t.Fatalf("forwarder could not open the outer layer: %v", err)
	}
	s, _ := Generate(2, netip.MustParseAddr("198.18.0.2"), 40000, netip.MustParseAddrPort("198.18.0.1:5004"))
	if _, err := s.DoubleKeys(0); err == nil {
		t.Fatal("double keys of a single-layer file")
	}
	g.E2ESalt = g.E2ESalt[:4]
	if err := g.check(); err == nil {
		t.Fatal("short end-to-end salt accepted")
	}
}
