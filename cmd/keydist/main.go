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
// keydist.NewAdminHandler). SIGHUP also re-reads the configuration, only to
// name the options that changed: they need a restart. Prometheus metrics are served at /metrics on
// -metrics-listen (default: the admin listener, without authentication).
package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/httpserve"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/options"
	"github.com/mdfast/mdfast/internal/ready"
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

// config is every setting of the daemon; options declares them.
type config struct {
	Listen           string
	Dial             options.StringList
	TunnelCert       string
	TunnelKey        string
	TunnelCA         string
	AllowMDSPKI      options.StringList
	AllowMDName      options.StringList
	DTLSCert         string
	DTLSKey          string
	Registry         string
	RegistryPoll     time.Duration
	AdminListen      string
	AdminTokenFile   string
	MetricsListen    string
	Profiles         options.StringList
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	TunnelGrace      time.Duration
	MaxAssociations  int
	MaxPerTunnel     int
	MaxPending       int
	EKTCipher        string
	EKTTTL           time.Duration
	RekeyOnJoin      bool
	Journal          string
	JoinListen       string
	JoinTLSCert      string
	JoinTLSKey       string
	JoinSecretFile   string
	MDControlURL     string
	MDControlToken   string
	MDMediaAddr      options.StringList
	JoinTimeout      time.Duration
	JoinMaxSessions  int
	JoinRate         float64
	JoinRateSource   float64
	JoinAllowOrigin  options.StringList
	Etcd             etcdclient.Config
	EKTStoreKeyFile  string
	StoreLease       time.Duration
	LogLevel         string
	LogFormat        string
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
	var c config
	options.SetDefaults(c.options())
	return c
}

