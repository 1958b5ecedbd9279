package ready

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flag is a check whose outcome the test sets.
type flag struct {
	err   atomic.Pointer[error]
	calls atomic.Int32
}

func (f *flag) set(err error) { f.err.Store(&err) }
func (f *flag) check() error {
	f.calls.Add(1)
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

type changes struct {
	mu  sync.Mutex
	got []string
}

func (c *changes) record(name string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := name + "=0"
	if ok {
		s = name + "=1"
	}
	c.got = append(c.got, s)
}

func (c *changes) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.Join(c.got, " ")
	c.got = nil
	return s
}

func get(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, rec.Body.String()
}

func TestCheckerStates(t *testing.T) {
	var workers, tunnel flag
	var ch changes
	c := New(Config{
		Checks:   []Check{{"workers", workers.check}, {"tunnel", tunnel.check}},
		OnChange: ch.record,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})

	// Before the first Update: not ready, and no check has run.
	code, body := get(t, c)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "workers: not checked yet") {
		t.Fatalf("before Update: %d %q", code, body)
	}
	if workers.calls.Load() != 0 {
		t.Fatal("the handler ran a check")
	}

	for _, step := range []struct {
		name           string
		workers, tunel error
		wantCode       int
		wantBody       []string
		wantChanges    string
	}{
		{name: "all pass", wantCode: 200, wantBody: []string{"ready\n"}, wantChanges: "workers=1 tunnel=1"},
		{name: "still pass", wantCode: 200, wantBody: []string{"ready\n"}, wantChanges: ""},
		{name: "tunnel down", tunel: errors.New("no tunnel to a key distributor is up"), wantCode: 503,
			wantBody: []string{"tunnel: no tunnel to a key distributor is up\n"}, wantChanges: "tunnel=0"},
		{name: "both down", workers: errors.New("worker 0 stopped"), tunel: errors.New("no tunnel"), wantCode: 503,
			wantBody: []string{"workers: worker 0 stopped\ntunnel: no tunnel\n"}, wantChanges: "workers=0"},
		{name: "recovered", wantCode: 200, wantBody: []string{"ready\n"}, wantChanges: "workers=1 tunnel=1"},
	} {
		workers.set(step.workers)
		tunnel.set(step.tunel)
		// Until Update runs, /readyz serves the previous results.
		c.Update()
		code, body := get(t, c)
		if code != step.wantCode {
			t.Errorf("%s: code %d, want %d (%q)", step.name, code, step.wantCode, body)
		}
		for _, w := range step.wantBody {
			if body != w {
				t.Errorf("%s: body %q, want %q", step.name, body, w)
			}
		}
		if got := ch.take(); got != step.wantChanges {
			t.Errorf("%s: changes %q, want %q", step.name, got, step.wantChanges)
		}
	}
}

// TestHandlerServesCachedResults: /readyz reflects a change only after the
// next Update, never by running the check itself.
func TestHandlerServesCachedResults(t *testing.T) {
	var f flag
	c := New(Config{Checks: []Check{{"xdp_program", f.check}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.Update()
	f.set(errors.New("XDP program detached"))
	for range 10 {
		if code, _ := get(t, c); code != http.StatusOK {
			t.Fatalf("code %d before the next Update", code)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("check ran %d times, want 1", n)
	}
	c.Update()
	if code, body := get(t, c); code != http.StatusServiceUnavailable || body != "xdp_program: XDP program detached\n" {
		t.Fatalf("after Update: %d %q", code, body)
	}
}

// TestRunPeriodic: Run picks up a failure within a few periods and stops
// with its context.
func TestRunPeriodic(t *testing.T) {
	var f flag
	c := New(Config{Checks: []Check{{"tunnel", f.check}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, 10*time.Millisecond)
	}()
	waitFor := func(want int) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			if code, _ := get(t, c); code == want {
				return time.Since(start)
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("no %d within 2s", want)
		return 0
	}
	waitFor(http.StatusOK)
	f.set(errors.New("down"))
	waitFor(http.StatusServiceUnavailable)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return after cancel")
	}
	calls := f.calls.Load()
	time.Sleep(30 * time.Millisecond)
	if f.calls.Load() != calls {
		t.Error("checks still run after Run returned")
	}
}

// TestLogRateLimited: a flapping check logs its first failure, then at most
// one line per logEvery, with the changes it did not log counted.
func TestLogRateLimited(t *testing.T) {
	var f flag
	var buf bytes.Buffer
	c := New(Config{Checks: []Check{{"tunnel", f.check}}, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.Update() // passes: no line
	for i := range 100 {
		if i%2 == 0 {
			f.set(errors.New("down"))
		} else {
			f.set(nil)
		}
		c.Update()
		now = now.Add(10 * time.Millisecond)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines logged for 100 changes in 1s, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `msg="ready: check fails" check=tunnel reason=down changes_not_logged=0`) {
		t.Errorf("first line: %s", buf.String())
	}
	now = now.Add(logEvery)
	f.set(errors.New("down again"))
	c.Update()
	if !strings.Contains(buf.String(), "reason=\"down again\" changes_not_logged=99") {
		t.Errorf("second line does not count the 99 changes not logged:\n%s", buf.String())
	}
}
