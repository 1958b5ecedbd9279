package options

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/mdfast/mdfast/internal/etcdclient"
)

// The options both daemons have.

// Log declares log-level and log-format.
func Log(level, format *string) []Option {
	return []Option{
		String(level, "log-level", "info", "debug, info, warn or error").Check(func() error {
			var l slog.Level
			return l.UnmarshalText([]byte(*level))
		}),
		String(format, "log-format", "text", "text or json").Check(func() error {
			if *format != "text" && *format != "json" {
				return fmt.Errorf("%q: want text or json", *format)
			}
			return nil
		}),
	}
}

// TunnelFiles declares tunnel-cert, tunnel-key and tunnel-ca, all
// required (the tunnel is mutually authenticated); peer names who the CA
// bundle vouches for.
func TunnelFiles(cert, key, ca *string, peer string) []Option {
	check := func(p *string) func() error {
		return func() error {
			if *p == "" {
				return errors.New("required (the tunnel is mutually authenticated)")
			}
			_, err := os.Stat(*p)
			return err
		}
	}
	return []Option{
		String(cert, "tunnel-cert", "", "tunnel TLS certificate (PEM)").Check(check(cert)),
		String(key, "tunnel-key", "", "tunnel TLS key (PEM)").Check(check(key)),
		String(ca, "tunnel-ca", "", "CA bundle (PEM) "+peer+" certificates must chain to").Check(check(ca)),
	}
}

// NewLogger returns the slog logger for level and format, writing to w,
// and the LevelVar controlling it (for reloads).
func NewLogger(level, format string, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, &FieldError{Field: "log-format", Err: fmt.Errorf("%q: want text or json", format)}
}

// SetLevel sets lv to level.
func SetLevel(lv *slog.LevelVar, level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return &FieldError{Field: "log-level", Err: err}
	}
	lv.Set(l)
	return nil
}

// Etcd declares the etcd-* options that set c, the same in both daemons
// so that they accept the same store configuration: etcd-endpoints (what
// the daemon keeps there: use), etcd-prefix (default defPrefix; the
// subtree the daemon writes: subtree), etcd-ca, etcd-cert, etcd-key,
// etcd-user and etcd-password-file. check validates the whole set; it runs
// for the endpoints and the prefix.
func Etcd(c *etcdclient.Config, defPrefix, use, subtree string, check func() error) []Option {
	return []Option{
		List((*StringList)(&c.Endpoints), "etcd-endpoints", nil, "etcd client URLs (http:// or https://; repeatable): "+use).Check(check),
		String(&c.Prefix, "etcd-prefix", defPrefix, "prefix of every etcd key (this daemon writes only in its "+subtree+" subtree)").Check(check),
		String(&c.CAFile, "etcd-ca", "", "CA bundle (PEM) that verifies the etcd members (https endpoints)"),
		String(&c.CertFile, "etcd-cert", "", "client certificate (PEM) for etcd"),
		String(&c.KeyFile, "etcd-key", "", "client key (PEM) for etcd"),
		String(&c.Username, "etcd-user", "", "etcd user, with etcd-password-file (RBAC: read-write on the prefix's "+subtree+" subtree only)"),
		String(&c.PasswordFile, "etcd-password-file", "", "file holding the etcd user's password"),
	}
}
