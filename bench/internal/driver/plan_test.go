package driver

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/report"
	"github.com/mdfast/mdfast/internal/dwell"
)

// TestPlanDouble: both plans have the double 1→4 group, it runs on the
// mdfast direct-keys paths and the system path (handshakes with EKT), not
// on the baseline, and Steps counts accordingly.
func TestPlanDouble(t *testing.T) {
	for name, p := range map[string]Plan{"quick": QuickPlan(), "full": FullPlan()} {
		i := slices.IndexFunc(p.Groups, func(g Group) bool { return g.Name == "fanout1to4-160B-double" })
		if i < 0 {
			t.Fatalf("%s plan: no double group", name)
		}
		g := &p.Groups[i]
		if g.KeyProfile() != benchkeys.ProfileDouble || g.Fanout() != 4 || g.Payload != 160 {
			t.Fatalf("%s plan: double group %+v", name, g)
		}
		for _, path := range AllPaths {
			want := path != BaselinePath && !report.IsReflector(path)
			if g.RunsOn(path) != want {
				t.Errorf("%s plan: double group runs on %s: %v", name, path, !want)
			}
		}
		n := 0
		for _, path := range p.Paths {
			for _, g := range p.Groups {
				if g.Profile == "" && g.KeyProfile() != benchkeys.Profile {
					t.Fatalf("empty profile is %q", g.KeyProfile())
				}
				if g.RunsOn(path) {
					n += len(g.steps())
					if g.Calibrated() && !report.IsReflector(path) {
						n += len(g.steps()) - 1 // the reflector after each paced step
					}
				}
			}
		}
		if p.Rounds < 3 {
			t.Errorf("%s plan: %d rounds, want at least 3", name, p.Rounds)
		}
		if p.Steps() != p.Rounds*n {
			t.Errorf("%s plan: %d steps, counted %d per round × %d rounds", name, p.Steps(), n, p.Rounds)
		}
	}
	// The quick plan: 3 rounds of 1→4 (sat, 70%, 50%, 10%) on the five
	// forwarding paths with the path's reflector after each paced step,
	// the audio conference on all five and the three reflectors, the
	// double group on the four double paths. At about 1.8 s a step that
	// is under 5 minutes.
	q := QuickPlan()
	if want := 3 * (5*4 + 5*3 + 8 + 4*2); q.Steps() != want {
		t.Errorf("quick plan has %d steps, want %d", q.Steps(), want)
	}
	if float64(q.Steps())*(q.Timing.Warmup+q.Timing.Duration+q.Timing.Drain+time.Second/2).Seconds() > 300 {
		t.Errorf("quick plan: %d steps of %v would take more than 5 minutes", q.Steps(), q.Timing.Duration)
	}
	g := base("mdfast-socket", &Group{Name: "x", Participants: 2, Profile: benchkeys.ProfileDouble}, "sat", "")
	if g.Profile != benchkeys.ProfileDouble {
		t.Errorf("scenario profile %q", g.Profile)
	}
}

