package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fixture is /metrics as the daemon serves it (abridged), with queue "10"
// to check the numeric ordering and the slow-path queue last.
func fixture(rx0 int) string {
	return fmt.Sprintf(`# HELP mdfast_packets_received_total UDP datagrams received on the media ports, per queue.
# TYPE mdfast_packets_received_total counter
mdfast_packets_received_total{queue="0"} %d
mdfast_packets_received_total{queue="1"} 200
mdfast_packets_received_total{queue="10"} 30
mdfast_packets_received_total{queue="slow"} 4
# TYPE mdfast_packets_forwarded_total counter
mdfast_packets_forwarded_total{queue="0"} 900
mdfast_packets_forwarded_total{queue="1"} 190
mdfast_packets_forwarded_total{queue="10"} 25
mdfast_packets_forwarded_total{queue="slow"} 0
# TYPE mdfast_packets_sent_total counter
mdfast_packets_sent_total{queue="0"} 1800
mdfast_packets_sent_total{queue="1"} 380
mdfast_packets_sent_total{queue="10"} 50
# TYPE mdfast_packets_dropped_total counter
mdfast_packets_dropped_total{queue="0",reason="junk"} 60
mdfast_packets_dropped_total{queue="0",reason="auth"} 40
mdfast_packets_dropped_total{queue="1",reason="auth"} 0
mdfast_packets_dropped_total{queue="1",reason="replay"} 10
mdfast_packets_dropped_total{queue="10",reason="junk"} 5
mdfast_packets_dropped_total{queue="slow",reason="slow_media"} 4
# TYPE mdfast_slow_path_packets_total counter
mdfast_slow_path_packets_total{queue="0"} 0
mdfast_slow_path_packets_total{queue="slow"} 17
# TYPE mdfast_associations gauge
mdfast_associations 12
# TYPE mdfast_associations_pending gauge
mdfast_associations_pending 3
# TYPE mdfast_tunnel_up gauge
mdfast_tunnel_up{kd="198.18.0.2:5740"} 1
mdfast_tunnel_up{kd="198.18.0.3:5740"} 1
mdfast_tunnel_up{kd="198.18.0.4:5740"} 0
# TYPE mdfast_slowpath_events_total counter
mdfast_slowpath_events_total{event="drop_tunnel"} 9
# TYPE mdfast_handshake_duration_seconds histogram
mdfast_handshake_duration_seconds_bucket{le="0.1"} 1
mdfast_handshake_duration_seconds_bucket{le="+Inf"} 2
mdfast_handshake_duration_seconds_sum 1.5
mdfast_handshake_duration_seconds_count 2
`, rx0)
}

func fixtureServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var rx0 atomic.Int64
	rx0.Store(1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, fixture(int(rx0.Load())))
	}))
	t.Cleanup(srv.Close)
	return srv, &rx0
}

var spaces = regexp.MustCompile(` +`)

// rows returns the table lines of a stats view with runs of spaces folded.
func rows(out string) []string {
	var r []string
	for l := range strings.SplitSeq(out, "\n") {
		if l = strings.TrimSpace(spaces.ReplaceAllString(l, " ")); l != "" {
			r = append(r, l)
		}
	}
	return r
}

func TestStatsOnce(t *testing.T) {
	srv, _ := fixtureServer(t)
	var out, errb bytes.Buffer
	if err := dispatch(context.Background(), []string{"stats", "-once", "-url", srv.URL + "/metrics"}, &out, &errb); err != nil {
		t.Fatalf("stats -once: %v (stderr %q)", err, errb.String())
	}
	got := rows(out.String())
	if len(got) != 6 {
		t.Fatalf("stats -once printed %d lines:\n%s", len(got), out.String())
	}
	if !regexp.MustCompile(`^mdfast \d\d:\d\d:\d\d associations=12 pending=3 tunnels_up=2$`).MatchString(got[0]) {
		t.Errorf("header %q", got[0])
	}
	for i, want := range []string{
		"queue rx fwd tx drop slow",
		"0 1000 900 1800 100 0", // drops summed over reasons
		"1 200 190 380 10 0",
		"10 30 25 50 5 0", // numeric order: 10 after 1
		"slow 4 0 0 4 17", // non-numeric queues last
	} {
		if got[i+1] != want {
			t.Errorf("line %d = %q, want %q", i+1, got[i+1], want)
		}
	}
	if strings.Contains(out.String(), "\033[") {
		t.Error("-once output clears the screen")
	}
}

// TestStatsLive runs the refreshing view against a server whose queue 0
// counter moves, and stops it by cancelling the context.
func TestStatsLive(t *testing.T) {
	srv, rx0 := fixtureServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	var errb bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- stats(ctx, []string{"-interval", "20ms", "-url", srv.URL + "/metrics"}, &out, &errb)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\033[H\033[2J") < 3 && time.Now().Before(deadline) {
		rx0.Add(500)
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stats returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stats did not return after cancel")
	}
	screens := strings.Split(out.String(), "\033[H\033[2J")
	if len(screens) < 3 {
		t.Fatalf("%d refreshes in 5s: %q", len(screens)-1, out.String())
	}
	last := rows(screens[len(screens)-1])
	if len(last) < 3 || last[1] != "queue rx rx/s fwd fwd/s tx tx/s drop drop/s slow slow/s" {
		t.Fatalf("live view:\n%s", screens[len(screens)-1])
	}
	f := strings.Fields(last[2])
	if f[0] != "0" || f[2] == "0" {
		t.Errorf("queue 0 row %q: want a non-zero rx/s", last[2])
	}
	if f := strings.Fields(last[3]); f[0] != "1" || f[2] != "0" {
		t.Errorf("queue 1 row %q: want rx/s 0", last[3])
	}
}

func TestStatsErrors(t *testing.T) {
	srv, _ := fixtureServer(t)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "this is { not the exposition format")
	}))
	t.Cleanup(bad.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	for _, tc := range []struct {
		name, url, want string
	}{
		{"404", srv.URL + "/nope", "404"},
		{"not metrics", bad.URL, "parse"},
		{"connection refused", closedURL + "/metrics", "scrape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := stats(context.Background(), []string{"-once", "-url", tc.url}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("stats = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	var out, errb bytes.Buffer
	if err := stats(context.Background(), []string{"-interval", "x"}, &out, &errb); err == nil {
		t.Error("bad -interval accepted")
	}
}
