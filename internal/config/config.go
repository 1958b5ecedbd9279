package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/mdslow"
	"github.com/mdfast/mdfast/internal/options"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// Config is every setting of the daemon; Options declares them (flag and
// YAML key, default, validation, documentation, reload).
type Config struct {
	// Media plane.
	Interface  string
	Mode       string
	Address    string
	MediaPorts []uint16
	Queues     int
	CPUs       []int
	BatchSize  int
	BusyPoll   bool
	SockBuffer int
	Profiles   StringList
	// AF_XDP sizing and behaviour (XDP modes only).
	XSKBind         string
	RingSize        uint32
	UMEMFrames      uint32
	FrameSize       uint32
	BusyPollUsec    int
	BusyPollBudget  int
	UDPChecksumIPv4 bool

	// Tunnel to the key distributor(s).
	KD             StringList
	TunnelListen   string
	TunnelsPerKD   int
	TunnelCert     string
	TunnelKey      string
	TunnelCA       string
	KDServerName   string
	KDSPKI         StringList
	TunnelBackoff  Duration
	MaxAssociation int

	// Slow path.
	IdleTimeout      Duration
	HandshakeTimeout Duration
	MaxPending       int
	MaxPendingPrefix int
	NewPerSecond     float64
	NewBurst         int
	ConsentTimeout   Duration

	// Control plane and observability.
	SingleConference string
	// RemovedDefaultConference is the option default-conference, removed:
	// set, it is a validation error that says what replaced it.
	RemovedDefaultConference string
	Mappings                 control.Mappings
	ControlListen            string
	ControlTokenFile         string
	MetricsListen            string
	LogLevel                 string
	LogFormat                string

	// Several MDs: the shared store and the links (cascade.go).
	Etcd             etcdclient.Config
	MDID             string
	CascadeListen    string
	CascadeMediaAddr string
	CascadeCert      string
	CascadeKey       string
	CascadeCA        string
	DirectoryLease   Duration
}

// Defaults returns the default configuration.
func Defaults() Config {
	var c Config
	options.SetDefaults(c.Options())
	return c
}

// StringList is a repeatable, comma-separated flag and a YAML list.
type StringList = options.StringList

// Duration is a time.Duration written as "30s" in YAML.
type Duration = options.Duration

