package testutil

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// NeedRoot skips t, giving why, unless the test runs as root (the
// privileged tests of DEVELOPERS.md).
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test, needs root: " + why)
	}
}

// LeakWait bounds how long CheckGoroutines and GoroutinesGone wait for
// goroutines to end.
const LeakWait = 10 * time.Second

// CheckGoroutines counts the goroutines now and registers a cleanup that
// fails t if more are still running once every cleanup registered after it
// has run and up to LeakWait has passed, printing every goroutine's stack.
// Call it first in a test so that its cleanup runs last.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		if ok, stacks := settle(func() bool { return runtime.NumGoroutine() <= before }); !ok {
			t.Errorf("goroutine leak: %d running, %d before the test\n%s", runtime.NumGoroutine(), before, stacks)
		}
	})
}

// GoroutinesGone fails t unless, within LeakWait, no goroutine's stack
// names any of funcs (for example "dataplane.(*Worker).Run"): for checks
// right after a Close, where other tests' goroutines may still run.
func GoroutinesGone(t testing.TB, funcs ...string) {
	t.Helper()
	if ok, stacks := settle(func() bool {
		s := allStacks()
		for _, f := range funcs {
			if strings.Contains(s, f) {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatalf("goroutines leaked (running one of %q):\n%s", funcs, stacks)
	}
}

// settle polls done until it holds or LeakWait passes; on failure it
// returns every goroutine's stack.
func settle(done func() bool) (bool, string) {
	deadline := time.Now().Add(LeakWait)
	for !done() {
		if time.Now().After(deadline) {
			return false, allStacks()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true, ""
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