// TestMQPlan: the multi-queue plan compares the 1-queue path with the two
// 2-queue ones on a group with several senders (one flow each, so that
// the flows can spread over the queues).
func TestMQPlan(t *testing.T) {
	p := MQPlan()
	if !slices.Equal(p.Paths, []string{"mdfast-xdp-native", MQPath, MQPath2Cores}) {
		t.Fatalf("paths %v", p.Paths)
	}
	for _, path := range p.Paths {
		want := 2
		if path == "mdfast-xdp-native" {
			want = 1
		}
		if Queues(path) != want {
			t.Errorf("%s: %d queues, want %d", path, Queues(path), want)
		}
	}
	if len(p.Groups) != 1 || p.Groups[0].Senders < 4 || p.Groups[0].Name != "conf8-flood-160B" {
		t.Fatalf("groups %+v", p.Groups)
	}
	if p.Rounds < 2 {
		t.Fatalf("%d rounds: the MQ ratios need a spread", p.Rounds)
	}
	// Every round measures the baseline and both 2-queue paths (sat and
	// 50% each), the order reversed every other round, and every item
	// names the queue count of its topology.
	var got []string
	for _, it := range p.Schedule() {
		got = append(got, fmt.Sprintf("%d:%s:%d", it.Round, it.Path, it.Queues()))
	}
	want := []string{
		"1:mdfast-xdp-native:1", "1:" + MQPath + ":2", "1:" + MQPath2Cores + ":2",
		"2:" + MQPath2Cores + ":2", "2:" + MQPath + ":2", "2:mdfast-xdp-native:1",
		"3:mdfast-xdp-native:1", "3:" + MQPath + ":2", "3:" + MQPath2Cores + ":2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
	if p.Steps() != p.Rounds*3*2 {
		t.Errorf("%d steps", p.Steps())
	}
}

// TestSchedule: rounds one after the other; within a round, group by group,
// every path of the group in turn, reversed every other round; the
// reflector runs as a path of its own only on the fixed patterns.
func TestSchedule(t *testing.T) {
	p := Plan{
		Paths:  []string{"a", "b", BaselinePath, ReflectorPath},
		Groups: []Group{fanoutGroup(4, 160, []float64{0.5}), confGroup(10, false)},
		Rounds: 3,
	}
	var got []string
	for _, it := range p.Schedule() {
		got = append(got, fmt.Sprintf("%d:%s:%s", it.Round, it.Group.Name[:4], it.Path))
	}
	want := []string{
		"1:fano:a", "1:fano:b", "1:fano:baseline", "1:conf:a", "1:conf:b", "1:conf:baseline", "1:conf:reflector",
		"2:fano:baseline", "2:fano:b", "2:fano:a", "2:conf:reflector", "2:conf:baseline", "2:conf:b", "2:conf:a",
		"3:fano:a", "3:fano:b", "3:fano:baseline", "3:conf:a", "3:conf:b", "3:conf:baseline", "3:conf:reflector",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
	// Per round: fanout sat+50% on three paths, each 50% followed by the
	// reflector (3), the conference on four.
	if n := p.Steps(); n != 3*(3*2+3+4) {
		t.Fatalf("%d steps", n)
	}
	// Without the reflector in the plan nothing is calibrated.
	p.Paths = []string{"a", BaselinePath}
	if n := p.Steps(); n != 3*(2*2+2) {
		t.Fatalf("%d steps without the reflector", n)
	}
	// Zero rounds means one.
	p.Rounds = 0
	if n := len(p.Schedule()); n != 4 {
		t.Fatalf("zero rounds: %d items", n)
	}
}

// TestStepRate: sat is flat out, a percentage paces at that fraction of
// the sustained input rate per sender, a fixed pattern at its own rate.
func TestStepRate(t *testing.T) {
	fl := fanoutGroup(4, 160, []float64{0.5})
	tests := []struct {
		name    string
		g       Group
		step    string
		sat     float64
		want    float64
		wantErr bool
	}{
		{"sat", fl, "sat", 0, 0, false},
		{"50% of 100k", fl, "50%", 100000, 50000, false},
		{"10% of 100k", fl, "10%", 100000, 10000, false},
		{"no saturation", fl, "50%", 0, 0, true},
		{"audio", confGroup(10, false), "fixed", 0, 50, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, e := tc.g.stepRate(tc.step, tc.sat)
			if got != tc.want || (e != "") != tc.wantErr {
				t.Fatalf("stepRate(%q, %v) = %v, %q", tc.step, tc.sat, got, e)
			}
		})
	}
}

// TestReflectorFor: every XDP path is calibrated by the XDP reflector of
// its mode, the socket paths by the socket reflector; a reflector has none.
func TestReflectorFor(t *testing.T) {
	want := map[string]string{
		"mdfast-xdp-native":          ReflectorXDPNative,
		"mdfast-xdp-native-poll":     ReflectorXDPNative,
		"mdfast-xdp-native-adaptive": ReflectorXDPNative,
		"mdfast-xdp-native-busypoll": ReflectorXDPNative,
		"mdfast-xdp-native-spin":     ReflectorXDPNative,
		"mdfast-xdp-native-kick16":   ReflectorXDPNative,
		MQPath:                       ReflectorXDPNative,
		MQPath2Cores:                 ReflectorXDPNative,
		SystemPath:                   ReflectorXDPNative,
		"mdfast-xdp-generic":         ReflectorXDPGeneric,
		"mdfast-socket":              ReflectorPath,
		BaselinePath:                 ReflectorPath,
	}
	for path, ref := range want {
		if got := ReflectorFor(path); got != ref {
			t.Errorf("ReflectorFor(%s) = %s, want %s", path, got, ref)
		}
		if s := base(path, &Group{Name: "g", Participants: 2}, "50%", ""); s.Reflector != ref || s.Keys == KeysReflector {
			t.Errorf("%s: scenario reflector %q, keys %q", path, s.Reflector, s.Keys)
		}
	}
	for v := range Variants {
		if _, ok := want[v]; !ok {
			t.Errorf("variant %s not covered", v)
		}
	}
	for _, r := range []string{ReflectorPath, ReflectorXDPNative, ReflectorXDPGeneric} {
		if !slices.Contains(AllPaths, r) || !report.IsReflector(r) {
			t.Errorf("%s: not a reflector path of AllPaths", r)
		}
		if s := base(r, &Group{Name: "g", Participants: 2}, "50%", ""); s.Reflector != "" || s.Keys != KeysReflector {
			t.Errorf("%s: scenario reflector %q, keys %q", r, s.Reflector, s.Keys)
		}
	}
}

// TestCalibrationPairing: each path's paced steps are followed by its own
// reflector, only when the plan has it (no reflector of another kind
// stands in); on the fixed patterns every reflector of the plan runs once
// per round as a path, in the plan's order.
func TestCalibrationPairing(t *testing.T) {
	fl, conf := fanoutGroup(4, 160, []float64{0.5}), confGroup(10, false)
	p := Plan{Paths: AllPaths, Groups: []Group{fl, conf}, Rounds: 2}
	for _, path := range []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", SystemPath, BaselinePath} {
		if !p.calibrates(&p.Groups[0], path) {
			t.Errorf("%s not calibrated with every reflector in the plan", path)
		}
		if p.calibrates(&p.Groups[1], path) {
			t.Errorf("%s: the fixed pattern is calibrated by the round's reflector steps, not after each step", path)
		}
	}
	for _, r := range []string{ReflectorPath, ReflectorXDPNative, ReflectorXDPGeneric} {
		if p.calibrates(&p.Groups[0], r) {
			t.Errorf("reflector %s calibrated", r)
		}
	}
	// Only the socket reflector: the XDP paths go uncalibrated.
	p.Paths = []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", ReflectorPath}
	for path, want := range map[string]bool{"mdfast-xdp-native": false, "mdfast-xdp-generic": false, "mdfast-socket": true} {
		if p.calibrates(&p.Groups[0], path) != want {
			t.Errorf("socket reflector only: %s calibrated %v", path, !want)
		}
	}
	// Per round: 1→4 sat+50% on three paths, the 50% steps followed by
	// their reflector; the conference on the three paths and the socket
	// reflector.
	if n := p.Steps(); n != 2*(3*2+1+4) {
		t.Errorf("socket reflector only: %d steps", n)
	}
	p.Paths = []string{"mdfast-xdp-native", "mdfast-socket", ReflectorXDPNative, ReflectorPath}
	var got []string
	for _, it := range p.Schedule() {
		got = append(got, fmt.Sprintf("%d:%s:%s", it.Round, it.Group.Name[:4], it.Path))
	}
	want := []string{
		"1:fano:mdfast-xdp-native", "1:fano:mdfast-socket",
		"1:conf:mdfast-xdp-native", "1:conf:mdfast-socket", "1:conf:" + ReflectorXDPNative, "1:conf:" + ReflectorPath,
		"2:fano:mdfast-socket", "2:fano:mdfast-xdp-native",
		"2:conf:" + ReflectorPath, "2:conf:" + ReflectorXDPNative, "2:conf:mdfast-socket", "2:conf:mdfast-xdp-native",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
	if n := p.Steps(); n != 2*(2*2+2+4) {
		t.Errorf("%d steps", n)
	}
}

// TestHasDwell: the SIGUSR1 snapshots (and with them the dwell) are asked
// only of the forwarders that print them: mdharness in an XDP mode and
// the XDP reflectors (the socket reflector does not handle SIGUSR1).
func TestHasDwell(t *testing.T) {
	for path, want := range map[string]bool{
		"mdfast-xdp-native": true, "mdfast-xdp-generic": true, MQPath: true, MQPath2Cores: true,
		"mdfast-xdp-native-adaptive": true, ReflectorXDPNative: true, ReflectorXDPGeneric: true,
		"mdfast-socket": false, ReflectorPath: false, BaselinePath: false, SystemPath: false,
	} {
		if hasDwell(path) != want {
			t.Errorf("hasDwell(%s) = %v", path, !want)
		}
	}
}

// TestDwellOf: a step's dwell is the histogram's difference between the
// snapshots at the start and the end of the measured phase.
func TestDwellOf(t *testing.T) {
	var start, end dwell.Hist
	for range 50 {
		start.Observe(int64(time.Second)) // before the measured phase
	}
	end = start
	for i := range 1000 {
		end.Observe(int64(10+i%20) * 1000) // 10..29 µs
	}
	end.Observe(int64(5 * time.Millisecond))
	d := dwellOf(&start, &end)
	if d == nil || d.Packets != 1001 || d.P50us != 21 || d.P99us != 30 || d.P999us != 30 {
		t.Fatalf("dwell %+v", d)
	}
	if d := dwellOf(&start, &start); d != nil {
		t.Fatalf("no packets: %+v", d)
	}
}

// TestDwellOfLimit: a percentile in the histogram's overflow bin is
// reported as the limit, which the report shows as a bound.
func TestDwellOfLimit(t *testing.T) {
	var start, end dwell.Hist
	for range 10 {
		end.Observe(int64(time.Hour))
	}
	if d := dwellOf(&start, &end); d == nil || d.P50us != report.DwellLimitUs || d.P999us != report.DwellLimitUs || dwell.Max != report.DwellLimitUs*time.Microsecond {
		t.Fatalf("dwell %+v", d)
	}
}
