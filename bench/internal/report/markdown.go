package report

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// Markdown writes the scenarios as a Markdown table followed by the
// findings.
func (r *Run) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# mdfast benchmark %s\n\n", r.Started.UTC().Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(&b, "`%s` on %s, %d CPUs, kernel %s, %s; forwarder pinned to CPU %d, generator to CPU %d.\n\n",
		r.Command, r.Host.CPU, r.Host.CPUs, r.Host.Kernel, r.Host.GoVersion, r.Host.MDCore, r.Host.GenCore)
	for _, m := range r.Method {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	writeSummary(&b, r)
	writeCalibration(&b, r.Summary)
	writeDwell(&b, r.Summary)
	writeWaits(&b, r.Summary)
	writeMQ(&b, r.Summary)
	writeCascade(&b, r.Cascade)
	fmt.Fprintf(&b, "\nEvery step of every round (a reflector row \"for X\" is X's calibration, run right after X's step at the same rate: the XDP reflector of X's mode for an XDP path, the socket reflector for the others; added = this row's percentile minus its reflector's; dwell = time in the forwarder from the XDP receive to the TX kick, measured by the forwarder, XDP paths and XDP reflectors only):\n")
	b.WriteString("\n| round | scenario | path | payload | fanout | participants | offered pps | forwarded pps | loss | p50 µs | p99 µs | p99.9 µs | added p50/p99/p99.9 µs | dwell p50/p99/p99.9 µs | added dwell p50/p99/p99.9 µs | md_cpu | core_cpu | fwd pkt / MD CPU-s | profile |\n")
	b.WriteString("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, s := range r.Scenarios {
		path := s.Path
		if s.Calibrates != "" {
			path += " (for " + s.Calibrates + ")"
		}
		if s.Error != "" {
			fmt.Fprintf(&b, "| %d | %s | %s | %d | %d | %d | error: %s |||||||||||| %s |\n", s.Round, s.Name, path, s.Payload, s.Fanout, s.Participants, mdEscape(s.Error), ShortProfile(s.Profile))
			continue
		}
		added := "–"
		if s.CalibrationSaturated {
			added = reflectorOf(&s) + " saturated"
		}
		if s.Added != nil {
			added = fmt.Sprintf("%.0f / %.0f / %.0f", s.Added.P50, s.Added.P99, s.Added.P999)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %d | %d | %.0f | %.0f | %s | %.0f | %.0f | %.0f | %s | %s | %s | %.2f | %s | %s | %s |\n",
			s.Round, s.Name, path, s.Payload, s.Fanout, s.Participants, s.OfferedPPS, s.ForwardedPPS,
			pct(s.Loss), s.P50us, s.P99us, s.P999us, added, dwellCell(s.Dwell), addedDwellCell(&s), s.MDCPU, optional(s.CoreCPU), perCPU(s.ForwardedPerCPUSecond), ShortProfile(s.Profile))
	}
	writeHandshakes(&b, r.Scenarios)
	if len(r.Findings) > 0 {
		b.WriteString("\nGoals, judged at the median over the rounds (min–max beside it):\n")
		b.WriteString("\n| goal | path | median | min–max | rounds | target | met at the median | detail |\n|---|---|--:|--:|--:|--:|---|---|\n")
		for _, f := range r.Findings {
			m := "n/a"
			if f.Met != nil {
				m = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
			}
			fmt.Fprintf(&b, "| %s | %s | %.4g | %.4g–%.4g | %d | %.4g | %s | %s |\n", f.Goal, f.Path, f.Value, f.Min, f.Max, f.Rounds, f.Target, m, mdEscape(f.Detail))
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("report: write Markdown: %w", err)
	}
	return nil
}

// ShortProfile is the Markdown column of a profile: "gcm128" for
// AEAD_AES_128_GCM, "double-gcm128 (0x0009)" for RFC 8723 double, else the
// name itself.
func ShortProfile(p string) string {
	switch p {
	case "AEAD_AES_128_GCM":
		return "gcm128"
	case "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM":
		return "double-gcm128 (0x0009)"
	}
	return p
}

func pct(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3g%%", v*100)
}

func optional(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func perCPU(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// writeHandshakes writes the table of the scenarios that ran handshakes.
func writeHandshakes(b *strings.Builder, scs []Scenario) {
	head := false
	for _, s := range scs {
		if s.Handshakes == 0 {
			continue
		}
		if !head {
			b.WriteString("\nDTLS-SRTP handshakes through the MD to the KD (internal/dtls on both ends), all of a step's endpoints at once; set-ups/s is the KD's association set-up rate through the tunnel (completed handshakes over the wall time of the step's handshakes):\n\n")
			b.WriteString("| scenario | path | mode | handshakes ok | p50 ms | p99 ms | max ms | total ms | set-ups/s |\n|---|---|---|--:|--:|--:|--:|--:|--:|\n")
			head = true
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d/%d | %.1f | %.1f | %.1f | %.1f | %.0f |\n", s.Name, s.Path, mdEscape(s.Mode),
			s.HandshakesOK, s.Handshakes, s.HandshakeP50ms, s.HandshakeP99ms, s.HandshakeMaxMs, s.HandshakeTotalMs, s.SetupsPerSecond)
	}
}

// writeSummary writes the table over the rounds: medians with min–max.
func writeSummary(b *strings.Builder, r *Run) {
	if len(r.Summary) == 0 {
		return
	}
	fmt.Fprintf(b, "\nOver %d rounds: median (min–max). Ratio = forwarded packets per forwarder CPU-second over the same round's baseline (saturation steps). Added = latency over the path's reflector (see Calibration) at the same rate in the same round. Dwell = time in the forwarder from the XDP receive to the TX kick, measured by the forwarder (XDP paths and XDP reflectors); added dwell = that minus its reflector's at the same rate in the same round:\n\n", r.Rounds)
	b.WriteString("| scenario | path | rounds | forwarded pps | loss | ratio vs baseline | p50 µs | p99 µs | added p50 µs | added p99 µs | added p99.9 µs | dwell p50 µs | dwell p99 µs | dwell p99.9 µs | added dwell p99 µs | md_cpu | profile |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, a := range r.Summary {
		rounds := fmt.Sprint(a.Rounds)
		if a.Errors > 0 {
			rounds += fmt.Sprintf(" (%d failed)", a.Errors)
		}
		if a.SaturatedCalibrations > 0 {
			rounds += fmt.Sprintf(" (%d: reflector saturated)", a.SaturatedCalibrations)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a.Name, a.Path, rounds,
			spread(a.ForwardedPPS, "%.0f"), spreadPct(a.Loss), spread(a.Ratio, "%.2f×"), spread(a.P50us, "%.0f"), spread(a.P99us, "%.0f"),
			spread(a.AddedP50us, "%.0f"), spread(a.AddedP99us, "%.0f"), spread(a.AddedP999us, "%.0f"),
			dwellSpread(a.DwellP50us), dwellSpread(a.DwellP99us), dwellSpread(a.DwellP999us), spread(a.AddedDwellP99us, "%.0f"),
			spread(a.MDCPU, "%.2f"), ShortProfile(a.Profile))
	}
}

// writeCalibration writes which reflector calibrated each path's added
// latency, and in how many of the steps that measured latency.
func writeCalibration(b *strings.Builder, sum []Aggregate) {
	type row struct {
		path, ref           string
		steps, added, satur int
	}
	var rows []row
	for _, a := range sum {
		if a.Reflector == "" || a.P99us.N == 0 {
			continue
		}
		i := slices.IndexFunc(rows, func(r row) bool { return r.path == a.Path && r.ref == a.Reflector })
		if i < 0 {
			rows = append(rows, row{path: a.Path, ref: a.Reflector})
			i = len(rows) - 1
		}
		rows[i].steps += a.P99us.N
		rows[i].added += a.AddedP99us.N
		rows[i].satur += a.SaturatedCalibrations
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nCalibration: the reflector each path's added latency is taken against (the XDP reflector of the same mode for an XDP path, the socket reflector for the others), and how many of the path's steps with latency samples it calibrated (saturated: the reflector was busier than its limit at that rate):\n\n")
	b.WriteString("| path | reflector | steps calibrated | reflector saturated | steps |\n|---|---|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %d |\n", r.path, r.ref, r.added, r.satur, r.steps)
	}
}

// writeWaits writes how the AF_XDP workers waited, for the steps that say.
func writeWaits(b *strings.Builder, sum []Aggregate) {
	head := false
	for _, a := range sum {
		if a.SleepsPerK.N == 0 {
			continue
		}
		if !head {
			b.WriteString("\nHow the AF_XDP worker waited on an empty RX ring, per 1000 packets it received (median (min–max) over the rounds): poll sleeps are the times it went to sleep in poll (the next packet then waits for a kernel wake-up, unless it came in between), spin catches the times the spin after the last packet found more without going to poll:\n\n")
			b.WriteString("| scenario | path | poll sleeps / 1000 pkts | spin catches / 1000 pkts | md_cpu |\n|---|---|--:|--:|--:|\n")
			head = true
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", a.Name, a.Path, spread(a.SleepsPerK, "%.1f"), spread(a.CatchesPerK, "%.1f"), spread(a.MDCPU, "%.2f"))
	}
}

// writeMQ writes the multi-queue comparison (BENCH_MQ=1), when the run has
// one: each path's per-round ratios against MQBase in the same round.
func writeMQ(b *strings.Builder, sum []Aggregate) {
	head := false
	for _, a := range sum {
		if a.MQPPS.N == 0 {
			continue
		}
		if !head {
			fmt.Fprintf(b, "\nMulti-queue, %s at saturation, against %s (1 queue, 1 worker) in the same round: median (min–max) over the rounds:\n\n", MQGroup, MQBase)
			b.WriteString("| path | rounds | forwarded pps | pps vs 1 queue | pkt / MD CPU-s vs 1 queue | md_cpu | per worker received, by round |\n|---|--:|--:|--:|--:|--:|---|\n")
			head = true
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %v |\n", a.Path, a.MQPPS.N, spread(a.ForwardedPPS, "%.0f"),
			spread(a.MQPPS, "%.2f×"), spread(a.MQPerCPU, "%.2f×"), spread(a.MDCPU, "%.2f"), a.QueueRx)
	}
}

// spread formats a Spread as "median (min–max)", "–" when not measured.
func spread(s stats.Spread, format string) string {
	switch {
	case s.N == 0:
		return "–"
	case s.N == 1 || s.Min == s.Max:
		return fmt.Sprintf(format, s.Median)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.Median, s.Min, s.Max)
}

func spreadPct(s stats.Spread) string {
	if s.N == 0 {
		return "–"
	}
	if s.Max == 0 {
		return "0"
	}
	if s.N == 1 || s.Min == s.Max {
		return pct(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", pct(s.Median), pct(s.Min), pct(s.Max))
}
