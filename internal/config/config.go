package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/mdslow"
	"github.com/mdfast/mdfast/internal/srtpfast"
)

// maxFile bounds the configuration file.
const maxFile = 1 << 20

// Config is every setting of the daemon. The YAML keys are the flag names.
type Config struct {
	// Media plane.
	Interface  string     `yaml:"interface"`
	Mode       string     `yaml:"mode"`
	Address    string     `yaml:"address"`
	MediaPorts []uint16   `yaml:"media-ports"`
	Queues     int        `yaml:"queues"`
	CPUs       []int      `yaml:"cpus"`
	BatchSize  int        `yaml:"batch-size"`
	BusyPoll   bool       `yaml:"busy-poll"`
	SockBuffer int        `yaml:"socket-buffer"`
	Profiles   StringList `yaml:"profiles"`
	// AF_XDP sizing and behaviour (XDP modes only).
	XSKBind         string `yaml:"xsk-bind"`
	RingSize        uint32 `yaml:"ring-size"`
	UMEMFrames      uint32 `yaml:"umem-frames"`
	FrameSize       uint32 `yaml:"frame-size"`
	BusyPollUsec    int    `yaml:"busy-poll-usec"`
	BusyPollBudget  int    `yaml:"busy-poll-budget"`
	UDPChecksumIPv4 bool   `yaml:"udp-checksum-ipv4"`

	// Tunnel to the key distributor(s).
	KD             StringList `yaml:"kd"`
	TunnelListen   string     `yaml:"tunnel-listen"`
	TunnelsPerKD   int        `yaml:"tunnels-per-kd"`
	TunnelCert     string     `yaml:"tunnel-cert"`
	TunnelKey      string     `yaml:"tunnel-key"`
	TunnelCA       string     `yaml:"tunnel-ca"`
	KDServerName   string     `yaml:"kd-server-name"`
	KDSPKI         StringList `yaml:"kd-spki"`
	TunnelBackoff  Duration   `yaml:"tunnel-backoff-max"`
	MaxAssociation int        `yaml:"max-associations"`

	// Slow path.
	IdleTimeout      Duration `yaml:"idle-timeout"`
	HandshakeTimeout Duration `yaml:"handshake-timeout"`
	MaxPending       int      `yaml:"max-pending"`
	MaxPendingPrefix int      `yaml:"max-pending-per-prefix"`
	NewPerSecond     float64  `yaml:"new-associations-per-second"`
	NewBurst         int      `yaml:"new-associations-burst"`

	// Control plane and observability.
	DefaultConference string           `yaml:"default-conference"`
	Mappings          control.Mappings `yaml:"mappings"`
	ControlListen     string           `yaml:"control-listen"`
	ControlTokenFile  string           `yaml:"control-token-file"`
	MetricsListen     string           `yaml:"metrics-listen"`
	LogLevel          string           `yaml:"log-level"`
	LogFormat         string           `yaml:"log-format"`
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Mode:              "auto",
		MediaPorts:        []uint16{5004},
		Queues:            1,
		BatchSize:         64,
		Profiles:          StringList{"0x0009", "0x000A", "0x0007", "0x0008"},
		XSKBind:           "auto",
		RingSize:          afxdp.DefaultRingSize,
		UMEMFrames:        afxdp.DefaultNumFrames,
		FrameSize:         afxdp.DefaultFrameSize,
		BusyPollUsec:      50,
		BusyPollBudget:    64,
		UDPChecksumIPv4:   true,
		TunnelsPerKD:      1,
		TunnelBackoff:     Duration(5 * time.Second),
		IdleTimeout:       Duration(mdslow.DefaultIdleTimeout),
		HandshakeTimeout:  Duration(mdslow.DefaultHandshakeTimeout),
		MaxPending:        mdslow.DefaultMaxPending,
		MaxPendingPrefix:  mdslow.DefaultMaxPendingPerPrefix,
		NewPerSecond:      mdslow.DefaultNewPerSecond,
		NewBurst:          mdslow.DefaultNewBurst,
		MaxAssociation:    65536,
		DefaultConference: control.DefaultConference,
		ControlListen:     "127.0.0.1:5742",
		MetricsListen:     "127.0.0.1:9542",
		LogLevel:          "info",
		LogFormat:         "text",
	}
}

// StringList is a repeatable, comma-separated flag and a YAML list.
type StringList []string

// String implements flag.Value.
func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set implements flag.Value.
func (s *StringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

type durationFlag struct{ d *Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return "0s"
	}
	return time.Duration(*f.d).String()
}

func (f durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = Duration(v)
	return nil
}

type portsFlag struct{ p *[]uint16 }

