package driver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/gen"
	"github.com/mdfast/mdfast/bench/internal/netns"
	"github.com/mdfast/mdfast/bench/internal/report"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/syssim"
)

const (
	mediaPort = 5004
	genPort   = 40000
	// verifyPerSecond is about how many packets per second the receivers
	// decrypt and verify; the sampling rate is chosen to match it.
	verifyPerSecond = 20000
)

// KeysDirect says how the mdfast paths get their keys in this driver.
const KeysDirect = "direct: bench/mdharness installs the key file into internal/keytable and runs internal/dataplane " +
	"with cmd/mdfast's defaults (internal/config); no DTLS handshake (cmd/mdfast offers no key-install API)"

// KeysBaseline says how the baseline gets its keys.
const KeysBaseline = "direct: bench/baseline reads the same key file into pion/srtp contexts"

// KeysReflector says how the reflector gets its keys: it has none.
const KeysReflector = "none: bench/reflector copies the sealed datagrams unchanged; the receivers open them with the sender's client_write keys"

// Config configures Run.
type Config struct {
	// Bin holds the mdharness, baseline and loadgen executables.
	Bin string
	// Plan is what to measure.
	Plan Plan
	// MDCore and GenCore are the cores the forwarder and the generator
	// are pinned to (taskset).
	MDCore, GenCore int
	// Nice is the niceness every measured process runs at (forwarders,
	// reflector, generator, keydist alike; 0: inherited). A negative one
	// makes the scheduler favour them over other tenants of a shared host.
	Nice int
	// Work is a directory for key files (default a temporary one).
	Work string
	// Progress receives the progress bar (nil: none).
	Progress io.Writer
	// Command is recorded in the results.
	Command string
	// Quick is recorded in the results.
	Quick  bool
	Logger *slog.Logger
}

// Run measures cfg.Plan and returns the results (with findings). It needs
// root. A step that fails is recorded with its error and the run goes on;
// Run returns an error only when nothing can be measured or ctx ends.
func Run(ctx context.Context, cfg Config) (*report.Run, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("driver: network namespaces, XDP and taskset pinning need root")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	need := []string{"mdharness", "baseline", "loadgen", "reflector"}
	if slices.Contains(cfg.Plan.Paths, SystemPath) {
		need = append(need, systemBinaries...)
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(cfg.Bin, b)); err != nil {
			return nil, fmt.Errorf("driver: %w", err)
		}
	}
	if cfg.Work == "" {
		d, err := os.MkdirTemp("", "mdfast-bench-")
		if err != nil {
			return nil, fmt.Errorf("driver: work directory: %w", err)
		}
		defer os.RemoveAll(d)
		cfg.Work = d
	}
	if removed, err := netns.RemoveStale(ctx); err != nil {
		log.Warn("driver: removing stale namespaces", "err", err)
	} else if len(removed) > 0 {
		log.Info("driver: removed namespaces of earlier runs", "names", removed)
	}
	// One topology per queue count the paths need (the multi-queue paths
	// get a veth pair with two queues of their own).
	topos := map[int]*netns.Topology{}
	defer func() {
		for _, t := range topos {
			if err := t.Close(); err != nil {
				log.Error("driver: removing namespaces", "err", err)
			}
		}
	}()
	for _, path := range cfg.Plan.Paths {
		n := Queues(path)
		if topos[n] != nil {
			continue
		}
		t, err := netns.SetupQueues(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("driver: topology: %w", err)
		}
		topos[n] = t
	}

	run := &report.Run{
		Started: time.Now().UTC(), Command: cfg.Command, Quick: cfg.Quick,
		Host:   hostInfo(cfg.MDCore, cfg.GenCore),
		Method: method(cfg),
	}
	pr := newProgress(cfg.Progress, cfg.Plan.Steps())
	var ctopo *netns.Cascade
	if n := cfg.Plan.cascadeMDs(); n > 1 {
		t, err := netns.SetupCascade(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("driver: cascade topology: %w", err)
		}
		defer func() {
			if err := t.Close(); err != nil {
				log.Error("driver: removing namespaces", "err", err)
			}
		}()
		ctopo = t
		run.Method = append(run.Method, cascadeMethod(&cfg))
	}
	for _, it := range cfg.Plan.Schedule() {
		var scs []report.Scenario
		var err error
		if it.Group.MDs > 1 {
			scs, err = runCascadeGroup(ctx, &cfg, ctopo, it, pr)
		} else {
			scs, err = runGroup(ctx, &cfg, topos[it.Queues()], it, pr)
		}
		run.Scenarios = append(run.Scenarios, scs...)
		if ctx.Err() != nil {
			pr.finish()
			run.Rounds = max(cfg.Plan.Rounds, 1)
			run.Finish()
			return run, fmt.Errorf("driver: %w", ctx.Err())
		}
		if err != nil {
			log.Warn("driver: group failed", "round", it.Round, "path", it.Path, "group", it.Group.Name, "err", err)
		}
	}
	pr.finish()
	run.Finished = time.Now().UTC()
	run.Rounds = max(cfg.Plan.Rounds, 1)
	run.Finish()
	return run, nil
}