// options declares every setting, bound to c's fields: name (flag and YAML
// key), default, documentation and validation. keydist re-reads none of
// them on SIGHUP (only the registry file's content); a changed one is
// reported as needing a restart.
func (c *config) options() []options.Option {
	o := []options.Option{
		options.String(&c.Listen, "listen", ":5740", "tunnel listen address for media distributors (empty: none)").Check(func() error {
			if c.Listen == "" && len(c.Dial) == 0 {
				return errors.New("nothing to do: give -listen and/or -dial")
			}
			return nil
		}),
		options.List(&c.Dial, "dial", nil, "reverse mode: media distributor address to dial (repeatable)"),
	}
	o = append(o, options.TunnelFiles(&c.TunnelCert, &c.TunnelKey, &c.TunnelCA, "media distributor")...)
	o = append(o,
		options.List(&c.AllowMDSPKI, "allow-md-spki", nil, "allow only MDs with this SPKI SHA-256 (hex; repeatable)"),
		options.List(&c.AllowMDName, "allow-md-name", nil, "allow only MDs with this certificate name (repeatable)"),
		options.String(&c.DTLSCert, "dtls-cert", "", "KD DTLS certificate (PEM, ECDSA P-256); empty: generated at start"),
		options.String(&c.DTLSKey, "dtls-key", "", "KD DTLS key (PEM)"),
		options.String(&c.Registry, "registry", "", "endpoint registry YAML file (its content is reloaded on change and SIGHUP)"),
		options.Dur(&c.RegistryPoll, "registry-poll", 2*time.Second, "registry file polling period"),
		options.String(&c.AdminListen, "admin-listen", "127.0.0.1:5741", "admin API listen address (empty: disabled)"),
		options.String(&c.AdminTokenFile, "admin-token-file", "", "file holding the admin API bearer token (or set KEYDIST_ADMIN_TOKEN)"),
		options.String(&c.MetricsListen, "metrics-listen", "", "Prometheus /metrics listen address (empty: on the admin listener)"),
		options.List(&c.Profiles, "profiles", nil, "SRTP protection profiles the KD negotiates, e.g. 0x0007,0x0008 (empty: 0x0009,0x000A,0x0007,0x0008,0x0001,0x0002)").Check(func() error {
			_, err := parseProfiles(c.Profiles)
			return err
		}),
		options.Dur(&c.HandshakeTimeout, "handshake-timeout", keydist.DefaultHandshakeTimeout, "DTLS handshake timeout"),
		options.Dur(&c.IdleTimeout, "idle-timeout", 0, "end established associations idle this long (0: never)"),
		options.Dur(&c.TunnelGrace, "tunnel-grace", keydist.DefaultTunnelGrace, "end associations whose MD has had no tunnel this long"),
		options.Int(&c.MaxAssociations, "max-associations", keydist.DefaultMaxAssociations, "maximum associations in total"),
		options.Int(&c.MaxPerTunnel, "max-associations-per-tunnel", keydist.DefaultMaxAssociationsPerTunnel, "maximum associations started per tunnel"),
		options.Int(&c.MaxPending, "max-pending", keydist.DefaultMaxPending, "maximum associations with a ClientHello in reassembly"),
		options.String(&c.EKTCipher, "ekt-cipher", "aeskw128", "EKT cipher of every conference (RFC 8870): aeskw128 or aeskw256").Check(func() error {
			_, err := ektCipher(c.EKTCipher)
			return err
		}),
		options.Dur(&c.EKTTTL, "ekt-ttl", keydist.DefaultEKTTTL, "lifetime of a conference's EKTKey; re-keyed at three quarters of it"),
		options.Bool(&c.RekeyOnJoin, "rekey-on-join", false, "give a conference a new EKTKey when a member joins (always done when one leaves)"),
		options.String(&c.Journal, "journal", defaultJournal(), "association journal file, so that a restarted keydist can still end (revoke) what it keyed before (empty: none; default $STATE_DIRECTORY/associations.journal under systemd)"),
	)
	o = append(o,
		options.String(&c.JoinListen, "join-listen", "", "WHIP-style join endpoint listen address for WebRTC/PERC apps (empty: disabled)").Check(func() error {
			if c.JoinListen != "" && c.MDControlURL == "" {
				return errors.New("the join endpoint needs -md-control-url")
			}
			if c.JoinListen != "" && len(c.MDMediaAddr) == 0 {
				return errors.New("the join endpoint needs -md-media-addr (the MD's media addresses, for the answer's candidates)")
			}
			return nil
		}),
		options.String(&c.JoinTLSCert, "join-tls-cert", "", "join endpoint TLS certificate (PEM); empty: plain HTTP (behind a TLS-terminating proxy only)").Check(func() error {
			if (c.JoinTLSCert == "") != (c.JoinTLSKey == "") {
				return errors.New("give both -join-tls-cert and -join-tls-key, or neither")
			}
			return nil
		}),
		options.String(&c.JoinTLSKey, "join-tls-key", "", "join endpoint TLS key (PEM)"),
		options.String(&c.JoinSecretFile, "join-secret-file", "", "file holding the secret (at least 32 bytes) that signs join tokens (or set KEYDIST_JOIN_SECRET)"),
		options.String(&c.MDControlURL, "md-control-url", "", "the MD's control API base URL, e.g. http://127.0.0.1:5742, mdfast's control-listen (the join endpoint puts sessions there)"),
		options.String(&c.MDControlToken, "md-control-token-file", "", "file holding the MD control API's bearer token (or set KEYDIST_MD_CONTROL_TOKEN)"),
		options.List(&c.MDMediaAddr, "md-media-addr", nil, "the MD's media address ip:port, one ICE host candidate each in join answers (repeatable)").Check(func() error {
			_, err := parseMediaAddrs(c.MDMediaAddr)
			return err
		}),
		options.Dur(&c.JoinTimeout, "join-timeout", keydist.DefaultJoinTimeout, "end a join session whose DTLS association has not completed this long after the offer"),
		options.Int(&c.JoinMaxSessions, "join-max-sessions", keydist.DefaultJoinMaxSessions, "maximum live join sessions"),
		options.Float(&c.JoinRate, "join-rate", keydist.DefaultJoinRate, "join endpoint requests per second, all sources (burst: twice as many)"),
		options.Float(&c.JoinRateSource, "join-rate-per-source", keydist.DefaultJoinRatePerSource, "join endpoint requests per second from one IPv4 address or IPv6 /64 (burst 10)"),
		options.List(&c.JoinAllowOrigin, "join-allow-origin", nil, "web origins allowed to call the join endpoint (CORS; * for any; repeatable)"),
	)
	o = append(o, options.Etcd(&c.Etcd, etcdclient.DefaultPrefix, "KD replicas keep the registry's API layer and the EKT parameter sets there (empty: this process only)", "kd/",
		func() error {
			if err := c.Etcd.Validate(); err != nil {
				return err
			}
			if len(c.Etcd.Endpoints) > 0 && c.EKTStoreKeyFile == "" {
				return errors.New("-etcd-endpoints needs -ekt-store-key-file (the key that seals EKT parameter sets in etcd)")
			}
			return nil
		})...)
	o = append(o,
		options.String(&c.EKTStoreKeyFile, "ekt-store-key-file", "", "file holding the 32 random octets (raw, or 64 hex digits) that seal EKT parameter sets in etcd; the same on every KD replica, never given to MDs").Check(func() error {
			if c.EKTStoreKeyFile == "" {
				return nil
			}
			k, err := readStoreKey(c.EKTStoreKeyFile)
			clear(k)
			return err
		}),
		options.Dur(&c.StoreLease, "store-lease", keydist.DefaultStoreLease, "lease of this replica's entries in etcd: when it dies, the other replicas take its associations as orphans within it (at least 2s)").Check(func() error {
			if c.StoreLease < 2*time.Second {
				return fmt.Errorf("store-lease %v: at least 2s", c.StoreLease)
			}
			return nil
		}),
	)
	return append(o, options.Log(&c.LogLevel, &c.LogFormat)...)
}

