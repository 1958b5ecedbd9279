package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Interop with OpenSSL's s_client and s_server: Debian 12's OpenSSL 3.0 for
// the single profiles, and OpenSSL 3.5 (Debian 13, fetched into a private
// directory by scripts/openssl35.sh) for the RFC 8723 double profiles. Both
// sides export EXTRACTOR-dtls_srtp and the material must be equal.

// openSSLProfileNames are OpenSSL's names of the SRTP profiles.
var openSSLProfileNames = map[uint16]string{
	SRTPAES128CMHMACSHA180: "SRTP_AES128_CM_SHA1_80",
	SRTPAEADAES128GCM:      "SRTP_AEAD_AES_128_GCM",
	SRTPAEADAES256GCM:      "SRTP_AEAD_AES_256_GCM",
	SRTPDoubleAES128GCM:    "SRTP_DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM",
	SRTPDoubleAES256GCM:    "SRTP_DOUBLE_AEAD_AES_256_GCM_AEAD_AES_256_GCM",
}

// srtpMaterialLen is 2*(key+salt) of a profile (RFC 5764 section 4.2).
var srtpMaterialLen = map[uint16]int{
	SRTPAES128CMHMACSHA180: 2 * (16 + 14),
	SRTPAEADAES128GCM:      2 * (16 + 12),
	SRTPAEADAES256GCM:      2 * (32 + 12),
	SRTPDoubleAES128GCM:    2 * (32 + 24),
	SRTPDoubleAES256GCM:    2 * (64 + 24),
}

// openSSL returns the path of an openssl binary: the system's, or the 3.5
// one when double is true.
func openSSL(t *testing.T, double bool) string {
	t.Helper()
	if !double {
		p, err := exec.LookPath("openssl")
		if err != nil {
			t.Fatalf("openssl is not installed (scripts/deps.sh installs it): %v", err)
		}
		return p
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(root, "scripts", "openssl35.sh")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("OpenSSL 3.5 for the double profiles: scripts/openssl35.sh: %v: %s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// writePEM writes cert and key of c into dir and returns their paths.
func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

var keyingMaterialRE = regexp.MustCompile(`Keying material: ([0-9A-Fa-f]+)`)

func keyingMaterial(t *testing.T, out string) []byte {
	t.Helper()
	m := keyingMaterialRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no keying material in OpenSSL's output:\n%s", out)
	}
	b, err := hex.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func localUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

type opensslCase struct {
	profile uint16
	cert    string // "p256" or "rsa": both sides
}

func opensslCases(double bool) []opensslCase {
	var cs []opensslCase
	profiles := []uint16{SRTPAEADAES128GCM, SRTPAEADAES256GCM}
	if double {
		profiles = []uint16{SRTPDoubleAES128GCM, SRTPDoubleAES256GCM}
	}
	for _, p := range profiles {
		for _, cert := range []string{"p256", "rsa"} {
			cs = append(cs, opensslCase{p, cert})
		}
	}
	return cs
}

func TestOpenSSLClientAgainstOurServer(t *testing.T) {
	for _, double := range []bool{false, true} {
		bin := openSSL(t, double)
		for _, tc := range opensslCases(double) {
			t.Run(fmt.Sprintf("%s/%s", openSSLProfileNames[tc.profile], tc.cert), func(t *testing.T) {
				dir := t.TempDir()
				cc, sc := testCert(t, tc.cert), testCert(t, tc.cert)
				if tc.cert == "p256" {
					cc = testCert(t, "p256b")
				}
				cf, kf := writePEM(t, dir, "client", cc)
				scfg := &Config{Certificate: sc, VerifyPeer: pinned(cc), SRTPProfiles: []uint16{tc.profile}}
				s, err := NewServer(scfg, []byte("openssl"))
				if err != nil {
					t.Fatal(err)
				}
				pc := localUDP(t)
				n := srtpMaterialLen[tc.profile]
				// s_client sends close_notify as soon as it is done: export
				// when the handshake completes.
				exported := make(chan []byte, 1)
				r := RunPacketConn(pc, nil, s, func(ev Event) {
					if ev.Kind == EventHandshakeComplete {
						k, err := s.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n)
						if err != nil {
							t.Error(err)
						}
						exported <- k
					}
				})
				defer r.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "s_client", "-dtls1_2", "-connect", pc.LocalAddr().String(),
					"-cert", cf, "-key", kf, "-use_srtp", openSSLProfileNames[tc.profile],
					"-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", fmt.Sprint(n))
				cmd.Stdin = strings.NewReader("")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("s_client: %v\n%s", err, out)
				}
				if err := r.Handshake(ctx); err != nil {
					t.Fatalf("our server: %v\n%s", err, out)
				}
				ours := <-exported
				if theirs := keyingMaterial(t, string(out)); !bytes.Equal(ours, theirs) {
					t.Fatalf("exported keying material differs:\nours   %x\nOpenSSL %x", ours, theirs)
				}
				if !strings.Contains(string(out), "SRTP Extension negotiated, profile="+openSSLProfileNames[tc.profile]) {
					t.Fatalf("OpenSSL did not report the profile:\n%s", out)
				}
			})
		}
	}
}

