package report

import (
	"math"
	"strings"
	"testing"
)

// cascadeRun is two rounds of a cascade step and its one-MD group on one
// path (round 2's one-MD step failed), and a round of another path.
func cascadeRun() []Scenario {
	one := func(round int, perCPU float64, errText string) Scenario {
		return Scenario{Name: RatioGroup + "@sat", Group: RatioGroup, Step: "sat", Path: "mdfast-xdp-native", Round: round,
			ForwardedPPS: perCPU, MDCPU: 1, ForwardedPerCPUSecond: perCPU, Error: errText}
	}
	casc := func(round int, path string, md0, md1 float64, linkRx uint64) Scenario {
		return Scenario{Name: "cascade2md-" + RatioGroup + "@sat", Group: "cascade2md-" + RatioGroup, Step: "sat", Path: path, Round: round,
			OneMDGroup: RatioGroup, ForwardedPPS: 3000, MDCPU: 1.5, Loss: 0.01,
			MDs: []MD{
				{Index: 0, Members: 2, Senders: 1, CPU: 0.5, ForwardedPPS: 1000, ForwardedPerCPUSecond: md0, LinkTx: 500, Forwarded: 500, SentAll: 500},
				{Index: 1, Members: 3, CPU: 1, ForwardedPPS: 3000, ForwardedPerCPUSecond: md1, LinkRx: linkRx, Forwarded: linkRx, PeerSentAll: 500, Loss: 0.02},
			}}
	}
	return []Scenario{
		one(1, 1000, ""), casc(1, "mdfast-xdp-native", 2000, 3000, 500),
		casc(2, "mdfast-xdp-native", 4000, 1000, 499), one(2, 0, "failed"),
		casc(3, "mdfast-xdp-native", 0, 0, 0), one(3, 2000, ""),
		casc(1, "mdfast-socket", 1000, 1000, 500),
	}
}

func TestSummarizeCascade(t *testing.T) {
	scs := cascadeRun()
	scs[4].Error = "MD 1 did not start"
	cs := SummarizeCascade(scs)
	if len(cs) != 2 {
		t.Fatalf("%d aggregates, want 2 (one per path)", len(cs))
	}
	a := cs[0]
	if a.Path != "mdfast-xdp-native" || a.Rounds != 2 || a.Errors != 1 || a.OneMDGroup != RatioGroup || len(a.MDs) != 2 {
		t.Fatalf("aggregate %+v", a)
	}
	// Both rounds crossed once; round 2 lost a link packet.
	if a.CrossedOnce != 2 || a.LinksLossless != 1 {
		t.Errorf("crossed once in %d rounds, lossless in %d, want 2 and 1", a.CrossedOnce, a.LinksLossless)
	}
	// Only round 1 has a one-MD figure: the ratio is taken in it only.
	if a.OneMD.N != 1 || a.OneMD.Median != 1000 {
		t.Errorf("one-MD %+v", a.OneMD)
	}
	m0, m1 := a.MDs[0], a.MDs[1]
	if m0.PerCPUSecond.N != 2 || m0.PerCPUSecond.Median != 3000 || m0.PerCPUSecond.Min != 2000 || m0.PerCPUSecond.Max != 4000 {
		t.Errorf("MD 0 per CPU-second %+v", m0.PerCPUSecond)
	}
	if m0.VsOneMD.N != 1 || m0.VsOneMD.Median != 2 || m1.VsOneMD.Median != 3 {
		t.Errorf("vs one MD: MD 0 %+v, MD 1 %+v", m0.VsOneMD, m1.VsOneMD)
	}
	if m1.Members != 3 || m1.Loss.Median != 0.02 || m1.LinkRx.Min != 499 || m0.LinkTx.Median != 500 {
		t.Errorf("MD 1 %+v", m1)
	}
	if a.PerCPUSecond.N != 2 || a.PerCPUSecond.Median != 2000 || a.VsOneMD.N != 1 || math.Abs(a.VsOneMD.Median-2) > 1e-9 {
		t.Errorf("all MDs: %+v vs %+v", a.PerCPUSecond, a.VsOneMD)
	}
	// The socket path has no one-MD figure at all.
	if b := cs[1]; b.Path != "mdfast-socket" || b.OneMD.N != 0 || b.MDs[0].VsOneMD.N != 0 || b.MDs[0].PerCPUSecond.N != 1 {
		t.Errorf("socket aggregate %+v", b)
	}
}

func TestCascadeMarkdownAndGoals(t *testing.T) {
	r := &Run{Scenarios: cascadeRun(), Rounds: 3}
	r.Scenarios[4].MDs[0].LinkTx = 1000 // round 3 sent its packets twice on the link
	r.Finish()
	if len(r.Cascade) != 2 {
		t.Fatalf("%d cascade aggregates", len(r.Cascade))
	}
	for _, f := range r.Findings {
		if strings.Contains(f.Detail, CascadePrefix) {
			t.Fatalf("a goal judged a cascade step: %+v", f)
		}
	}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| cascade2md-fanout1to4-160B@sat | mdfast-xdp-native | md00 | 2 (1) | 3000 (2000–4000) | 1500 (1000–2000) (fanout1to4-160B) | 2.00× |",
		// Round 3's MDs have no figure of their own (no snapshots) but
		// the cascade's does; round 2 lost a link packet, round 3 sent
		// twice and lost every one.
		"| cascade2md-fanout1to4-160B@sat | mdfast-xdp-native | all MDs | | 2000 | 1500 (1000–2000) (fanout1to4-160B) | 1.50× (1.00×–2.00×) | | 1% | | | 2 of 3 | 1 of 3 |",
		"| cascade2md-fanout1to4-160B@sat | mdfast-socket | md01 | 3 (0) | 1000 | – (fanout1to4-160B) | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	var none strings.Builder
	writeCascade(&none, nil)
	if none.Len() != 0 {
		t.Errorf("a run without cascade steps gets a cascade table: %q", none.String())
	}
}