// readStoreKey reads the EKT store key: 32 raw octets or 64 hex digits
// (surrounding white space ignored).
func readStoreKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("EKT store key: %w", err)
	}
	defer clear(b)
	if len(b) == keydist.StoreKeyLen {
		return append([]byte(nil), b...), nil
	}
	t := strings.TrimSpace(string(b))
	k, err := hex.DecodeString(t)
	if err != nil || len(k) != keydist.StoreKeyLen {
		clear(k)
		return nil, fmt.Errorf("EKT store key %s: want %d raw octets or %d hex digits", path, keydist.StoreKeyLen, 2*keydist.StoreKeyLen)
	}
	return k, nil
}

// parseMediaAddrs parses -md-media-addr values.
func parseMediaAddrs(ss []string) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(ss))
	for _, s := range ss {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("media address %q: %w", s, err)
		}
		if ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return nil, fmt.Errorf("media address %q: want a concrete ip:port", s)
		}
		out = append(out, ap)
	}
	return out, nil
}

// Where the join endpoint's secrets come from.
var (
	joinSecretSource = options.Token{API: "join endpoint", Env: "KEYDIST_JOIN_SECRET",
		FileOption: "join-secret-file", ListenOption: "join-listen", Min: keydist.MinJoinSecret}
	mdControlTokenSource = options.Token{API: "join endpoint's MD control client", Env: "KEYDIST_MD_CONTROL_TOKEN",
		FileOption: "md-control-token-file", ListenOption: "join-listen", Min: 16}
)

// loadConfig parses args: defaults, then the -config file, then the flags
// given on the command line. It does not validate (c.validate does).
func loadConfig(args []string, out io.Writer) (config, error) {
	c, _, err := options.Load("keydist", args, out, (*config).options)
	return c, err
}

// validate checks every setting, in declaration order.
func (c *config) validate() error { return options.Validate(c.options()) }

func ektCipher(s string) (dtls.EKTCipher, error) {
	switch s {
	case "aeskw128":
		return dtls.EKTCipherAESKW128, nil
	case "aeskw256":
		return dtls.EKTCipherAESKW256, nil
	}
	return 0, fmt.Errorf("%q: want aeskw128 or aeskw256", s)
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
	return options.TunnelTLS{Cert: c.TunnelCert, Key: c.TunnelKey, CA: c.TunnelCA,
		PinOption: "allow-md-spki", SPKI: c.AllowMDSPKI, Names: c.AllowMDName}.Config()
}

// minAdminToken is the shortest admin token accepted, from the file or the
// environment alike.
const minAdminToken = 16

// adminTokenSource is where the admin API's token comes from.
var adminTokenSource = options.Token{API: "admin API", Env: "KEYDIST_ADMIN_TOKEN",
	FileOption: "admin-token-file", ListenOption: "admin-listen", Min: minAdminToken}

func adminToken(c *config) (string, error) { return adminTokenSource.Load(c.AdminTokenFile) }