// Options returns the declaration of every setting, bound to c's fields:
// name (flag and YAML key), default, documentation, validation and whether
// SIGHUP applies it. Flags, the file, Validate, the README table and the
// reload all derive from it.
func (c *Config) Options() []options.Option {
	o := []options.Option{
		// Media plane.
		options.String(&c.Interface, "interface", "", "NIC for XDP (required for the xdp modes)").Check(func() error {
			var errs []error
			if m, err := c.ParseMode(); err == nil && (m == dataplane.ModeXDPNative || m == dataplane.ModeXDPGeneric) && c.Interface == "" {
				errs = append(errs, fmt.Errorf("required in mode %s", c.Mode))
			}
			if len(c.Interface) > 15 {
				errs = append(errs, fmt.Errorf("%q is longer than an interface name", c.Interface))
			}
			return errors.Join(errs...)
		}),
		options.String(&c.Mode, "mode", "auto", "data path: auto, xdp-native, xdp-generic or socket").Check(func() error {
			_, err := c.ParseMode()
			return err
		}),
		options.String(&c.Address, "address", "", "address the media sockets bind to (empty: all)").Check(func() error {
			if c.Address != "" {
				if _, err := netip.ParseAddr(c.Address); err != nil {
					return err
				}
			}
			return nil
		}),
		options.Ports(&c.MediaPorts, "media-ports", []uint16{5004}, "media UDP ports, comma-separated").Check(func() error {
			if len(c.MediaPorts) == 0 {
				return errors.New("at least one port is required")
			}
			var errs []error
			seen := map[uint16]bool{}
			for _, p := range c.MediaPorts {
				if p == 0 {
					errs = append(errs, errors.New("port 0"))
				}
				if seen[p] {
					errs = append(errs, fmt.Errorf("port %d twice", p))
				}
				seen[p] = true
			}
			return errors.Join(errs...)
		}),
		options.Int(&c.Queues, "queues", 1, "NIC queues served (one worker each)").Check(func() error {
			return inRange(c.Queues, 1, 1024)
		}),
		options.Ints(&c.CPUs, "cpus", nil, "pin worker i to cpus[i % n], comma-separated").Check(func() error {
			var errs []error
			for _, cpu := range c.CPUs {
				if cpu < 0 {
					errs = append(errs, fmt.Errorf("negative CPU %d", cpu))
				}
			}
			return errors.Join(errs...)
		}),
		options.Int(&c.BatchSize, "batch-size", 64, "receive/transmit batch size").Check(func() error {
			return inRange(c.BatchSize, 1, 1024)
		}),
		options.Bool(&c.BusyPoll, "busy-poll", false, "prefer busy polling on AF_XDP sockets"),
		options.Int(&c.SockBuffer, "socket-buffer", 0, "SO_RCVBUF/SO_SNDBUF of the sockets (0: kernel default)").Check(func() error {
			return nonNegative(c.SockBuffer)
		}),
		options.List(&c.Profiles, "profiles", StringList{"0x0009", "0x000A", "0x0007", "0x0008"},
			"SRTP protection profiles advertised to the KD (the RFC 8723 double profiles first)").Check(func() error {
			_, err := c.ParseProfiles()
			return err
		}),
		// AF_XDP sizing and behaviour (XDP modes only).
		options.String(&c.XSKBind, "xsk-bind", "auto", "AF_XDP bind mode: auto (zero-copy when the driver offers it), copy or zerocopy").Check(func() error {
			_, err := c.ParseXSKBind()
			return err
		}),
		options.Uint32(&c.RingSize, "ring-size", afxdp.DefaultRingSize, "AF_XDP ring size, a power of two").Check(func() error {
			if r := c.RingSize; r < 64 || r > 1<<16 || r&(r-1) != 0 {
				return fmt.Errorf("%d is not a power of two in 64..65536", r)
			}
			return nil
		}),
		// The fill and TX rings must be fillable with frames to spare for
		// the ones the worker holds.
		options.Uint32(&c.UMEMFrames, "umem-frames", afxdp.DefaultNumFrames, "UMEM frames per queue").Check(func() error {
			if c.UMEMFrames < 2*c.RingSize || c.UMEMFrames > 1<<20 {
				return fmt.Errorf("%d is not in 2×ring-size (%d)..1048576", c.UMEMFrames, 2*c.RingSize)
			}
			return nil
		}),
		options.Uint32(&c.FrameSize, "frame-size", afxdp.DefaultFrameSize, "UMEM frame size, 2048 or 4096").Check(func() error {
			if c.FrameSize != 2048 && c.FrameSize != 4096 {
				return fmt.Errorf("%d is neither 2048 nor 4096", c.FrameSize)
			}
			return nil
		}),
		options.Int(&c.BusyPollUsec, "busy-poll-usec", 50, "SO_BUSY_POLL microseconds when busy-poll is on").Check(func() error {
			return nonNegative(c.BusyPollUsec)
		}),
		options.Int(&c.BusyPollBudget, "busy-poll-budget", 64, "SO_BUSY_POLL_BUDGET packets when busy-poll is on").Check(func() error {
			return nonNegative(c.BusyPollBudget)
		}),
		options.Bool(&c.UDPChecksumIPv4, "udp-checksum-ipv4", true, "compute UDP checksums on IPv4 frames sent through AF_XDP (IPv6 always has them)"),

		// Tunnel to the key distributor(s).
		options.List(&c.KD, "kd", nil, "key distributor tunnel address host:port (repeatable)").Check(func() error {
			if len(c.KD) == 0 && c.TunnelListen == "" {
				return errors.New("give at least one key distributor address (or tunnel-listen for reverse mode)")
			}
			var errs []error
			for _, k := range c.KD {
				if _, port, err := net.SplitHostPort(k); err != nil || port == "" {
					errs = append(errs, fmt.Errorf("%q is not host:port", k))
				}
			}
			return errors.Join(errs...)
		}),
		options.String(&c.TunnelListen, "tunnel-listen", "", "reverse mode: accept tunnels dialed by KDs on this address").Check(func() error {
			return hostPort(c.TunnelListen)
		}),
		options.Int(&c.TunnelsPerKD, "tunnels-per-kd", 1, "tunnels kept to each KD").Check(func() error {
			return inRange(c.TunnelsPerKD, 1, 64)
		}),
	}
	o = append(o, options.TunnelFiles(&c.TunnelCert, &c.TunnelKey, &c.TunnelCA, "KD")...)
	o = append(o,
		options.String(&c.KDServerName, "kd-server-name", "", "name expected in the KD certificate (empty: the dialed host)"),
		options.List(&c.KDSPKI, "kd-spki", nil, "pin the KD by SPKI SHA-256 (hex; repeatable)").Check(func() error {
			var errs []error
			for _, s := range c.KDSPKI {
				if len(s) != 64 {
					errs = append(errs, fmt.Errorf("%q is not 64 hex digits", s))
				}
			}
			return errors.Join(errs...)
		}),
		options.Dur(&c.TunnelBackoff, "tunnel-backoff-max", Duration(5*time.Second), "longest delay between tunnel reconnects").Check(func() error {
			return atLeast(c.TunnelBackoff.D(), 100*time.Millisecond)
		}),
		options.Int(&c.MaxAssociation, "max-associations", 65536, "most associations in the key table").Check(func() error {
			return positive(c.MaxAssociation)
		}),

		// Slow path: the limits (Limits) apply on SIGHUP.
		options.Dur(&c.IdleTimeout, "idle-timeout", Duration(mdslow.DefaultIdleTimeout), "end an association with no RTP/RTCP for this long").Reloadable().Check(func() error {
			return atLeast(c.IdleTimeout.D(), time.Second)
		}),
		options.Dur(&c.HandshakeTimeout, "handshake-timeout", Duration(mdslow.DefaultHandshakeTimeout), "end an association without keys this long after its ClientHello").Reloadable().Check(func() error {
			return atLeast(c.HandshakeTimeout.D(), time.Second)
		}),
		options.Dur(&c.ConsentTimeout, "consent-timeout", Duration(mdslow.DefaultConsentTimeout), "stop sending media to an endpoint of a session (control API /v1/sessions) that sent no authenticated ICE check from its address for this long (RFC 7675)").Reloadable().Check(func() error {
			return atLeast(c.ConsentTimeout.D(), 100*time.Millisecond)
		}),
		options.Int(&c.MaxPending, "max-pending", mdslow.DefaultMaxPending, "most associations in handshake").Reloadable().Check(func() error {
			return positive(c.MaxPending)
		}),
		options.Int(&c.MaxPendingPrefix, "max-pending-per-prefix", mdslow.DefaultMaxPendingPerPrefix, "most associations in handshake from one source prefix (IPv4 /24, IPv6 /48)").Reloadable().Check(func() error {
			return positive(c.MaxPendingPrefix)
		}),
		options.Float(&c.NewPerSecond, "new-associations-per-second", mdslow.DefaultNewPerSecond, "new associations per second per source IP (negative: unlimited)").Reloadable().Check(func() error {
			if c.NewPerSecond == 0 {
				return errors.New("0 would refuse every endpoint (negative disables the limit)")
			}
			return nil
		}),
		options.Int(&c.NewBurst, "new-associations-burst", mdslow.DefaultNewBurst, "burst of new associations per source IP").Reloadable().Check(func() error {
			return positive(c.NewBurst)
		}),

		// Control plane and observability.
		options.String(&c.SingleConference, "single-conference", "",
			"single-conference mode: endpoints no mapping places join this conference (empty: they are refused); only for an MD that serves one conference").Check(func() error {
			_, err := control.NewMembership(c.SingleConference)
			return err
		}),
		options.String(&c.RemovedDefaultConference, "default-conference", "",
			"removed, an error when set: endpoints no mapping places are refused unless single-conference names their conference").Check(func() error {
			return removedDefaultConference(c.RemovedDefaultConference)
		}),
		options.YAML(&c.Mappings, "mappings", "conference mappings (tls-ids, addrs) and ICE credentials (ice: {ufrag: password})").Reloadable().Check(func() error {
			m, err := control.NewMembership(c.SingleConference)
			if err != nil {
				return nil // single-conference says so
			}
			return m.Replace(c.Mappings)
		}),
		options.String(&c.ControlListen, "control-listen", "127.0.0.1:5742", "control API listen address (empty: disabled)").Check(func() error {
			return hostPort(c.ControlListen)
		}),
		options.String(&c.ControlTokenFile, "control-token-file", "", "file holding the control API bearer token (or MDFAST_CONTROL_TOKEN)"),
		options.String(&c.MetricsListen, "metrics-listen", "127.0.0.1:9542", "/metrics, /healthz and /readyz listen address (empty: disabled)").Check(func() error {
			return hostPort(c.MetricsListen)
		}),
	)
	logOpts := options.Log(&c.LogLevel, &c.LogFormat)
	logOpts[0] = logOpts[0].Reloadable() // log-level
	o = append(o, logOpts...)
	return append(o, c.cascadeOptions()...)
}

