package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCallgrind runs two small measurements under callgrind, as make
// bench-ir does: both phases of each are found, mdfast costs more than the
// raw AEAD alone, and every packet of a phase costs the same.
func TestCallgrind(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the dataplane test binary and runs it under callgrind")
	}
	vg, err := exec.LookPath("valgrind")
	if err != nil {
		t.Skip("valgrind is not installed (scripts/deps.sh installs it; make bench-ir needs it)")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "dataplane.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, "../../internal/dataplane")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build the dataplane test binary: %v", err)
	}
	c := config{test: bin, n: 64, top: 5}
	cases := []Case{{implMdfast, 160, 1, 4}, {implGCM, 160, 1, 4}}
	got, err := runGroup(context.Background(), vg, c, tmp, 0, cases)
	if err != nil {
		t.Fatal(err)
	}
	var per [2]float64
	for i, cs := range cases {
		m, err := measure(cs, *got[cs.String()], c.n, c.top)
		if err != nil {
			t.Fatal(err)
		}
		if m.Nonlinearity > 0.01 || m.Nonlinearity < -0.01 {
			t.Errorf("%s: phase A %d, phase B %d instructions: not linear", cs, m.IrA, m.IrB)
		}
		if m.Crypto <= 0 || m.Crypto > m.PerPacket {
			t.Errorf("%s: %v of %v instructions per packet in crypto/", cs, m.Crypto, m.PerPacket)
		}
		per[i] = m.PerPacket
	}
	if per[0] <= per[1] {
		t.Fatalf("mdfast %v instructions per packet, raw GCM %v: the worker does the AEAD and more", per[0], per[1])
	}
	t.Logf("160 B, fan-out 1: mdfast %.0f, raw GCM %.0f instructions per packet", per[0], per[1])
}
