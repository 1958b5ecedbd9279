package httpserve

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/identity"
	"github.com/mdfast/mdfast/internal/testutil"
)

func TestServeAndShutdown(t *testing.T) {
	testutil.CheckGoroutines(t)
	var failed []error
	g := New(slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { failed = append(failed, err) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	// Find the address it listens on by listening first ourselves.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := g.Serve(addr, mux, "test"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	// A second server on the same address fails with a named error.
	if err := g.Serve(addr, mux, "second"); err == nil || !strings.Contains(err.Error(), "second listener") {
		t.Fatalf("Serve on a used address: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	g.Shutdown()
	if _, err := http.Get("http://" + addr + "/x"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
	if len(failed) != 0 {
		t.Fatalf("shutdown reported as failure: %v", errors.Join(failed...))
	}
}

func TestServeTLS(t *testing.T) {
	testutil.CheckGoroutines(t)
	cert, err := identity.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g := New(nil, nil)
	defer g.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("served without TLS")
		}
		_, _ = io.WriteString(w, "ok")
	})
	if err := g.ServeTLS(addr, h, "test", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatal(err)
	}
	// The self-signed leaf names no host: the client pins it instead.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], cert.Certificate[0]) {
				return errors.New("not the server's certificate")
			}
			return nil
		}}}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
}
