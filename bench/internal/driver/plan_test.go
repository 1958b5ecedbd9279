package driver

import (
	"slices"
	"testing"

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
			want := path != "baseline"
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
				}
			}
		}
		single := 0
		for _, g := range p.Groups {
			if g.Profile == "" {
				single += len(g.steps())
			}
		}
		if p.Steps() != n || n != single*len(AllPaths)+len(g.steps())*len(DoublePaths) {
			t.Errorf("%s plan: %d steps, counted %d", name, p.Steps(), n)
		}
	}
	if q := QuickPlan(); q.Steps() > 30 {
		t.Errorf("quick plan has %d steps; it should stay under about 90 s", q.Steps())
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
	if p.Steps() != 3*2 {
		t.Errorf("%d steps", p.Steps())
	}
}
