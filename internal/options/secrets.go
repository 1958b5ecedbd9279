package options

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdfast/mdfast/internal/tunnel"
)

// Loading what the options name, the same way in both daemons.

// Token describes where an HTTP API's bearer token comes from: the
// environment variable Env, else the file named by the option FileOption.
type Token struct {
	API          string // "control API"
	Env          string // MDFAST_CONTROL_TOKEN
	FileOption   string // control-token-file
	ListenOption string // control-listen (empty disables the API)
	Min          int    // shortest token accepted, from either source
}

// Load returns the token: Env's value when set (and not blank), else file's
// content, both trimmed and at least t.Min characters long. File errors are
// *FieldErrors naming t.FileOption.
func (t Token) Load(file string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(t.Env)); v != "" {
		if len(v) < t.Min {
			return "", fmt.Errorf("%s is shorter than %d characters", t.Env, t.Min)
		}
		return v, nil
	}
	if file == "" {
		return "", &FieldError{Field: t.FileOption, Err: fmt.Errorf("the %s needs a token: %s or %s (or %s '' to disable it)", t.API, t.FileOption, t.Env, t.ListenOption)}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", &FieldError{Field: t.FileOption, Err: err}
	}
	v := strings.TrimSpace(string(b))
	if len(v) < t.Min {
		return "", &FieldError{Field: t.FileOption, Err: fmt.Errorf("token in %s shorter than %d characters", file, t.Min)}
	}
	return v, nil
}

// TunnelTLS is what the tunnel's TLS configuration is made of: the files
// of TunnelFiles and the peer policy.
type TunnelTLS struct {
	Cert, Key, CA string
	PinOption     string   // the option of SPKI, for errors
	SPKI          []string // peer SPKI SHA-256 pins (hex)
	Names         []string // peer certificate names allowed (server side)
	ServerName    string   // name expected in the server's certificate (client side)
}

// Config loads the certificate, key and CA bundle and returns the mutual
// TLS configuration of the tunnel. Errors are *FieldErrors naming the
// option at fault.
func (t TunnelTLS) Config() (*tls.Config, error) {
	if t.Cert == "" || t.Key == "" || t.CA == "" {
		return nil, &FieldError{Field: "tunnel-cert", Err: errors.New("tunnel-cert, tunnel-key and tunnel-ca are required (the tunnel is mutually authenticated)")}
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, &FieldError{Field: "tunnel-cert", Err: err}
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, &FieldError{Field: "tunnel-ca", Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &FieldError{Field: "tunnel-ca", Err: errors.New("no PEM certificate found")}
	}
	policy := tunnel.PeerPolicy{Names: t.Names}
	for _, s := range t.SPKI {
		f, err := tunnel.ParseSPKIFingerprint(s)
		if err != nil {
			return nil, &FieldError{Field: t.PinOption, Err: err}
		}
		policy.SPKI = append(policy.SPKI, f)
	}
	return tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{cert}, CAs: pool, Peer: policy, ServerName: t.ServerName})
}
