package testutil

import (
	"os"
	"strings"
	"testing"
	"time"
)

// fakeT records what a helper does to its test.
type fakeT struct {
	testing.TB
	skipped  string
	errored  string
	cleanups []func()
}

func (f *fakeT) Helper()                   {}
func (f *fakeT) Skip(args ...any)          { f.skipped = args[0].(string) }
func (f *fakeT) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(s string, a ...any) { f.errored = s }

func TestNeedRoot(t *testing.T) {
	f := &fakeT{}
	NeedRoot(f, "creates network namespaces")
	if os.Geteuid() == 0 {
		if f.skipped != "" {
			t.Fatalf("skipped as root: %q", f.skipped)
		}
		return
	}
	if !strings.Contains(f.skipped, "creates network namespaces") || !strings.Contains(f.skipped, "root") {
		t.Fatalf("skip reason %q", f.skipped)
	}
}

func TestCheckGoroutines(t *testing.T) {
	f := &fakeT{}
	CheckGoroutines(f)
	stop := make(chan struct{})
	go func() { <-stop }()
	time.AfterFunc(50*time.Millisecond, func() { close(stop) })
	f.cleanups[0]()
	if f.errored != "" {
		t.Fatalf("a goroutine ending within the wait reported as a leak")
	}
}

func TestGoroutinesGone(t *testing.T) {
	stop := make(chan struct{})
	go lingering(stop)
	time.AfterFunc(50*time.Millisecond, func() { close(stop) })
	GoroutinesGone(t, "testutil.lingering")
}

func lingering(stop chan struct{}) { <-stop }