func method(cfg Config) []string {
	return []string{
		"Topology: two network namespaces joined by one veth pair (198.18.0.1 forwarder, 198.18.0.2 endpoints, one UDP port per endpoint); one RX/TX queue, one data-plane worker.",
		"Multi-queue paths (" + MQPath + ", " + MQPath2Cores + "): their own veth pair with two RX/TX queues; the generator's kernel picks each endpoint's TX queue by a hash of its flow (no XPS), veth delivers it on the forwarder's RX queue of that number, one AF_XDP socket and worker per queue (queue_rx_packets: what each received). " + MQPath + " pins the forwarder to its core like the other paths; " + MQPath2Cores + " pins worker i to the forwarder's core and the generator's core in turn (both at the same niceness as every other measured process). Their ratios (forwarded packets per second and per forwarder CPU-second at saturation) are taken against " + report.MQBase + " in the same round, and summarized as median (min–max) over the rounds.",
		"Keys (mdfast paths): " + KeysDirect + ".",
		"Keys (baseline): " + KeysBaseline + ".",
		"Keys (" + SystemPath + "): " + KeysHandshake + ". " + SystemPath + " runs the real daemons: `mdfast run -mode " + SystemMode + "` (retried with -mode " + SystemFallback + " if it does not come up; the mode column says which ran) with its defaults except -new-associations-per-second -1 (every endpoint has the generator's one address) and 8 MiB socket buffers, and keydist in the forwarder's namespace, the tunnel (TLS over TCP) on its loopback, keydist pinned to the generator's core. Both are restarted for every step. Handshake times: per endpoint from its first ClientHello to its exported keys (p50, p99, max), and the wall time for all of them at once (total).",
		fmt.Sprintf("Scheduling: every measured process (forwarder, reflector, generator, keydist) runs at niceness %d (nice -n; 0: inherited), the same for all paths, so that other tenants of a shared host perturb the measurement less; they still share its cores.", cfg.Nice),
		fmt.Sprintf("Forwarder pinned to CPU %d, generator to CPU %d (taskset). md_cpu is the forwarder process's utime+stime from /proc/<pid>/stat over the measured phase; core_cpu is CPU %d's busy time from /proc/stat (softirq included; other tenants of the host too).", cfg.MDCore, cfg.GenCore, cfg.MDCore),
		"On veth the receive-side kernel work of a datagram runs on the sending core: the forwarder's input processing (XDP and AF_XDP copy, or the UDP stack) is charged to the generator's core, and the delivery of what the forwarder sends to the forwarder's core.",
		"offered_pps = packets per second sent to the forwarder × fanout (what a lossless forwarder delivers); forwarded_pps = packets per second the endpoints received. Step \"sat\" sends as fast as the generator can (its own core may be the limit, see md_cpu); the percentage steps pace at that fraction of the input rate the forwarder sustained at \"sat\".",
		"Endpoints seal with internal/srtpfast (client_write keys) just before sendmmsg and verify with pion/srtp (server_write keys): a sample of the received packets is decrypted and compared octet for octet; latency is receive time minus the send time in the payload (one clock).",
		fmt.Sprintf("Rounds: %d. Every round measures every group on every path, one path after the other (the order reversed every other round), each step with a fresh forwarder process; a path's ratio to the baseline is computed per round from the same round's baseline, and the summary gives its median over the rounds with the smallest and largest (min–max). Goals are judged at the median, never on one round.", max(cfg.Plan.Rounds, 1)),
		"Reflectors (the generator's calibration): bench/reflector, a forwarder with no keys and no crypto that sends every media datagram unchanged to every other member of the conference, in one of three modes, each the calibration of the paths with the same I/O. " + ReflectorPath + ": UDP sockets (recvmmsg, sendmmsg; internal/udpbatch, one goroutine), for mdfast-socket and the baseline. " + ReflectorXDPNative + " and " + ReflectorXDPGeneric + ": AF_XDP, for the paths in that XDP mode (" + ReflectorXDPNative + " also for mdfast-system, which runs " + SystemMode + ", and the -wait variants): the classifier mdfast loads (bpf/, DTLS and STUN to the AF_XDP socket too) attached in that mode, one AF_XDP socket per queue (copy mode on veth) with cmd/mdfast's default sizes, batch and idle wait (internal/config: poll with need_wakeup), driven through internal/dataplane's XDPPort with a neighbour table; per received batch every datagram is copied into one TX frame per other member (TxBuffer, copy, Commit) and the batch flushed at once. So the packet path up to user space and back is mdfast's own, and what an XDP path adds over its reflector is its key-table lookup, its crypto and its per-packet bookkeeping. (XDP_TX or XDP_REDIRECT alone cannot fan out: one frame out per frame in.) Every reflector is pinned like the forwarders. Its receivers decrypt with the sender's client_write keys instead of their own server_write keys (the same pion/srtp work per sampled packet). After every paced step of a swept single-profile group the path's reflector runs at the same input rate (the same round), so each path has its own calibration; on the fixed patterns (audio, video) every reflector runs once per round like a path, and calibrates the paths of its kind. A path whose reflector is not in the plan is not calibrated (no reflector of another kind stands in).",
		fmt.Sprintf("Added latency = a path's latency percentile minus its reflector's same percentile at the same rate in the same round (p50, p99, p99.9): a difference of the two distributions' quantiles, not of single packets (no packet goes through both). What it removes: the generator's own queueing and scheduling (a batch shares one send time), the veth and the receiving sockets. What it keeps: everything the forwarder adds over the simplest forwarder with the same I/O (for an XDP path: its key table, its crypto and its bookkeeping, and any difference in its wake-ups). Negative values (the path faster than its reflector: noise) are reported as measured. Summaries give the median over the rounds and min–max. A reflector step busier than %.0f%% of a core (its md_cpu) calibrates nothing: it queues packets itself, and the step shows \"<reflector> saturated\" instead of an added latency. The added-latency goal of the XDP paths is judged against the XDP reflector of the same mode, and only when that reflector calibrated the step in the rounds and its own p99 moved less than the goal between them (else NOT RESOLVED: the reflector saturated, or the host was too noisy).", report.MaxReflectorCPU*100),
		fmt.Sprintf("Dwell (XDP paths and XDP reflectors): the time each forwarded packet spends in the forwarder, measured by the forwarder itself: the XDP classifier writes the receive time (bpf_ktime_get_ns, CLOCK_MONOTONIC) in the metadata in front of every frame it redirects, the kernel copies it into the UMEM with the frame, and the worker (or the reflector's loop), once the TX kick of the batch carrying the packet's copies has returned, reads the clock once and counts now − receive time per forwarded packet in a histogram (internal/dwell: 1 µs bins below 100 µs, at most 5 %% wide above; the percentiles are bin upper edges). The generator signals the forwarder at the start and the end of the measured phase (-md-snapshot) and the step's dwell is the histogram's difference between the two. Dwell leaves out what happens before the redirect (the generator, the veth, the receive-side XDP run, charged to the generator's core on veth) and after the kick (the copy-mode TX and the delivery to the endpoints), so neither the generator's queueing nor a reflector's saturation blurs it. Added dwell = a path's dwell percentile minus its XDP reflector's at the same rate in the same round; a reflector busier than %.0f%% of a core is flagged (\"reflector busy\"): its dwell then includes its own queueing. The latency goal of the XDP paths at 50%% (added p99 ≤ %d µs) is judged from the dwell: the path's whole dwell p99 at or under the goal is enough (it adds at most its whole dwell), otherwise the added dwell p99 decides. The send-to-receive columns are kept beside it.", report.MaxReflectorCPU*100, report.GoalAddedP99us),
		"Double (profile " + benchkeys.ProfileDouble + ", 0x0009, RFC 8723; groups named *-double): every endpoint seals both layers itself with internal/double (crypto/cipher, independent of internal/srtpfast): the inner layer under the conference's end-to-end key, an empty OHB, the outer layer under its own hop-by-hop client_write key; the forwarder holds only the hop-by-hop (outer) keys, installed directly into its key table, and re-seals the outer layer per receiver; receivers remove the outer layer with their server_write key, then the inner one with the end-to-end key, and compare the payload octet for octet. Measured on " + strings.Join(DoublePaths, ", ") + ": not on baseline (pion/srtp v3 has no double profile). On " + SystemPath + " the handshakes negotiate 0x0009 with EKT: the KD gives the forwarder only the hop-by-hop halves and every endpoint the conference's EKTKey, whose salt is the end-to-end salt; every packet ends in a ShortEKTField the forwarder carries.",
	}
}

