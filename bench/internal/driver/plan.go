package driver

import (
	"fmt"
	"slices"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/report"
)

// Group is one scenario group: a conference shape and a traffic pattern,
// measured in one or more steps on every path.
type Group struct {
	// Name, e.g. "fanout1to4-160B".
	Name string
	// Participants is the conference size; Senders how many send. Every
	// participant receives what the others send (fanout Participants-1).
	Participants, Senders int
	// Payload is the RTP payload size.
	Payload int
	// Pattern is "flood" (a saturation sweep), "audio" or "video".
	Pattern string
	// Rate and Burst are the per-sender rate and burst of the fixed
	// patterns.
	Rate  float64
	Burst int
	// Streams is the SSRCs per sender.
	Streams int
	// Steps are the fractions of the measured saturation to pace at
	// after the saturation step (flood only).
	Steps []float64
	// Profile is the SRTP protection profile the endpoints send:
	// benchkeys.Profile (also when empty) or benchkeys.ProfileDouble (RFC
	// 8723, a real inner layer under the conference's end-to-end key),
	// which runs on the DoublePaths only.
	Profile string
	// MDs, when more than 1, splits the conference over that many MDs
	// joined by links (a cascade group, issue 14; see cascade.go): Split
	// is how many members each MD has (the senders are the first
	// members, so the first MD has them), and OneMD names the one-MD
	// group of the same shape its figures are reported next to.
	MDs   int
	Split []int
	OneMD string
}

// DoublePaths are the paths a double group runs on: mdfast with keys
// installed directly, and SystemPath, whose handshakes negotiate 0x0009
// with EKT. The baseline is left out (pion/srtp v3 has no double profile).
var DoublePaths = []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", SystemPath}

// KeyProfile is the group's profile, benchkeys.Profile when empty.
func (g *Group) KeyProfile() string {
	if g.Profile == "" {
		return benchkeys.Profile
	}
	return g.Profile
}

// RunsOn says whether the group is measured on path as a path of its own.
// The reflectors run single-profile groups only, and of the swept ones
// only as the calibration of another path's paced steps (Calibrated).
func (g *Group) RunsOn(path string) bool {
	if g.MDs > 1 {
		return slices.Contains(CascadePaths, path)
	}
	if report.IsReflector(path) {
		return g.KeyProfile() == benchkeys.Profile && g.Pattern != "flood"
	}
	return g.KeyProfile() != benchkeys.ProfileDouble || slices.Contains(DoublePaths, path)
}

// Calibrated says whether each paced step of the group on another path is
// followed by that path's reflector (ReflectorFor) at the same rate (a
// swept single-profile group, when the plan has that reflector).
func (g *Group) Calibrated() bool {
	return g.MDs <= 1 && g.Pattern == "flood" && g.KeyProfile() == benchkeys.Profile
}

// Fanout is the receivers of each packet.
func (g *Group) Fanout() int { return g.Participants - 1 }

// steps returns the group's step names: "sat" then "25%"..., or "fixed".
func (g *Group) steps() []string {
	if g.Pattern != "flood" {
		return []string{"fixed"}
	}
	s := []string{"sat"}
	for _, f := range g.Steps {
		s = append(s, fmt.Sprintf("%g%%", f*100))
	}
	return s
}

// Timing is the length of each step's phases.
type Timing struct {
	Warmup, Duration, Drain time.Duration
}

// Plan is what a run measures.
type Plan struct {
	Paths  []string
	Groups []Group
	Timing Timing
	// Rounds is how many times every group is measured on every path
	// (at least 1), interleaved: see Schedule.
	Rounds int
}

// The reflectors are the generator's calibration: bench/reflector copies
// every media datagram to the other members unchanged (no crypto), so what
// it measures is the generator's, the veth's and a minimal forwarder's own
// latency. ReflectorPath is the socket reflector (recvmmsg/sendmmsg), the
// calibration of the socket paths; ReflectorXDPNative and
// ReflectorXDPGeneric are the AF_XDP reflector (mdfast's classifier,
// internal/dataplane's XDPPort) in that mode, the calibration of the paths
// in that mode. See ReflectorFor.
const (
	ReflectorPath       = report.Reflector
	ReflectorXDPNative  = report.ReflectorXDPNative
	ReflectorXDPGeneric = report.ReflectorXDPGeneric
)

