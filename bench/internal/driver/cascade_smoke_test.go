package driver

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/report"
)

// TestSmokeCascade runs a conference of 5 split over two MDs (2 + 3, with
// senders on both: endpoints 0 and 1 on the first MD, 2 on the second) at
// a low fixed rate, single and double (RFC 8723), and the same conference
// on one MD, in XDP native and socket mode, end to end through the driver. Every endpoint must receive
// and verify every other's media with 0 loss, and each MD's link counters
// must equal what the other MD's senders sent over the whole run, and what
// its own sent (every packet crossed the link exactly once, in both
// directions).
func TestSmokeCascade(t *testing.T) {
	bin, mdCore, genCore := prepare(t)
	one := Group{Name: "paced-conf5-3senders-160B", Participants: 5, Senders: 3, Payload: 160, Pattern: "paced", Rate: 300, Burst: 1, Streams: 2}
	casc := one
	casc.Name, casc.MDs, casc.Split, casc.OneMD = report.CascadePrefix+"2md-"+one.Name, 2, []int{2, 3}, one.Name
	// The same over two MDs in RFC 8723 double: the links' keys are
	// double-profile keys whose outer half is the link key, and the
	// endpoints open both layers.
	dbl := casc
	dbl.Name, dbl.Profile = casc.Name+"-double", benchkeys.ProfileDouble
	plan := Plan{
		Paths:  []string{"mdfast-xdp-native", "mdfast-socket"},
		Groups: []Group{one, casc, dbl},
		Timing: Timing{Warmup: 200 * time.Millisecond, Duration: 600 * time.Millisecond, Drain: 200 * time.Millisecond},
	}
	var prog bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Run(ctx, Config{Bin: bin, Plan: plan, MDCore: mdCore, GenCore: genCore, Progress: &prog, Command: "go test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.Scenarios) != 6 {
		t.Fatalf("%d scenarios, want 6", len(r.Scenarios))
	}
	cascades := 0
	for _, s := range r.Scenarios {
		if s.Error != "" {
			t.Fatalf("%s %s: %s", s.Path, s.Name, s.Error)
		}
		if s.Received == 0 || s.Verified == 0 || s.VerifyErrors != 0 || s.Loss != 0 {
			t.Fatalf("%s %s: received %d, verified %d (%d errors), loss %v", s.Path, s.Name, s.Received, s.Verified, s.VerifyErrors, s.Loss)
		}
		if !report.IsCascade(s.Group) {
			continue
		}
		cascades++
		if len(s.MDs) != 2 || s.OneMDGroup != one.Name || s.MDCPU <= 0 || (s.Profile == benchkeys.ProfileDouble) != strings.HasSuffix(s.Group, "-double") {
			t.Fatalf("%s %s: MDs %+v, one-MD group %q, md_cpu %v", s.Path, s.Name, s.MDs, s.OneMDGroup, s.MDCPU)
		}
		wantMode := strings.TrimPrefix(s.Path, "mdfast-")
		for i, m := range s.MDs {
			if m.Mode != wantMode || m.Members != casc.Split[i] || m.Loss != 0 || m.ForwardedPPS <= 0 || m.ForwardedPerCPUSecond <= 0 {
				t.Fatalf("%s MD %d: %+v", s.Path, i, m)
			}
			if m.SentAll == 0 || m.PeerSentAll == 0 {
				t.Fatalf("%s MD %d: no senders on both sides: %+v", s.Path, i, m)
			}
			if !m.CrossedOnce(2) || !m.LinksLossless() || m.LinkTx != m.SentAll {
				t.Fatalf("%s MD %d: link tx %d (forwarded %d, own senders sent %d), link rx %d (the other MD's senders sent %d): not once each",
					s.Path, i, m.LinkTx, m.Forwarded, m.SentAll, m.LinkRx, m.PeerSentAll)
			}
			if len(m.Drops) != 0 {
				t.Fatalf("%s MD %d: drops %v", s.Path, i, m.Drops)
			}
		}
		// The MDs together sent what the endpoints received plus the
		// link copies (measured phase: the MDs' snapshot skew allows a
		// little slack).
		fwd := s.MDs[0].ForwardedPPS + s.MDs[1].ForwardedPPS
		if fwd < s.ForwardedPPS*0.9 || fwd > s.ForwardedPPS*1.5 {
			t.Fatalf("%s: the MDs forwarded %.0f pps, the endpoints received %.0f", s.Path, fwd, s.ForwardedPPS)
		}
	}
	if cascades != 4 {
		t.Fatalf("%d cascade scenarios, want 4", cascades)
	}
	if len(r.Cascade) != 4 {
		t.Fatalf("%d cascade aggregates, want 4", len(r.Cascade))
	}
	for _, a := range r.Cascade {
		if a.Rounds != 1 || a.CrossedOnce != 1 || a.LinksLossless != 1 || a.OneMD.N != 1 || a.PerCPUSecond.N != 1 || len(a.MDs) != 2 || a.MDs[0].VsOneMD.N != 1 {
			t.Fatalf("cascade aggregate %+v", a)
		}
	}
	for _, f := range r.Findings {
		if strings.Contains(f.Detail, report.CascadePrefix) {
			t.Fatalf("a finding judged a cascade step: %+v", f)
		}
	}
	var md bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| "+casc.Name+"@fixed | mdfast-xdp-native | md01 | 3 (1) |") {
		t.Fatalf("no cascade table in the Markdown:\n%s", md.String())
	}
	if i := strings.Index(md.String(), "\nCascade"); i >= 0 {
		t.Log(md.String()[i:])
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "mdfb-"+itoa(os.Getpid())+"-") {
		t.Fatalf("namespaces left: %s", out)
	}
}
