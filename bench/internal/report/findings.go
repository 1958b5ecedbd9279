package report

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// The goals of issues 8 and 13, judged at the median over the rounds.
const (
	// GoalRatio: mdfast on XDP forwards at least this many times the
	// baseline's packets per forwarder CPU-second (160 B, 1→4).
	GoalRatio = 2.5
	// GoalNoLossBelow: no loss below this fraction of saturation.
	GoalNoLossBelow = 0.70
	// GoalP99us: p99 latency at half of saturation, µs.
	GoalP99us = 200
	// GoalAddedP99us: p99 latency the XDP paths add over the reflector at
	// half of saturation, µs (issue 13).
	GoalAddedP99us = 50
	// lossTolerance is what counts as "no loss".
	lossTolerance = 0.0001
)

// RatioGroup is the scenario group the ratio goal is judged on.
const RatioGroup = "fanout1to4-160B"

// MQGroup is the group of the multi-queue comparison (BENCH_MQ=1): every
// path that measured it is compared with MQBase, 1 queue and 1 worker.
const (
	MQGroup = "conf8-flood-160B"
	MQBase  = "mdfast-xdp-native"
)

// Finding is one goal checked against the run, at the median over its
// rounds.
type Finding struct {
	Goal string `json:"goal"`
	Path string `json:"path,omitempty"`
	// Value is the median over the rounds; Min and Max the spread of the
	// same figure, Rounds how many rounds measured it.
	Value  float64 `json:"value"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Rounds int     `json:"rounds"`
	Target float64 `json:"target"`
	// Met is nil when the run did not measure what the goal needs, or
	// the goal is not for this path.
	Met    *bool  `json:"met"`
	Detail string `json:"detail"`
}

func met(b bool) *bool { return &b }

func (f *Finding) set(s stats.Spread) {
	f.Value, f.Min, f.Max, f.Rounds = s.Median, s.Min, s.Max, s.N
}

// xdpPath says whether the added-latency goal is for path.
func xdpPath(path string) bool { return strings.HasPrefix(path, "mdfast-xdp-") }

// Evaluate checks the goals against the summary (cascade groups left out). Every goal is judged at
// the median over the rounds; the spread is in the finding.
func Evaluate(sum []Aggregate) []Finding {
	// The goals are a single forwarder's: cascade steps have their own
	// table (SummarizeCascade).
	sum = slices.DeleteFunc(slices.Clone(sum), func(a Aggregate) bool { return IsCascade(a.Group) })
	var out []Finding
	var paths []string
	for _, a := range sum {
		if !IsReflector(a.Path) && !slices.Contains(paths, a.Path) {
			paths = append(paths, a.Path)
		}
	}
	// 1. Packets per forwarder CPU-second at saturation vs baseline.
	for _, p := range paths {
		if p == Baseline {
			continue
		}
		f := Finding{Goal: "forwarded packets per forwarder CPU-second vs baseline, " + RatioGroup + "@sat (median of per-round ratios)", Path: p, Target: GoalRatio}
		a, ok := find(sum, RatioGroup, "sat", p)
		if !ok || a.Ratio.N == 0 {
			f.Detail = "not measured in this run"
			out = append(out, f)
			continue
		}
		f.set(a.Ratio)
		if p != "mdfast-socket" {
			f.Met = met(f.Value >= GoalRatio)
		}
		f.Detail = fmt.Sprintf("min–max %.2f–%.2f over %d rounds (%s); median %.0f pkt/CPU-s", a.Ratio.Min, a.Ratio.Max, a.Ratio.N, list(a.Ratio.Values, "%.2f"), a.PerCPUSecond.Median)
		out = append(out, f)
	}
	// The multi-queue comparison (BENCH_MQ=1): ratios, no goal.
	out = append(out, multiQueue(sum)...)
	for _, p := range paths {
		// 2. No loss at or below 70% of saturation: the worst step's
		// median loss.
		f := Finding{Goal: "no loss at or below 70% of saturation (worst step's median loss)", Path: p, Target: 0}
		var worst *Aggregate
		n := 0
		for i := range sum {
			a := &sum[i]
			frac, ok := stepFraction(a.Step)
			if a.Path != p || !ok || frac > GoalNoLossBelow+1e-9 || a.Loss.N == 0 {
				continue
			}
			n++
			if worst == nil || a.Loss.Median > worst.Loss.Median {
				worst = a
			}
		}
		if worst != nil {
			f.set(worst.Loss)
			f.Met = met(f.Value <= lossTolerance)
			f.Detail = fmt.Sprintf("%d steps at ≤70%% of their group's saturation; worst %s, max over its rounds %.3g%%", n, worst.Name, worst.Loss.Max*100)
		} else {
			f.Detail = "not measured in this run"
		}
		out = append(out, f)
		// 3. p99 at 50% of saturation, send to receive: the worst group's
		// median.
		g := Finding{Goal: "p99 latency (send to receive) at 50% of saturation, worst group's median, µs", Path: p, Target: GoalP99us}
		if a := worstAt(sum, p, 0.5, func(a *Aggregate) stats.Spread { return a.P99us }); a != nil {
			g.set(a.P99us)
			g.Met = met(g.Value <= GoalP99us)
			g.Detail = fmt.Sprintf("%s; min–max %.0f–%.0f", a.Name, a.P99us.Min, a.P99us.Max)
		} else {
			g.Detail = "not measured in this run"
		}
		out = append(out, g)
		// 4. Added p99 at 50% of saturation (XDP paths).
		// Each path against its own reflector: an XDP path against the
		// XDP reflector of its mode.
		h := Finding{Goal: "added p99 latency over the path's reflector at 50% of saturation, worst group's median, µs", Path: p, Target: GoalAddedP99us}
		if a := worstAt(sum, p, 0.5, func(a *Aggregate) stats.Spread { return a.AddedP99us }); a != nil {
			h.set(a.AddedP99us)
			h.Detail = fmt.Sprintf("%s against %s; min–max %.0f–%.0f over %d rounds (%s); the reflector's own p99 %.0f–%.0f µs", a.Name, a.Reflector, a.AddedP99us.Min, a.AddedP99us.Max,
				a.AddedP99us.N, list(a.AddedP99us.Values, "%.0f"), a.RefP99us.Min, a.RefP99us.Max)
			res := resolution(a)
			switch {
			case !xdpPath(p):
				h.Detail += "; the goal is for the XDP paths"
			case a.SaturatedCalibrations >= a.AddedP99us.N:
				h.Detail += fmt.Sprintf("; NOT RESOLVED: %s was saturated at this rate in %d rounds and calibrated only %d", a.Reflector, a.SaturatedCalibrations, a.AddedP99us.N)
			case res > GoalAddedP99us:
				h.Detail += fmt.Sprintf("; NOT RESOLVED: the calibration moved by %.0f µs between rounds (more than the %g µs goal), so the host was too noisy to tell", res, float64(GoalAddedP99us))
			default:
				h.Met = met(h.Value <= GoalAddedP99us)
			}
		} else if a := saturatedAt(sum, p, 0.5); a != nil {
			h.Detail = fmt.Sprintf("NOT RESOLVED: %s: %s was busier than %.0f%% of a core at this rate in %d of %d rounds (it cannot calibrate rates this high on this host)",
				a.Name, a.Reflector, MaxReflectorCPU*100, a.SaturatedCalibrations, a.Rounds)
		} else {
			h.Detail = "not measured in this run (no step of the path's reflector at the same rate)"
		}
		out = append(out, h)
		// 5. Dwell at 50% of saturation (XDP paths): measured inside the
		// forwarder, so neither the generator nor a reflector's
		// saturation blurs it.
		if xdpPath(p) {
			out = append(out, dwellFinding(sum, p))
		}
	}
	// One round decides nothing.
	for i := range out {
		if f := &out[i]; f.Met != nil && f.Rounds < 2 {
			f.Met = nil
			f.Detail += "; NOT JUDGED: only one round measured it, and a single run decides no goal"
		}
	}
	return out
}

// resolution is how finely a's added p99 can be told: the larger of the
// reflector's p99 range over the rounds and, when the median added
// latency is negative (the path faster than the reflector), its size. A
// forwarder cannot take away more latency than the reflector's own
// forwarding costs, so a large negative figure is the calibration's noise,
// not the path's speed.
func resolution(a *Aggregate) float64 {
	r := a.RefP99us.Max - a.RefP99us.Min
	if a.AddedP99us.Median < 0 {
		r = math.Max(r, -a.AddedP99us.Median)
	}
	return r
}

// saturatedAt returns an aggregate of path at fraction frac of saturation
// whose calibrations were saturated, nil if none.
func saturatedAt(sum []Aggregate, path string, frac float64) *Aggregate {
	for i := range sum {
		a := &sum[i]
		f, ok := stepFraction(a.Step)
		if a.Path == path && ok && math.Abs(f-frac) < 1e-9 && a.SaturatedCalibrations > 0 {
			return a
		}
	}
	return nil
}

// worstAt returns the aggregate of path at fraction frac of saturation
// whose figure (as get returns it) has the highest median, nil if none
// was measured.
func worstAt(sum []Aggregate, path string, frac float64, get func(*Aggregate) stats.Spread) *Aggregate {
	var worst *Aggregate
	for i := range sum {
		a := &sum[i]
		f, ok := stepFraction(a.Step)
		if a.Path != path || !ok || math.Abs(f-frac) > 1e-9 || get(a).N == 0 {
			continue
		}
		if worst == nil || get(a).Median > get(worst).Median {
			worst = a
		}
	}
	return worst
}

func find(sum []Aggregate, group, step, path string) (Aggregate, bool) {
	for _, a := range sum {
		if a.Group == group && a.Step == step && a.Path == path {
			return a, true
		}
	}
	return Aggregate{}, false
}

// list formats per-round values: "2.10, 1.90, 3.00".
func list(vs []float64, format string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf(format, v)
	}
	return strings.Join(parts, ", ")
}

// stepFraction parses "50%" as 0.5.
func stepFraction(step string) (float64, bool) {
	var v float64
	if _, err := fmt.Sscanf(step, "%g%%", &v); err != nil {
		return 0, false
	}
	return v / 100, true
}

// multiQueue compares, at saturation of MQGroup, every path with MQBase:
// forwarded packets per second and per forwarder CPU-second, as the
// median (min–max) of the per-round ratios against MQBase in the same
// round (Summarize: MQPPS, MQPerCPU). No goal: Met stays nil. Without
// MQBase measured there is nothing to compare.
func multiQueue(sum []Aggregate) []Finding {
	base, ok := find(sum, MQGroup, "sat", MQBase)
	if !ok || base.ForwardedPPS.N == 0 {
		return nil
	}
	var out []Finding
	for i := range sum {
		a := &sum[i]
		if a.Path == MQBase || a.Group != MQGroup || a.Step != "sat" || a.MQPPS.N == 0 {
			continue
		}
		f := Finding{Goal: "multi-queue: forwarded packets per second vs 1 queue, " + MQGroup + "@sat (median of per-round ratios)", Path: a.Path}
		f.set(a.MQPPS)
		f.Detail = fmt.Sprintf("min–max %.2f–%.2f over %d rounds (%s); median %.0f vs %.0f pkt/s; per worker received, by round: %v",
			a.MQPPS.Min, a.MQPPS.Max, a.MQPPS.N, list(a.MQPPS.Values, "%.2f"), a.ForwardedPPS.Median, base.ForwardedPPS.Median, a.QueueRx)
		out = append(out, f)
		if a.MQPerCPU.N == 0 {
			continue
		}
		f = Finding{Goal: "multi-queue: forwarded packets per forwarder CPU-second vs 1 queue, " + MQGroup + "@sat (median of per-round ratios)", Path: a.Path}
		f.set(a.MQPerCPU)
		f.Detail = fmt.Sprintf("min–max %.2f–%.2f over %d rounds (%s); median %.0f vs %.0f pkt/CPU-s (md_cpu %.2f vs %.2f)",
			a.MQPerCPU.Min, a.MQPerCPU.Max, a.MQPerCPU.N, list(a.MQPerCPU.Values, "%.2f"),
			a.PerCPUSecond.Median, base.PerCPUSecond.Median, a.MDCPU.Median, base.MDCPU.Median)
		out = append(out, f)
	}
	return out
}