// ReflectorFor returns the reflector that calibrates path: the XDP
// reflector of the XDP mode path runs in (mdfast-xdp-native and its wait
// variants, the multi-queue paths, and mdfast-system, which asks for
// SystemMode; mdfast-xdp-generic), the socket reflector for the others
// (mdfast-socket, the baseline).
func ReflectorFor(path string) string {
	if v, ok := Variants[path]; ok {
		path = "mdfast-" + v.Mode
	}
	switch path {
	case "mdfast-xdp-native", MQPath, MQPath2Cores, SystemPath: // SystemMode is xdp-native
		return ReflectorXDPNative
	case "mdfast-xdp-generic":
		return ReflectorXDPGeneric
	}
	return ReflectorPath
}

// BaselinePath is the forwarder every ratio is taken against.
const BaselinePath = "baseline"

// AllPaths, in the order a round measures them. The reflectors run as
// paths of their own only on the fixed patterns (RunsOn); on the swept
// groups each runs after every paced step of the paths it calibrates.
var AllPaths = []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", SystemPath, BaselinePath, ReflectorPath, ReflectorXDPNative, ReflectorXDPGeneric}

// Variants are paths run only when named (BENCH_PATHS): mdfast-xdp-native
// with another idle wait than the default (poll), for measuring the wait
// against the default in the same run (see mdharness -wait), or with the
// TX kicked every Kick datagrams within a batch (mdharness
// -tx-kick-frames; 0: once per batch, the default).
var Variants = map[string]struct {
	Mode, Wait string
	Kick       int
}{
	"mdfast-xdp-native-poll":     {"xdp-native", "poll", 0},
	"mdfast-xdp-native-adaptive": {"xdp-native", "adaptive", 0},
	"mdfast-xdp-native-busypoll": {"xdp-native", "busypoll", 0},
	"mdfast-xdp-native-spin":     {"xdp-native", "spin", 0},
	"mdfast-xdp-native-kick16":   {"xdp-native", "poll", 16},
}

// Item is one entry of a run's schedule: a group measured on a path in a
// round (its saturation step, its paced steps, and after each paced step
// the path's reflector at the same rate when the group is Calibrated).
type Item struct {
	Round int
	Path  string
	Group *Group
}

// Queues is the queue count of the item's path (Queues): the run measures
// it on the topology made for that many queues.
func (it Item) Queues() int { return Queues(it.Path) }

// Schedule returns the order a run measures the plan in: round by round,
// and within a round group by group, every path of the group one after the
// other (A B C, then A B C again in the next round, reversed every other
// round so that no path always runs first or right after the same one).
// Every ratio is taken within one round, so a drift of the host over
// the run (other tenants, thermal state) moves numerator and denominator
// together.
func (p *Plan) Schedule() []Item {
	var out []Item
	for r := range max(p.Rounds, 1) {
		for gi := range p.Groups {
			g := &p.Groups[gi]
			paths := slices.Clone(p.Paths)
			if r%2 == 1 {
				slices.Reverse(paths)
			}
			for _, path := range paths {
				if g.RunsOn(path) {
					out = append(out, Item{Round: r + 1, Path: path, Group: g})
				}
			}
		}
	}
	return out
}

// calibrates says whether path's reflector (ReflectorFor) follows each
// paced step of g on path: only when the plan has that reflector, never
// one of another kind instead.
func (p *Plan) calibrates(g *Group, path string) bool {
	return g.Calibrated() && !report.IsReflector(path) && slices.Contains(p.Paths, ReflectorFor(path))
}

func fanoutGroup(fanout, payload int, steps []float64) Group {
	return Group{
		Name:         fmt.Sprintf("fanout1to%d-%dB", fanout, payload),
		Participants: fanout + 1, Senders: 1, Payload: payload,
		Pattern: "flood", Streams: 16, Steps: steps,
	}
}

// doubleGroup is fanoutGroup with RFC 8723 double encryption.
func doubleGroup(fanout, payload int, steps []float64) Group {
	g := fanoutGroup(fanout, payload, steps)
	g.Name += "-double"
	g.Profile = benchkeys.ProfileDouble
	return g
}

func confGroup(n int, video bool) Group {
	g := Group{Participants: n, Senders: n, Streams: 1, Burst: 1}
	if video {
		// 30 frames per second of 8 packets of 1200 B (about 2.3 Mbit/s).
		g.Name, g.Pattern, g.Payload, g.Rate, g.Burst = fmt.Sprintf("conf%d-video-1200B", n), "video", 1200, 240, 8
	} else {
		g.Name, g.Pattern, g.Payload, g.Rate = fmt.Sprintf("conf%d-audio-160B", n), "audio", 160, 50
	}
	return g
}