// forwarder is a running forwarder process.
type forwarder struct {
	cmd    interface{ Wait() error }
	pid    int
	stop   func() error
	lines  chan string
	stderr *bytes.Buffer
	mode   string
	// done, when set, replaces finish (the system path's daemons).
	done func() (map[string]uint64, error)
	// queueRx is set by finish: packets per worker (multi-queue paths).
	queueRx []uint64
	// dwell is set by finish from the first two snapshot lines (the
	// measured phase), when they carry a dwell histogram.
	dwell *report.Dwell
}

func startForwarder(ctx context.Context, cfg *Config, topo *netns.Topology, path, keys string) (*forwarder, error) {
	var bin string
	var args []string
	v, variant := Variants[path]
	switch {
	case path == BaselinePath:
		bin, args = "baseline", []string{"-keys", keys}
	case path == ReflectorPath:
		bin, args = "reflector", []string{"-keys", keys}
	case path == ReflectorXDPNative, path == ReflectorXDPGeneric:
		// On the topology of the path it calibrates: a socket per queue.
		bin, args = "reflector", []string{"-keys", keys, "-mode", strings.TrimPrefix(path, "reflector-"), "-iface", topo.MDIf, "-queues", strconv.Itoa(max(topo.Queues, 1))}
	case path == "mdfast-xdp-native", path == "mdfast-xdp-generic", path == "mdfast-socket":
		bin, args = "mdharness", []string{"-keys", keys, "-mode", strings.TrimPrefix(path, "mdfast-"), "-iface", topo.MDIf}
	case path == MQPath, path == MQPath2Cores:
		bin, args = "mdharness", []string{"-keys", keys, "-mode", "xdp-native", "-iface", topo.MDIf, "-queues", strconv.Itoa(Queues(path))}
	case variant:
		bin, args = "mdharness", []string{"-keys", keys, "-mode", v.Mode, "-wait", v.Wait, "-iface", topo.MDIf}
		if v.Kick > 0 {
			args = append(args, "-tx-kick-frames", strconv.Itoa(v.Kick))
		}
	default:
		return nil, fmt.Errorf("driver: unknown path %q", path)
	}
	core := cfg.MDCore
	if path == MQPath2Cores {
		core = -1 // both cores; the workers are pinned
		args = append(args, "-cpus", fmt.Sprintf("%d,%d", cfg.MDCore, cfg.GenCore))
	}
	return spawn(ctx, cfg, topo.MDNS, core, bin, args)
}

