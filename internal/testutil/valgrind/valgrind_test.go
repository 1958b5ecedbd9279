package valgrind

import "testing"

// TestNative: outside valgrind every request is a no-op that returns its
// default (and the dump requests do nothing).
func TestNative(t *testing.T) {
	if RunningOnValgrind() {
		t.Skip("runs under valgrind: the native behaviour is what this test checks")
	}
	ToggleCollect()
	ZeroStats()
	DumpStats()
	DumpStatsAt("native")
	if got := request(42, reqDumpStats, 0); got != 42 {
		t.Fatalf("request returned %d natively, want the default 42", got)
	}
}