// run is the daemon; it returns when ctx ends (after a clean shutdown) or
// on a fatal error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	log, _, err := options.NewLogger(c.LogLevel, c.LogFormat, stderr)
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

	cipher, err := ektCipher(c.EKTCipher)
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), reloads)
	var ekt keydist.EKTSource
	var checks []ready.Check
	var publisher keydist.AssociationPublisher
	remoteAssocs := func() []keydist.AssociationInfo { return nil }
	if ecfg := c.Etcd; ecfg.Enabled() {
		cl, err := etcdclient.New(ecfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		key, err := readStoreKey(c.EKTStoreKeyFile)
		if err != nil {
			return err
		}
		store, err := keydist.NewStore(keydist.StoreConfig{Client: cl, Prefix: ecfg.Key(""), SealKey: key, LeaseTTL: c.StoreLease, Logger: log, Metrics: promReg})
		clear(key)
		if err != nil {
			return err
		}
		// Deferred before kd.Close, so run after it: the KD's members
		// leave first, then the lease (and this replica's memberships) go.
		defer store.Close()
		store.AttachRegistry(reg)
		if ekt, err = keydist.NewEtcdEKT(store, keydist.MemoryEKTConfig{Cipher: cipher, TTL: c.EKTTTL}); err != nil {
			return err
		}
		checks = append(checks, ready.Check{Name: "store", Func: store.Check})
		publisher, remoteAssocs = store, store.RemoteAssociations
		log.Info("KD replica on etcd", "endpoints", ecfg.Endpoints, "prefix", ecfg.Key(""), "replica", store.Replica())
	} else {
		if ekt, err = keydist.NewMemoryEKT(keydist.MemoryEKTConfig{Cipher: cipher, TTL: c.EKTTTL}); err != nil {
			return err
		}
	}
	readyGauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "keydist", Name: "ready",
		Help: "1 when the readiness check passes (/readyz), by check."}, []string{"check"})
	promReg.MustRegister(readyGauge)
	checker := ready.New(ready.Config{Checks: checks, Logger: log, OnChange: func(check string, ok bool) {
		v := 0.0
		if ok {
			v = 1
		}
		readyGauge.WithLabelValues(check).Set(v)
	}})
	checker.Update()
	kd, err := keydist.New(keydist.Config{
		EKT:                      ekt,
		Publisher:                publisher,
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
	var join *keydist.Join
	var joinSecret []byte
	if c.JoinListen != "" {
		secret, err := joinSecretSource.Load(c.JoinSecretFile)
		if err != nil {
			return err
		}
		mdToken, err := mdControlTokenSource.Load(c.MDControlToken)
		if err != nil {
			return err
		}
		addrs, err := parseMediaAddrs(c.MDMediaAddr)
		if err != nil {
			return err
		}
		joinSecret = []byte(secret)
		// With replicas, an endpoint's handshake may complete on another
		// one: the session binds to the association it published.
		join, err = keydist.NewJoin(keydist.JoinConfig{
			Registry:       reg,
			MD:             &keydist.MDControlClient{URL: c.MDControlURL, Token: mdToken},
			Associations:   func() []keydist.AssociationInfo { return append(kd.Associations(), remoteAssocs()...) },
			Fingerprint:    fp,
			Candidates:     addrs,
			Secret:         joinSecret,
			Timeout:        c.JoinTimeout,
			MaxSessions:    c.JoinMaxSessions,
			Rate:           c.JoinRate,
			Burst:          int(2*c.JoinRate) + 1,
			RatePerSource:  c.JoinRateSource,
			BurstPerSource: keydist.DefaultJoinBurstSource,
			AllowOrigins:   c.JoinAllowOrigin,
			Logger:         log,
			Metrics:        promReg,
		})
		if err != nil {
			return err
		}
		// Before kd.Close (deferred earlier, run later): the sessions are
		// removed at the MD while the KD still ends their associations.
		defer join.Close()
		var joinTLS *tls.Config
		if c.JoinTLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.JoinTLSCert, c.JoinTLSKey)
			if err != nil {
				return &options.FieldError{Field: "join-tls-cert", Err: err}
			}
			joinTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		} else {
			log.Warn("join endpoint without TLS (-join-tls-cert): join tokens and SDP travel in clear unless a proxy terminates TLS")
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/join/", join.Handler())
		if err := web.ServeTLS(c.JoinListen, mux, "join endpoint", joinTLS); err != nil {
			return err
		}
	}
	if c.AdminListen != "" {
		token, err := adminToken(&c)
		if err != nil {
			return err
		}
		api, err := keydist.NewAdminHandler(keydist.AdminConfig{Registry: reg, KD: kd, Token: token, Logger: log, Join: join, JoinSecret: joinSecret})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/", api)
		if c.MetricsListen == "" {
			mux.Handle("GET /metrics", metricsHandler)
			mux.Handle("GET /readyz", checker)
		}
		if err := web.Serve(c.AdminListen, mux, "admin API"); err != nil {
			return err
		}
	}
	if c.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		mux.Handle("GET /readyz", checker)
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
	if watcher != nil {
		wg.Go(func() { watcher.Run(ctx) })
	}
	wg.Go(func() { checker.Run(ctx, time.Second) })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	for {
		select {
		case <-hup:
			if n, err := loadConfig(args, io.Discard); err != nil {
				log.Error("SIGHUP: configuration invalid; only the registry is reloaded", "err", err)
			} else if _, restart := options.Changes(c.options(), n.options()); len(restart) > 0 {
				log.Warn("SIGHUP: these settings changed but need a restart", "settings", restart)
			}
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
