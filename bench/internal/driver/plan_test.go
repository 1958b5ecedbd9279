package driver

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
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
			want := path != BaselinePath && path != ReflectorPath
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
					if g.Calibrated() && path != ReflectorPath {
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
	// forwarding paths with the reflector after each paced step, the
	// audio conference on all six, the double group on the four double
	// paths, the two-MD group (sat) on the three cascade paths. At about
	// 1.8 s a step that is under 5 minutes.
	q := QuickPlan()
	if want := 3 * (5*4 + 5*3 + 6 + 4*2 + 3); q.Steps() != want {
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