func (f portsFlag) String() string {
	if f.p == nil {
		return ""
	}
	var s []string
	for _, p := range *f.p {
		s = append(s, strconv.Itoa(int(p)))
	}
	return strings.Join(s, ",")
}

func (f portsFlag) Set(v string) error {
	var out []uint16
	for p := range strings.SplitSeq(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
		if err != nil {
			return fmt.Errorf("port %q: %w", p, err)
		}
		out = append(out, uint16(n))
	}
	*f.p = out
	return nil
}

type intsFlag struct{ p *[]int }

func (f intsFlag) String() string {
	if f.p == nil {
		return ""
	}
	var s []string
	for _, p := range *f.p {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, ",")
}

func (f intsFlag) Set(v string) error {
	var out []int
	for p := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("cpu %q: %w", p, err)
		}
		out = append(out, n)
	}
	*f.p = out
	return nil
}

// FlagSet returns the flags bound to c (plus -config, the file).
func FlagSet(name string, c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", "", "YAML configuration file (keys are the flag names; flags override it)")
	fs.StringVar(&c.Interface, "interface", c.Interface, "NIC for XDP (required for the xdp modes)")
	fs.StringVar(&c.Mode, "mode", c.Mode, "data path: auto, xdp-native, xdp-generic or socket")
	fs.StringVar(&c.Address, "address", c.Address, "address the media sockets bind to (empty: all)")
	fs.Var(portsFlag{&c.MediaPorts}, "media-ports", "media UDP ports, comma-separated")
	fs.IntVar(&c.Queues, "queues", c.Queues, "NIC queues served (one worker each)")
	fs.Var(intsFlag{&c.CPUs}, "cpus", "pin worker i to cpus[i % n], comma-separated")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "receive/transmit batch size")
	fs.BoolVar(&c.BusyPoll, "busy-poll", c.BusyPoll, "prefer busy polling on AF_XDP sockets")
	fs.IntVar(&c.SockBuffer, "socket-buffer", c.SockBuffer, "SO_RCVBUF/SO_SNDBUF of the sockets (0: kernel default)")
	fs.StringVar(&c.XSKBind, "xsk-bind", c.XSKBind, "AF_XDP bind mode: auto (zero-copy when the driver offers it), copy or zerocopy")
	fs.Func("ring-size", fmt.Sprintf("AF_XDP ring size, a power of two (default %d)", c.RingSize), uint32Setter(&c.RingSize))
	fs.Func("umem-frames", fmt.Sprintf("UMEM frames per queue (default %d)", c.UMEMFrames), uint32Setter(&c.UMEMFrames))
	fs.Func("frame-size", fmt.Sprintf("UMEM frame size, 2048 or 4096 (default %d)", c.FrameSize), uint32Setter(&c.FrameSize))
	fs.IntVar(&c.BusyPollUsec, "busy-poll-usec", c.BusyPollUsec, "SO_BUSY_POLL microseconds when busy-poll is on")
	fs.IntVar(&c.BusyPollBudget, "busy-poll-budget", c.BusyPollBudget, "SO_BUSY_POLL_BUDGET packets when busy-poll is on")
	fs.BoolVar(&c.UDPChecksumIPv4, "udp-checksum-ipv4", c.UDPChecksumIPv4, "compute UDP checksums on IPv4 frames sent through AF_XDP (IPv6 always has them)")
	fs.Var(&c.Profiles, "profiles", "SRTP protection profiles advertised to the KD (default 0x0009,0x000A,0x0007,0x0008: the RFC 8723 double profiles first)")
	fs.Var(&c.KD, "kd", "key distributor tunnel address host:port (repeatable)")
	fs.StringVar(&c.TunnelListen, "tunnel-listen", c.TunnelListen, "reverse mode: accept tunnels dialed by KDs on this address")
	fs.IntVar(&c.TunnelsPerKD, "tunnels-per-kd", c.TunnelsPerKD, "tunnels kept to each KD")
	fs.StringVar(&c.TunnelCert, "tunnel-cert", c.TunnelCert, "tunnel TLS certificate (PEM)")
	fs.StringVar(&c.TunnelKey, "tunnel-key", c.TunnelKey, "tunnel TLS key (PEM)")
	fs.StringVar(&c.TunnelCA, "tunnel-ca", c.TunnelCA, "CA bundle (PEM) KD certificates must chain to")
	fs.StringVar(&c.KDServerName, "kd-server-name", c.KDServerName, "name expected in the KD certificate (empty: the dialed host)")
	fs.Var(&c.KDSPKI, "kd-spki", "pin the KD by SPKI SHA-256 (hex; repeatable)")
	fs.Var(durationFlag{&c.TunnelBackoff}, "tunnel-backoff-max", "longest delay between tunnel reconnects")
	fs.IntVar(&c.MaxAssociation, "max-associations", c.MaxAssociation, "most associations in the key table")
	fs.Var(durationFlag{&c.IdleTimeout}, "idle-timeout", "end an association with no RTP/RTCP for this long")
	fs.Var(durationFlag{&c.HandshakeTimeout}, "handshake-timeout", "end an association without keys this long after its ClientHello")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "most associations in handshake")
	fs.IntVar(&c.MaxPendingPrefix, "max-pending-per-prefix", c.MaxPendingPrefix, "most associations in handshake from one source prefix (IPv4 /24, IPv6 /64)")
	fs.Float64Var(&c.NewPerSecond, "new-associations-per-second", c.NewPerSecond, "new associations per second per source IP (negative: unlimited)")
	fs.IntVar(&c.NewBurst, "new-associations-burst", c.NewBurst, "burst of new associations per source IP")
	fs.StringVar(&c.DefaultConference, "default-conference", c.DefaultConference, "conference of endpoints with no mapping")
	fs.StringVar(&c.ControlListen, "control-listen", c.ControlListen, "control API listen address (empty: disabled)")
	fs.StringVar(&c.ControlTokenFile, "control-token-file", c.ControlTokenFile, "file holding the control API bearer token (or MDFAST_CONTROL_TOKEN)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "/metrics, /healthz and /readyz listen address (empty: disabled)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	return fs
}

