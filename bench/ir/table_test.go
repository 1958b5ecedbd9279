package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/mdfast/mdfast/bench/internal/callgrind"
)

// prof builds a profile with the given summary and self costs.
func prof(t *testing.T, summary uint64, self map[string]uint64) *callgrind.Profile {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "events: Ir\nsummary: %d\n", summary)
	for n, c := range self {
		fmt.Fprintf(&b, "fn=%s\n1 %d\n", n, c)
	}
	p, err := callgrind.Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMeasure(t *testing.T) {
	c := Case{implMdfast, 160, 4, 1}
	a := prof(t, 1_000_100, nil)
	b := prof(t, 2_000_100, map[string]uint64{
		"crypto/internal/fips140/aes/gcm.gcmAesEnc":     1_200_000,
		"github.com/mdfast/mdfast/internal/frame.Write": 500_000,
		"runtime.memmove": 300_100,
	})
	m, err := measure(c, Phases{a, b}, 250, 1)
	if err != nil {
		t.Fatal(err)
	}
	// (2_000_100 − 1_000_100) / 250 = 4000; phase B had 500 packets.
	if m.PerPacket != 4000 || m.Crypto != 2400 || math.Abs(m.Other-1600.2) > 1e-9 {
		t.Fatalf("per packet %v, crypto %v, other %v", m.PerPacket, m.Crypto, m.Other)
	}
	if want := (2_000_100 - 2*1_000_100) / 2_000_100.0; m.Nonlinearity != want {
		t.Fatalf("nonlinearity %v, want %v", m.Nonlinearity, want)
	}
	if len(m.Top) != 1 || m.Top[0].Name != "github.com/mdfast/mdfast/internal/frame.Write" || m.Top[0].PerPacket != 1000 {
		t.Fatalf("top %+v", m.Top)
	}

	for _, tc := range []struct {
		name string
		ph   Phases
		n    int
	}{
		{"no packets", Phases{a, b}, 0},
		{"phase missing", Phases{a, nil}, 250},
		{"B not above A", Phases{b, a}, 250},
		{"B equals A", Phases{a, a}, 250},
		{"no summary", Phases{a, func() *callgrind.Profile { p := prof(t, 1, nil); p.Summary = nil; return p }()}, 250},
		{"no Ir", Phases{a, func() *callgrind.Profile { p := prof(t, 1, nil); p.Events = []string{"Dr"}; return p }()}, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := measure(c, tc.ph, tc.n, 1); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestRows(t *testing.T) {
	ms := []Measurement{
		{Case: Case{implMdfast, 1200, 1, 1}, PerPacket: 1150},
		{Case: Case{implGCM, 1200, 1, 1}, PerPacket: 1000},
		{Case: Case{implPion, 1200, 1, 1}, PerPacket: 2300},
		{Case: Case{implMdfast, 160, 16, 1}, PerPacket: 3000},
		{Case: Case{implGCM, 160, 16, 1}, PerPacket: 2000},
		{Case: Case{implPion, 160, 16, 1}, PerPacket: 1500},
	}
	rs, err := rows(ms, 1.15)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{Size: 160, Fanout: 16, Senders: 1, Mdfast: 3000, GCM: 2000, Pion: 1500, VsGCM: 1.5, VsPion: 2, Holds: false},
		{Size: 1200, Fanout: 1, Senders: 1, Mdfast: 1150, GCM: 1000, Pion: 2300, VsGCM: 1.15, VsPion: 0.5, Holds: true},
	}
	if len(rs) != len(want) {
		t.Fatalf("%d rows", len(rs))
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rs[i], want[i])
		}
	}
	if _, err := rows(ms[:5], 1.15); err == nil {
		t.Error("a missing implementation: no error")
	}
	if _, err := rows(append(ms, ms[0]), 1.15); err == nil {
		t.Error("a case measured twice: no error")
	}
	// Senders make rows of their own, after the one-sender row.
	four := []Measurement{
		{Case: Case{implMdfast, 1200, 1, 4}, PerPacket: 1300},
		{Case: Case{implGCM, 1200, 1, 4}, PerPacket: 1000},
		{Case: Case{implPion, 1200, 1, 4}, PerPacket: 2600},
	}
	rs, err = rows(append(four, ms...), 1.15)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[1].Senders != 1 || rs[2] != (Row{Size: 1200, Fanout: 1, Senders: 4, Mdfast: 1300, GCM: 1000, Pion: 2600, VsGCM: 1.3, VsPion: 0.5, Holds: false}) {
		t.Fatalf("rows with 4 senders: %+v", rs)
	}
}

func TestReportFiles(t *testing.T) {
	r := &Report{Started: "2026-12-01T00:00:00Z", Command: "make bench-ir", Go: "go1.26", Valgrind: "valgrind-3.19.0", N: 256, Goal: 1.15, Seconds: 60}
	for _, impl := range impls {
		for _, fan := range []int{1, 4} {
			m := Measurement{Case: Case{impl, 160, fan, 1}, PerPacket: float64(1000 * fan), Nonlinearity: 0.02}
			if impl == implMdfast {
				m.PerPacket *= 1.1
				m.Top = []FuncCost{{"github.com/mdfast/mdfast/internal/frame.Write", 230}}
			}
			r.Cases = append(r.Cases, m)
		}
	}
	var err error
	if r.Rows, err = rows(r.Cases, r.Goal); err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 160 B | 1 | 1 | 1100 | 1000 | 1000 | 1.10× | 1.10× | yes |",
		"| 160 B | 4 | 1 | 4400 | 4000 | 4000 | 1.10× | 1.10× | yes |",
		"| 230 | `internal/frame.Write` |",
		"mdfast/160/1/1: phase B is 2.0% off twice phase A",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 2 || !back.Rows[0].Holds || back.Cases[0].Top[0].PerPacket != 230 {
		t.Fatalf("json round trip: %+v", back)
	}
}

func TestByCost(t *testing.T) {
	got := byCost([]Case{{implGCM, 160, 1, 1}, {implGCM, 1200, 16, 1}, {implGCM, 160, 16, 1}, {implPion, 160, 1, 1}})
	want := []Case{{implGCM, 1200, 16, 1}, {implGCM, 160, 16, 1}, {implGCM, 160, 1, 1}, {implPion, 160, 1, 1}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}
