package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// sample is three rounds of 1→4 on the baseline and XDP native, with the
// reflector after every paced step. XDP's per-CPU-second ratio is 2.0,
// 2.2 and 5.3 (one lucky round); its p99 at 50% is 120, 90 and 400 µs
// over a reflector of 70, 60 and 65 µs (added 50, 30, 335: median 50).
func sample() *Run {
	sc := func(round int, path, step string, off, fwd, loss, p99, cpu float64) Scenario {
		s := Scenario{
			Name: RatioGroup + "@" + step, Group: RatioGroup, Step: step, Path: path, Payload: 160,
			Fanout: 4, Participants: 5, Senders: 1, Pattern: "flood", OfferedPPS: off, ForwardedPPS: fwd,
			Loss: loss, P50us: p99 / 2, P99us: p99, P999us: p99 * 2, MDCPU: cpu, CoreCPU: cpu, Verified: 10, Keys: "direct", Round: round,
		}
		s.ForwardedPerCPUSecond = fwd / cpu
		return s
	}
	ref := func(round int, step, of string, p99 float64) Scenario {
		s := sc(round, Reflector, step, 1, 1, 0, p99, 0.1)
		s.Calibrates = of
		return s
	}
	r := &Run{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Command: "make bench", Rounds: 3,
		Host: Host{Kernel: "6.18", CPU: "test <cpu>", CPUs: 2, GoVersion: "go1.26", MDCore: 1},
	}
	ratio := []float64{2.0, 2.2, 5.3}
	xdp50 := []float64{120, 90, 400}
	ref50 := []float64{70, 60, 65}
	for i := range 3 {
		round := i + 1
		r.Scenarios = append(r.Scenarios,
			sc(round, "baseline", "sat", 400000, 100000, 0.75, 9000, 1.0),
			sc(round, "baseline", "70%", 70000, 70000, 0, 300, 0.8),
			ref(round, "70%", "baseline", 200),
			sc(round, "baseline", "50%", 50000, 50000, 0, 150, 0.6),
			ref(round, "50%", "baseline", 100),
			sc(round, "mdfast-xdp-native", "sat", 600000, 100000*ratio[i], 0.5, 8000, 1.0),
			sc(round, "mdfast-xdp-native", "70%", 210000, 209000, 0.005, 400, 0.7),
			ref(round, "70%", "mdfast-xdp-native", 300),
			sc(round, "mdfast-xdp-native", "50%", 150000, 150000, 0, xdp50[i], 0.5),
			ref(round, "50%", "mdfast-xdp-native", ref50[i]),
		)
	}
	r.Scenarios[6].Loss = 0            // one round of XDP at 70% without loss: the median is still 0.5%
	for i, n := range []uint64{8, 9} { // 10% at 70%, in two rounds of the three
		s := &r.Scenarios[6+i*10]
		s.ForwarderRx, s.XDPPollSleeps, s.XDPSpinCatches = 10000, 100*n, 50
	}
	r.Scenarios = append(r.Scenarios, Scenario{Name: "conf2-audio-160B@fixed", Group: "conf2-audio-160B", Step: "fixed", Path: "baseline", Pattern: "audio", Error: "boom | bad", Round: 1})
	r.Finish()
	return r
}

func TestEvaluate(t *testing.T) {
	r := sample()
	find := func(goal, path string) Finding {
		for _, f := range r.Findings {
			if strings.HasPrefix(f.Goal, goal) && f.Path == path {
				return f
			}
		}
		t.Fatalf("no finding %q for %s", goal, path)
		return Finding{}
	}
	// The lucky 5.3× round does not meet the goal: the median (2.2) does not.
	if f := find("forwarded packets per forwarder CPU-second", "mdfast-xdp-native"); math.Abs(f.Value-2.2) > 1e-9 || f.Min != 2 || f.Max != 5.3 || f.Rounds != 3 || f.Met == nil || *f.Met {
		t.Fatalf("ratio: %+v", f)
	}
	if f := find("no loss", "mdfast-xdp-native"); f.Value != 0.005 || f.Min != 0 || f.Met == nil || *f.Met {
		t.Fatalf("loss: %+v", f)
	}
	if f := find("no loss", "baseline"); f.Value != 0 || f.Met == nil || !*f.Met {
		t.Fatalf("baseline loss: %+v", f)
	}
	if f := find("p99 latency", "baseline"); f.Value != 150 || f.Met == nil || !*f.Met {
		t.Fatalf("baseline p99: %+v", f)
	}
	// Added p99 at 50%: 50, 30, 335 µs; the median 50 meets the goal.
	if f := find("added p99", "mdfast-xdp-native"); f.Value != 50 || f.Min != 30 || f.Max != 335 || f.Met == nil || !*f.Met {
		t.Fatalf("added p99: %+v", f)
	}
	// Not an XDP path: reported, not judged.
	if f := find("added p99", "baseline"); f.Value != 50 || f.Met != nil {
		t.Fatalf("baseline added p99: %+v", f)
	}
	for _, f := range r.Findings {
		if f.Path == Reflector {
			t.Fatalf("the reflector is judged: %+v", f)
		}
	}
}