// ErrDefaultConferenceRemoved is wrapped by the validation error of a
// configuration that still sets default-conference.
var ErrDefaultConferenceRemoved = errors.New("default-conference was removed")

// removedDefaultConference refuses a configuration that sets the removed
// option default-conference. It used to put every endpoint no mapping
// placed into that one conference, whatever conference the KD admitted it
// to, so that two conferences on one MD forwarded to each other's members.
// Accepting it as single-conference would keep that failure for every
// configuration that set it without serving one conference only (setting
// it was never a statement that the MD serves one conference): the
// operator decides, once, at the upgrade (check-config fails before the
// daemon starts, a SIGHUP with it keeps the running configuration).
func removedDefaultConference(v string) error {
	if v == "" {
		return nil
	}
	return fmt.Errorf("%w: endpoints that no mapping places are refused now; if this MD serves only one conference, "+
		"set single-conference: %s to keep putting them there, else map them (mappings: tls-ids/addrs, or the control API) "+
		"and delete default-conference", ErrDefaultConferenceRemoved, v)
}

func inRange(v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%d is not in %d..%d", v, lo, hi)
	}
	return nil
}

func nonNegative(v int) error {
	if v < 0 {
		return errors.New("negative")
	}
	return nil
}

func positive(v int) error {
	if v < 1 {
		return errors.New("must be positive")
	}
	return nil
}

