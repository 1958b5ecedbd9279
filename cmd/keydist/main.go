// Command keydist is the PERC Key Distributor: it accepts TLS tunnels from
// Media Distributors (draft-ietf-perc-dtls-tunnel-05), terminates the
// endpoints' DTLS-SRTP associations relayed through them, checks each
// endpoint against the registry (tls-id and certificate fingerprint per
// conference) and sends the hop-by-hop keys to the MD in MediaKeys.
//
// Configuration comes from flags and, optionally, a YAML file (-config);
// flags given on the command line override the file. The endpoint registry
// is a separate YAML file (-registry), reloaded when it changes and on
// SIGHUP, and editable through the authenticated admin API (see
// keydist.NewAdminHandler). Prometheus metrics are served at /metrics on
// -metrics-listen (default: the admin listener, without authentication).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/httpserve"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/tunnel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "keydist:", err)
		os.Exit(1)
	}
}

// config is every setting of the daemon; the YAML keys are the flag names.
type config struct {
	Listen           string        `yaml:"listen"`
	Dial             stringList    `yaml:"dial"`
	TunnelCert       string        `yaml:"tunnel-cert"`
	TunnelKey        string        `yaml:"tunnel-key"`
	TunnelCA         string        `yaml:"tunnel-ca"`
	AllowMDSPKI      stringList    `yaml:"allow-md-spki"`
	AllowMDName      stringList    `yaml:"allow-md-name"`
	DTLSCert         string        `yaml:"dtls-cert"`
	DTLSKey          string        `yaml:"dtls-key"`
	Registry         string        `yaml:"registry"`
	RegistryPoll     time.Duration `yaml:"registry-poll"`
	AdminListen      string        `yaml:"admin-listen"`
	AdminTokenFile   string        `yaml:"admin-token-file"`
	MetricsListen    string        `yaml:"metrics-listen"`
	Profiles         stringList    `yaml:"profiles"`
	HandshakeTimeout time.Duration `yaml:"handshake-timeout"`
	IdleTimeout      time.Duration `yaml:"idle-timeout"`
	TunnelGrace      time.Duration `yaml:"tunnel-grace"`
	MaxAssociations  int           `yaml:"max-associations"`
	MaxPerTunnel     int           `yaml:"max-associations-per-tunnel"`
	MaxPending       int           `yaml:"max-pending"`
	EKTCipher        string        `yaml:"ekt-cipher"`
	EKTTTL           time.Duration `yaml:"ekt-ttl"`
	RekeyOnJoin      bool          `yaml:"rekey-on-join"`
	Journal          string        `yaml:"journal"`
	LogLevel         string        `yaml:"log-level"`
	LogFormat        string        `yaml:"log-format"`
}

// defaultJournal is the association journal in systemd's StateDirectory
// when there is one, else none.
func defaultJournal() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.Join(strings.Split(d, ":")[0], "associations.journal")
	}
	return ""
}

