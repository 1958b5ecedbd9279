package report

import (
	"math"
	"slices"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// Reflector and Baseline are the two paths the others are measured
// against: the generator's calibration and the forwarder of every ratio.
// Reflector is the socket reflector (bench/reflector -mode socket), the
// calibration of the socket paths; ReflectorXDPNative and
// ReflectorXDPGeneric are the AF_XDP reflector in each XDP mode, the
// calibration of the paths in that mode.
const (
	Reflector           = "reflector"
	ReflectorXDPNative  = "reflector-xdp-native"
	ReflectorXDPGeneric = "reflector-xdp-generic"
	Baseline            = "baseline"
)

// IsReflector says whether path is one of the reflectors.
func IsReflector(path string) bool {
	return path == Reflector || path == ReflectorXDPNative || path == ReflectorXDPGeneric
}

// reflectorOf is the reflector that calibrates s: Scenario.Reflector, or
// the socket reflector for results written before there were others.
func reflectorOf(s *Scenario) string {
	if s.Reflector == "" {
		return Reflector
	}
	return s.Reflector
}

// MaxReflectorCPU is the busiest a reflector step may be (its md_cpu, 1.0
// = one core) and still calibrate: past it the reflector queues packets
// itself, its latency is no longer the generator's, and the added latency
// taken against it would be too small.
const MaxReflectorCPU = 0.5

// AttachAdded sets Added on every step (not a reflector's own) for which
// the same round measured its reflector (Scenario.Reflector: the XDP
// reflector of the same mode for an XDP path, the socket one otherwise) at
// the same group and step: the reflector run after it at its rate
// (Calibrates names its path), or, on the fixed patterns, that reflector's
// step of the round. Both must have latency samples (Verified > 0), and
// the reflector must not have been busier than MaxReflectorCPU (else
// CalibrationSaturated is set instead). No step is calibrated by a
// reflector of another kind.
func AttachAdded(scs []Scenario) {
	for i := range scs {
		s := &scs[i]
		s.Added, s.RefP99us, s.CalibrationSaturated = nil, 0, false
		if IsReflector(s.Path) || s.Error != "" || s.Verified == 0 {
			continue
		}
		ref := reflectorOf(s)
		for j := range scs {
			c := &scs[j]
			if c.Path != ref || c.Error != "" || c.Verified == 0 || c.Round != s.Round || c.Group != s.Group || c.Step != s.Step {
				continue
			}
			if c.Calibrates == s.Path || (c.Calibrates == "" && s.Pattern != "flood") {
				if c.MDCPU > MaxReflectorCPU {
					s.CalibrationSaturated = true
					break
				}
				a := stats.AddedLatency(
					stats.Summary{P50: s.P50us, P99: s.P99us, P999: s.P999us},
					stats.Summary{P50: c.P50us, P99: c.P99us, P999: c.P999us})
				s.Added = &a
				s.RefP99us = c.P99us
				break
			}
		}
	}
}

var nan = math.NaN()

// Aggregate is one step of one group on one path over the rounds: every
// figure as its median, min and max over the rounds that measured it.
type Aggregate struct {
	// Name is "<group>@<step>".
	Name    string `json:"name"`
	Group   string `json:"group"`
	Step    string `json:"step"`
	Path    string `json:"path"`
	Pattern string `json:"pattern"`
	Profile string `json:"profile"`
	Payload int    `json:"payload"`
	Fanout  int    `json:"fanout"`
	// Reflector is the reflector path that calibrates the step (see
	// Scenario.Reflector); empty on a reflector's own rows.
	Reflector string `json:"reflector,omitempty"`
	// Rounds is how many rounds measured the step; Errors how many could
	// not.
	Rounds int `json:"rounds"`
	Errors int `json:"errors"`
	// ForwardedPPS, Loss, the latency percentiles (send to receive) and
	// the forwarder's CPU.
	ForwardedPPS stats.Spread `json:"forwarded_pps"`
	Loss         stats.Spread `json:"loss"`
	P50us        stats.Spread `json:"p50_us"`
	P99us        stats.Spread `json:"p99_us"`
	P999us       stats.Spread `json:"p999_us"`
	MDCPU        stats.Spread `json:"md_cpu"`
	// PerCPUSecond is forwarded packets per forwarder CPU-second; Ratio
	// that divided by the baseline's in the same round, same group and
	// step (saturation steps only: at paced steps the paths carry
	// different loads).
	PerCPUSecond stats.Spread `json:"forwarded_per_md_cpu_second"`
	Ratio        stats.Spread `json:"ratio_vs_baseline"`
	// AddedP50us, AddedP99us and AddedP999us are the per-round added
	// latencies (Scenario.Added).
	AddedP50us  stats.Spread `json:"added_p50_us"`
	AddedP99us  stats.Spread `json:"added_p99_us"`
	AddedP999us stats.Spread `json:"added_p999_us"`
	// RefP99us is the p99 of the reflector steps that calibrated this
	// step, over the rounds: how far the generator's own latency moved,
	// i.e. the resolution of the added latency.
	RefP99us stats.Spread `json:"reflector_p99_us"`
	// SleepsPerK and CatchesPerK are the AF_XDP worker's poll sleeps and
	// spin catches per 1000 packets it received.
	SleepsPerK  stats.Spread `json:"xdp_poll_sleeps_per_1000_packets"`
	CatchesPerK stats.Spread `json:"xdp_spin_catches_per_1000_packets"`
	// SaturatedCalibrations is how many rounds had no added latency
	// because the reflector was busier than MaxReflectorCPU at the rate.
	SaturatedCalibrations int `json:"saturated_calibrations"`
	// MQPPS and MQPerCPU are, on MQGroup's saturation step of a path
	// other than MQBase (the multi-queue comparison, BENCH_MQ=1), its
	// forwarded packets per second and per forwarder CPU-second over
	// MQBase's in the same round.
	MQPPS    stats.Spread `json:"mq_pps_ratio"`
	MQPerCPU stats.Spread `json:"mq_per_cpu_second_ratio"`
	// QueueRx is, per round that measured the step, the packets each of
	// the forwarder's workers received (multi-queue paths).
	QueueRx [][]uint64 `json:"queue_rx_packets,omitempty"`
	// DwellP50us, DwellP99us and DwellP999us are the per-round dwell
	// percentiles (Scenario.Dwell); AddedDwellP50us, P99us and P999us the
	// per-round added dwells (Scenario.AddedDwell), of which
	// BusyDwellCalibrations were taken over a reflector busier than
	// MaxReflectorCPU; RefDwellP50us, P99us and P999us are those
	// reflectors' own dwell percentiles.
	DwellP50us            stats.Spread `json:"dwell_p50_us"`
	DwellP99us            stats.Spread `json:"dwell_p99_us"`
	DwellP999us           stats.Spread `json:"dwell_p999_us"`
	AddedDwellP50us       stats.Spread `json:"added_dwell_p50_us"`
	AddedDwellP99us       stats.Spread `json:"added_dwell_p99_us"`
	AddedDwellP999us      stats.Spread `json:"added_dwell_p999_us"`
	RefDwellP50us         stats.Spread `json:"reflector_dwell_p50_us"`
	RefDwellP99us         stats.Spread `json:"reflector_dwell_p99_us"`
	RefDwellP999us        stats.Spread `json:"reflector_dwell_p999_us"`
	BusyDwellCalibrations int          `json:"busy_dwell_calibrations,omitempty"`
	// SendBurst is the generator's mean burst per round
	// (Scenario.SendBurstMean), SendBurstMax the largest of any round.
	SendBurst    stats.Spread `json:"send_burst_mean"`
	SendBurstMax int          `json:"send_burst_max,omitempty"`
}

// stepKey names one step of one group on one path, over the rounds.
type stepKey struct{ group, step, path string }

// stepRows holds the measured steps (calibrations left out) by stepKey.
type stepRows map[stepKey][]*Scenario

// groupSteps groups the steps of scs that are not a reflector's
// calibration by group, step and path; order lists the keys in the order
// they first appear.
func groupSteps(scs []Scenario) (order []stepKey, rows stepRows) {
	rows = stepRows{}
	for i := range scs {
		s := &scs[i]
		if s.Calibrates != "" {
			continue
		}
		k := stepKey{s.Group, s.Step, s.Path}
		if _, ok := rows[k]; !ok {
			order = append(order, k)
		}
		rows[k] = append(rows[k], s)
	}
	return order, rows
}

// forwardedPerCPU returns the forwarded packets per forwarder CPU-second
// of step k in round, NaN when that round has no error-free measurement.
func (r stepRows) forwardedPerCPU(k stepKey, round int) float64 {
	for _, s := range r[k] {
		if s.Round == round && s.Error == "" && s.ForwardedPerCPUSecond > 0 {
			return s.ForwardedPerCPUSecond
		}
	}
	return nan
}

// Summarize groups scs by group, step and path (the reflector's
// calibration steps are left out: they show in each path's added latency)
// in the order they first appear, and summarizes each over the rounds.
func Summarize(scs []Scenario) []Aggregate {
	order, rows := groupSteps(scs)
	// mqBase is MQBase's measurement of the multi-queue group's step in
	// round, nil if that round has none.
	mqBase := func(step string, round int) *Scenario {
		for _, s := range rows[stepKey{MQGroup, step, MQBase}] {
			if s.Round == round && s.Error == "" && s.ForwardedPPS > 0 {
				return s
			}
		}
		return nil
	}
	out := make([]Aggregate, 0, len(order))
	for _, k := range order {
		ss := rows[k]
		slices.SortStableFunc(ss, func(a, b *Scenario) int { return a.Round - b.Round })
		f := ss[0]
		a := Aggregate{Name: f.Group + "@" + f.Step, Group: f.Group, Step: f.Step, Path: f.Path, Pattern: f.Pattern,
			Profile: f.Profile, Payload: f.Payload, Fanout: f.Fanout}
		if !IsReflector(f.Path) {
			a.Reflector = reflectorOf(f)
		}
		var fwd, loss, p50, p99, p999, cpu, pcs, ratio, ad50, ad99, ad999, ref99, sleeps, catches, mqPPS, mqCPU, bursts []float64
		var dw50, dw99, dw999, adw50, adw99, adw999, rdw50, rdw99, rdw999 []float64
		for _, s := range ss {
			if s.Error != "" {
				a.Errors++
				continue
			}
			a.Rounds++
			fwd = append(fwd, s.ForwardedPPS)
			loss = append(loss, s.Loss)
			cpu = append(cpu, s.MDCPU)
			if s.Verified > 0 {
				p50, p99, p999 = append(p50, s.P50us), append(p99, s.P99us), append(p999, s.P999us)
			}
			if s.ForwardedPerCPUSecond > 0 {
				pcs = append(pcs, s.ForwardedPerCPUSecond)
				if s.Step == "sat" && s.Path != Baseline {
					ratio = append(ratio, s.ForwardedPerCPUSecond/rows.forwardedPerCPU(stepKey{k.group, k.step, Baseline}, s.Round))
				}
			}
			if s.Group == MQGroup && s.Step == "sat" && s.Path != MQBase {
				if b := mqBase(s.Step, s.Round); b != nil {
					mqPPS = append(mqPPS, s.ForwardedPPS/b.ForwardedPPS)
					if s.ForwardedPerCPUSecond > 0 && b.ForwardedPerCPUSecond > 0 {
						mqCPU = append(mqCPU, s.ForwardedPerCPUSecond/b.ForwardedPerCPUSecond)
					}
				}
			}
			if len(s.QueueRx) > 0 {
				a.QueueRx = append(a.QueueRx, s.QueueRx)
			}
			if s.CalibrationSaturated {
				a.SaturatedCalibrations++
			}
			if s.Added != nil {
				ad50, ad99, ad999 = append(ad50, s.Added.P50), append(ad99, s.Added.P99), append(ad999, s.Added.P999)
				ref99 = append(ref99, s.RefP99us)
			}
			if d := s.Dwell; d != nil && d.Packets > 0 {
				dw50, dw99, dw999 = append(dw50, d.P50us), append(dw99, d.P99us), append(dw999, d.P999us)
			}
			if d := s.AddedDwell; d != nil {
				adw50, adw99, adw999 = append(adw50, d.P50), append(adw99, d.P99), append(adw999, d.P999)
				if r := s.RefDwell; r != nil {
					rdw50, rdw99, rdw999 = append(rdw50, r.P50us), append(rdw99, r.P99us), append(rdw999, r.P999us)
				}
				if s.RefDwellBusy {
					a.BusyDwellCalibrations++
				}
			}
			if s.SendBurstMean > 0 {
				bursts = append(bursts, s.SendBurstMean)
				a.SendBurstMax = max(a.SendBurstMax, s.SendBurstMax)
			}
			if s.ForwarderRx > 0 && s.XDPPollSleeps+s.XDPSpinCatches > 0 {
				k := float64(s.ForwarderRx) / 1000
				sleeps, catches = append(sleeps, float64(s.XDPPollSleeps)/k), append(catches, float64(s.XDPSpinCatches)/k)
			}
		}
		a.ForwardedPPS, a.Loss, a.MDCPU, a.PerCPUSecond = stats.SpreadOf(fwd), stats.SpreadOf(loss), stats.SpreadOf(cpu), stats.SpreadOf(pcs)
		a.P50us, a.P99us, a.P999us = stats.SpreadOf(p50), stats.SpreadOf(p99), stats.SpreadOf(p999)
		a.Ratio = stats.SpreadOf(ratio)
		a.AddedP50us, a.AddedP99us, a.AddedP999us = stats.SpreadOf(ad50), stats.SpreadOf(ad99), stats.SpreadOf(ad999)
		a.RefP99us = stats.SpreadOf(ref99)
		a.SleepsPerK, a.CatchesPerK = stats.SpreadOf(sleeps), stats.SpreadOf(catches)
		a.SendBurst = stats.SpreadOf(bursts)
		a.MQPPS, a.MQPerCPU = stats.SpreadOf(mqPPS), stats.SpreadOf(mqCPU)
		a.DwellP50us, a.DwellP99us, a.DwellP999us = stats.SpreadOf(dw50), stats.SpreadOf(dw99), stats.SpreadOf(dw999)
		a.AddedDwellP50us, a.AddedDwellP99us, a.AddedDwellP999us = stats.SpreadOf(adw50), stats.SpreadOf(adw99), stats.SpreadOf(adw999)
		a.RefDwellP50us, a.RefDwellP99us, a.RefDwellP999us = stats.SpreadOf(rdw50), stats.SpreadOf(rdw99), stats.SpreadOf(rdw999)
		out = append(out, a)
	}
	return out
}
