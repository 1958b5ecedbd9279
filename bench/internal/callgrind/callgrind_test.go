package callgrind

import (
	"errors"
	"strings"
	"testing"
)

// profile is a dump as callgrind 3.19 writes it (--collect-atstart=no,
// client-request dumps): compressed names defined on first use, relative
// line positions, a call's inclusive cost on the line after calls=.
const profile = `# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 6719
cmd:  ./dataplane.test -test.run=^TestIRCallgrind$ -test.v
part: 2

desc: I1 cache: 
desc: Timerange: Basic block 0 - 2268200
desc: Trigger: Client Request: ir mdfast/160/1 B

positions: line
events: Ir
summary: 1000

ob=(1) /tmp/dataplane.test
fl=(1) /work/internal/dataplane/worker.go
fn=(1) github.com/mdfast/mdfast/internal/dataplane.(*Worker).poll
10 5
+2 7
cfn=(2) github.com/mdfast/mdfast/internal/dataplane.(*Worker).handle
calls=64 +40
* 900
-1 3

fn=(2)
52 600
cfl=(2) /usr/local/go/src/crypto/internal/fips140/aes/gcm/gcm.go
cfn=(3) crypto/internal/fips140/aes/gcm.(*GCM).Open
calls=64 100
+1 280
fn=(3)
100 280

totals: 1000
`

func TestParse(t *testing.T) {
	p, err := Parse(strings.NewReader(profile))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 1 || p.Events[0] != "Ir" || len(p.Summary) != 1 || p.Summary[0] != 1000 {
		t.Fatalf("events %v summary %v", p.Events, p.Summary)
	}
	if p.Trigger != "Client Request: ir mdfast/160/1 B" {
		t.Fatalf("trigger %q", p.Trigger)
	}
	for suffix, want := range map[string]uint64{"(*Worker).poll": 15, "(*Worker).handle": 600, "(*GCM).Open": 280} {
		n, err := p.Func(suffix)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Self[n][0]; got != want {
			t.Errorf("self %s = %d, want %d", suffix, got, want)
		}
	}
	if got, err := p.Inclusive("(*Worker).handle", 0); err != nil || got != 900 {
		t.Errorf("inclusive handle = %d, %v; want 900", got, err)
	}
	if got := p.Calls["crypto/internal/fips140/aes/gcm.(*GCM).Open"]; got != 64 {
		t.Errorf("calls to Open = %d", got)
	}
	if _, err := p.Inclusive("(*Worker).poll", 0); err == nil {
		t.Error("inclusive cost of a function nothing called: no error")
	}
	if _, err := p.Func("nothing"); err == nil {
		t.Error("Func of an absent function: no error")
	}
	top := p.Top(0, 2)
	if len(top) != 2 || top[0].Cost != 600 || top[1].Cost != 280 {
		t.Errorf("top %v", top)
	}
	crypto := p.SelfTotal(0, func(n string) bool { return strings.HasPrefix(n, "crypto/") })
	if crypto != 280 {
		t.Errorf("crypto self total %d", crypto)
	}
	if _, err := p.Event("Dr"); err == nil {
		t.Error("absent event: no error")
	}
}

// TestParseUncompressedTwoEvents: names written out, instruction and line
// positions, two events, a missing trailing cost.
func TestParseUncompressedTwoEvents(t *testing.T) {
	p, err := Parse(strings.NewReader("positions: instr line\nevents: Ir Dr\nfn=main\n0x401000 3 10 4\n+2 +1 6\ncfn=f\ncalls=1 0x402000 9\n* * 50 20\nfn=f\n0x402000 9 50 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Self["main"]; got[0] != 16 || got[1] != 4 {
		t.Fatalf("self main %v", got)
	}
	if got := p.Called["f"]; got[0] != 50 || got[1] != 20 {
		t.Fatalf("called f %v", got)
	}
}

func TestParseBad(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"no events", "fn=main\n1 2\n"},
		{"cost before fn", "events: Ir\n1 2\n"},
		{"calls without cost", "events: Ir\nfn=a\ncfn=b\ncalls=1 2\nfn=c\n"},
		{"calls at end", "events: Ir\nfn=a\ncfn=b\ncalls=1 2\n"},
		{"calls without cfn", "events: Ir\nfn=a\ncalls=1 2\n1 1\n"},
		{"calls without count", "events: Ir\nfn=a\ncfn=b\ncalls=\n1 1\n"},
		{"bad call count", "events: Ir\nfn=a\ncfn=b\ncalls=x 2\n1 1\n"},
		{"too many costs", "events: Ir\nfn=a\n1 2 3\n"},
		{"bad cost", "events: Ir\nfn=a\n1 x\n"},
		{"negative cost", "events: Ir\nfn=a\n1 -5\n"},
		{"bad position", "events: Ir\nfn=a\n+x 2\n"},
		{"missing position", "positions: instr line\nevents: Ir\nfn=a\n*\n"},
		{"undefined name", "events: Ir\nfn=(3)\n1 2\n"},
		{"unterminated id", "events: Ir\nfn=(3 main\n1 2\n"},
		{"id not a number", "events: Ir\nfn=(x) main\n1 2\n"},
		{"empty name", "events: Ir\nfn=\n1 2\n"},
		{"unknown spec", "events: Ir\nfoo=bar\n"},
		{"garbage", "events: Ir\nhello\n"},
		{"events twice", "events: Ir\nevents: Dr\n"},
		{"events after costs", "fn=a\nevents: Ir\n"},
		{"positions after costs", "events: Ir\nfn=a\npositions: line\n"},
		{"three positions", "positions: instr line x\nevents: Ir\n"},
		{"no events listed", "events:\n"},
		{"bad summary", "events: Ir\nsummary: x\n"},
		{"line too long", "events: Ir\nfn=" + strings.Repeat("a", maxLine+1) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error; parsed %+v", p)
			}
			if tc.name != "line too long" && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

// FuzzParse: no input panics the parser, and what it accepts has events
// and cost vectors of their length.
func FuzzParse(f *testing.F) {
	f.Add(profile)
	f.Add("positions: instr line\nevents: Ir Dr\nfn=main\n0x401000 3 10 4\n")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(p.Events) == 0 {
			t.Fatal("accepted a profile without events")
		}
		for n, c := range p.Self {
			if len(c) != len(p.Events) {
				t.Fatalf("self %s: %d costs for %d events", n, len(c), len(p.Events))
			}
		}
		for n, c := range p.Called {
			if len(c) != len(p.Events) {
				t.Fatalf("called %s: %d costs for %d events", n, len(c), len(p.Events))
			}
		}
	})
}
