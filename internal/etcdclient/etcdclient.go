// Package etcdclient builds the etcd v3 client both daemons use for the
// opt-in shared store (issue 14): the Media Distributors' directory
// (internal/directory) and the Key Distributor replicas' registry and EKT
// parameter sets (internal/keydist). One place validates the endpoints and
// the TLS files, so the two daemons accept the same configuration.
//
// Key layout under Config.Prefix (default DefaultPrefix), each subtree
// written by one side only:
//
//	<prefix>md/...   Media Distributors: liveness leases, which MD hosts
//	                 members of which conference (internal/directory)
//	<prefix>kd/...   Key Distributors: endpoint registry, EKT parameter
//	                 sets, sealed under a key only the KDs hold
//
// Writes whose operation lists grow with registered state (a conference's
// endpoints, an MD's hosted conferences) go through Chunks: etcd refuses a
// transaction of more than its --max-txn-ops operations.
//
// Production deployments give each side its own etcd user (RBAC) limited to
// its subtree, over TLS with client certificates; see the README.
package etcdclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultPrefix is the key prefix of everything mdfast keeps in etcd.
const DefaultPrefix = "/mdfast/v1/"

// DefaultDialTimeout bounds the first connection.
const DefaultDialTimeout = 5 * time.Second

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("etcd configuration")

// Config is how to reach the store.
type Config struct {
	// Endpoints are the members' client URLs (http:// or https://).
	Endpoints []string
	// Prefix of every key (default DefaultPrefix); must start and end
	// with "/".
	Prefix string
	// CAFile verifies the members' certificates (https endpoints);
	// CertFile and KeyFile are this client's certificate, both or neither.
	CAFile, CertFile, KeyFile string
	// Username and Password for etcd's own authentication (both or
	// neither); PasswordFile is read instead of Password when set.
	Username, PasswordFile string
	// DialTimeout (default DefaultDialTimeout).
	DialTimeout time.Duration
}

// Enabled reports whether a store is configured.
func (c Config) Enabled() bool { return len(c.Endpoints) > 0 }

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	tlsURL := false
	for _, e := range c.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%w: endpoint %q: want http://host:port or https://host:port", ErrConfig, e)
		}
		tlsURL = tlsURL || u.Scheme == "https"
	}
	p := c.prefix()
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("%w: prefix %q must start and end with \"/\"", ErrConfig, p)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: a client certificate needs both a cert and a key file", ErrConfig)
	}
	if (c.CAFile != "" || c.CertFile != "") && !tlsURL {
		return fmt.Errorf("%w: TLS files given but no https:// endpoint", ErrConfig)
	}
	if (c.Username == "") != (c.PasswordFile == "") {
		return fmt.Errorf("%w: etcd authentication needs both a user and a password file", ErrConfig)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("%w: negative dial timeout", ErrConfig)
	}
	return nil
}

func (c Config) prefix() string {
	if c.Prefix == "" {
		return DefaultPrefix
	}
	return c.Prefix
}

// Key returns the full key of a path below the prefix ("md/alive/x" →
// "/mdfast/v1/md/alive/x").
func (c Config) Key(path string) string { return c.prefix() + path }

// New connects to the store. The client reconnects on its own; callers
// bound every request with a context.
func New(c Config) (*clientv3.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, fmt.Errorf("%w: no endpoints", ErrConfig)
	}
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: c.DialTimeout,
		Logger:      zap.NewNop(), // our own logs say what failed, rate-limited
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if c.CAFile != "" || c.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: read CA: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, c.CAFile)
			}
			tc.RootCAs = pool
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("%w: client certificate: %w", ErrConfig, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	if c.Username != "" {
		pw, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: read password: %w", ErrConfig, err)
		}
		cfg.Username, cfg.Password = c.Username, strings.TrimSpace(string(pw))
	}
	cl, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w", c.Endpoints, err)
	}
	return cl, nil
}
