package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/httpserve"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/mdslow"
	"github.com/mdfast/mdfast/internal/metrics"
	"github.com/mdfast/mdfast/internal/options"
	"github.com/mdfast/mdfast/internal/ready"
	"github.com/mdfast/mdfast/internal/tunnel"
)

func loadValid(args []string, stderr io.Writer) (config.Config, string, error) {
	c, path, err := config.Load("mdfast", args, stderr)
	if err != nil {
		return c, path, err
	}
	if err := c.Validate(); err != nil {
		return c, path, err
	}
	return c, path, nil
}

func checkConfig(args []string, stdout, stderr io.Writer) error {
	c, _, err := loadValid(args, stderr)
	if err != nil {
		return err
	}
	if _, err := tunnelTLS(&c); err != nil {
		return err
	}
	if c.ControlListen != "" {
		if _, err := controlToken(&c); err != nil {
			return err
		}
	}
	if c.Etcd.Enabled() {
		if _, _, err := cascadeTLS(&c); err != nil {
			return err
		}
	}
	// What run needs of the host: the interface the XDP modes attach to.
	if c.Interface != "" && c.Mode != "socket" {
		if _, err := net.InterfaceByName(c.Interface); err != nil {
			return &config.FieldError{Field: "interface", Err: err}
		}
	}
	fmt.Fprintln(stdout, "configuration OK")
	return nil
}

func tunnelTLS(c *config.Config) (*tls.Config, error) {
	return options.TunnelTLS{Cert: c.TunnelCert, Key: c.TunnelKey, CA: c.TunnelCA,
		PinOption: "kd-spki", SPKI: c.KDSPKI, ServerName: c.KDServerName}.Config()
}

// controlTokenSource is where the control API's token comes from.
var controlTokenSource = options.Token{API: "control API", Env: "MDFAST_CONTROL_TOKEN",
	FileOption: "control-token-file", ListenOption: "control-listen", Min: control.MinTokenLen}

func controlToken(c *config.Config) (string, error) {
	return controlTokenSource.Load(c.ControlTokenFile)
}

// daemon holds what run built, for the HTTP handlers and reloads.
type daemon struct {
	log    *slog.Logger
	level  *slog.LevelVar
	cfg    config.Config
	args   []string
	dp     *dataplane.Dataplane
	table  *keytable.Table
	relay  *mdslow.Relay
	memb   *control.Membership
	events *metrics.Events
}

// readyPeriod is how often the readiness checks run (/readyz serves the
// last results): a deleted interface, a detached XDP program or a stopped
// worker shows within this; a tunnel to a blackholed KD within the
// tunnel's TCP_USER_TIMEOUT (tunnel.DefaultTCPUserTimeout) plus this.
const readyPeriod = 250 * time.Millisecond

// readiness builds the checks behind /readyz and mdfast_ready{check}:
// workers (every data-plane worker runs), xdp_program (XDP modes: the
// classifier is still attached to the interface of that name) and tunnel
// (at least one tunnel to a KD is up) and, for an MD of several, directory
// (this MD has registered in etcd since it started).
func readiness(dp *dataplane.Dataplane, md *tunnel.MD, cm *cascadeMD, events *metrics.Events, log *slog.Logger) *ready.Checker {
	checks := []ready.Check{{Name: "workers", Func: dp.CheckWorkers}}
	if dp.Mode() != dataplane.ModeSocket {
		checks = append(checks, ready.Check{Name: "xdp_program", Func: dp.CheckXDP})
	}
	checks = append(checks, ready.Check{Name: "tunnel", Func: func() error {
		if md.Up() == 0 {
			return errNoTunnel
		}
		return nil
	}})
	if cm != nil {
		checks = append(checks, ready.Check{Name: "directory", Func: cm.check})
	}
	return ready.New(ready.Config{Checks: checks, OnChange: events.SetReady, Logger: log})
}

