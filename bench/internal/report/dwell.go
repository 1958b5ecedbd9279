package report

import (
	"fmt"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// Dwell is the distribution of the time packets spent in a forwarder over
// a step's measured phase, measured by the forwarder itself: from the XDP
// program's redirect of each received frame (its receive time, in the
// frame's metadata) to the return of the TX kick of the batch that
// carried its copies (internal/dwell). The XDP paths (mdharness) and the
// XDP reflectors report it; the percentiles are the upper edges of the
// histogram bins holding them (1 µs wide below 100 µs, at most 5 % wider
// than the value above). A percentile in the histogram's last bin (100 ms
// or more) is reported as DwellLimitUs: at least that.
type Dwell struct {
	// Packets is how many forwarded packets were measured.
	Packets uint64  `json:"packets"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	P999us  float64 `json:"p999_us"`
}

// DwellLimitUs is the largest dwell the histogram resolves, µs: a
// percentile reported as this much is at least that (internal/dwell.Max).
const DwellLimitUs = 100000

// atLimit says whether one of d's percentiles is at DwellLimitUs.
func (d *Dwell) atLimit() bool {
	return d.P50us >= DwellLimitUs || d.P99us >= DwellLimitUs || d.P999us >= DwellLimitUs
}

// AttachAddedDwell sets AddedDwell on every step with a Dwell (not a
// reflector's own) for which the same round measured the step's reflector
// (Scenario.Reflector) at the same group and step, with a Dwell: each
// percentile minus the reflector's. RefDwellBusy says that reflector step
// was busier than MaxReflectorCPU: its own dwell then includes its own
// queueing, which the difference takes away. No added dwell is taken when
// a percentile of either is at DwellLimitUs (only a bound is known).
func AttachAddedDwell(scs []Scenario) {
	for i := range scs {
		s := &scs[i]
		s.AddedDwell, s.RefDwell, s.RefDwellBusy = nil, nil, false
		if IsReflector(s.Path) || s.Error != "" || s.Dwell == nil || s.Dwell.Packets == 0 || s.Dwell.atLimit() {
			continue
		}
		ref := reflectorOf(s)
		for j := range scs {
			c := &scs[j]
			if c.Path != ref || c.Error != "" || c.Dwell == nil || c.Dwell.Packets == 0 || c.Dwell.atLimit() || c.Round != s.Round || c.Group != s.Group || c.Step != s.Step {
				continue
			}
			if c.Calibrates == s.Path || (c.Calibrates == "" && s.Pattern != "flood") {
				a := stats.AddedLatency(
					stats.Summary{P50: s.Dwell.P50us, P99: s.Dwell.P99us, P999: s.Dwell.P999us},
					stats.Summary{P50: c.Dwell.P50us, P99: c.Dwell.P99us, P999: c.Dwell.P999us})
				s.AddedDwell, s.RefDwell = &a, c.Dwell
				s.RefDwellBusy = c.MDCPU > MaxReflectorCPU
				break
			}
		}
	}
}

// dwellCell is a scenario's dwell percentiles for the Markdown tables, "–"
// without (socket paths, results written before dwell was measured).
func dwellCell(d *Dwell) string {
	if d == nil || d.Packets == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", dwellUs(d.P50us), dwellUs(d.P99us), dwellUs(d.P999us))
}

// dwellUs formats a dwell percentile, "≥100000" at the histogram's limit.
func dwellUs(v float64) string {
	if v >= DwellLimitUs {
		return fmt.Sprintf("≥%d", DwellLimitUs)
	}
	return fmt.Sprintf("%.0f", v)
}

// dwellSpread is spread for dwell percentiles (see dwellUs).
func dwellSpread(s stats.Spread) string {
	switch {
	case s.N == 0:
		return "–"
	case s.N == 1 || s.Min == s.Max:
		return dwellUs(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", dwellUs(s.Median), dwellUs(s.Min), dwellUs(s.Max))
}

// addedDwellCell is a scenario's added dwell, "–" without.
func addedDwellCell(s *Scenario) string {
	if s.AddedDwell == nil {
		return "–"
	}
	c := fmt.Sprintf("%.0f / %.0f / %.0f", s.AddedDwell.P50, s.AddedDwell.P99, s.AddedDwell.P999)
	if s.RefDwellBusy {
		c += " (reflector busy)"
	}
	return c
}

// dwellFinding judges the issue 13 latency goal on path (an XDP path) at
// 50 % of saturation from the dwell: the forwarder's whole dwell p99 at or
// under GoalAddedP99us is enough (what it adds over any reflector is at
// most its whole dwell); otherwise the added dwell p99 over the reflector
// of the same mode at the same rate in the same round decides. The worst
// group at 50 % (highest median dwell p99) is judged.
func dwellFinding(sum []Aggregate, p string) Finding {
	f := Finding{Goal: "forwarder dwell p99 at 50% of saturation (XDP receive to TX kick, measured in the forwarder), worst group's median, µs; else added dwell p99 over the reflector", Path: p, Target: GoalAddedP99us}
	a := worstAt(sum, p, 0.5, func(a *Aggregate) stats.Spread { return a.DwellP99us })
	if a == nil {
		f.Detail = "not measured in this run (no dwell: a socket path, or results from before the dwell measurement)"
		return f
	}
	f.set(a.DwellP99us)
	f.Detail = fmt.Sprintf("%s: dwell p99 min–max %s–%s over %d rounds", a.Name, dwellUs(a.DwellP99us.Min), dwellUs(a.DwellP99us.Max), a.DwellP99us.N)
	if !xdpPath(p) {
		f.Detail += "; the goal is for the XDP paths"
		return f
	}
	if f.Value <= GoalAddedP99us {
		f.Met = met(true)
		f.Detail += "; the whole dwell is within the goal, so what the forwarder adds is too"
		return f
	}
	if a.AddedDwellP99us.N == 0 {
		f.Detail += fmt.Sprintf("; NOT RESOLVED: above the goal, and no dwell of %s at the same rate in the same round to take the added dwell from", a.Reflector)
		return f
	}
	f.set(a.AddedDwellP99us)
	f.Detail += fmt.Sprintf("; above the goal, so judged on the added dwell p99 over %s: min–max %.0f–%.0f over %d rounds (%s), the reflector's own dwell p99 %.0f–%.0f",
		a.Reflector, a.AddedDwellP99us.Min, a.AddedDwellP99us.Max, a.AddedDwellP99us.N, list(a.AddedDwellP99us.Values, "%.0f"), a.RefDwellP99us.Min, a.RefDwellP99us.Max)
	if a.BusyDwellCalibrations > 0 {
		f.Detail += fmt.Sprintf(" (in %d of them the reflector was busier than %.0f%% of a core: its dwell includes its own queueing)", a.BusyDwellCalibrations, MaxReflectorCPU*100)
	}
	if r := a.RefDwellP99us.Max - a.RefDwellP99us.Min; r > GoalAddedP99us {
		f.Detail += fmt.Sprintf("; NOT RESOLVED: the reflector's dwell p99 moved by %.0f µs between rounds (more than the %g µs goal): the host was too noisy to tell", r, float64(GoalAddedP99us))
		return f
	}
	f.Met = met(f.Value <= GoalAddedP99us)
	return f
}

// writeDwell writes, for every step with a dwell, the forwarder's dwell
// beside its reflector's at the same rate and the difference, medians
// over the rounds (min–max).
func writeDwell(b *strings.Builder, sum []Aggregate) {
	head := false
	for _, a := range sum {
		if a.DwellP99us.N == 0 || IsReflector(a.Path) {
			continue
		}
		if !head {
			b.WriteString("\nDwell: each forwarded packet's time in the forwarder, from the XDP program's redirect of the received frame (the receive time it writes in the frame's metadata) to the return of the TX kick of the batch carrying its copies, measured by the forwarder (internal/dwell) over the measured phase; beside it the dwell of the path's XDP reflector at the same rate in the same round, and the difference of the two distributions' percentiles (not taken when either has a percentile at the histogram's limit, ≥100000: 100 ms or more). Median over the rounds (min–max), µs; the reflector columns are those of the rounds that gave an added dwell. Generator burst: the packets the generator's pacer sent back to back, mean per round, median (min–max) and the largest of any round; bursts queue in the forwarder and lengthen its tail:\n\n")
			b.WriteString("| scenario | path | dwell p50 | dwell p99 | dwell p99.9 | reflector | reflector p50 | reflector p99 | reflector p99.9 | added p50 | added p99 | added p99.9 | generator burst |\n|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|\n")
			head = true
		}
		ref := a.Reflector
		if a.BusyDwellCalibrations > 0 {
			ref += fmt.Sprintf(" (busy in %d)", a.BusyDwellCalibrations)
		}
		burst := "–"
		if a.SendBurst.N > 0 {
			burst = fmt.Sprintf("%s, max %d", spread(a.SendBurst, "%.1f"), a.SendBurstMax)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a.Name, a.Path,
			dwellSpread(a.DwellP50us), dwellSpread(a.DwellP99us), dwellSpread(a.DwellP999us), ref,
			dwellSpread(a.RefDwellP50us), dwellSpread(a.RefDwellP99us), dwellSpread(a.RefDwellP999us),
			spread(a.AddedDwellP50us, "%.0f"), spread(a.AddedDwellP99us, "%.0f"), spread(a.AddedDwellP999us, "%.0f"), burst)
	}
}
