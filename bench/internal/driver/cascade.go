package driver

// Cascade groups (issue 14): a conference's members split over several
// MDs joined by links. Each MD is a bench/mdharness -md i of the same
// cascade key file (benchkeys.Cascade) in a namespace of its own
// (netns.Cascade: the MDs and the generator on one bridge), installing its
// own members and one link association per peer MD; the generator sends
// each endpoint's media to its own MD and every endpoint must receive and
// open every other's. Each step reports, per MD, the datagrams it sent
// per second of its own CPU, next to the one-MD group of the same shape
// measured on the same path in the same round.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/gen"
	"github.com/mdfast/mdfast/bench/internal/netns"
	"github.com/mdfast/mdfast/bench/internal/report"
)

// CascadePaths are the paths a cascade group runs on: mdharness in each
// data plane mode, every MD of the cascade in the same mode.
var CascadePaths = []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket"}

// KeysCascade says how the MDs of a cascade group get their keys.
const KeysCascade = "direct, cascade: each bench/mdharness -md i installs its own members' keys and one link association per peer MD " +
	"(keytable link, cascade.Tag of the conference, per-direction link keys from cascade.DeriveKeys over keying material derived from a per-pair secret in the key file instead of a DTLS exporter)"

// cascadeGroup is fanoutGroup(fanout, payload, steps) split over two MDs:
// the sender and one receiver on the first, the other fanout-1 receivers
// on the second. Both MDs then serve local members (the figure of each
// includes local fan-out, not only the link), the link carries one copy
// of each packet, and the far MD does most of the fan-out (fanout-1 seals
// per packet it opens, against 2 on the sender's MD: its local receiver
// and the link), the shape where cascading pays: one copy crosses, the
// far side fans out.
func cascadeGroup(fanout, payload int, steps []float64) Group {
	one := fanoutGroup(fanout, payload, steps)
	g := one
	g.Name = report.CascadePrefix + "2md-" + one.Name
	g.MDs, g.Split, g.OneMD = 2, []int{2, one.Participants - 2}, one.Name
	return g
}

// CascadePlan (BENCH_CASCADE=1): three rounds of 1→4 at 160 B on one MD
// and the same conference over two MDs (cascadeGroup), saturation and
// 50%, on the CascadePaths.
func CascadePlan() Plan {
	steps := []float64{0.5}
	return Plan{
		Paths:  slices.Clone(CascadePaths),
		Rounds: 3,
		Groups: []Group{fanoutGroup(4, 160, steps), cascadeGroup(4, 160, steps)},
		Timing: Timing{Warmup: 300 * time.Millisecond, Duration: 2 * time.Second, Drain: 200 * time.Millisecond},
	}
}

// cascadeMDs is the most MDs a cascade group of the plan that runs on one
// of its paths has (0: none).
func (p *Plan) cascadeMDs() int {
	n := 0
	for i := range p.Groups {
		g := &p.Groups[i]
		if g.MDs > 1 && slices.ContainsFunc(p.Paths, g.RunsOn) {
			n = max(n, g.MDs)
		}
	}
	return n
}

// assignment returns, per member, the index of the MD it is attached to.
func (g *Group) assignment() ([]int, error) {
	if len(g.Split) != g.MDs {
		return nil, fmt.Errorf("driver: group %s: split %v over %d MDs", g.Name, g.Split, g.MDs)
	}
	var at []int
	for md, n := range g.Split {
		if n < 1 {
			return nil, fmt.Errorf("driver: group %s: MD %d has no members", g.Name, md)
		}
		for range n {
			at = append(at, md)
		}
	}
	if len(at) != g.Participants {
		return nil, fmt.Errorf("driver: group %s: split %v of %d members", g.Name, g.Split, g.Participants)
	}
	return at, nil
}

// mdCore is the core MD i of a cascade is pinned to: the forwarder's core
// and the generator's in turn (the first MD has the forwarder's core to
// itself, the second shares the generator's).
func mdCore(cfg *Config, i int) int {
	if i%2 == 0 {
		return cfg.MDCore
	}
	return cfg.GenCore
}

func cascadeMethod(cfg *Config) string {
	return fmt.Sprintf("Cascade groups (%s*, issue 14): the conference's members split over MDs joined by links, each MD a bench/mdharness in its own namespace, all MDs and the generator on one bridge in the generator's namespace (198.18.0.1, .3 MDs; .2 the endpoints), so a link's packets go MD → bridge → MD over each MD's one data-plane interface. Keys: %s. MD i pinned to CPU %d, %d in turn (the second MD shares the generator's core). Each endpoint sends to its own MD and every endpoint receives and opens every other's media with its own keys; per MD, forwarded = the datagrams its data plane sent (to members and links: tx_packets, read at the start and the end of the measured phase when the generator signals it, SIGUSR1) and its own CPU time (/proc/<pid>/stat); next to it the one-MD group of the same shape on the same path in the same round. Not judged against the goals (a single forwarder's).",
		report.CascadePrefix, KeysCascade, mdCore(cfg, 0), mdCore(cfg, 1))
}

