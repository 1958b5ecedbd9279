package report

import (
	"math"
	"strings"
	"testing"
)

// TestMultiQueueFindings: each multi-queue path measured at saturation is
// compared with the 1-queue path of the same round, as per-round ratios
// judged at the median with their spread; a round without that baseline
// adds no ratio, and without any baseline there is nothing to compare.
func TestMultiQueueFindings(t *testing.T) {
	scs := []Scenario{
		{Round: 1, Path: MQBase, Group: MQGroup, Step: "sat", ForwardedPPS: 100, ForwardedPerCPUSecond: 200, MDCPU: 0.5},
		{Round: 1, Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "sat", ForwardedPPS: 150, ForwardedPerCPUSecond: 180, QueueRx: []uint64{5, 7}},
		{Round: 1, Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "50%", ForwardedPPS: 75, ForwardedPerCPUSecond: 100},
		{Round: 1, Path: "mdfast-xdp-native-2q-2cores", Group: MQGroup, Step: "sat", Error: "failed"},
		// Round 2: the baseline was slower; the ratio is against it.
		{Round: 2, Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "sat", ForwardedPPS: 160, ForwardedPerCPUSecond: 150, QueueRx: []uint64{6, 6}},
		{Round: 2, Path: MQBase, Group: MQGroup, Step: "sat", ForwardedPPS: 80, ForwardedPerCPUSecond: 100, MDCPU: 0.5},
		// Round 3: the baseline failed; no ratio for this round.
		{Round: 3, Path: MQBase, Group: MQGroup, Step: "sat", Error: "failed"},
		{Round: 3, Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "sat", ForwardedPPS: 1000, ForwardedPerCPUSecond: 1000},
	}
	sum := Summarize(scs)
	f := multiQueue(sum)
	if len(f) != 2 {
		t.Fatalf("%d findings, want 2: %+v", len(f), f)
	}
	pps, cpu := f[0], f[1]
	// pps: 1.5 and 2.0; per CPU-s: 0.9 and 1.5.
	if pps.Rounds != 2 || math.Abs(pps.Value-1.75) > 1e-9 || math.Abs(pps.Min-1.5) > 1e-9 || math.Abs(pps.Max-2) > 1e-9 || pps.Met != nil {
		t.Errorf("pps finding %+v", pps)
	}
	if cpu.Rounds != 2 || math.Abs(cpu.Value-1.2) > 1e-9 || math.Abs(cpu.Min-0.9) > 1e-9 || math.Abs(cpu.Max-1.5) > 1e-9 || cpu.Met != nil {
		t.Errorf("per CPU-second finding %+v", cpu)
	}
	if !strings.Contains(pps.Detail, "[[5 7] [6 6]") {
		t.Errorf("detail %q lacks the per-worker counts", pps.Detail)
	}
	for _, a := range sum {
		if a.Step != "sat" && a.MQPPS.N != 0 {
			t.Errorf("%s %s: a multi-queue ratio at a paced step", a.Name, a.Path)
		}
	}
	// The findings come out of Evaluate, and the Markdown shows the spread.
	r := &Run{Rounds: 3, Scenarios: scs}
	r.Finish()
	n := 0
	for _, g := range r.Findings {
		if strings.HasPrefix(g.Goal, "multi-queue:") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("Evaluate: %d multi-queue findings, want 2", n)
	}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| mdfast-xdp-native-2q | 2 | ") || !strings.Contains(b.String(), "1.75× (1.50×–2.00×)") {
		t.Errorf("Markdown lacks the multi-queue table:\n%s", b.String())
	}
	var noBase []Scenario
	for _, s := range scs {
		if s.Path != MQBase {
			noBase = append(noBase, s)
		}
	}
	if got := multiQueue(Summarize(noBase)); got != nil {
		t.Fatalf("findings without a baseline: %+v", got)
	}
}
