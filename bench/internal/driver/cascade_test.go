package driver

import (
	"slices"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/bench/internal/gen"
	"github.com/mdfast/mdfast/bench/internal/report"
)

// TestCascadePlan: the two-MD group has the one-MD ratio group's shape,
// is split 2+3 with the sender on the first MD, runs only on the cascade
// paths (never calibrated by the reflector), and every plan that has it
// also has its one-MD group on the same paths, so that both are measured
// in the same rounds. The quick plan leaves it out (five minutes).
func TestCascadePlan(t *testing.T) {
	for name, p := range map[string]Plan{"full": FullPlan(), "cascade": CascadePlan()} {
		i := slices.IndexFunc(p.Groups, func(g Group) bool { return report.IsCascade(g.Name) })
		if i < 0 {
			t.Fatalf("%s plan: no cascade group", name)
		}
		g := &p.Groups[i]
		j := slices.IndexFunc(p.Groups, func(o Group) bool { return o.Name == g.OneMD })
		if j < 0 {
			t.Fatalf("%s plan: cascade group %s without its one-MD group %q", name, g.Name, g.OneMD)
		}
		one := &p.Groups[j]
		if g.Name != "cascade2md-fanout1to4-160B" || g.OneMD != report.RatioGroup || g.MDs != 2 ||
			g.Participants != one.Participants || g.Senders != one.Senders || g.Payload != one.Payload || g.Streams != one.Streams || g.Pattern != one.Pattern {
			t.Fatalf("%s plan: cascade group %+v against %+v", name, g, one)
		}
		at, err := g.assignment()
		if err != nil || !slices.Equal(at, []int{0, 0, 1, 1, 1}) {
			t.Fatalf("%s plan: assignment %v, %v", name, at, err)
		}
		if g.Calibrated() {
			t.Errorf("%s plan: the cascade group is calibrated by the reflector", name)
		}
		for _, path := range append(slices.Clone(AllPaths), MQPath) {
			if g.RunsOn(path) != slices.Contains(CascadePaths, path) {
				t.Errorf("%s plan: cascade group on %s: %v", name, path, g.RunsOn(path))
			}
			if g.RunsOn(path) && !one.RunsOn(path) {
				t.Errorf("%s plan: %s has no one-MD figure on %s", name, g.Name, path)
			}
		}
		if p.cascadeMDs() != 2 {
			t.Errorf("%s plan: cascadeMDs %d", name, p.cascadeMDs())
		}
		// Both groups are in every round, on the same paths.
		for r := 1; r <= p.Rounds; r++ {
			var cp, op []string
			for _, it := range p.Schedule() {
				switch {
				case it.Round == r && it.Group.Name == g.Name:
					cp = append(cp, it.Path)
				case it.Round == r && it.Group.Name == one.Name && slices.Contains(CascadePaths, it.Path):
					op = append(op, it.Path)
				}
			}
			slices.Sort(cp)
			slices.Sort(op)
			if len(cp) == 0 || !slices.Equal(cp, op) {
				t.Errorf("%s plan round %d: cascade on %v, one MD on %v", name, r, cp, op)
			}
		}
	}
	if slices.ContainsFunc(QuickPlan().Groups, func(g Group) bool { return g.MDs > 1 }) {
		t.Error("the quick plan has a cascade group")
	}
	c := CascadePlan()
	if want := 3 * 3 * (2 + 2); c.Steps() != want {
		t.Errorf("cascade plan: %d steps, want %d", c.Steps(), want)
	}
	// A plan without a cascade path has no cascade topology.
	p := Plan{Paths: []string{BaselinePath}, Groups: []Group{cascadeGroup(4, 160, nil)}}
	if p.cascadeMDs() != 0 || len(p.Schedule()) != 0 {
		t.Errorf("cascade group on the baseline: %d MDs, %d items", p.cascadeMDs(), len(p.Schedule()))
	}
}

func TestCascadeAssignmentBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    Group
		want string
	}{
		{"split of the wrong length", Group{Name: "x", Participants: 5, MDs: 2, Split: []int{5}}, "over 2 MDs"},
		{"empty MD", Group{Name: "x", Participants: 5, MDs: 2, Split: []int{5, 0}}, "no members"},
		{"split short of the members", Group{Name: "x", Participants: 5, MDs: 2, Split: []int{2, 2}}, "of 5 members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.g.assignment(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("assignment: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCascadeMDs: the per-MD figures from the generator's result and the
// MDs' outputs: forwarded = tx_packets between the two snapshots, over
// the phase and over the MD's CPU; loss against what each member should
// have received; the link counters against the other MDs' senders.
func TestCascadeMDs(t *testing.T) {
	cfg := &Config{MDCore: 1, GenCore: 0}
	res := &gen.Result{Seconds: 2, MDs: []gen.MDResult{
		// 2 members, 1 sender (1000 measured, 1200 in all): the other
		// member gets 1000.
		{Members: 2, Senders: 1, SentAll: 1200, Sent: 1000, Received: 1000, CPUSeconds: 0.5, CPU: 0.25},
		// 3 members get 1000 each, one packet lost.
		{Members: 3, Senders: 0, Received: 2999, CPUSeconds: 1, CPU: 0.5},
	}}
	outs := []mdOutput{
		{mode: "socket", snapshots: []map[string]uint64{{"tx_packets": 100}, {"tx_packets": 2100}},
			final: map[string]uint64{"link_tx": 1200, "forwarded": 1200, "tx_packets": 2400, "drop_replay": 3}},
		{mode: "socket", snapshots: []map[string]uint64{{"tx_packets": 0}, {"tx_packets": 3000}},
			final: map[string]uint64{"link_rx": 1200, "forwarded": 1200, "tx_packets": 3600}},
	}
	mds := cascadeMDs(cfg, res, outs)
	if len(mds) != 2 {
		t.Fatalf("%d MDs", len(mds))
	}
	m0, m1 := mds[0], mds[1]
	if m0.ForwardedPPS != 1000 || m0.ForwardedPerCPUSecond != 4000 || m0.Loss != 0 || m0.Core != 1 || m0.Drops["drop_replay"] != 3 {
		t.Errorf("MD 0: %+v", m0)
	}
	if m1.ForwardedPPS != 1500 || m1.ForwardedPerCPUSecond != 3000 || m1.Core != 0 || m1.Loss <= 0 || m1.Loss > 0.001 {
		t.Errorf("MD 1: %+v", m1)
	}
	if m0.PeerSentAll != 0 || m1.PeerSentAll != 1200 || !m0.CrossedOnce(2) || !m1.CrossedOnce(2) || !m0.LinksLossless() || !m1.LinksLossless() {
		t.Errorf("link counts: %+v %+v", m0, m1)
	}
	// A packet lost on the way, sent twice, or sent on from a link to a
	// link shows.
	outs[1].final["link_rx"], outs[1].final["forwarded"] = 1199, 1199
	if m := cascadeMDs(cfg, res, outs)[1]; m.LinksLossless() || !m.CrossedOnce(2) {
		t.Errorf("a lost link packet: %+v", m)
	}
	outs[1].final["link_rx"], outs[1].final["forwarded"], outs[0].final["link_tx"] = 1200, 1200, 2400
	if cascadeMDs(cfg, res, outs)[0].CrossedOnce(2) {
		t.Error("a packet sent twice on the link passes")
	}
	outs[0].final["link_tx"], outs[1].final["link_tx"] = 1200, 1200
	if cascadeMDs(cfg, res, outs)[1].CrossedOnce(2) {
		t.Error("a link's packets sent on to a link pass")
	}
	outs[1].final["link_tx"] = 0
	// Without snapshots there is no phase figure.
	outs[0].snapshots = nil
	if m := cascadeMDs(cfg, res, outs)[0]; m.ForwardedPPS != 0 || m.ForwardedPerCPUSecond != 0 {
		t.Errorf("MD 0 without snapshots: %+v", m)
	}
}
