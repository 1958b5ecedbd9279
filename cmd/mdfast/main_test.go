package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/tunnel/tunneltest"
)

// childEnv makes the test binary run main() instead of the tests, so that
// subprocess tests exercise the real command: its flags, signals and exit
// status (built with -race when the tests are).
const childEnv = "MDFAST_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command returns the test binary set up to run "mdfast args...", without
// an inherited MDFAST_CONTROL_TOKEN.
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MDFAST_CONTROL_TOKEN=") && !strings.HasPrefix(e, childEnv+"=") && !strings.HasPrefix(e, "GORACE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	// Under -race the runtime sleeps 1 s before exiting unless told not to.
	cmd.Env = append(cmd.Env, childEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pki is a tunnel CA, the MD's certificate and key, and a control token,
// written as files in dir.
type pki struct {
	ca                    *tunneltest.CA
	dir                   string
	caFile, certFile, key string
	tokenFile, shortToken string
	junkFile, missingFile string
}

func writePKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := tunneltest.NewCA(t, "mdfast test CA")
	md := ca.Leaf(t, "md")
	keyDER, err := x509.MarshalPKCS8PrivateKey(md.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{
		ca: ca, dir: dir,
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "md.crt"), key: filepath.Join(dir, "md.key"),
		tokenFile: filepath.Join(dir, "token"), shortToken: filepath.Join(dir, "short-token"),
		junkFile: filepath.Join(dir, "junk.pem"), missingFile: filepath.Join(dir, "missing.pem"),
	}
	for path, data := range map[string][]byte{
		p.caFile:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}),
		p.certFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: md.Certificate[0]}),
		p.key:        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		p.tokenFile:  []byte("0123456789abcdef0123456789abcdef\n"),
		p.shortToken: []byte("short\n"),
		p.junkFile:   []byte("not a certificate\n"),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// yaml returns a valid configuration file body; extra lines are appended