var errNoTunnel = errors.New("no tunnel to a key distributor is up")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, _, err := loadValid(args, stderr)
	if err != nil {
		return err
	}
	log, level, err := c.NewLogger(stderr)
	if err != nil {
		return err
	}
	tlsCfg, err := tunnelTLS(&c)
	if err != nil {
		return err
	}
	var token string
	if c.ControlListen != "" {
		if token, err = controlToken(&c); err != nil {
			return err
		}
	}
	profiles, _ := c.ParseProfiles()
	tp := make([]tunnel.ProtectionProfile, len(profiles))
	for i, p := range profiles {
		tp[i] = tunnel.ProtectionProfile(p)
	}
	log.Info("mdfast starting", "version", versionString(), "mode", c.Mode, "ports", c.MediaPorts, "kd", []string(c.KD))

	table, err := keytable.New(keytable.Config{MaxAssociations: c.MaxAssociation})
	if err != nil {
		return fmt.Errorf("key table: %w", err)
	}
	memb, err := control.NewMembership(c.SingleConference)
	if err != nil {
		return &config.FieldError{Field: "single-conference", Err: err}
	}
	if err := memb.Replace(c.Mappings); err != nil {
		return &config.FieldError{Field: "mappings", Err: err}
	}
	logPlacement(log, memb)
	dpCfg, err := c.Dataplane(dataplane.KeyTable{T: table}, log)
	if err != nil {
		return err
	}
	dp, err := dataplane.New(dpCfg)
	if err != nil {
		return fmt.Errorf("data plane: %w", err)
	}
	var dpClosed sync.Once
	closeDP := func() {
		dpClosed.Do(func() {
			if err := dp.Close(); err != nil {
				log.Error("data plane close", "err", err)
			}
		})
	}
	defer closeDP()
	log.Info("data plane running", "path", dp.Mode().String())

	// An MD of several: the slow path's table writes go through presence,
	// which publishes the conferences with local members.
	var relayTable mdslow.Table = table
	var cm *cascadeMD
	if c.Etcd.Enabled() {
		if cm, err = newCascade(&c, table, dp, memb, log); err != nil {
			return err
		}
		relayTable = cm.pres
	}
	var cascadeStopped sync.Once
	stopCascade := func() {
		if cm != nil {
			cascadeStopped.Do(cm.Stop)
		}
	}
	defer stopCascade()

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events := metrics.NewEvents(promReg)
	for _, k := range c.KD {
		events.SetTunnel(k, false)
	}
	relay, err := mdslow.New(mdslow.Config{
		Sender: dp, Neighbours: dp, Table: relayTable, Membership: memb, Credentials: memb, Limits: c.Limits(),
		SlowPriority: dp.SlowPriority(),
		OnHandshake:  events.ObserveHandshake, OnTunnelState: events.SetTunnel, Logger: log,
	})
	if err != nil {
		return err
	}
	md, err := tunnel.NewMD(tunnel.MDConfig{
		Peers: c.KD, TunnelsPerPeer: c.TunnelsPerKD, Listen: c.TunnelListen, TLS: tlsCfg, Profiles: tp,
		BackoffMin: 100 * time.Millisecond, BackoffMax: c.TunnelBackoff.D(), Logger: log,
		// The slow path answers the DTLS cookie exchange (mdslow).
		InstanceCaps: tunnel.CapVerifiesCookies,
	}, relay)
	if err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	relay.SetTunnel(md)
	promReg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "mdfast", Name: "tunnel_endpoint_disconnects_lost_total",
		Help: "EndpointDisconnects accepted by a tunnel that closed before writing them, with no other tunnel up to resend them on.",
	}, func() float64 { return float64(md.LostDisconnects()) }))
	dp.SetSlowTriage(relay.Triage)
	promReg.MustRegister(metrics.NewCollector(metrics.Source{
		Dataplane: func() *dataplane.Dataplane { return dp },
		Table:     table.Stats,
		Slow:      relay.Stats,
	}))
	if cm != nil {
		promReg.MustRegister(newCascadeCollector(cm))
		cm.Start()
	}
	d := &daemon{log: log, level: level, cfg: c, args: args, dp: dp, table: table, relay: relay, memb: memb, events: events}
	checker := readiness(dp, md, cm, events, log)
	checker.Update()
	readyCtx, stopReady := context.WithCancel(context.Background())
	var readyWG sync.WaitGroup
	readyWG.Go(func() { checker.Run(readyCtx, readyPeriod) })
	stopChecker := func() {
		stopReady()
		readyWG.Wait()
	}
	defer stopChecker() // before closeDP (deferred earlier)

	// Lifecycle: the relay stops first (it sends EndpointDisconnect for
	// every association while the tunnels are up), then the tunnels, then
	// the data plane (deferred above), then the HTTP servers.
	relayCtx, stopRelay := context.WithCancel(context.Background())
	tunCtx, stopTun := context.WithCancel(context.Background())
	defer stopRelay()
	defer stopTun()
	errc := make(chan error, 4)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	var relayWG, tunWG sync.WaitGroup
	relayWG.Go(func() {
		if err := relay.Run(relayCtx, dp.Slow()); err != nil {
			fail(fmt.Errorf("slow path: %w", err))
		}
	})
	tunWG.Go(func() {
		if err := md.Run(tunCtx); err != nil {
			fail(fmt.Errorf("tunnel: %w", err))
		}
	})

	// SIGHUP is caught before anything announces the daemon as up (the
	// listeners, /readyz, the "running" line): until Notify, its default
	// action would kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	web := httpserve.New(log, fail)
	defer web.Shutdown()
	if c.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.Handle("GET /readyz", checker)
		if err := web.Serve(c.MetricsListen, mux, "metrics"); err != nil {
			return err
		}
	}
	if c.ControlListen != "" {
		h, err := control.NewHandler(control.Config{Membership: memb, Relay: relay, Token: token, Logger: log})
		if err != nil {
			return err
		}
		if err := web.Serve(c.ControlListen, h, "control API"); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "mdfast: running path=%s ports=%v\n", dp.Mode(), c.MediaPorts)

	var runErr error