// spawn starts executable bin of cfg.Bin with args in namespace ns,
// pinned to core (-1: not pinned), and waits for its "ready <mode>" line.
func spawn(ctx context.Context, cfg *Config, ns string, core int, bin string, args []string) (*forwarder, error) {
	cmd := netns.Command(ctx, ns, core, cfg.Nice, filepath.Join(cfg.Bin, bin), args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("driver: %s: %w", bin, err)
	}
	f := &forwarder{cmd: cmd, stderr: new(bytes.Buffer), lines: make(chan string, 4)}
	cmd.Stderr = f.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("driver: start %s: %w", bin, err)
	}
	f.pid = cmd.Process.Pid
	f.stop = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	select {
	case l, ok := <-f.lines:
		if ok && strings.HasPrefix(l, "ready ") {
			f.mode = strings.TrimPrefix(l, "ready ")
			return f, nil
		}
		_ = cmd.Wait()
		return nil, fmt.Errorf("driver: %s did not start: %s", bin, lastLine(f.stderr.String()))
	case <-time.After(15 * time.Second):
		_ = f.stop()
		_ = cmd.Wait()
		return nil, fmt.Errorf("driver: %s not ready after 15 s: %s", bin, lastLine(f.stderr.String()))
	case <-ctx.Done():
		_ = cmd.Wait()
		return nil, ctx.Err()
	}
}

