package valgrind

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestUnderCallgrind runs TestHelperCollect under callgrind with
// collection off at start: the requests reach valgrind (it says it runs
// the program), the work between the toggles is counted, and the dump
// carries its description.
func TestUnderCallgrind(t *testing.T) {
	vg, err := exec.LookPath("valgrind")
	if err != nil {
		t.Skip("valgrind is not installed (scripts/deps.sh installs it)")
	}
	out := filepath.Join(t.TempDir(), "cg")
	cmd := exec.Command(vg, "--tool=callgrind", "--collect-atstart=no", "--callgrind-out-file="+out,
		os.Args[0], "-test.run", "^TestHelperCollect$", "-test.v")
	cmd.Env = append(os.Environ(), "MDFAST_VALGRIND_HELPER=1", "GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off")
	log, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(log), "--- PASS: TestHelperCollect") {
		t.Fatalf("under callgrind: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out + ".1")
	if err != nil {
		t.Fatalf("no dump: %v\n%s", err, log)
	}
	p := string(b)
	if !strings.Contains(p, "desc: Trigger: Client Request: helper\n") {
		t.Fatalf("dump without the description:\n%.500s", p)
	}
	// spin(1000) is at least 3 instructions an iteration; outside the
	// toggles nothing is counted (the helper does far more than 100000).
	_, sum, _ := strings.Cut(p, "\nsummary: ")
	sum, _, _ = strings.Cut(sum, "\n")
	n, err := strconv.Atoi(sum)
	if err != nil || n < 3000 || n > 100000 {
		t.Fatalf("summary %q: want the instructions of spin(1000) only:\n%.1000s", sum, p)
	}
}

// TestHelperCollect is run by TestUnderCallgrind.
func TestHelperCollect(t *testing.T) {
	if os.Getenv("MDFAST_VALGRIND_HELPER") == "" {
		t.Skip("run by TestUnderCallgrind under valgrind")
	}
	if !RunningOnValgrind() {
		t.Fatal("RunningOnValgrind is false under valgrind")
	}
	ToggleCollect()
	n := spin(1000)
	ToggleCollect()
	DumpStatsAt("helper")
	if n == 0 {
		t.Fatal("spin")
	}
}

//go:noinline
func spin(n int) int {
	s := 1
	for i := range n {
		s = s*31 + i
	}
	return s
}
