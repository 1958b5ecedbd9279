package benchkeys

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
)

func TestWriteLoad(t *testing.T) {
	f, err := Generate(3, netip.MustParseAddr("198.18.0.2"), 40000, netip.MustParseAddrPort("198.18.0.1:5004"))
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
	if len(g.Endpoints) != 3 || g.Endpoints[2].Addr.Port() != 40002 || !bytes.Equal(g.Endpoints[1].ServerKey, f.Endpoints[1].ServerKey) {
		t.Fatalf("loaded %+v", g)
	}
	// srtpfast and pion agree on the same keys (the forwarders use one,
	// the endpoints the other).
	e := &g.Endpoints[0]
	k, err := e.ClientKeys()
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