// finish stops the forwarder and returns its non-zero drop counters and,
// from mdharness, the AF_XDP wait counters with rx_packets (and each
// worker's received packets in queueRx).
func (f *forwarder) finish() (map[string]uint64, error) {
	if f.done != nil {
		return f.done()
	}
	f.queueRx, f.dwell = nil, nil
	_ = f.stop()
	var last string
	var snaps []dwell.Hist
	for l := range f.lines {
		last = l
		var snap struct {
			Snapshot map[string]uint64 `json:"snapshot"`
			Dwell    *dwell.Sparse     `json:"dwell"`
		}
		if json.Unmarshal([]byte(l), &snap) == nil && snap.Snapshot != nil && snap.Dwell != nil {
			if h, herr := snap.Dwell.Hist(); herr == nil {
				snaps = append(snaps, h)
			}
		}
	}
	if len(snaps) >= 2 {
		f.dwell = dwellOf(&snaps[0], &snaps[1])
	}
	err := f.cmd.Wait()
	var st struct {
		Counters map[string]uint64   `json:"counters"`
		Workers  []map[string]uint64 `json:"workers"`
	}
	if jerr := json.Unmarshal([]byte(last), &st); jerr != nil {
		return nil, errors.Join(fmt.Errorf("driver: forwarder counters: %w", jerr), err)
	}
	if len(st.Workers) > 1 {
		for _, w := range st.Workers {
			f.queueRx = append(f.queueRx, w["rx_packets"])
		}
	}
	drops := map[string]uint64{}
	for k, v := range st.Counters {
		if (strings.HasPrefix(k, "drop_") || strings.HasPrefix(k, "xdp_") || k == "rx_packets") && v != 0 {
			drops[k] = v
		}
	}
	return drops, err
}

// dwellOf summarizes the dwells counted between two snapshots of a
// forwarder's histogram (nil when none was); a percentile of 100 ms or
// more is reported as report.DwellLimitUs.
func dwellOf(start, end *dwell.Hist) *report.Dwell {
	d := end.Sub(start)
	n := d.Count()
	if n == 0 {
		return nil
	}
	// A quantile in the overflow bin is at least dwell.Max.
	us := func(q float64) float64 { return float64(min(d.Quantile(q), dwell.Max)) / 1e3 }
	return &report.Dwell{Packets: n, P50us: us(0.5), P99us: us(0.99), P999us: us(0.999)}
}

func runGroup(ctx context.Context, cfg *Config, topo *netns.Topology, it Item, pr *progress) ([]report.Scenario, error) {
	path, g := it.Path, it.Group
	calibrate := cfg.Plan.calibrates(g, path)
	directKeys := filepath.Join(cfg.Work, fmt.Sprintf("keys-%d-%s.json", g.Participants, g.KeyProfile()))
	keysPath := directKeys
	var files *syssim.Files
	var err error
	if path != SystemPath || calibrate {
		var kf *benchkeys.File
		kf, err = benchkeys.GenerateProfile(g.KeyProfile(), g.Participants, topo.GenAddr, genPort, netip.AddrPortFrom(topo.MDAddr, mediaPort))
		if err == nil {
			err = kf.Write(directKeys)
		}
	}
	if err == nil && path == SystemPath {
		files, keysPath, err = writeSystemFiles(filepath.Join(cfg.Work, fmt.Sprintf("system-%s", g.Name)), topo, g)
	}
	fail := func(err error) ([]report.Scenario, error) {
		var out []report.Scenario
		for _, st := range g.steps() {
			s := base(path, g, st, err.Error())
			s.Round = it.Round
			out = append(out, s)
			pr.step()
			if calibrate && st != "sat" {
				pr.step()
			}
		}
		return out, err
	}
	if err != nil {
		return fail(err)
	}
	step := func(st string, rate float64, why string) report.Scenario {
		if why != "" {
			return base(path, g, st, why)
		}
		return runStep(ctx, cfg, topo, path, keysPath, files, g, st, rate)
	}
	var calibration func(st string, rate float64, why string) report.Scenario
	if calibrate {
		// The path's reflector at the rate the step was paced at.
		calibration = func(st string, rate float64, why string) report.Scenario {
			ref := ReflectorFor(path)
			pr.show(fmt.Sprintf("r%d %s %s@%s (for %s)", it.Round, ref, g.Name, st, path))
			var c report.Scenario
			if why != "" {
				c = base(ref, g, st, why)
			} else {
				c = runStep(ctx, cfg, topo, ref, directKeys, nil, g, st, rate)
			}
			c.Calibrates = path
			return c
		}
	}
	return runSteps(ctx, it, pr, step, calibration), nil
}