func defaults() config {
	return config{
		Listen:           ":5740",
		RegistryPoll:     2 * time.Second,
		AdminListen:      "127.0.0.1:5741",
		HandshakeTimeout: keydist.DefaultHandshakeTimeout,
		TunnelGrace:      keydist.DefaultTunnelGrace,
		MaxAssociations:  keydist.DefaultMaxAssociations,
		MaxPerTunnel:     keydist.DefaultMaxAssociationsPerTunnel,
		MaxPending:       keydist.DefaultMaxPending,
		EKTCipher:        "aeskw128",
		EKTTTL:           keydist.DefaultEKTTTL,
		LogLevel:         "info",
		LogFormat:        "text",
		Journal:          defaultJournal(),
	}
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func flagSet(c *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keydist", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", "", "YAML configuration file (keys are the flag names; flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "tunnel listen address for media distributors (empty: none)")
	fs.Var(&c.Dial, "dial", "reverse mode: media distributor address to dial (repeatable)")
	fs.StringVar(&c.TunnelCert, "tunnel-cert", c.TunnelCert, "tunnel TLS certificate (PEM)")
	fs.StringVar(&c.TunnelKey, "tunnel-key", c.TunnelKey, "tunnel TLS key (PEM)")
	fs.StringVar(&c.TunnelCA, "tunnel-ca", c.TunnelCA, "CA bundle (PEM) media distributor certificates must chain to")
	fs.Var(&c.AllowMDSPKI, "allow-md-spki", "allow only MDs with this SPKI SHA-256 (hex; repeatable)")
	fs.Var(&c.AllowMDName, "allow-md-name", "allow only MDs with this certificate name (repeatable)")
	fs.StringVar(&c.DTLSCert, "dtls-cert", c.DTLSCert, "KD DTLS certificate (PEM, ECDSA P-256); empty: generated at start")
	fs.StringVar(&c.DTLSKey, "dtls-key", c.DTLSKey, "KD DTLS key (PEM)")
	fs.StringVar(&c.Registry, "registry", c.Registry, "endpoint registry YAML file (reloaded on change and SIGHUP)")
	fs.DurationVar(&c.RegistryPoll, "registry-poll", c.RegistryPoll, "registry file polling period")
	fs.StringVar(&c.AdminListen, "admin-listen", c.AdminListen, "admin API listen address (empty: disabled)")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", c.AdminTokenFile, "file holding the admin API bearer token (or set KEYDIST_ADMIN_TOKEN)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "Prometheus /metrics listen address (empty: on the admin listener)")
	fs.Var(&c.Profiles, "profiles", "SRTP protection profiles the KD negotiates, e.g. 0x0007,0x0008 (default: 0x0009,0x000A,0x0007,0x0008,0x0001,0x0002)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "DTLS handshake timeout")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "end established associations idle this long (0: never)")
	fs.DurationVar(&c.TunnelGrace, "tunnel-grace", c.TunnelGrace, "end associations whose MD has had no tunnel this long")
	fs.IntVar(&c.MaxAssociations, "max-associations", c.MaxAssociations, "maximum associations in total")
	fs.IntVar(&c.MaxPerTunnel, "max-associations-per-tunnel", c.MaxPerTunnel, "maximum associations started per tunnel")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "maximum associations with a ClientHello in reassembly")
	fs.StringVar(&c.EKTCipher, "ekt-cipher", c.EKTCipher, "EKT cipher of every conference (RFC 8870): aeskw128 or aeskw256")
	fs.DurationVar(&c.EKTTTL, "ekt-ttl", c.EKTTTL, "lifetime of a conference's EKTKey; re-keyed at three quarters of it")
	fs.BoolVar(&c.RekeyOnJoin, "rekey-on-join", c.RekeyOnJoin, "give a conference a new EKTKey when a member joins (always done when one leaves)")
	fs.StringVar(&c.Journal, "journal", c.Journal, "association journal file, so that a restarted keydist can still end (revoke) what it keyed before (empty: none; default $STATE_DIRECTORY/associations.journal under systemd)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	return fs
}

// loadConfig parses args: defaults, then the -config file, then the flags
// given on the command line.
func loadConfig(args []string, out io.Writer) (config, error) {
	c := defaults()
	fs := flagSet(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	fc := defaults()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	over := flagSet(&fc, io.Discard)
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if g := over.Lookup(f.Name); g != nil {
			if lv, ok := g.Value.(*stringList); ok {
				*lv = nil // a list flag replaces the file's list
			}
			if err := g.Value.Set(f.Value.String()); err != nil && setErr == nil {
				setErr = fmt.Errorf("flag -%s: %w", f.Name, err)
			}
		}
	})
	return fc, setErr
}

func newLogger(c *config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.LogFormat)
}

