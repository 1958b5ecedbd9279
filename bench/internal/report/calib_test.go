package report

import (
	"bytes"
	"strings"
	"testing"
)

// xdpRun is three rounds of 1→4 at 50% on mdfast-xdp-native (calibrated by
// ReflectorXDPNative) and mdfast-xdp-generic (whose reflector,
// ReflectorXDPGeneric, ran only in round 1), with a socket reflector step
// after each of them too, much faster than the XDP ones: it must calibrate
// neither. Native's p99 is 140, 150, 130 µs over an XDP reflector of 100,
// 110, 105 (added 40, 40, 25).
func xdpRun() *Run {
	sc := func(round int, path, ref, calib string, p99, cpu float64) Scenario {
		return Scenario{
			Name: RatioGroup + "@50%", Group: RatioGroup, Step: "50%", Path: path, Payload: 160, Fanout: 4,
			Participants: 5, Senders: 1, Pattern: "flood", OfferedPPS: 1e5, ForwardedPPS: 1e5,
			P50us: p99 / 2, P99us: p99, P999us: p99 * 2, MDCPU: cpu, CoreCPU: cpu, Verified: 10, Round: round,
			Reflector: ref, Calibrates: calib,
		}
	}
	r := &Run{Rounds: 3}
	native := []float64{140, 150, 130}
	xref := []float64{100, 110, 105}
	for i := range 3 {
		round := i + 1
		r.Scenarios = append(r.Scenarios,
			sc(round, "mdfast-xdp-native", ReflectorXDPNative, "", native[i], 0.5),
			sc(round, ReflectorXDPNative, "", "mdfast-xdp-native", xref[i], 0.3),
			sc(round, Reflector, "", "mdfast-xdp-native", 20, 0.2),
			sc(round, "mdfast-xdp-generic", ReflectorXDPGeneric, "", 400, 0.5),
			sc(round, Reflector, "", "mdfast-xdp-generic", 20, 0.2),
		)
		if round == 1 {
			r.Scenarios = append(r.Scenarios, sc(round, ReflectorXDPGeneric, "", "mdfast-xdp-generic", 300, 0.3))
		}
	}
	r.Finish()
	return r
}

func finding(t *testing.T, r *Run, goal, path string) Finding {
	t.Helper()
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Goal, goal) && f.Path == path {
			return f
		}
	}
	t.Fatalf("no finding %q for %s", goal, path)
	return Finding{}
}

// TestXDPCalibration: an XDP path's added latency is taken against the XDP
// reflector of its mode only, and the goal judged against it.
func TestXDPCalibration(t *testing.T) {
	r := xdpRun()
	for _, s := range r.Scenarios {
		switch {
		case s.Path == "mdfast-xdp-native":
			if s.Added == nil || s.Added.P99 != s.P99us-[]float64{100, 110, 105}[s.Round-1] {
				t.Errorf("round %d: added %+v against the wrong reflector", s.Round, s.Added)
			}
		case s.Path == "mdfast-xdp-generic" && s.Round == 1:
			if s.Added == nil || s.Added.P99 != 100 {
				t.Errorf("generic round 1: added %+v", s.Added)
			}
		case s.Path == "mdfast-xdp-generic":
			if s.Added != nil || s.CalibrationSaturated {
				t.Errorf("generic round %d calibrated by the socket reflector: %+v", s.Round, s.Added)
			}
		}
	}
	f := finding(t, r, "added p99", "mdfast-xdp-native")
	if f.Value != 40 || f.Min != 25 || f.Rounds != 3 || f.Met == nil || !*f.Met || !strings.Contains(f.Detail, "against "+ReflectorXDPNative) {
		t.Fatalf("native: %+v", f)
	}
	// One round of its own reflector: reported, not judged.
	if f := finding(t, r, "added p99", "mdfast-xdp-generic"); f.Value != 100 || f.Met != nil || !strings.Contains(f.Detail, ReflectorXDPGeneric) {
		t.Fatalf("generic: %+v", f)
	}
	for _, a := range r.Summary {
		want := map[string]string{"mdfast-xdp-native": ReflectorXDPNative, "mdfast-xdp-generic": ReflectorXDPGeneric}[a.Path]
		if a.Reflector != want {
			t.Errorf("%s: summary reflector %q, want %q", a.Path, a.Reflector, want)
		}
	}
	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| mdfast-xdp-native | " + ReflectorXDPNative + " | 3 | 0 | 3 |",
		"| mdfast-xdp-generic | " + ReflectorXDPGeneric + " | 1 | 0 | 3 |",
		"| 1 | fanout1to4-160B@50% | " + ReflectorXDPNative + " (for mdfast-xdp-native) |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, b.String())
		}
	}
}

// TestXDPCalibrationUnresolved: when the XDP reflector of the path's mode
// is saturated or moves by more than the goal, the goal is NOT RESOLVED,
// however quiet the socket reflector was.
func TestXDPCalibrationUnresolved(t *testing.T) {
	for name, tc := range map[string]struct {
		mut  func(s *Scenario)
		says string
	}{
		"saturated": {func(s *Scenario) { s.MDCPU = MaxReflectorCPU + 0.2 }, ReflectorXDPNative + " was busier than"},
		"saturated in two rounds": {func(s *Scenario) {
			if s.Round != 2 {
				s.MDCPU = MaxReflectorCPU + 0.2
			}
		}, ReflectorXDPNative + " was saturated at this rate in 2 rounds"},
		"moved": {func(s *Scenario) { s.P99us += 100 * float64(s.Round) }, "the calibration moved by"},
	} {
		t.Run(name, func(t *testing.T) {
			r := xdpRun()
			for i := range r.Scenarios {
				if s := &r.Scenarios[i]; s.Path == ReflectorXDPNative {
					tc.mut(s)
				}
			}
			r.Finish()
			f := finding(t, r, "added p99", "mdfast-xdp-native")
			if f.Met != nil || !strings.Contains(f.Detail, "NOT RESOLVED") || !strings.Contains(f.Detail, tc.says) {
				t.Fatalf("%+v", f)
			}
			var b bytes.Buffer
			if err := r.Markdown(&b); err != nil {
				t.Fatal(err)
			}
			if name == "saturated" && !strings.Contains(b.String(), ReflectorXDPNative+" saturated") {
				t.Errorf("Markdown does not name the saturated reflector:\n%s", b.String())
			}
		})
	}
}
