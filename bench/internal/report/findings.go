package report

import (
	"fmt"
	"math"
)

// The goals of issue 8.
const (
	// GoalRatio: mdfast on XDP forwards at least this many times the
	// baseline's packets per forwarder CPU-second (160 B, 1→4).
	GoalRatio = 2.5
	// GoalNoLossBelow: no loss below this fraction of saturation.
	GoalNoLossBelow = 0.70
	// GoalP99us: p99 latency at half of saturation, µs.
	GoalP99us = 200
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

// Finding is one goal checked against the run.
type Finding struct {
	Goal   string  `json:"goal"`
	Path   string  `json:"path,omitempty"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// Met is nil when the run did not measure what the goal needs.
	Met    *bool  `json:"met"`
	Detail string `json:"detail"`
}

func met(b bool) *bool { return &b }

// Evaluate checks the goals against r.Scenarios.
func Evaluate(scs []Scenario) []Finding {
	var out []Finding
	// 1. Packets per forwarder CPU-second at saturation, XDP vs baseline.
	sat := func(path string) (Scenario, bool) {
		for _, s := range scs {
			if s.Path == path && s.Group == RatioGroup && s.Step == "sat" && s.Error == "" && s.ForwardedPerCPUSecond > 0 {
				return s, true
			}
		}
		return Scenario{}, false
	}
	base, okb := sat("baseline")
	for _, p := range []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", "mdfast-system"} {
		f := Finding{Goal: "forwarded packets per forwarder CPU-second vs baseline, " + RatioGroup, Path: p, Target: GoalRatio}
		s, ok := sat(p)
		if !ok || !okb {
			f.Detail = "not measured in this run"
			out = append(out, f)
			continue
		}
		f.Value = s.ForwardedPerCPUSecond / base.ForwardedPerCPUSecond
		if p != "mdfast-socket" {
			f.Met = met(f.Value >= GoalRatio)
		}
		f.Detail = fmt.Sprintf("%.0f vs %.0f pkt/CPU-s (md_cpu %.2f vs %.2f; core_cpu %.2f vs %.2f)",
			s.ForwardedPerCPUSecond, base.ForwardedPerCPUSecond, s.MDCPU, base.MDCPU, s.CoreCPU, base.CoreCPU)
		out = append(out, f)
	}
	out = append(out, multiQueue(scs)...)
	// 2 and 3, per path: loss below 70% and p99 at 50% of saturation.
	paths := []string{}
	seen := map[string]bool{}
	for _, s := range scs {
		if !seen[s.Path] {
			seen[s.Path] = true
			paths = append(paths, s.Path)
		}
	}
	for _, p := range paths {
		worst, n := 0.0, 0
		var p99, p99n = 0.0, 0
		for _, s := range scs {
			if s.Path != p || s.Error != "" {
				continue
			}
			frac, ok := stepFraction(s.Step)
			if ok && frac <= GoalNoLossBelow+1e-9 {
				worst = math.Max(worst, s.Loss)
				n++
			}
			if ok && math.Abs(frac-0.5) < 1e-9 && s.Verified > 0 {
				p99 = math.Max(p99, s.P99us)
				p99n++
			}
		}
		f := Finding{Goal: "no loss at or below 70% of saturation (worst loss)", Path: p, Value: worst, Target: 0}
		if n > 0 {
			f.Met = met(worst <= lossTolerance)
			f.Detail = fmt.Sprintf("%d steps at ≤70%% of their group's saturation", n)
		} else {
			f.Detail = "not measured in this run"
		}
		out = append(out, f)
		g := Finding{Goal: "p99 latency at 50% of saturation (worst group), µs", Path: p, Value: p99, Target: GoalP99us}
		if p99n > 0 {
			g.Met = met(p99 <= GoalP99us)
			g.Detail = fmt.Sprintf("%d groups", p99n)
		} else {
			g.Detail = "not measured in this run"
		}
		out = append(out, g)
	}
	return out
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
// forwarded packets per second and per forwarder CPU-second, as ratios
// (no goal: Met stays nil).
func multiQueue(scs []Scenario) []Finding {
	var base *Scenario
	for i := range scs {
		s := &scs[i]
		if s.Path == MQBase && s.Group == MQGroup && s.Step == "sat" && s.Error == "" && s.ForwardedPerCPUSecond > 0 {
			base = s
		}
	}
	if base == nil {
		return nil
	}
	var out []Finding
	for i := range scs {
		s := &scs[i]
		if s.Path == MQBase || s.Group != MQGroup || s.Step != "sat" || s.Error != "" || s.ForwardedPerCPUSecond <= 0 {
			continue
		}
		out = append(out, Finding{
			Goal: "multi-queue: forwarded packets per second vs 1 queue, " + MQGroup, Path: s.Path,
			Value:  s.ForwardedPPS / base.ForwardedPPS,
			Detail: fmt.Sprintf("%.0f vs %.0f pkt/s; per worker received %v", s.ForwardedPPS, base.ForwardedPPS, s.QueueRx),
		}, Finding{
			Goal: "multi-queue: forwarded packets per forwarder CPU-second vs 1 queue, " + MQGroup, Path: s.Path,
			Value: s.ForwardedPerCPUSecond / base.ForwardedPerCPUSecond,
			Detail: fmt.Sprintf("%.0f vs %.0f pkt/CPU-s (md_cpu %.2f vs %.2f; core_cpu %.2f vs %.2f)",
				s.ForwardedPerCPUSecond, base.ForwardedPerCPUSecond, s.MDCPU, base.MDCPU, s.CoreCPU, base.CoreCPU),
		})
	}
	return out
}