// (a key given twice is a YAML error, so callers pass only new keys).
func (p *pki) yaml(extra ...string) string {
	lines := []string{
		"mode: socket",
		"kd: [127.0.0.1:5740]",
		"kd-server-name: kd",
		"tunnel-cert: " + p.certFile,
		"tunnel-key: " + p.key,
		"tunnel-ca: " + p.caFile,
		"control-token-file: " + p.tokenFile,
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

func (p *pki) writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if err := dispatch(context.Background(), []string{"version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "mdfast ") || len(strings.TrimSpace(got)) <= len("mdfast ") {
		t.Errorf("version printed %q", got)
	}

	old := version
	version = "v1.2.3-test"
	t.Cleanup(func() { version = old })
	out.Reset()
	if err := dispatch(context.Background(), []string{"version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "mdfast v1.2.3-test\n" {
		t.Errorf("version with -X main.version printed %q", got)
	}
}

func TestDispatchUsage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
		help    bool
	}{
		{"no subcommand", nil, true, true},
		{"help", []string{"help"}, false, false},
		{"unknown", []string{"serve"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := dispatch(context.Background(), tc.args, &out, &errb)
			if (err != nil) != tc.wantErr || errors.Is(err, flag.ErrHelp) != tc.help {
				t.Fatalf("dispatch(%q) = %v", tc.args, err)
			}
			if !strings.Contains(out.String()+errb.String(), "usage: mdfast") {
				t.Errorf("no usage line: stdout %q stderr %q", out.String(), errb.String())
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	t.Setenv("MDFAST_CONTROL_TOKEN", "")
	p := writePKI(t)
	good := p.writeConfig(t, "good.yaml", p.yaml())

	var out, errb bytes.Buffer
	if err := checkConfig([]string{"-config", good}, &out, &errb); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if out.String() != "configuration OK\n" {
		t.Errorf("good config printed %q", out.String())
	}
	// Flags alone, no file.
	out.Reset()
	if err := checkConfig([]string{"-mode", "socket", "-kd", "127.0.0.1:5740", "-tunnel-cert", p.certFile,
		"-tunnel-key", p.key, "-tunnel-ca", p.caFile, "-control-listen", ""}, &out, &errb); err != nil {
		t.Fatalf("flags-only config: %v", err)
	}

	for _, tc := range []struct {
		name  string
		body  string
		args  []string
		field string // every named field must appear as "config: <field>:"
		want  string // or this substring
	}{
		{name: "mode", body: strings.Replace(p.yaml(), "mode: socket", "mode: turbo", 1), field: "mode"},
		{name: "xdp without interface", body: strings.Replace(p.yaml(), "mode: socket", "mode: xdp-native", 1), field: "interface"},
		{name: "xdp on a missing interface", body: strings.Replace(p.yaml(), "mode: socket", "mode: xdp-native\ninterface: mdf-missing0", 1), field: "interface"},
		{name: "auto on a missing interface", body: strings.Replace(p.yaml(), "mode: socket", "mode: auto\ninterface: mdf-missing0", 1), field: "interface"},
		{name: "duplicate port", body: p.yaml("media-ports: [5004, 5004]"), field: "media-ports"},
		{name: "kd not host:port", body: strings.Replace(p.yaml(), "127.0.0.1:5740", "nohost", 1), field: "kd"},
		{name: "missing CA file", body: strings.Replace(p.yaml(), p.caFile, p.missingFile, 1), field: "tunnel-ca"},
		{name: "CA without PEM", body: strings.Replace(p.yaml(), p.caFile, p.junkFile, 1), field: "tunnel-ca"},
		{name: "certificate not PEM", body: strings.Replace(p.yaml(), p.certFile, p.junkFile, 1), field: "tunnel-cert"},
		{name: "bad SPKI pin", body: p.yaml("kd-spki: [abcd]"), field: "kd-spki"},
		{name: "short token", body: strings.Replace(p.yaml(), p.tokenFile, p.shortToken, 1), field: "control-token-file"},
		{name: "no token", body: strings.Replace(p.yaml(), "control-token-file: "+p.tokenFile, "", 1), field: "control-token-file"},
		{name: "log level", body: p.yaml("log-level: loud"), field: "log-level"},
		{name: "bad mapping", body: p.yaml("mappings:", "  addrs:", "    not-an-address: room"), field: "mappings"},
		{name: "removed default-conference", body: p.yaml("default-conference: default"), field: "default-conference", want: "set single-conference: default"},
		{name: "single-conference too long", body: p.yaml("single-conference: " + strings.Repeat("x", 256)), field: "single-conference"},
		{name: "two fields at once", body: p.yaml("queues: 0", "idle-timeout: 10ms"), field: "queues|idle-timeout"},
		{name: "flag overrides file", body: p.yaml(), args: []string{"-batch-size", "0"}, field: "batch-size"},
		{name: "unknown key", body: p.yaml("idle-timout: 30s"), want: "idle-timout"},
		{name: "bad duration", body: p.yaml("idle-timeout: soon"), want: "line 8"},
		{name: "missing file", args: []string{"-config", p.missingFile}, want: "missing.pem"},
		{name: "stray argument", body: p.yaml(), args: []string{"extra"}, want: "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.body != "" {
				args = append([]string{"-config", p.writeConfig(t, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body)}, args...)
			}
			var out, errb bytes.Buffer
			err := checkConfig(args, &out, &errb)
			if err == nil {
				t.Fatalf("accepted; printed %q", out.String())
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on error", out.String())
			}
			if tc.field != "" {
				var fe *config.FieldError
				if !errors.As(err, &fe) {
					t.Errorf("error %v is no *config.FieldError", err)
				}
				for f := range strings.SplitSeq(tc.field, "|") {
					if !strings.Contains(err.Error(), "config: "+f+":") {
						t.Errorf("error %q does not name field %s", err, f)
					}
				}
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestCheckConfigExitStatus runs the command: 0 and "configuration OK" for
// a good file, 1 and the field on stderr for a bad one, 2 for -h.
func TestCheckConfigExitStatus(t *testing.T) {
	p := writePKI(t)
	good := p.writeConfig(t, "good.yaml", p.yaml())
	bad := p.writeConfig(t, "bad.yaml", p.yaml("queues: 0"))
	several := func(cert string) []string {
		return []string{"etcd-endpoints: [http://198.18.0.10:2379]", "md-id: md-1", "address: 198.18.0.1",
			"cascade-listen: 198.18.0.1:5800", "cascade-cert: " + cert, "cascade-key: " + p.key, "cascade-ca: " + p.caFile}
	}
	cascadeGood := p.writeConfig(t, "cascade.yaml", p.yaml(several(p.certFile)...))
	cascadeJunk := p.writeConfig(t, "cascade-junk.yaml", p.yaml(several(p.junkFile)...))
	cascadeAlone := p.writeConfig(t, "cascade-alone.yaml", p.yaml("cascade-listen: 198.18.0.1:5800"))
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrRE string
	}{
		{"good", []string{"check-config", "-config", good}, 0, "configuration OK\n", ""},
		{"bad", []string{"check-config", "-config", bad}, 1, "", "mdfast: config: queues: 0 is not in 1..1024"},
		{"help", []string{"check-config", "-h"}, 2, "", "-media-ports"},
		{"cascade", []string{"check-config", "-config", cascadeGood}, 0, "configuration OK\n", ""},
		{"cascade junk certificate", []string{"check-config", "-config", cascadeJunk}, 1, "", "mdfast: config: cascade-cert:"},
		{"cascade without etcd", []string{"check-config", "-config", cascadeAlone}, 1, "", "mdfast: config: cascade-listen: needs etcd-endpoints"},
		{"version", []string{"version"}, 0, "mdfast ", ""},
		{"unknown", []string{"frobnicate"}, 1, "", `unknown subcommand "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := command(t.Context(), tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr %q", code, tc.code, errb.String())
			}
			if !strings.HasPrefix(out.String(), tc.stdout) || (tc.stdout == "" && out.Len() != 0) {
				t.Errorf("stdout %q, want prefix %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderrRE) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.stderrRE)
			}
		})
	}
}
