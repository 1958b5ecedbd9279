package syssim

import (
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
)

func TestFilesAndRegistry(t *testing.T) {
	dir := t.TempDir()
	f, err := WriteFiles(dir, net.ParseIP("127.0.0.1"), net.ParseIP("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca.crt", "kd.crt", "kd.key", "md.crt", "md.key", "kd-dtls.crt", "kd-dtls.key", "control.token"} {
		if _, err := os.Stat(f.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	kdCert, err := keydist.LoadCertificate(f.Path("kd-dtls.crt"), f.Path("kd-dtls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if keydist.CertFingerprint(kdCert) != f.KDFingerprint {
		t.Fatal("KDFingerprint is not the written certificate's")
	}
	var ids []endpointsim.Identity
	for range 3 {
		id, err := endpointsim.NewIdentity(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := f.WriteRegistry("bench", ids); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Path(RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	confs, err := keydist.ParseRegistryFile(b)
	if err != nil {
		t.Fatalf("keydist does not accept the registry: %v\n%s", err, b)
	}
	if len(confs) != 1 || confs[0].ID != "bench" || len(confs[0].Endpoints) != 3 {
		t.Fatalf("registry parsed as %+v", confs)
	}
	// mdfast's own parser accepts the arguments (and the file they name).
	args := f.MDFastArgs(MD{Interface: "eth0", Mode: "socket", Address: "198.18.0.1", Port: 5004,
		KD: "127.0.0.1:5740", Metrics: "127.0.0.1:9542", Extra: []string{"-new-associations-per-second", "-1"}})
	if args[0] != "run" {
		t.Fatalf("args %q do not start with run", args)
	}
	c, _, err := config.Load("mdfast", args[1:], io.Discard)
	if err != nil {
		t.Fatalf("mdfast rejects %q: %v", args, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("mdfast rejects %q: %v", args, err)
	}
	if c.NewPerSecond != -1 || c.TunnelCert != f.Path("md.crt") || !slices.Equal(c.MediaPorts, []uint16{5004}) {
		t.Fatalf("parsed %+v", c)
	}
	// mdfast places every registered endpoint in the registry's
	// conference by its tls-id, and nothing else (no single-conference
	// mode: an endpoint the KD does not know is refused by the MD too).
	if c.SingleConference != "" || len(c.Mappings.TLSIDs) != len(ids) || len(c.Mappings.Addrs) != 0 {
		t.Fatalf("mdfast mappings %+v, single-conference %q", c.Mappings, c.SingleConference)
	}
	for _, id := range ids {
		if c.Mappings.TLSIDs[id.TLSID] != "bench" {
			t.Fatalf("tls-id %s mapped to %q", id.TLSID, c.Mappings.TLSIDs[id.TLSID])
		}
	}
	kargs := f.KeydistArgs("127.0.0.1:5740", "127.0.0.1:9541")
	if i := slices.Index(kargs, "-registry"); i < 0 || kargs[i+1] != f.Path(RegistryFile) {
		t.Fatalf("keydist args %q", kargs)
	}
}

func TestMetrics(t *testing.T) {
	body := `# HELP mdfast_packets_dropped_total x
mdfast_packets_dropped_total{queue="0",reason="auth"} 3
mdfast_packets_dropped_total{queue="1",reason="auth"} 0
mdfast_packets_dropped_total{queue="1",reason="replay"} 2
mdfast_packets_dropped_totalx{queue="1"} 9
mdfast_packets_forwarded_total 40
`
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"labelled", SumMetric(body, "mdfast_packets_dropped_total"), 5},
		{"plain", SumMetric(body, "mdfast_packets_forwarded_total"), 40},
		{"absent", SumMetric(body, "nothing"), 0},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	nz := NonZero(body, "mdfast_packets_dropped_total")
	if !slices.Equal(nz, []string{`{queue="0",reason="auth"} 3`, `{queue="1",reason="replay"} 2`}) {
		t.Errorf("NonZero = %q", nz)
	}
}