loop:
	for {
		select {
		case <-hup:
			d.reload()
		case runErr = <-errc:
			log.Error("shutting down", "err", runErr)
			break loop
		case <-ctx.Done():
			log.Info("shutting down")
			break loop
		}
	}
	stopRelay()
	relayWG.Wait()
	// The relay queued an EndpointDisconnect per association; wait (a
	// bounded time, within the unit's TimeoutStopSec) until the tunnels
	// have written them.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
	if left := md.FlushControl(flushCtx); left > 0 {
		log.Warn("stopping with EndpointDisconnects not written to any tunnel", "count", left)
	}
	cancelFlush()
	stopTun()
	tunWG.Wait()
	// The links go before the data plane; the lease is revoked, so peers
	// drop this MD's links at once.
	stopCascade()
	stopChecker()
	closeDP()
	log.Info("stopped")
	return runErr
}

// logPlacement says, once at start, how endpoints are placed in
// conferences: in single-conference mode every endpoint no mapping places
// joins one conference; otherwise such endpoints are refused, and with no
// mapping at all every endpoint is, until the control API adds some.
func logPlacement(log *slog.Logger, m *control.Membership) {
	snap := m.Snapshot()
	switch {
	case m.Single() != "":
		log.Warn("single-conference mode: every endpoint that no mapping places joins one conference; do not serve several conferences from this MD",
			"single_conference", m.Single(), "tls_id_mappings", len(snap.TLSIDs), "addr_mappings", len(snap.Addrs))
	case len(snap.TLSIDs)+len(snap.Addrs) == 0:
		log.Warn("no conference mappings yet: every endpoint is refused until the control API maps it (or set single-conference)")
	default:
		log.Info("endpoints that no mapping places are refused", "tls_id_mappings", len(snap.TLSIDs), "addr_mappings", len(snap.Addrs))
	}
}

// reloaders are what SIGHUP does, each for the options it applies; every
// option declared Reload must be in exactly one (TestReloadCoversOptions).
// All run on every reload, changed or not: the file's mappings replace
// those set through the control API, as they always have. (idle-timeout
// reaches the slow path and the data plane's Opener lifetime, max(10m,
// 2×idle-timeout), which must outlive it.)
var reloaders = []struct {
	options []string
	apply   func(d *daemon, n *config.Config)
}{
	{[]string{"log-level"}, func(d *daemon, n *config.Config) {
		if err := n.SetLevel(d.level); err != nil {
			d.log.Error("SIGHUP: log level", "err", err)
		}
	}},
	{[]string{"idle-timeout", "handshake-timeout", "consent-timeout", "max-pending", "max-pending-per-prefix",
		"new-associations-per-second", "new-associations-burst"}, func(d *daemon, n *config.Config) {
		d.relay.SetLimits(n.Limits())
		if d.dp != nil {
			d.dp.SetOpenerIdle(n.OpenerIdle())
		}
	}},
	{[]string{"mappings"}, func(d *daemon, n *config.Config) {
		if err := d.memb.Replace(n.Mappings); err != nil {
			d.log.Error("SIGHUP: mappings", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.relay.Reassign(ctx); err != nil {
			d.log.Warn("SIGHUP: reassign associations", "err", err)
		}
	}},
}

// reload re-reads the configuration (same flags, file re-read), applies
// what can change at run time and names, in one line, every changed
// setting that needs a restart. d.cfg stays the configuration that runs:
// the reloadable settings are taken over, the others are not.
func (d *daemon) reload() {
	n, _, err := loadValid(d.args, io.Discard)
	if err != nil {
		d.log.Error("SIGHUP: configuration invalid; keeping the running one", "err", err)
		return
	}
	for _, r := range reloaders {
		r.apply(d, &n)
	}
	applied, restart := reloadPlan(&d.cfg, &n)
	lim := d.relay.Limits()
	d.log.Info("SIGHUP: configuration reloaded", "changed", applied, "idle_timeout", lim.IdleTimeout,
		"handshake_timeout", lim.HandshakeTimeout, "consent_timeout", lim.ConsentTimeout, "max_pending", lim.MaxPending, "log_level", n.LogLevel)
	if len(restart) > 0 {
		d.log.Warn("SIGHUP: these settings changed but need a restart", "settings", restart)
	}
}

// reloadPlan compares the running configuration with the reloaded one: it
// returns the reloadable options that changed and the others that changed
// (in declaration order), and takes the reloadable values over into run.
func reloadPlan(run, n *config.Config) (applied, restart []string) {
	ro, no := run.Options(), n.Options()
	applied, restart = options.Changes(ro, no)
	options.Adopt(ro, no)
	return applied, restart
}