// runSteps runs the steps of it.Group on it.Path in order, each paced from the
// input rate the saturation step sustained (Group.stepRate): step measures
// one (why, when set, is why its rate cannot be set), and then, for a
// paced step and unless ctx has ended, calibration (if not nil) measures
// the path's reflector at the same rate. Every scenario gets it.Round
// and counts as a step of pr; the loop ends early when ctx does.
func runSteps(ctx context.Context, it Item, pr *progress, step, calibration func(st string, rate float64, why string) report.Scenario) []report.Scenario {
	g := it.Group
	var out []report.Scenario
	var satInput float64
	add := func(s report.Scenario) bool {
		s.Round = it.Round
		out = append(out, s)
		pr.step()
		return ctx.Err() == nil
	}
	for _, st := range g.steps() {
		pr.show(fmt.Sprintf("r%d %s %s@%s", it.Round, it.Path, g.Name, st))
		rate, why := g.stepRate(st, satInput)
		s := step(st, rate, why)
		if st == "sat" && s.Error == "" {
			satInput = s.ForwardedPPS / float64(g.Fanout())
		}
		if !add(s) {
			break
		}
		if calibration != nil && st != "sat" && !add(calibration(st, rate, why)) {
			break
		}
	}
	return out
}

// stepRate is the per-sender rate of step st (0: as fast as the generator
// can), or why it cannot be paced. satInput is the input rate the
// forwarder sustained at the group's saturation step.
func (g *Group) stepRate(st string, satInput float64) (float64, string) {
	switch {
	case st == "sat":
		return 0, ""
	case g.Pattern == "flood":
		frac, _ := strconv.ParseFloat(strings.TrimSuffix(st, "%"), 64)
		rate := frac / 100 * satInput / float64(g.Senders)
		if rate < 1 {
			return 0, "no saturation measured to pace from"
		}
		return rate, ""
	}
	return g.Rate, ""
}

// runStep measures one step at rate (per sender; 0: flat out) with a fresh
// forwarder process, so that no replay window, ROC or queue carries over
// from the step before. files are the system path's certificates (nil on
// the others).
func runStep(ctx context.Context, cfg *Config, topo *netns.Topology, path, keysPath string, files *syssim.Files, g *Group, st string, rate float64) report.Scenario {
	s := base(path, g, st, "")
	sample := 16
	if rate > 0 {
		out := rate * float64(g.Senders*g.Fanout())
		sample = max(1, int(math.Ceil(out/verifyPerSecond)))
	}
	var fw *forwarder
	var err error
	if path == SystemPath {
		fw, err = startSystem(ctx, cfg, topo, files, st)
	} else {
		fw, err = startForwarder(ctx, cfg, topo, path, keysPath)
	}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Mode = fw.mode
	res, err := runLoadgen(ctx, cfg, topo, fw.pid, keysPath, g, rate, sample, report.IsReflector(path), hasDwell(path))
	if err != nil {
		s.Error = err.Error()
	} else {
		fill(&s, res)
	}
	counters, ferr := fw.finish()
	for k, v := range counters {
		switch {
		case strings.HasPrefix(k, "drop_"):
			if s.ForwarderDrops == nil {
				s.ForwarderDrops = map[string]uint64{}
			}
			s.ForwarderDrops[k] = v
		case k == "xdp_poll_sleeps":
			s.XDPPollSleeps = v
		case k == "xdp_spin_catches":
			s.XDPSpinCatches = v
		case k == "rx_packets":
			s.ForwarderRx = v
		}
	}
	s.QueueRx = fw.queueRx
	s.Dwell = fw.dwell
	if ferr != nil && ctx.Err() == nil {
		cfg.Logger.Warn("driver: forwarder exit", "path", path, "group", g.Name, "step", st, "err", ferr,
			"stderr", lastLine(fw.stderr.String()))
	}
	return s
}

