package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// dwellRun is rounds of 1→4 at 50 % on mdfast-xdp-native with its XDP
// reflector after each step; dwell p99 of the path and of the reflector
// per round as given (0: that step has no dwell, as in old results), the
// reflector's md_cpu refCPU. A socket reflector step (no dwell) runs
// after each too.
func dwellRun(path []float64, ref []float64, refCPU float64) *Run {
	sc := func(round int, p, reflector, calib string, dwellP99, cpu float64) Scenario {
		s := Scenario{
			Name: RatioGroup + "@50%", Group: RatioGroup, Step: "50%", Path: p, Payload: 160, Fanout: 4,
			Participants: 5, Senders: 1, Pattern: "flood", OfferedPPS: 1e5, ForwardedPPS: 1e5,
			P50us: 500, P99us: 900, P999us: 1500, MDCPU: cpu, CoreCPU: cpu, Verified: 10, Round: round,
			Reflector: reflector, Calibrates: calib,
		}
		if dwellP99 > 0 {
			s.Dwell = &Dwell{Packets: 1000, P50us: dwellP99 / 4, P99us: dwellP99, P999us: dwellP99 * 2}
			// The generator's bursts: larger with each round.
			s.SendBurstMean, s.SendBurstMax = 0.5+float64(round), 3*round
		}
		return s
	}
	r := &Run{Rounds: len(path)}
	for i := range path {
		round := i + 1
		r.Scenarios = append(r.Scenarios,
			sc(round, "mdfast-xdp-native", ReflectorXDPNative, "", path[i], 0.6),
			sc(round, ReflectorXDPNative, "", "mdfast-xdp-native", ref[i], refCPU),
			sc(round, Reflector, "", "mdfast-xdp-native", 0, 0.1),
		)
	}
	r.Finish()
	return r
}

// TestAddedDwell: the added dwell is the path's dwell percentiles minus
// those of its own reflector in the same round, never the socket
// reflector's; a step or a reflector without dwell gives none.
func TestAddedDwell(t *testing.T) {
	for _, tc := range []struct {
		name      string
		path, ref []float64
		refCPU    float64
		want      []float64 // added p99 per round; NaN: none
		busy      bool
	}{
		{"three rounds", []float64{80, 90, 70}, []float64{50, 55, 60}, 0.3, []float64{30, 35, 10}, false},
		{"negative kept", []float64{40}, []float64{45}, 0.3, []float64{-5}, false},
		{"reflector busy", []float64{80}, []float64{50}, 0.7, []float64{30}, true},
		{"no reflector dwell", []float64{80, 90}, []float64{0, 55}, 0.3, []float64{math.NaN(), 35}, false},
		{"no path dwell", []float64{0}, []float64{50}, 0.3, []float64{math.NaN()}, false},
		// A percentile at the histogram's limit is only a bound.
		{"path at limit", []float64{DwellLimitUs}, []float64{50}, 0.3, []float64{math.NaN()}, false},
		{"path p99.9 at limit", []float64{60000}, []float64{50}, 0.3, []float64{math.NaN()}, false},
		{"reflector at limit", []float64{80, 90}, []float64{DwellLimitUs, 55}, 0.3, []float64{math.NaN(), 35}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dwellRun(tc.path, tc.ref, tc.refCPU)
			for _, s := range r.Scenarios {
				if s.Path != "mdfast-xdp-native" {
					if s.AddedDwell != nil {
						t.Fatalf("%s has an added dwell", s.Path)
					}
					continue
				}
				want := tc.want[s.Round-1]
				if math.IsNaN(want) {
					if s.AddedDwell != nil {
						t.Fatalf("round %d: added dwell %+v without both dwells", s.Round, s.AddedDwell)
					}
					continue
				}
				if s.AddedDwell == nil || s.AddedDwell.P99 != want || s.AddedDwell.P50 != want/4 || s.AddedDwell.P999 != 2*want || s.RefDwellBusy != tc.busy {
					t.Fatalf("round %d: added dwell %+v busy %v, want p99 %v busy %v", s.Round, s.AddedDwell, s.RefDwellBusy, want, tc.busy)
				}
			}
		})
	}
}

