package report

import (
	"fmt"
	"io"
	"strings"
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
	b.WriteString("\n| scenario | path | payload | fanout | participants | offered pps | forwarded pps | loss | p50 µs | p99 µs | md_cpu | core_cpu | fwd pkt / MD CPU-s | profile |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | error: %s |||||||| %s |\n", s.Name, s.Path, s.Payload, s.Fanout, s.Participants, mdEscape(s.Error), ShortProfile(s.Profile))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.0f | %.0f | %s | %.0f | %.0f | %.2f | %s | %s | %s |\n",
			s.Name, s.Path, s.Payload, s.Fanout, s.Participants, s.OfferedPPS, s.ForwardedPPS,
			pct(s.Loss), s.P50us, s.P99us, s.MDCPU, optional(s.CoreCPU), perCPU(s.ForwardedPerCPUSecond), ShortProfile(s.Profile))
	}
	writeHandshakes(&b, r.Scenarios)
	if len(r.Findings) > 0 {
		b.WriteString("\n| goal | path | measured | target | met | detail |\n|---|---|--:|--:|---|---|\n")
		for _, f := range r.Findings {
			m := "n/a"
			if f.Met != nil {
				m = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
			}
			fmt.Fprintf(&b, "| %s | %s | %.4g | %.4g | %s | %s |\n", f.Goal, f.Path, f.Value, f.Target, m, mdEscape(f.Detail))
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