func base(path string, g *Group, step, errText string) report.Scenario {
	keys, ref := KeysDirect, ReflectorFor(path)
	switch {
	case path == BaselinePath:
		keys = KeysBaseline
	case report.IsReflector(path):
		keys, ref = KeysReflector, ""
	case path == SystemPath:
		keys = KeysHandshake
	}
	return report.Scenario{
		Name: g.Name + "@" + step, Group: g.Name, Step: step, Path: path, Payload: g.Payload,
		Fanout: g.Fanout(), Participants: g.Participants, Senders: g.Senders, Pattern: g.Pattern,
		Keys: keys, Error: errText, MDCPU: -1, CoreCPU: -1, Profile: g.KeyProfile(), Reflector: ref,
	}
}

func fill(s *report.Scenario, r *gen.Result) {
	s.OfferedPPS, s.ForwardedPPS, s.InputPPS, s.Loss = r.OfferedPPS, r.ForwardedPPS, r.InputPPS, r.Loss
	s.P50us, s.P99us, s.P999us, s.JitterUs = r.Latency.P50, r.Latency.P99, r.Latency.P999, r.JitterUs
	s.MDCPU, s.CoreCPU = r.MDCPU, r.CoreCPU
	if r.MDCPU > 0 {
		s.ForwardedPerCPUSecond = r.ForwardedPPS / r.MDCPU
	}
	s.Sent, s.Received, s.Verified, s.VerifyErrors = r.Sent, r.Received, r.Verified, r.VerifyErrors
	if r.SendBursts > 0 {
		s.SendBurstMean, s.SendBurstMax = float64(r.Sent)/float64(r.SendBursts), r.SendBurstMax
	}
	if h := r.Handshake; h != nil {
		s.Handshakes, s.HandshakesOK, s.HandshakeTotalMs = h.Endpoints, h.OK, h.TotalMs
		if h.TotalMs > 0 {
			s.SetupsPerSecond = float64(h.OK) / (h.TotalMs / 1000)
		}
		s.HandshakeP50ms, s.HandshakeP99ms, s.HandshakeMaxMs = h.Duration.P50/1e3, h.Duration.P99/1e3, h.Duration.Max/1e3
	}
	if r.VerifyErrors > 0 {
		s.Error = fmt.Sprintf("%d packets failed verification: %s", r.VerifyErrors, r.FirstError)
	}
}

// hasDwell says whether path's forwarder measures its dwell and prints it
// on SIGUSR1 (mdharness in an XDP mode, the XDP reflectors).
func hasDwell(path string) bool {
	if v, ok := Variants[path]; ok {
		return strings.HasPrefix(v.Mode, "xdp-")
	}
	switch path {
	case "mdfast-xdp-native", "mdfast-xdp-generic", MQPath, MQPath2Cores, ReflectorXDPNative, ReflectorXDPGeneric:
		return true
	}
	return false
}

func runLoadgen(ctx context.Context, cfg *Config, topo *netns.Topology, mdPid int, keys string, g *Group, rate float64, sample int, reflected, snapshot bool) (*gen.Result, error) {
	t := cfg.Plan.Timing
	args := []string{
		"-keys", keys, "-senders", strconv.Itoa(g.Senders), "-rate", strconv.FormatFloat(rate, 'f', 3, 64),
		"-payload", strconv.Itoa(g.Payload), "-burst", strconv.Itoa(max(g.Burst, 1)), "-streams", strconv.Itoa(max(g.Streams, 1)),
		"-warmup", t.Warmup.String(), "-duration", t.Duration.String(), "-drain", t.Drain.String(),
		"-profile", g.KeyProfile(), "-sample", strconv.Itoa(sample), "-md-pid", strconv.Itoa(mdPid), "-md-core", strconv.Itoa(cfg.MDCore),
	}
	if reflected {
		args = append(args, "-reflected")
	}
	if snapshot {
		// The forwarder prints its counters and dwell histogram at the
		// start and the end of the measured phase.
		args = append(args, "-md-pids", strconv.Itoa(mdPid), "-md-snapshot")
	}
	return loadgen(ctx, cfg, topo.GenNS, args)
}

// loadgen runs the load generator with args in namespace ns, pinned to
// the generator's core, and returns its result.
func loadgen(ctx context.Context, cfg *Config, ns string, args []string) (*gen.Result, error) {
	cmd := netns.Command(ctx, ns, cfg.GenCore, cfg.Nice, filepath.Join(cfg.Bin, "loadgen"), args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loadgen: %w: %s", err, lastLine(stderr.String()))
	}
	var r gen.Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("loadgen output: %w", err)
	}
	return &r, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func hostInfo(mdCore, genCore int) report.Host {
	h := report.Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), MDCore: mdCore, GenCore: genCore}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}