// TestDwellFinding: the latency goal of the XDP paths at 50 % from the
// dwell: met on the whole dwell p99 when that is within the goal,
// otherwise on the added dwell p99; judged at the median over the rounds,
// never on one round.
func TestDwellFinding(t *testing.T) {
	const goal = "forwarder dwell p99"
	for _, tc := range []struct {
		name      string
		path, ref []float64
		value     float64
		met       *bool
		detail    string
	}{
		{"whole dwell within", []float64{40, 45, 60}, []float64{30, 30, 30}, 45, met(true), "whole dwell is within the goal"},
		{"added within", []float64{80, 90, 70}, []float64{50, 55, 60}, 30, met(true), "added dwell p99 over " + ReflectorXDPNative},
		{"added above", []float64{200, 210, 190}, []float64{50, 55, 60}, 150, met(false), "added dwell p99"},
		{"above, no reflector dwell", []float64{80, 90}, []float64{0, 0}, 85, nil, "NOT RESOLVED: above the goal, and no dwell of " + ReflectorXDPNative},
		{"one round", []float64{40}, []float64{30}, 40, nil, "NOT JUDGED"},
		{"noisy reflector", []float64{200, 210, 190}, []float64{50, 150, 60}, 130, nil, "NOT RESOLVED: the reflector's dwell p99 moved by 100 µs"},
		{"at limit, no added dwell", []float64{DwellLimitUs, DwellLimitUs}, []float64{50, 55}, DwellLimitUs, nil, "≥100000 over 2 rounds; NOT RESOLVED: above the goal, and no dwell of"},
		{"busy reflector said", []float64{80, 90}, []float64{50, 55}, 32.5, met(true), "busier than 50% of a core"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu := 0.3
			if strings.HasPrefix(tc.name, "busy") {
				cpu = 0.7
			}
			r := dwellRun(tc.path, tc.ref, cpu)
			f := finding(t, r, goal, "mdfast-xdp-native")
			if f.Value != tc.value || (f.Met == nil) != (tc.met == nil) || (f.Met != nil && *f.Met != *tc.met) || !strings.Contains(f.Detail, tc.detail) {
				t.Fatalf("finding %+v (met %v), want value %v met %v detail with %q", f, deref(f.Met), tc.value, deref(tc.met), tc.detail)
			}
		})
	}
	// Without any dwell (results from before it): not measured, no goal.
	r := dwellRun([]float64{0, 0}, []float64{0, 0}, 0.3)
	if f := finding(t, r, goal, "mdfast-xdp-native"); f.Met != nil || !strings.Contains(f.Detail, "not measured") {
		t.Fatalf("no dwell: %+v", f)
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestDwellMarkdown: the dwell columns and table, "–" where a step has
// none (old result files re-reported).
func TestDwellMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := dwellRun([]float64{80, 90}, []float64{50, 55}, 0.3).Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| 1 | fanout1to4-160B@50% | mdfast-xdp-native | 160 | 4 | 5 | 100000 | 100000 | 0 | 500 | 900 | 1500 | 0 / 0 / 0 | 20 / 80 / 160 | 8 / 30 / 60 | 0.60 |",
		"| 1 | fanout1to4-160B@50% | reflector-xdp-native (for mdfast-xdp-native) | 160 | 4 | 5 | 100000 | 100000 | 0 | 500 | 900 | 1500 | – | 12 / 50 / 100 | – | 0.30 |",
		"| 1 | fanout1to4-160B@50% | reflector (for mdfast-xdp-native) | 160 | 4 | 5 | 100000 | 100000 | 0 | 500 | 900 | 1500 | – | – | – | 0.10 |",
		"| fanout1to4-160B@50% | mdfast-xdp-native | 21 (20–22) | 85 (80–90) | 170 (160–180) | " + ReflectorXDPNative + " | 13 (12–14) | 52 (50–55) | 105 (100–110) | 8 (8–9) | 32 (30–35) | 65 (60–70) | 2.0 (1.5–2.5), max 6 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// At the histogram's limit: a bound.
	b.Reset()
	if err := dwellRun([]float64{DwellLimitUs}, []float64{50}, 0.3).Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| 25000 / ≥100000 / ≥100000 | – |") || !strings.Contains(b.String(), "| 25000 | ≥100000 | ≥100000 | – |") {
		t.Errorf("no bound at the limit:\n%s", b.String())
	}
	// An old result file (no dwell fields) re-reported: dashes.
	old := dwellRun([]float64{0}, []float64{0}, 0.3)
	js, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("dwell\":{")) || bytes.Contains(js, []byte("added_dwell\":{")) {
		t.Fatalf("dwell fields written without dwell: %s", js)
	}
	var back Run
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	back.Finish()
	b.Reset()
	if err := back.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| 0 / 0 / 0 | – | – | 0.60 |") || strings.Contains(b.String(), "), max ") {
		t.Errorf("old results: no dashes for the dwell:\n%s", b.String())
	}
}
