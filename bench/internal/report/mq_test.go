package report

import (
	"math"
	"testing"
)

// TestMultiQueueFindings: each multi-queue path measured at saturation is
// compared with the 1-queue path of the same run, as ratios; without that
// baseline there is nothing to compare.
func TestMultiQueueFindings(t *testing.T) {
	scs := []Scenario{
		{Path: MQBase, Group: MQGroup, Step: "sat", ForwardedPPS: 100, ForwardedPerCPUSecond: 200, MDCPU: 0.5},
		{Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "sat", ForwardedPPS: 150, ForwardedPerCPUSecond: 180, QueueRx: []uint64{5, 7}},
		{Path: "mdfast-xdp-native-2q", Group: MQGroup, Step: "50%", ForwardedPPS: 75, ForwardedPerCPUSecond: 100},
		{Path: "mdfast-xdp-native-2q-2cores", Group: MQGroup, Step: "sat", Error: "failed"},
	}
	f := multiQueue(scs)
	if len(f) != 2 {
		t.Fatalf("%d findings, want 2: %+v", len(f), f)
	}
	if math.Abs(f[0].Value-1.5) > 1e-9 || math.Abs(f[1].Value-0.9) > 1e-9 || f[0].Met != nil {
		t.Fatalf("findings %+v", f)
	}
	if got := multiQueue(scs[1:]); got != nil {
		t.Fatalf("findings without a baseline: %+v", got)
	}
}
