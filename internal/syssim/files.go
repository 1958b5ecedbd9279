package syssim

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
)

// Files are the certificates, keys and token keydist and mdfast are
// started with, in one directory: ca.crt, kd.{crt,key} and md.{crt,key}
// (tunnel), kd-dtls.{crt,key} (the KD's DTLS certificate) and
// control.token (mdfast's control API).
type Files struct {
	// Dir holds the files.
	Dir string
	// KDFingerprint is the fingerprint of the KD's DTLS certificate, the
	// one endpoints check.
	KDFingerprint keydist.Fingerprint

	ca     *CA
	serial int64
}

// WriteFiles makes a CA and writes the files into dir: the KD's tunnel
// certificate for name "kd" at kdIP, the MD's for "md" at mdIP.
func WriteFiles(dir string, kdIP, mdIP net.IP) (*Files, error) {
	c, err := NewCA()
	if err != nil {
		return nil, err
	}
	if err := c.Write(dir); err != nil {
		return nil, err
	}
	if err := c.WriteLeaf(dir, "kd", kdIP, 2); err != nil {
		return nil, err
	}
	if err := c.WriteLeaf(dir, "md", mdIP, 3); err != nil {
		return nil, err
	}
	kdCert, err := keydist.GenerateCertificate(24 * time.Hour)
	if err != nil {
		return nil, fmt.Errorf("syssim: KD DTLS certificate: %w", err)
	}
	if err := WriteTLSCert(dir, "kd-dtls", kdCert); err != nil {
		return nil, err
	}
	f := &Files{Dir: dir, KDFingerprint: keydist.CertFingerprint(kdCert), ca: c, serial: 3}
	if err := os.WriteFile(f.Path("control.token"), []byte("demo-control-token-0123456789\n"), 0o600); err != nil {
		return nil, fmt.Errorf("syssim: control token: %w", err)
	}
	return f, nil
}

// WriteLeaf writes name.crt and name.key in Dir: one more certificate of
// the files' CA (ca.crt) for DNS name name at ip, e.g. the tunnel
// certificate of a second MD or the link certificate of a cascading MD.
func (f *Files) WriteLeaf(name string, ip net.IP) error {
	f.serial++
	return f.ca.WriteLeaf(f.Dir, name, ip, f.serial)
}

// Path is the path of the file name in f.Dir.
func (f *Files) Path(name string) string { return filepath.Join(f.Dir, name) }

// ControlToken is the bearer token of mdfast's control API (control.token).
func (f *Files) ControlToken() string { return "demo-control-token-0123456789" }

// RegistryFile is the registry's name in Dir.
const RegistryFile = "registry.yaml"

// MDConfigFile is the name in Dir of mdfast's configuration file (-config):
// the conference mappings that place every endpoint of the registry in its
// conference by its tls-id. mdfast refuses an endpoint no mapping places.
const MDConfigFile = "mdfast.yaml"

// Conference is a conference of the system and its endpoints.
type Conference struct {
	ID        string
	Endpoints []endpointsim.Identity
}

// WriteRegistry writes the KD's registry (Dir/registry.yaml) and mdfast's
// mappings (Dir/mdfast.yaml) for one conference, conference, with ids as
// its endpoints.
func (f *Files) WriteRegistry(conference string, ids []endpointsim.Identity) error {
	return f.WriteConferences([]Conference{{ID: conference, Endpoints: ids}})
}

// WriteConferences writes the KD's registry (Dir/registry.yaml) of confs
// and mdfast's configuration (Dir/mdfast.yaml) mapping each endpoint's
// tls-id to its conference, so that both daemons agree on who is where.
func (f *Files) WriteConferences(confs []Conference) error {
	var reg, md strings.Builder
	reg.WriteString("conferences:\n")
	md.WriteString("mappings:\n  tls-ids:\n")
	n := 0
	for _, c := range confs {
		fmt.Fprintf(&reg, "  - id: %s\n    endpoints:\n", c.ID)
		for i := range c.Endpoints {
			id := &c.Endpoints[i]
			fmt.Fprintf(&reg, "      - tls_id: %q\n        fingerprint: %q\n", id.TLSID, "sha-256 "+id.Fingerprint().String())
			fmt.Fprintf(&md, "    %q: %q\n", id.TLSID, c.ID)
			n++
		}
	}
	if n == 0 {
		md.Reset()
		md.WriteString("# no endpoints\n")
	}
	if err := os.WriteFile(f.Path(RegistryFile), []byte(reg.String()), 0o600); err != nil {
		return fmt.Errorf("syssim: registry: %w", err)
	}
	if err := os.WriteFile(f.Path(MDConfigFile), []byte(md.String()), 0o600); err != nil {
		return fmt.Errorf("syssim: mdfast mappings: %w", err)
	}
	return nil
}

// KeydistArgs are keydist's arguments: the tunnel listener at listen, the
// files of f, the registry, Prometheus at metrics, no admin API, and the
// KD's default profiles (the double ones with EKT, and the single ones).
func (f *Files) KeydistArgs(listen, metrics string) []string {
	return []string{
		"-listen", listen,
		"-tunnel-cert", f.Path("kd.crt"), "-tunnel-key", f.Path("kd.key"), "-tunnel-ca", f.Path("ca.crt"),
		"-dtls-cert", f.Path("kd-dtls.crt"), "-dtls-key", f.Path("kd-dtls.key"), "-registry", f.Path(RegistryFile),
		"-admin-listen", "", "-metrics-listen", metrics, "-journal", f.Path("kd-associations.journal"),
	}
}

// MD is how mdfast is started.
type MD struct {
	// Interface, Mode, Address and Port are its data plane: -interface,
	// -mode, -address, -media-ports.
	Interface, Mode, Address string
	Port                     int
	// KD is the Key Distributor's tunnel address.
	KD string
	// Metrics is the /metrics and /readyz listener.
	Metrics string
	// Cert names its tunnel certificate and key in Dir (default "md":
	// md.crt, md.key); Files.WriteLeaf makes more.
	Cert string
	// Extra are more arguments.
	Extra []string
}

// MDFastArgs are the arguments of `mdfast run` with md's settings, the
// mappings of Dir/mdfast.yaml (WriteRegistry, WriteConferences: no
// single-conference mode, every endpoint is placed by its tls-id), the
// tunnel files of f (the KD certificate named "kd") and a short reconnect
// backoff.
func (f *Files) MDFastArgs(md MD) []string {
	if md.Cert == "" {
		md.Cert = "md"
	}
	args := []string{"run", "-config", f.Path(MDConfigFile),
		"-interface", md.Interface, "-mode", md.Mode, "-address", md.Address, "-media-ports", strconv.Itoa(md.Port),
		"-kd", md.KD, "-kd-server-name", "kd",
		"-tunnel-cert", f.Path(md.Cert + ".crt"), "-tunnel-key", f.Path(md.Cert + ".key"), "-tunnel-ca", f.Path("ca.crt"),
		"-tunnel-backoff-max", "500ms", "-control-token-file", f.Path("control.token"), "-metrics-listen", md.Metrics,
		"-profiles", "0x0009,0x000A,0x0007,0x0008"}
	return append(args, md.Extra...)
}