func atLeast(d, lo time.Duration) error {
	if d < lo {
		return fmt.Errorf("%v is below %v", d, lo)
	}
	return nil
}

func hostPort(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// Load parses args: defaults, then the -config file, then the flags given
// on the command line. It returns the config and the file's path ("" when
// none). It does not validate; call Validate.
func Load(name string, args []string, out io.Writer) (Config, string, error) {
	return options.Load(name, args, out, (*Config).Options)
}

// FlagSet returns the flags bound to c (plus -config, the file).
func FlagSet(name string, c *Config, out io.Writer) *flag.FlagSet {
	return options.FlagSet(name, c.Options(), out)
}

// LoadFile reads the YAML file at path over the defaults. Unknown keys are
// errors.
func LoadFile(path string) (Config, error) {
	c := Defaults()
	err := options.LoadFile(path, c.Options())
	return c, err
}

// FieldError is a validation error naming the field (the flag/YAML key).
type FieldError = options.FieldError

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// ParseXSKBind parses the xsk-bind setting.
func (c *Config) ParseXSKBind() (afxdp.Mode, error) {
	for _, m := range []afxdp.Mode{afxdp.ModeAuto, afxdp.ModeCopy, afxdp.ModeZeroCopy} {
		if c.XSKBind == m.String() {
			return m, nil
		}
	}
	return 0, fieldErr("xsk-bind", "%q is not auto, copy or zerocopy", c.XSKBind)
}

// ParseProfiles parses the profiles setting.
func (c *Config) ParseProfiles() ([]srtpfast.Profile, error) {
	var out []srtpfast.Profile
	for _, s := range c.Profiles {
		v, err := strconv.ParseUint(s, 0, 16)
		if err != nil {
			return nil, fieldErr("profiles", "%q: %w", s, err)
		}
		p := srtpfast.Profile(v)
		if !p.Supported() {
			return nil, fieldErr("profiles", "%q is not a profile the fast path supports (AEAD GCM and double only)", s)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fieldErr("profiles", "at least one profile is required")
	}
	return out, nil
}

// ParseMode parses the mode setting.
func (c *Config) ParseMode() (dataplane.Mode, error) {
	m, err := dataplane.ParseMode(c.Mode)
	if err != nil {
		return 0, &FieldError{Field: "mode", Err: err}
	}
	return m, nil
}

// Dataplane returns the data-plane configuration these settings describe,
// for the key table table. The daemon and the benchmark harness both build
// their data plane with it, so the two cannot drift apart. Call Validate
// first; Dataplane still reports a field that does not parse.
func (c *Config) Dataplane(table dataplane.Table, log *slog.Logger) (dataplane.Config, error) {
	mode, err := c.ParseMode()
	if err != nil {
		return dataplane.Config{}, err
	}
	xskMode, err := c.ParseXSKBind()
	if err != nil {
		return dataplane.Config{}, err
	}
	var addr netip.Addr
	if c.Address != "" {
		if addr, err = netip.ParseAddr(c.Address); err != nil {
			return dataplane.Config{}, fieldErr("address", "%w", err)
		}
	}
	busyUsec, busyBudget := 0, 0
	if c.BusyPoll {
		busyUsec, busyBudget = c.BusyPollUsec, c.BusyPollBudget
	}
	return dataplane.Config{
		Mode: mode, Interface: c.Interface, Ports: c.MediaPorts, Address: addr, Queues: c.Queues,
		BatchSize: c.BatchSize, BusyPoll: c.BusyPoll, CPUs: c.CPUs, SocketBuffer: c.SockBuffer,
		XSKMode: xskMode, RingSize: c.RingSize, NumFrames: c.UMEMFrames, FrameSize: c.FrameSize,
		BusyPollUsec: busyUsec, BusyPollBudget: busyBudget, UDPChecksumIPv4: c.UDPChecksumIPv4,
		OpenerIdle: c.OpenerIdle(),
		Table:      table, Logger: log,
	}, nil
}

// OpenerIdle is how long the data plane keeps an idle sender's receive
// state: max(10 minutes, 2×idle-timeout). It outlives the association's
// idle expiry, so a live sender never loses its replay window to eviction;
// a reload of idle-timeout changes it too (Dataplane.SetOpenerIdle).
func (c *Config) OpenerIdle() time.Duration { return max(10*time.Minute, 2*c.IdleTimeout.D()) }

// Validate checks every field, in declaration order, and returns all
// problems joined, each a *FieldError naming its field. It checks that
// files exist but does not parse certificates.
func (c *Config) Validate() error { return options.Validate(c.Options()) }

// Limits returns the slow path's limits.
func (c *Config) Limits() mdslow.Limits {
	return mdslow.Limits{
		IdleTimeout: c.IdleTimeout.D(), HandshakeTimeout: c.HandshakeTimeout.D(),
		MaxPending: c.MaxPending, NewPerSecond: c.NewPerSecond, NewBurst: c.NewBurst,
		MaxPendingPerPrefix: c.MaxPendingPrefix, ConsentTimeout: c.ConsentTimeout.D(),
	}
}
