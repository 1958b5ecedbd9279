package driver

import (
	"context"
	"testing"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
)

func TestDropSample(t *testing.T) {
	tests := []struct {
		name, in, reason string
		n                uint64
	}{
		{"queue and reason", `{queue="0",reason="auth"} 12`, "auth", 12},
		{"reason only", `{reason="no_keys"} 3`, "no_keys", 3},
		{"float", `{reason="replay"} 1e+06`, "replay", 1000000},
		{"no reason label", `{queue="1"} 2`, `queue="1"`, 2},
		{"garbage", `nonsense`, "nonsense", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n := dropSample(tc.in)
			if r != tc.reason || n != tc.n {
				t.Fatalf("dropSample(%q) = %q, %d; want %q, %d", tc.in, r, n, tc.reason, tc.n)
			}
		})
	}
}

// TestSmokeSystem runs the system path briefly: keydist and `mdfast run`
// in the forwarder's namespace, a conference of 4 whose endpoints
// handshake through mdfast to keydist and then send audio, then the same
// with the double profile and EKT (0x0009), and checks the handshakes,
// that media was forwarded and verified (both layers for double), and the
// mode.
func TestSmokeSystem(t *testing.T) {
	bin, mdCore, genCore := prepare(t, "github.com/mdfast/mdfast/cmd/mdfast", "github.com/mdfast/mdfast/cmd/keydist")
	plan := Plan{
		Paths:  []string{SystemPath},
		Groups: []Group{confGroup(4, false), doubleGroup(4, 160, []float64{0.5})},
		Timing: Timing{Warmup: 200 * time.Millisecond, Duration: 700 * time.Millisecond, Drain: 200 * time.Millisecond},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := Run(ctx, Config{Bin: bin, Plan: plan, MDCore: mdCore, GenCore: genCore, Command: "go test"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.Scenarios) != 1+2 {
		t.Fatalf("%d scenarios, want 3", len(r.Scenarios))
	}
	doubles := 0
	for _, s := range r.Scenarios {
		if s.Profile == benchkeys.ProfileDouble {
			doubles++
		}
		if s.Error != "" {
			t.Fatalf("%s: %s", s.Name, s.Error)
		}
		if s.Handshakes == 0 || s.HandshakesOK != s.Handshakes || s.HandshakeP50ms <= 0 || s.HandshakeTotalMs < s.HandshakeP50ms {
			t.Fatalf("%s: handshakes: %+v", s.Name, s)
		}
		if s.Received == 0 || s.Verified == 0 || s.VerifyErrors != 0 {
			t.Fatalf("%s: media: %+v", s.Name, s)
		}
		if s.Mode == "" || s.Keys != KeysHandshake {
			t.Fatalf("%s: mode %q, keys %q", s.Name, s.Mode, s.Keys)
		}
		t.Logf("%s (%s) mode %s: handshakes p50 %.1f ms, p99 %.1f ms, total %.1f ms; loss %.3g, p50 %.0f µs",
			s.Name, s.Profile, s.Mode, s.HandshakeP50ms, s.HandshakeP99ms, s.HandshakeTotalMs, s.Loss, s.P50us)
	}
	if doubles != 2 {
		t.Fatalf("%d double scenarios on the system path, want 2", doubles)
	}
}