func parseProfiles(ss []string) ([]uint16, error) {
	var out []uint16
	for _, s := range ss {
		v, err := strconv.ParseUint(s, 0, 16)
		if err != nil {
			return nil, fmt.Errorf("profile %q: %w", s, err)
		}
		if !keydist.ProfileNegotiable(uint16(v)) {
			return nil, fmt.Errorf("profile %q is not an SRTP protection profile the KD knows (0x0001, 0x0002, 0x0007, 0x0008, 0x0009, 0x000A)", s)
		}
		out = append(out, uint16(v))
	}
	return out, nil
}

func tunnelTLS(c *config) (*tls.Config, error) {
	if c.TunnelCert == "" || c.TunnelKey == "" || c.TunnelCA == "" {
		return nil, errors.New("-tunnel-cert, -tunnel-key and -tunnel-ca are required (the tunnel is mutually authenticated)")
	}
	cert, err := tls.LoadX509KeyPair(c.TunnelCert, c.TunnelKey)
	if err != nil {
		return nil, fmt.Errorf("tunnel certificate: %w", err)
	}
	pem, err := os.ReadFile(c.TunnelCA)
	if err != nil {
		return nil, fmt.Errorf("tunnel CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tunnel CA %s: no certificate found", c.TunnelCA)
	}
	var policy tunnel.PeerPolicy
	for _, s := range c.AllowMDSPKI {
		f, err := tunnel.ParseSPKIFingerprint(s)
		if err != nil {
			return nil, fmt.Errorf("-allow-md-spki: %w", err)
		}
		policy.SPKI = append(policy.SPKI, f)
	}
	policy.Names = c.AllowMDName
	return tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{cert}, CAs: pool, Peer: policy})
}

// minAdminToken is the shortest admin token accepted, from the file or the
// environment alike.
const minAdminToken = 16

func adminToken(c *config) (string, error) {
	if t := strings.TrimSpace(os.Getenv("KEYDIST_ADMIN_TOKEN")); t != "" {
		if len(t) < minAdminToken {
			return "", fmt.Errorf("KEYDIST_ADMIN_TOKEN is shorter than %d characters", minAdminToken)
		}
		return t, nil
	}
	if c.AdminTokenFile == "" {
		return "", errors.New("the admin API needs a token: -admin-token-file or KEYDIST_ADMIN_TOKEN (or -admin-listen '' to disable it)")
	}
	b, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < minAdminToken {
		return "", fmt.Errorf("admin token in %s is shorter than %d characters", c.AdminTokenFile, minAdminToken)
	}
	return t, nil
}