func TestOurClientAgainstOpenSSLServer(t *testing.T) {
	for _, double := range []bool{false, true} {
		bin := openSSL(t, double)
		for _, tc := range opensslCases(double) {
			t.Run(fmt.Sprintf("%s/%s", openSSLProfileNames[tc.profile], tc.cert), func(t *testing.T) {
				dir := t.TempDir()
				cc, sc := testCert(t, tc.cert), testCert(t, tc.cert)
				if tc.cert == "p256" {
					cc = testCert(t, "p256b")
				}
				sf, skf := writePEM(t, dir, "server", sc)
				cf, _ := writePEM(t, dir, "client", cc)
				// A free port: bind, note, release (s_server binds it next).
				probe := localUDP(t)
				addr := probe.LocalAddr().(*net.UDPAddr)
				probe.Close()
				n := srtpMaterialLen[tc.profile]
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "s_server", "-dtls1_2", "-accept", addr.String(), "-naccept", "1",
					"-cert", sf, "-key", skf, "-Verify", "1", "-CAfile", cf, "-use_srtp", openSSLProfileNames[tc.profile],
					"-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", fmt.Sprint(n))
				stdin, err := cmd.StdinPipe() // s_server quits at EOF on stdin
				if err != nil {
					t.Fatal(err)
				}
				var out syncBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
				for !strings.Contains(out.String(), "ACCEPT") {
					if ctx.Err() != nil {
						t.Fatalf("s_server did not start:\n%s", out.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
				ccfg := &Config{Certificate: cc, VerifyPeer: pinned(sc), SRTPProfiles: []uint16{tc.profile}, RetransmitTimeout: 200 * time.Millisecond}
				c, err := NewClient(ccfg)
				if err != nil {
					t.Fatal(err)
				}
				r := RunPacketConn(localUDP(t), addr, c, nil)
				if err := r.Handshake(ctx); err != nil {
					r.Close()
					t.Fatalf("our client: %v\n%s", err, out.String())
				}
				var ours []byte
				_ = r.Do(func(c *Conn) { ours, err = c.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, n) })
				if err != nil {
					t.Fatal(err)
				}
				r.Close() // close_notify
				_ = stdin.Close()
				_ = cmd.Wait()
				if theirs := keyingMaterial(t, out.String()); !bytes.Equal(ours, theirs) {
					t.Fatalf("exported keying material differs:\nours   %x\nOpenSSL %x\n%s", ours, theirs, out.String())
				}
				if !strings.Contains(out.String(), "SRTP Extension negotiated, profile="+openSSLProfileNames[tc.profile]) {
					t.Fatalf("OpenSSL did not report the profile:\n%s", out.String())
				}
			})
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
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

var _ io.Writer = (*syncBuffer)(nil)
