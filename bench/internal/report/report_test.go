package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func sample() *Run {
	sc := func(path, step string, off, fwd, loss, p99, cpu float64) Scenario {
		s := Scenario{
			Name: RatioGroup + "@" + step, Group: RatioGroup, Step: step, Path: path, Payload: 160,
			Fanout: 4, Participants: 5, Senders: 1, Pattern: "flood", OfferedPPS: off, ForwardedPPS: fwd,
			Loss: loss, P50us: p99 / 2, P99us: p99, MDCPU: cpu, CoreCPU: cpu, Verified: 10, Keys: "direct",
		}
		s.ForwardedPerCPUSecond = fwd / cpu
		return s
	}
	r := &Run{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Command: "make bench",
		Host: Host{Kernel: "6.18", CPU: "test <cpu>", CPUs: 2, GoVersion: "go1.26", MDCore: 1},
		Scenarios: []Scenario{
			sc("baseline", "sat", 400000, 100000, 0.75, 9000, 1.0),
			sc("baseline", "70%", 70000, 70000, 0, 300, 0.8),
			sc("baseline", "50%", 50000, 50000, 0, 150, 0.6),
			sc("mdfast-xdp-native", "sat", 600000, 300000, 0.5, 8000, 1.0),
			sc("mdfast-xdp-native", "70%", 210000, 209000, 0.005, 400, 0.7),
			sc("mdfast-xdp-native", "50%", 150000, 150000, 0, 120, 0.5),
			{Name: "conf2-audio-160B@fixed", Group: "conf2-audio-160B", Step: "fixed", Path: "baseline", Pattern: "audio", Error: "boom | bad"},
		},
	}
	r.Findings = Evaluate(r.Scenarios)
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
	if f := find("forwarded packets per forwarder CPU-second", "mdfast-xdp-native"); f.Value != 3 || f.Met == nil || !*f.Met {
		t.Fatalf("ratio: %+v", f)
	}
	if f := find("forwarded packets per forwarder CPU-second", "mdfast-xdp-generic"); f.Met != nil {
		t.Fatalf("unmeasured ratio judged: %+v", f)
	}
	if f := find("no loss", "mdfast-xdp-native"); f.Value != 0.005 || f.Met == nil || *f.Met {
		t.Fatalf("loss: %+v", f)
	}
	if f := find("no loss", "baseline"); f.Value != 0 || f.Met == nil || !*f.Met {
		t.Fatalf("baseline loss: %+v", f)
	}
	if f := find("p99", "baseline"); f.Value != 150 || f.Met == nil || !*f.Met {
		t.Fatalf("baseline p99: %+v", f)
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
	if len(doc.Scenarios) != 7 || len(doc.Findings) == 0 {
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
		"| scenario | path | payload | fanout | participants | offered pps | forwarded pps | loss | p50 µs | p99 µs | md_cpu |",
		"| fanout1to4-160B@50% | mdfast-xdp-native | 160 | 4 | 5 | 150000 | 150000 | 0 | 60 | 120 | 0.50 | 0.50 | 300000 |",
		"| fanout1to4-160B@70% | mdfast-xdp-native | 160 | 4 | 5 | 210000 | 209000 | 0.5% |",
		`error: boom \| bad`,
		"| **no** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Every table row has the header's number of cells.
	for line := range strings.Lines(md) {
		if strings.HasPrefix(line, "| fanout") && strings.Count(line, "|")-strings.Count(line, `\|`) != 15 {
			t.Errorf("row with %d separators: %s", strings.Count(line, "|"), line)
		}
	}
}

func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sample().SVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	polylines, circles := 0, 0
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
			}
		}
	}
	// One group, two paths with three points each; audio is not plotted.
	if polylines != 2 || circles != 6 {
		t.Fatalf("%d polylines, %d points; want 2, 6", polylines, circles)
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