// FullPlan: 1→1, 1→4 and 1→16 at 160 and 1200 B swept from saturation
// down to 10%; conferences of 2, 10 and 50 all sending audio, and all
// sending video; on every path. Then 1→4 at 160 B double (RFC 8723) swept
// the same way, on the DoublePaths, and 1→4 at 160 B over two MDs
// (cascadeGroup) on the CascadePaths. Three rounds.
func FullPlan() Plan {
	p := Plan{Paths: AllPaths, Rounds: 3, Timing: Timing{Warmup: 300 * time.Millisecond, Duration: 2 * time.Second, Drain: 200 * time.Millisecond}}
	steps := []float64{0.9, 0.7, 0.5, 0.1}
	for _, payload := range []int{160, 1200} {
		for _, f := range []int{1, 4, 16} {
			p.Groups = append(p.Groups, fanoutGroup(f, payload, steps))
		}
	}
	for _, video := range []bool{false, true} {
		for _, n := range []int{2, 10, 50} {
			p.Groups = append(p.Groups, confGroup(n, video))
		}
	}
	p.Groups = append(p.Groups, doubleGroup(4, 160, steps), cascadeGroup(4, 160, steps))
	return p
}

// QuickPlan (BENCH_QUICK=1): three rounds of 1→4 at 160 B (saturation,
// 70%, 50%, 10%) and a conference of 10 sending audio, on every path; 1→4
// at 160 B double (saturation, 50%) on the DoublePaths. Steps are 1 s.
// (The two-MD group is left out to stay within five minutes:
// BENCH_CASCADE=1 BENCH_QUICK=1 measures it with its one-MD group.)
func QuickPlan() Plan {
	return Plan{
		Paths:  AllPaths,
		Rounds: 3,
		Groups: []Group{fanoutGroup(4, 160, []float64{0.7, 0.5, 0.1}), confGroup(10, false), doubleGroup(4, 160, []float64{0.5})},
		Timing: Timing{Warmup: 200 * time.Millisecond, Duration: time.Second, Drain: 200 * time.Millisecond},
	}
}

// Steps returns the number of steps the plan measures, reflector
// calibrations included.
func (p *Plan) Steps() int {
	n := 0
	for _, it := range p.Schedule() {
		st := it.Group.steps()
		n += len(st)
		if p.calibrates(it.Group, it.Path) {
			n += len(st) - 1 // every step but "sat"
		}
	}
	return n
}

// Multi-queue paths: mdfast in XDP native mode on a veth pair with two RX
// and TX queues, one worker per queue (bench/mdharness -queues 2). MQPath
// pins the forwarder process to the forwarder's core like every other
// path (two workers sharing one core: the cost of the multi-queue data
// plane per CPU-second); MQPath2Cores lets it run on both cores, worker i
// pinned to core i's turn in (forwarder core, generator core), sharing the
// generator's core.
const (
	MQPath       = "mdfast-xdp-native-2q"
	MQPath2Cores = "mdfast-xdp-native-2q-2cores"
)

// Queues returns the queues (and data-plane workers) of path's forwarder.
func Queues(path string) int {
	if path == MQPath || path == MQPath2Cores {
		return 2
	}
	return 1
}

// MQPlan (BENCH_MQ=1): 1 queue and 1 worker (mdfast-xdp-native, the
// baseline) against 2 queues and 2 workers, on one core and on both: a
// conference of 8 all sending 160 B as fast as they can (8 flows, spread
// over the queues by the generator's TX hash), then paced at 50%. Three
// rounds, interleaved like the other plans (see Schedule): every ratio is
// taken against the baseline of the same round.
func MQPlan() Plan {
	g := Group{
		Name: "conf8-flood-160B", Participants: 8, Senders: 8, Payload: 160,
		Pattern: "flood", Streams: 1, Steps: []float64{0.5},
	}
	return Plan{
		Paths:  []string{"mdfast-xdp-native", MQPath, MQPath2Cores},
		Rounds: 3,
		Groups: []Group{g},
		Timing: Timing{Warmup: 300 * time.Millisecond, Duration: 3 * time.Second, Drain: 300 * time.Millisecond},
	}
}