// TestAddedUnresolved: when the calibration itself moves by more than the
// goal between rounds, or the path comes out much faster than the
// reflector, the added-latency goal is not judged either way.
func TestAddedUnresolved(t *testing.T) {
	for name, mut := range map[string]func(r *Run){
		"reflector moved by 300 µs": func(r *Run) {
			for i := range r.Scenarios {
				if s := &r.Scenarios[i]; s.Path == Reflector && s.Round == 2 {
					s.P99us += 300
				}
			}
		},
		"reflector saturated at the rate": func(r *Run) {
			for i := range r.Scenarios {
				if s := &r.Scenarios[i]; s.Path == Reflector && s.Calibrates == "mdfast-xdp-native" && s.Step == "50%" {
					s.MDCPU = 0.9
				}
			}
		},
		"reflector saturated in two rounds of three": func(r *Run) {
			for i := range r.Scenarios {
				if s := &r.Scenarios[i]; s.Path == Reflector && s.Calibrates == "mdfast-xdp-native" && s.Step == "50%" && s.Round != 2 {
					s.MDCPU = 0.9
				}
			}
		},
		"path 20 ms faster than the reflector": func(r *Run) {
			for i := range r.Scenarios {
				if s := &r.Scenarios[i]; s.Path == Reflector && s.Calibrates == "mdfast-xdp-native" && s.Step == "50%" {
					s.P99us = 20000 + float64(s.Round)
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := sample()
			mut(r)
			r.Finish()
			for _, f := range r.Findings {
				if f.Path == "mdfast-xdp-native" && strings.HasPrefix(f.Goal, "added p99") {
					if f.Met != nil || !strings.Contains(f.Detail, "NOT ") {
						t.Fatalf("judged on noise: %+v", f)
					}
					return
				}
			}
			t.Fatal("no added p99 finding")
		})
	}
}

// TestOneRoundJudgesNothing: with one round, every finding is reported
// and none is judged.
func TestOneRoundJudgesNothing(t *testing.T) {
	r := sample()
	var one []Scenario
	for _, s := range r.Scenarios {
		if s.Round == 1 {
			one = append(one, s)
		}
	}
	r.Scenarios = one
	r.Finish()
	for _, f := range r.Findings {
		if f.Met != nil {
			t.Fatalf("judged on one round: %+v", f)
		}
	}
}

// TestAttachAdded: each step is calibrated by the reflector run after it
// (same round, group, step and Calibrates), never by another path's or
// another round's; the fixed patterns by the round's reflector step.
func TestAttachAdded(t *testing.T) {
	s := func(round int, path, step, pattern, calib string, p99 float64) Scenario {
		return Scenario{Group: "g", Step: step, Path: path, Pattern: pattern, Round: round, Calibrates: calib,
			P50us: p99 / 2, P99us: p99, P999us: p99 + 10, Verified: 1}
	}
	scs := []Scenario{
		s(1, "a", "50%", "flood", "", 100),
		s(1, "b", "50%", "flood", "", 300),
		s(1, Reflector, "50%", "flood", "b", 250),
		s(1, Reflector, "50%", "flood", "a", 40),
		s(2, "a", "50%", "flood", "", 90),
		s(2, "a", "sat", "flood", "", 9000),
		s(1, "a", "fixed", "audio", "", 500),
		s(1, Reflector, "fixed", "audio", "", 450),
		s(2, "a", "fixed", "audio", "", 500),
	}
	AttachAdded(scs)
	want := []*stats.Added{{P50: 30, P99: 60, P999: 60}, {P50: 25, P99: 50, P999: 50}, nil, nil, nil, nil, {P50: 25, P99: 50, P999: 50}, nil, nil}
	for i := range scs {
		if (scs[i].Added == nil) != (want[i] == nil) || (want[i] != nil && *scs[i].Added != *want[i]) {
			t.Errorf("step %d (%s round %d %s): added %+v, want %+v", i, scs[i].Path, scs[i].Round, scs[i].Step, scs[i].Added, want[i])
		}
	}
	// A saturated reflector calibrates nothing.
	sat := []Scenario{s(1, "a", "50%", "flood", "", 100), s(1, Reflector, "50%", "flood", "a", 40)}
	sat[1].MDCPU = MaxReflectorCPU + 0.1
	AttachAdded(sat)
	if sat[0].Added != nil || !sat[0].CalibrationSaturated {
		t.Errorf("saturated reflector: added %+v, saturated %v", sat[0].Added, sat[0].CalibrationSaturated)
	}
	if a := Summarize(sat); a[0].SaturatedCalibrations != 1 || a[0].AddedP99us.N != 0 {
		t.Errorf("saturated reflector: %+v", a[0])
	}
	sum := Summarize(scs)
	for _, a := range sum {
		if a.Path == Reflector && a.Step != "fixed" {
			t.Errorf("a calibration step is summarized as a path: %+v", a)
		}
		if a.Path == "a" && a.Step == "50%" && (a.Rounds != 2 || a.AddedP99us.N != 1 || a.P99us.Median != 95) {
			t.Errorf("a@50%%: %+v", a)
		}
	}
}

func TestJSONFields(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []map[string]any `json:"scenarios"`
		Findings  []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Scenarios) != 31 || len(doc.Findings) == 0 {
		t.Fatalf("%d scenarios, %d findings", len(doc.Scenarios), len(doc.Findings))
	}
	for _, s := range doc.Scenarios {
		for _, k := range RequiredFields {
			if _, ok := s[k]; !ok {
				t.Fatalf("scenario %v lacks %q", s["name"], k)
			}
		}
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sample().Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| round | scenario | path | payload | fanout | participants | offered pps | forwarded pps | loss | p50 µs | p99 µs | p99.9 µs | added p50/p99/p99.9 µs | dwell p50/p99/p99.9 µs | added dwell p50/p99/p99.9 µs | md_cpu |",
		"| 2 | fanout1to4-160B@50% | mdfast-xdp-native | 160 | 4 | 5 | 150000 | 150000 | 0 | 45 | 90 | 180 | 15 / 30 / 60 | – | – | 0.50 | 0.50 | 300000 |",
		"| 2 | fanout1to4-160B@50% | reflector (for mdfast-xdp-native) | 160 | 4 | 5 |",
		"| fanout1to4-160B@sat | mdfast-xdp-native | 3 | 220000 (200000–530000) | 50% | 2.20× (2.00×–5.30×) |",
		"| fanout1to4-160B@50% | mdfast-xdp-native | 3 | 150000 | 0 | – | 60 (45–200) | 120 (90–400) | 25 (15–168) | 50 (30–335) | 100 (60–670) |",
		"| fanout1to4-160B@70% | mdfast-xdp-native | 3 | 209000 | 0.5% (0–0.5%) |",
		`error: boom \| bad`,
		"| 2.2 | 2–5.3 | 3 | 2.5 | **no** |",
		"| fanout1to4-160B@70% | mdfast-xdp-native | 85.0 (80.0–90.0) | 5.0 | 0.70 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Every table row has its header's number of cells.
	for line := range strings.Lines(md) {
		n := strings.Count(line, "|") - strings.Count(line, `\|`)
		switch {
		case strings.HasPrefix(line, "| fanout") && n != 18 && n != 6 && n != 13:
			t.Errorf("summary row with %d separators: %s", n, line)
		case strings.HasPrefix(line, "| 1 |") && n != 20:
			t.Errorf("round row with %d separators: %s", n, line)
		}
	}
}

func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sample().SVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	polylines, circles, spreads := 0, 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				polylines++
			case "circle":
				circles++
			case "line":
				for _, a := range se.Attr {
					if a.Name.Local == "class" && a.Value == "spread" {
						spreads++
					}
				}
			}
		}
	}
	// One group, two paths with three points in each of three rounds;
	// audio and the reflector's calibration steps are not plotted.
	if polylines != 2 || circles != 18 {
		t.Fatalf("%d polylines, %d points; want 2, 18", polylines, circles)
	}
	// Spread rows: XDP's ratio, and the added p99 of both paths at 70%
	// and 50%.
	if spreads != 5 {
		t.Fatalf("%d spread rows, want 5", spreads)
	}
	var empty bytes.Buffer
	if err := (&Run{}).SVG(&empty); err != nil || !strings.Contains(empty.String(), "no swept scenario") {
		t.Fatalf("empty run: %v %s", err, empty.String())
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteFiles(dir, sample())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 || !strings.HasSuffix(files[0], "20260102T030405Z.json") || !strings.HasSuffix(files[1], "latest.json") {
		t.Fatalf("files %v", files)
	}
}