// Load parses args: defaults, then the -config file, then the flags given
// on the command line. It returns the config and the file's path ("" when
// none). It does not validate; call Validate.
func Load(name string, args []string, out io.Writer) (Config, string, error) {
	c := Defaults()
	fs := FlagSet(name, &c, out)
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if fs.NArg() > 0 {
		return c, "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return c, "", nil
	}
	fc, err := LoadFile(path)
	if err != nil {
		return c, path, err
	}
	over := FlagSet(name, &fc, io.Discard)
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if g := over.Lookup(f.Name); g != nil {
			if lv, ok := g.Value.(*StringList); ok {
				*lv = nil // a list flag replaces the file's list
			}
			if err := g.Value.Set(f.Value.String()); err != nil && setErr == nil {
				setErr = fmt.Errorf("flag -%s: %w", f.Name, err)
			}
		}
	})
	return fc, path, setErr
}

// LoadFile reads the YAML file at path over the defaults. Unknown keys are
// errors.
func LoadFile(path string) (Config, error) {
	c := Defaults()
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return c, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxFile {
		return c, fmt.Errorf("config %s: larger than %d octets", path, maxFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	return c, nil
}

// FieldError is a validation error naming the field (the flag/YAML key).
type FieldError struct {
	Field string
	Err   error
}

// Error implements error.
func (e *FieldError) Error() string { return fmt.Sprintf("config: %s: %v", e.Field, e.Err) }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

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

func uint32Setter(p *uint32) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return err
		}
		*p = uint32(v)
		return nil
	}
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
		// An Opener outlives the association's idle expiry, so a live
		// sender never loses its replay window to eviction.
		OpenerIdle: max(10*time.Minute, 2*c.IdleTimeout.D()),
		Table:      table, Logger: log,
	}, nil
}