// run is the daemon; it returns when ctx ends (after a clean shutdown) or
// on a fatal error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(&c, stderr)
	if err != nil {
		return err
	}
	profiles, err := parseProfiles(c.Profiles)
	if err != nil {
		return err
	}
	tlsCfg, err := tunnelTLS(&c)
	if err != nil {
		return err
	}
	var dtlsCert tls.Certificate
	if c.DTLSCert != "" {
		dtlsCert, err = keydist.LoadCertificate(c.DTLSCert, c.DTLSKey)
	} else {
		dtlsCert, err = keydist.GenerateCertificate(365 * 24 * time.Hour)
	}
	if err != nil {
		return err
	}
	fp := keydist.CertFingerprint(dtlsCert)
	// The fingerprint goes into the SDP the signalling sends to endpoints.
	fmt.Fprintf(stdout, "a=fingerprint:sha-256 %s\n", fp)
	log.Info("KD DTLS certificate", "fingerprint", "sha-256 "+fp.String(), "generated", c.DTLSCert == "")

	reg := keydist.NewRegistry()
	var watcher *keydist.FileWatcher
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "keydist", Name: "registry_reloads_total", Help: "Registry file reloads by result.",
	}, []string{"result"})
	if c.Registry != "" {
		watcher = &keydist.FileWatcher{Registry: reg, Path: c.Registry, Interval: c.RegistryPoll, Logger: log,
			OnReload: func(err error) {
				if err != nil {
					reloads.WithLabelValues("error").Inc()
				} else {
					reloads.WithLabelValues("ok").Inc()
				}
			}}
		if err := reg.LoadFile(c.Registry); err != nil {
			return err
		}
		watcher.Poll() // record the file state; no-op reload of the same content
	}

	var cipher dtls.EKTCipher
	switch c.EKTCipher {
	case "aeskw128":
		cipher = dtls.EKTCipherAESKW128
	case "aeskw256":
		cipher = dtls.EKTCipherAESKW256
	default:
		return fmt.Errorf("ekt-cipher %q: want aeskw128 or aeskw256", c.EKTCipher)
	}
	ekt, err := keydist.NewMemoryEKT(keydist.MemoryEKTConfig{Cipher: cipher, TTL: c.EKTTTL})
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), reloads)
	kd, err := keydist.New(keydist.Config{
		EKT:                      ekt,
		RekeyOnJoin:              c.RekeyOnJoin,
		Certificate:              dtlsCert,
		Registry:                 reg,
		Profiles:                 profiles,
		HandshakeTimeout:         c.HandshakeTimeout,
		IdleTimeout:              c.IdleTimeout,
		TunnelGrace:              c.TunnelGrace,
		MaxAssociations:          c.MaxAssociations,
		MaxAssociationsPerTunnel: c.MaxPerTunnel,
		MaxPending:               c.MaxPending,
		Logger:                   log,
		Metrics:                  promReg,
		Journal:                  c.Journal,
	})
	if err != nil {
		return err
	}
	defer kd.Close()
	if c.Journal == "" {
		log.Warn("no association journal (-journal): after a restart, removing an endpoint does not end media it is already sending")
	}
	tk, err := tunnel.NewKD(tunnel.KDConfig{TLS: tlsCfg, Logger: log}, kd)
	if err != nil {
		return err
	}
	defer tk.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 4)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}

	metricsHandler := promhttp.HandlerFor(promReg, promhttp.HandlerOpts{})
	web := httpserve.New(log, fail)
	defer web.Shutdown()
	if c.AdminListen != "" {
		token, err := adminToken(&c)
		if err != nil {
			return err
		}
		api, err := keydist.NewAdminHandler(keydist.AdminConfig{Registry: reg, KD: kd, Token: token, Logger: log})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/", api)
		if c.MetricsListen == "" {
			mux.Handle("GET /metrics", metricsHandler)
		}
		if err := web.Serve(c.AdminListen, mux, "admin API"); err != nil {
			return err
		}
	}
	if c.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		if err := web.Serve(c.MetricsListen, mux, "metrics"); err != nil {
			return err
		}
	}

	if c.Listen != "" {
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return fmt.Errorf("tunnel listener: %w", err)
		}
		log.Info("tunnel listening", "addr", ln.Addr().String())
		wg.Go(func() {
			if err := tk.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("tunnel listener: %w", err))
			}
		})
	}
	for _, addr := range c.Dial {
		wg.Go(func() {
			if err := tk.Dial(ctx, addr); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("dial %s: %w", addr, err))
			}
		})
	}
	if c.Listen == "" && len(c.Dial) == 0 {
		return errors.New("nothing to do: give -listen and/or -dial")
	}
	if watcher != nil {
		wg.Go(func() { watcher.Run(ctx) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	for {
		select {
		case <-hup:
			if watcher != nil {
				log.Info("SIGHUP: reloading the registry file")
				if err := reg.LoadFile(c.Registry); err != nil {
					reloads.WithLabelValues("error").Inc()
					log.Error("registry reload failed; keeping the last good content", "err", err)
				} else {
					reloads.WithLabelValues("ok").Inc()
				}
			}
		case err := <-errc:
			log.Error("shutting down", "err", err)
			return err
		case <-ctx.Done():
			log.Info("shutting down")
			_ = kd.Close() // EndpointDisconnect for every association while tunnels are up
			_ = tk.Close()
			return nil
		}
	}
}
