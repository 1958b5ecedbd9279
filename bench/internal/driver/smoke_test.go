package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/report"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestSmoke runs a tiny plan (1→4 at 160 B: saturation and 50%, the
// reflector after each 50% step) for mdfast's socket mode and the baseline
// in network namespaces, and the same double (RFC 8723) on the socket mode
// only, and checks that packets were forwarded and verified, loss and the
// added latency computed and the JSON complete.
func TestSmoke(t *testing.T) {
	bin, mdCore, genCore := prepare(t)
	plan := Plan{
		Paths:  []string{"mdfast-socket", "baseline", ReflectorPath},
		Groups: []Group{fanoutGroup(4, 160, []float64{0.5}), doubleGroup(4, 160, []float64{0.5})},
		Timing: Timing{Warmup: 200 * time.Millisecond, Duration: 500 * time.Millisecond, Drain: 200 * time.Millisecond},
	}
	var prog bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	r, err := Run(ctx, Config{Bin: bin, Plan: plan, MDCore: mdCore, GenCore: genCore, Progress: &prog, Command: "go test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(prog.String(), "8/8") {
		t.Errorf("progress never reached 8/8: %q", prog.String())
	}
	if len(r.Scenarios) != 8 {
		t.Fatalf("%d scenarios, want 8", len(r.Scenarios))
	}
	doubles, calibrated := 0, 0
	for _, s := range r.Scenarios {
		if s.Path == ReflectorPath && (s.Calibrates == "" || s.Step != "50%" || s.Mode != "reflector") {
			t.Fatalf("reflector step %+v", s)
		}
		if s.Added != nil || s.CalibrationSaturated {
			// The reflector calibrates unless it was itself busier than
			// report.MaxReflectorCPU at the rate (a loaded host).
			calibrated++
			if s.Step != "50%" || s.Profile == benchkeys.ProfileDouble || (s.Added != nil) == s.CalibrationSaturated ||
				(s.Added != nil && s.RefP99us <= 0) {
				t.Fatalf("calibration of %s %s: added %+v, saturated %v, reflector p99 %v", s.Path, s.Name, s.Added, s.CalibrationSaturated, s.RefP99us)
			}
		}
	}
	if calibrated != 2 {
		t.Fatalf("%d steps calibrated, want 2 (both paths at 50%%)", calibrated)
	}
	if len(r.Summary) != 6 || len(r.Findings) == 0 {
		t.Fatalf("%d aggregates, %d findings", len(r.Summary), len(r.Findings))
	}
	for _, s := range r.Scenarios {
		if s.Profile == benchkeys.ProfileDouble {
			doubles++
			if s.Path != "mdfast-socket" {
				t.Fatalf("double scenario on %s", s.Path)
			}
		}
		if s.Error != "" {
			t.Fatalf("%s %s: %s", s.Path, s.Name, s.Error)
		}
		if s.ForwardedPPS <= 0 || s.Received == 0 || s.Verified == 0 {
			t.Fatalf("%s %s: nothing forwarded or verified: %+v", s.Path, s.Name, s)
		}
		if s.Loss < 0 || s.Loss > 1 || s.OfferedPPS < s.ForwardedPPS*0.99 {
			t.Fatalf("%s %s: loss %v, offered %v, forwarded %v", s.Path, s.Name, s.Loss, s.OfferedPPS, s.ForwardedPPS)
		}
		if s.MDCPU < 0 {
			t.Fatalf("%s %s: no forwarder CPU time", s.Path, s.Name)
		}
	}
	if doubles != 2 {
		t.Fatalf("%d double scenarios, want 2", doubles)
	}
	if m := r.Scenarios[0].Mode; m != "socket" {
		t.Errorf("mdfast path ran in mode %q", m)
	}
	dir := t.TempDir()
	if _, err := report.WriteFiles(dir, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []map[string]any `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Scenarios {
		for _, k := range report.RequiredFields {
			if _, ok := s[k]; !ok {
				t.Fatalf("scenario %v lacks %q", s["name"], k)
			}
		}
	}
	// Nothing of ours is left behind.
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "mdfb-"+itoa(os.Getpid())+"-") {
		t.Fatalf("namespaces left: %s", out)
	}
}

// TestSmokeXDPReflector runs 1→4 at 160 B (saturation and 50%) on both
// XDP paths with their XDP reflectors in the plan, and checks that each
// path's 50% step was followed by the AF_XDP reflector of its own mode
// (bench/reflector -mode xdp-*), whose reflected packets the receivers
// verified, and that the added latency was taken against it; every step
// reports its dwell (measured in the forwarder over the measured phase),
// and each path's 50% step its added dwell over its reflector.
func TestSmokeXDPReflector(t *testing.T) {
	bin, mdCore, genCore := prepare(t)
	plan := Plan{
		Paths:  []string{"mdfast-xdp-native", "mdfast-xdp-generic", ReflectorPath, ReflectorXDPNative, ReflectorXDPGeneric},
		Groups: []Group{fanoutGroup(4, 160, []float64{0.5})},
		Timing: Timing{Warmup: 200 * time.Millisecond, Duration: 500 * time.Millisecond, Drain: 200 * time.Millisecond},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	r, err := Run(ctx, Config{Bin: bin, Plan: plan, MDCore: mdCore, GenCore: genCore, Command: "go test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []string
	for _, s := range r.Scenarios {
		got = append(got, s.Path+"@"+s.Step+">"+s.Calibrates)
		if s.Error != "" {
			t.Fatalf("%s %s: %s", s.Path, s.Name, s.Error)
		}
		if s.Received == 0 || s.Verified == 0 || s.VerifyErrors != 0 {
			t.Fatalf("%s %s: received %d, verified %d, errors %d", s.Path, s.Name, s.Received, s.Verified, s.VerifyErrors)
		}
		if d := s.Dwell; d == nil || d.Packets == 0 || d.P50us <= 0 || d.P99us < d.P50us || d.P999us < d.P99us || d.Packets > s.Sent {
			t.Errorf("%s %s: dwell %+v (sent %d)", s.Path, s.Name, d, s.Sent)
		}
		switch s.Path {
		case ReflectorXDPNative, ReflectorXDPGeneric:
			if want := "reflector " + strings.TrimPrefix(s.Path, "reflector-"); !strings.HasPrefix(s.Mode, want) {
				t.Errorf("%s ran as %q, want %q", s.Path, s.Mode, want)
			}
			if s.ForwarderRx == 0 {
				t.Errorf("%s: no rx_packets counter from the reflector", s.Path)
			}
		default:
			if s.Reflector != ReflectorFor(s.Path) {
				t.Errorf("%s: calibrated by %q", s.Path, s.Reflector)
			}
			if s.Step == "50%" && s.Added == nil && !s.CalibrationSaturated {
				t.Errorf("%s@50%%: not calibrated", s.Path)
			}
			if s.Step == "50%" && (s.AddedDwell == nil || s.RefDwell == nil) {
				t.Errorf("%s@50%%: no added dwell", s.Path)
			}
		}
	}
	want := []string{
		"mdfast-xdp-native@sat>", "mdfast-xdp-native@50%>", ReflectorXDPNative + "@50%>mdfast-xdp-native",
		"mdfast-xdp-generic@sat>", "mdfast-xdp-generic@50%>", ReflectorXDPGeneric + "@50%>mdfast-xdp-generic",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("steps\n got %v\nwant %v", got, want)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// prepare skips unless root with taskset, builds the benchmark's
// executables (and, with extra, more packages) into a temporary directory
// and returns it with the cores to pin the forwarder and the generator to.
func prepare(t *testing.T, extra ...string) (bin string, mdCore, genCore int) {
	t.Helper()
	testutil.NeedRoot(t, "network namespaces, XDP, taskset pinning and the forwarders' sockets in them")
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("skipping: taskset (util-linux) is not installed")
	}
	bin = t.TempDir()
	args := append([]string{"build", "-o", bin + "/", "../../mdharness", "../../baseline", "../../loadgen", "../../reflector"}, extra...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mdCore, genCore = 1, 0
	if runtime.NumCPU() < 2 {
		mdCore = 0
	}
	return bin, mdCore, genCore
}