// Validate checks every field and returns all problems joined, each a
// *FieldError naming its field. It checks that files exist but does not
// parse certificates.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	m, err := c.ParseMode()
	add(err)
	if (m == dataplane.ModeXDPNative || m == dataplane.ModeXDPGeneric) && c.Interface == "" {
		add(fieldErr("interface", "required in mode %s", c.Mode))
	}
	if c.Interface != "" && len(c.Interface) > 15 {
		add(fieldErr("interface", "%q is longer than an interface name", c.Interface))
	}
	if c.Address != "" {
		if _, err := netip.ParseAddr(c.Address); err != nil {
			add(fieldErr("address", "%w", err))
		}
	}
	if len(c.MediaPorts) == 0 {
		add(fieldErr("media-ports", "at least one port is required"))
	}
	seen := map[uint16]bool{}
	for _, p := range c.MediaPorts {
		if p == 0 {
			add(fieldErr("media-ports", "port 0"))
		}
		if seen[p] {
			add(fieldErr("media-ports", "port %d twice", p))
		}
		seen[p] = true
	}
	if c.Queues < 1 || c.Queues > 1024 {
		add(fieldErr("queues", "%d is not in 1..1024", c.Queues))
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 {
			add(fieldErr("cpus", "negative CPU %d", cpu))
		}
	}
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		add(fieldErr("batch-size", "%d is not in 1..1024", c.BatchSize))
	}
	if c.SockBuffer < 0 {
		add(fieldErr("socket-buffer", "negative"))
	}
	if _, err := c.ParseXSKBind(); err != nil {
		add(err)
	}
	if r := c.RingSize; r < 64 || r > 1<<16 || r&(r-1) != 0 {
		add(fieldErr("ring-size", "%d is not a power of two in 64..65536", r))
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		add(fieldErr("frame-size", "%d is neither 2048 nor 4096", c.FrameSize))
	}
	// The fill and TX rings must be fillable with frames to spare for the
	// ones the worker holds.
	if c.UMEMFrames < 2*c.RingSize || c.UMEMFrames > 1<<20 {
		add(fieldErr("umem-frames", "%d is not in 2×ring-size (%d)..1048576", c.UMEMFrames, 2*c.RingSize))
	}
	if c.BusyPollUsec < 0 {
		add(fieldErr("busy-poll-usec", "negative"))
	}
	if c.BusyPollBudget < 0 {
		add(fieldErr("busy-poll-budget", "negative"))
	}
	_, err = c.ParseProfiles()
	add(err)
	if len(c.KD) == 0 && c.TunnelListen == "" {
		add(fieldErr("kd", "give at least one key distributor address (or tunnel-listen for reverse mode)"))
	}
	for _, k := range c.KD {
		if _, port, err := net.SplitHostPort(k); err != nil || port == "" {
			add(fieldErr("kd", "%q is not host:port", k))
		}
	}
	if c.TunnelListen != "" {
		if _, _, err := net.SplitHostPort(c.TunnelListen); err != nil {
			add(fieldErr("tunnel-listen", "%q is not host:port", c.TunnelListen))
		}
	}
	if c.TunnelsPerKD < 1 || c.TunnelsPerKD > 64 {
		add(fieldErr("tunnels-per-kd", "%d is not in 1..64", c.TunnelsPerKD))
	}
	for field, path := range map[string]string{"tunnel-cert": c.TunnelCert, "tunnel-key": c.TunnelKey, "tunnel-ca": c.TunnelCA} {
		if path == "" {
			add(fieldErr(field, "required (the tunnel is mutually authenticated)"))
		} else if _, err := os.Stat(path); err != nil {
			add(fieldErr(field, "%w", err))
		}
	}
	for _, s := range c.KDSPKI {
		if len(s) != 64 {
			add(fieldErr("kd-spki", "%q is not 64 hex digits", s))
		}
	}
	if c.TunnelBackoff.D() < 100*time.Millisecond {
		add(fieldErr("tunnel-backoff-max", "%v is below 100ms", c.TunnelBackoff.D()))
	}
	if c.MaxAssociation < 1 {
		add(fieldErr("max-associations", "must be positive"))
	}
	if c.IdleTimeout.D() < time.Second {
		add(fieldErr("idle-timeout", "%v is below 1s", c.IdleTimeout.D()))
	}
	if c.HandshakeTimeout.D() < time.Second {
		add(fieldErr("handshake-timeout", "%v is below 1s", c.HandshakeTimeout.D()))
	}
	if c.MaxPending < 1 {
		add(fieldErr("max-pending", "must be positive"))
	}
	if c.MaxPendingPrefix < 1 {
		add(fieldErr("max-pending-per-prefix", "must be positive"))
	}
	if c.NewPerSecond == 0 {
		add(fieldErr("new-associations-per-second", "0 would refuse every endpoint (negative disables the limit)"))
	}
	if c.NewBurst < 1 {
		add(fieldErr("new-associations-burst", "must be positive"))
	}
	if c.DefaultConference == "" {
		add(fieldErr("default-conference", "must not be empty"))
	}
	if err := control.NewMembership(c.DefaultConference).Replace(c.Mappings); err != nil {
		add(fieldErr("mappings", "%w", err))
	}
	for field, addr := range map[string]string{"control-listen": c.ControlListen, "metrics-listen": c.MetricsListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add(fieldErr(field, "%q is not host:port", addr))
		}
	}
	var lvl slogLevel
	if err := lvl.parse(c.LogLevel); err != nil {
		add(fieldErr("log-level", "%w", err))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add(fieldErr("log-format", "%q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// Limits returns the slow path's limits.
func (c *Config) Limits() mdslow.Limits {
	return mdslow.Limits{
		IdleTimeout: c.IdleTimeout.D(), HandshakeTimeout: c.HandshakeTimeout.D(),
		MaxPending: c.MaxPending, NewPerSecond: c.NewPerSecond, NewBurst: c.NewBurst,
		MaxPendingPerPrefix: c.MaxPendingPrefix,
	}
}