func TestShortAndNice(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1500: "1.5k", 2e6: "2M", 250000: "250k"} {
		if got := short(in); got != want {
			t.Errorf("short(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]float64{0: 1, 3: 5, 10: 10, 11: 20, 730000: 1e6} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestMarkdownHandshakes(t *testing.T) {
	r := sample()
	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "DTLS-SRTP handshakes") {
		t.Fatal("handshake table without handshakes")
	}
	r.Scenarios = append(r.Scenarios, Scenario{Name: "conf10-audio-160B@fixed", Path: "mdfast-system", Payload: 160,
		Fanout: 9, Participants: 10, Mode: "xdp-native", Handshakes: 10, HandshakesOK: 10,
		HandshakeP50ms: 12.34, HandshakeP99ms: 20, HandshakeMaxMs: 21, HandshakeTotalMs: 22.5, SetupsPerSecond: 444.4})
	b.Reset()
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "| conf10-audio-160B@fixed | mdfast-system | xdp-native | 10/10 | 12.3 | 20.0 | 21.0 | 22.5 | 444 |"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("Markdown lacks %q:\n%s", want, b.String())
	}
	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"handshakes": 10`, `"handshake_p50_ms": 12.34`, `"handshake_p99_ms": 20`, `"handshake_total_ms": 22.5`, `"association_setups_per_second": 444.4`} {
		if !strings.Contains(j.String(), k) {
			t.Errorf("JSON lacks %s", k)
		}
	}
}