func runCascadeGroup(ctx context.Context, cfg *Config, topo *netns.Cascade, it Item, pr *progress) ([]report.Scenario, error) {
	path, g := it.Path, it.Group
	keysPath := filepath.Join(cfg.Work, fmt.Sprintf("keys-%s.json", g.Name))
	err := writeCascadeKeys(topo, g, keysPath)
	if err != nil {
		var out []report.Scenario
		for _, st := range g.steps() {
			s := cascadeBase(path, g, st, err.Error())
			s.Round = it.Round
			out = append(out, s)
			pr.step()
		}
		return out, err
	}
	return runSteps(ctx, it, pr, func(st string, rate float64, why string) report.Scenario {
		if why != "" {
			return cascadeBase(path, g, st, why)
		}
		return runCascadeStep(ctx, cfg, topo, path, keysPath, g, st, rate)
	}, nil), nil
}

func writeCascadeKeys(topo *netns.Cascade, g *Group, path string) error {
	if topo == nil || len(topo.MDs) < g.MDs {
		return fmt.Errorf("driver: no topology for %d MDs", g.MDs)
	}
	at, err := g.assignment()
	if err != nil {
		return err
	}
	var mds []netip.AddrPort
	for i := range g.MDs {
		mds = append(mds, netip.AddrPortFrom(topo.MDs[i].Addr, mediaPort))
	}
	kf, err := benchkeys.GenerateCascade(g.KeyProfile(), g.Participants, topo.GenAddr, genPort, mds, at)
	if err != nil {
		return err
	}
	return kf.Write(path)
}

func cascadeBase(path string, g *Group, step, errText string) report.Scenario {
	s := base(path, g, step, errText)
	s.Keys, s.OneMDGroup = KeysCascade, g.OneMD
	return s
}

// runCascadeStep measures one step of a cascade group: fresh MDs, one
// loadgen run, every MD's counters.
func runCascadeStep(ctx context.Context, cfg *Config, topo *netns.Cascade, path, keysPath string, g *Group, st string, rate float64) report.Scenario {
	s := cascadeBase(path, g, st, "")
	sample := 16
	if rate > 0 {
		sample = max(1, int(math.Ceil(rate*float64(g.Senders*g.Fanout())/verifyPerSecond)))
	}
	var fws []*forwarder
	defer func() {
		for _, f := range fws {
			_ = f.stop()
			for range f.lines {
			}
			_ = f.cmd.Wait()
		}
	}()
	var pids []string
	var modes []string
	for i := range g.MDs {
		f, err := spawn(ctx, cfg, topo.MDs[i].NS, mdCore(cfg, i), "mdharness", []string{
			"-keys", keysPath, "-md", strconv.Itoa(i), "-mode", strings.TrimPrefix(path, "mdfast-"), "-iface", topo.MDs[i].If,
		})
		if err != nil {
			s.Error = fmt.Sprintf("MD %d: %v", i, err)
			return s
		}
		fws = append(fws, f)
		pids = append(pids, strconv.Itoa(f.pid))
		if !slices.Contains(modes, f.mode) {
			modes = append(modes, f.mode)
		}
	}
	s.Mode = strings.Join(modes, ", ")
	res, lerr := runLoadgenCascade(ctx, cfg, topo, keysPath, g, rate, sample, pids)
	outs := make([]mdOutput, len(fws))
	var ferrs []error
	for i, f := range fws {
		var err error
		outs[i], err = finishMD(f)
		if err != nil {
			ferrs = append(ferrs, fmt.Errorf("MD %d: %w", i, err))
		}
	}
	fws = nil
	if lerr != nil {
		s.Error = lerr.Error()
		return s
	}
	fill(&s, res)
	if err := errors.Join(ferrs...); err != nil && s.Error == "" {
		s.Error = err.Error()
	}
	s.MDs = cascadeMDs(cfg, res, outs)
	s.MDCPU, s.ForwardedPerCPUSecond = 0, 0
	for _, m := range s.MDs {
		s.MDCPU += max(m.CPU, 0)
		for k, v := range m.Drops {
			if s.ForwarderDrops == nil {
				s.ForwarderDrops = map[string]uint64{}
			}
			s.ForwarderDrops[k] += v
		}
	}
	if s.MDCPU > 0 {
		s.ForwardedPerCPUSecond = s.ForwardedPPS / s.MDCPU
	}
	return s
}

