package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/identity"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/internal/testutil"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestJoinEndpointTLS runs the daemon with its join endpoint over TLS and
// a fake MD control API: an offer posted over HTTPS with a minted token is
// answered with the KD's fingerprint and the configured candidate, and the
// MD got the session with the control token.
func TestJoinEndpointTLS(t *testing.T) {
	// run's signal.Notify starts os/signal's process-wide goroutine, which
	// never ends: start it before counting.
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGUSR2)
	signal.Stop(warm)
	testutil.CheckGoroutines(t)
	dir := t.TempDir()
	files, err := syssim.WriteFiles(dir, net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Path(syssim.RegistryFile), []byte("conferences:\n  - id: web\n    allow_legacy: true\n    endpoints: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	webCert, err := identity.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := syssim.WriteTLSCert(dir, "join", webCert); err != nil {
		t.Fatal(err)
	}
	const secret = "cmd-keydist-join-secret-0123456789abcdef"
	if err := os.WriteFile(files.Path("join.secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var puts []string
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+files.ControlToken() || r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/v1/sessions/") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		puts = append(puts, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer md.Close()
	joinAddr := freePort(t)
	args := append(files.KeydistArgs("127.0.0.1:0", freePort(t)),
		"-join-listen", joinAddr, "-join-tls-cert", files.Path("join.crt"), "-join-tls-key", files.Path("join.key"),
		"-join-secret-file", files.Path("join.secret"), "-md-control-url", md.URL,
		"-md-control-token-file", files.Path("control.token"), "-md-media-addr", "127.0.0.1:5004")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	tok, err := keydist.MintJoinToken([]byte(secret), "web", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	offer := "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\n" +
		"a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], webCert.Certificate[0]) {
				return errors.New("not the join endpoint's certificate")
			}
			return nil
		}}}}
	defer client.CloseIdleConnections()
	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("POST", "https://"+joinAddr+"/v1/join/web", strings.NewReader(offer))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/sdp")
		if resp, err = client.Do(req); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("POST over TLS: %v\n%s", err, stderr.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	kdFP, _, _ := strings.Cut(strings.TrimPrefix(stdout.String(), "a=fingerprint:"), "\n")
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), "a=fingerprint:"+kdFP+"\r\n") ||
		!strings.Contains(string(body), " 127.0.0.1 5004 typ host\r\n") {
		t.Fatalf("%d, KD %q:\n%s", resp.StatusCode, kdFP, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(puts) != 1 || !strings.Contains(puts[0], `"conference":"web"`) || !strings.Contains(puts[0], `"remote_ufrag":"abcd"`) {
		t.Fatalf("MD PUTs %q", puts)
	}
}