// cascadeMDs builds the per-MD figures from the generator's result and
// the MDs' outputs.
func cascadeMDs(cfg *Config, res *gen.Result, outs []mdOutput) []report.MD {
	var sentAll, sent uint64
	for _, m := range res.MDs {
		sentAll += m.SentAll
		sent += m.Sent
	}
	out := make([]report.MD, len(res.MDs))
	for i, g := range res.MDs {
		m := report.MD{Index: i, Core: mdCore(cfg, i), Members: g.Members, Senders: g.Senders, CPU: g.CPU,
			Received: g.Received, SentAll: g.SentAll, PeerSentAll: sentAll - g.SentAll}
		if i < len(outs) {
			o := &outs[i]
			m.Mode, m.LinkTx, m.LinkRx, m.Forwarded, m.Drops = o.mode, o.final["link_tx"], o.final["link_rx"], o.final["forwarded"], o.drops()
			if tx := o.phaseTx(); tx > 0 && res.Seconds > 0 {
				m.ForwardedPPS = float64(tx) / res.Seconds
				if g.CPUSeconds > 0 {
					m.ForwardedPerCPUSecond = float64(tx) / g.CPUSeconds
				}
			}
		}
		// Every member receives what every sender but itself sent.
		if want := uint64(g.Members)*sent - g.Sent; want > 0 {
			m.Loss = max(0, 1-float64(g.Received)/float64(want))
		}
		out[i] = m
	}
	return out
}

// mdOutput is what one MD printed: its counters at the SIGUSR1 snapshots
// and at exit.
type mdOutput struct {
	mode      string
	snapshots []map[string]uint64
	final     map[string]uint64
}

// phaseTx is the datagrams sent between the first two snapshots (the
// measured phase), 0 without them.
func (o *mdOutput) phaseTx() uint64 {
	if len(o.snapshots) < 2 {
		return 0
	}
	return o.snapshots[1]["tx_packets"] - o.snapshots[0]["tx_packets"]
}

func (o *mdOutput) drops() map[string]uint64 {
	var out map[string]uint64
	for k, v := range o.final {
		if strings.HasPrefix(k, "drop_") && v != 0 {
			if out == nil {
				out = map[string]uint64{}
			}
			out[k] = v
		}
	}
	return out
}

// finishMD stops an MD and parses its snapshot lines and exit JSON.
func finishMD(f *forwarder) (mdOutput, error) {
	o := mdOutput{mode: f.mode}
	_ = f.stop()
	var lines []string
	for l := range f.lines {
		lines = append(lines, l)
	}
	err := f.cmd.Wait()
	for _, l := range lines {
		var v struct {
			Snapshot map[string]uint64 `json:"snapshot"`
			Counters map[string]uint64 `json:"counters"`
		}
		if jerr := json.Unmarshal([]byte(l), &v); jerr != nil {
			return o, errors.Join(fmt.Errorf("driver: MD output %q: %w", l, jerr), err)
		}
		switch {
		case v.Snapshot != nil:
			o.snapshots = append(o.snapshots, v.Snapshot)
		case v.Counters != nil:
			o.final = v.Counters
		}
	}
	if o.final == nil {
		return o, errors.Join(errors.New("driver: MD printed no counters"), err, errors.New(lastLine(f.stderr.String())))
	}
	return o, err
}

func runLoadgenCascade(ctx context.Context, cfg *Config, topo *netns.Cascade, keys string, g *Group, rate float64, sample int, pids []string) (*gen.Result, error) {
	t := cfg.Plan.Timing
	args := []string{
		"-keys", keys, "-senders", strconv.Itoa(g.Senders), "-rate", strconv.FormatFloat(rate, 'f', 3, 64),
		"-payload", strconv.Itoa(g.Payload), "-burst", strconv.Itoa(max(g.Burst, 1)), "-streams", strconv.Itoa(max(g.Streams, 1)),
		"-warmup", t.Warmup.String(), "-duration", t.Duration.String(), "-drain", t.Drain.String(),
		"-profile", g.KeyProfile(), "-sample", strconv.Itoa(sample), "-md-core", strconv.Itoa(cfg.MDCore),
		"-md-pids", strings.Join(pids, ","), "-md-snapshot",
	}
	return loadgen(ctx, cfg, topo.GenNS, args)
}
