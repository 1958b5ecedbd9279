package directory

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testAlive() Alive {
	return Alive{
		Media:       netip.MustParseAddrPort("198.18.0.1:5004"),
		Cascade:     netip.MustParseAddrPort("198.18.0.1:5005"),
		Fingerprint: [32]byte{1, 2, 3},
		Started:     time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

func TestAliveRoundTrip(t *testing.T) {
	a := testAlive()
	b, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAlive(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(a) {
		t.Fatalf("round trip: %+v != %+v", got, a)
	}
	k, err := ParseHosting([]byte(`{"profile":"double"}`))
	if err != nil || k != KindDouble {
		t.Fatalf("hosting: %v %v", k, err)
	}
}

func TestParseBad(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	cases := []struct {
		name, v string
	}{
		{"empty", ``},
		{"not json", `hello`},
		{"trailing", `{"media":"1.2.3.4:1","cascade":"1.2.3.4:2","fingerprint":"` + fp + `","started":"2026-01-01T00:00:00Z"} {}`},
		{"too long", `{"media":"` + strings.Repeat("x", MaxValueLen) + `"}`},
		{"no media", `{"cascade":"1.2.3.4:2","fingerprint":"` + fp + `","started":"2026-01-01T00:00:00Z"}`},
		{"port 0", `{"media":"1.2.3.4:0","cascade":"1.2.3.4:2","fingerprint":"` + fp + `","started":"2026-01-01T00:00:00Z"}`},
		{"unspecified", `{"media":"0.0.0.0:1","cascade":"1.2.3.4:2","fingerprint":"` + fp + `","started":"2026-01-01T00:00:00Z"}`},
		{"bad cascade", `{"media":"1.2.3.4:1","cascade":"host:2","fingerprint":"` + fp + `","started":"2026-01-01T00:00:00Z"}`},
		{"short fingerprint", `{"media":"1.2.3.4:1","cascade":"1.2.3.4:2","fingerprint":"abcd","started":"2026-01-01T00:00:00Z"}`},
		{"fingerprint not hex", `{"media":"1.2.3.4:1","cascade":"1.2.3.4:2","fingerprint":"` + strings.Repeat("zz", 32) + `","started":"2026-01-01T00:00:00Z"}`},
		{"no start", `{"media":"1.2.3.4:1","cascade":"1.2.3.4:2","fingerprint":"` + fp + `"}`},
		{"bad start", `{"media":"1.2.3.4:1","cascade":"1.2.3.4:2","fingerprint":"` + fp + `","started":"yesterday"}`},
		{"wrong type", `{"media":5}`},
		{"array", `[]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseAlive([]byte(c.v)); !errors.Is(err, ErrEntry) {
				t.Fatalf("ParseAlive(%q) = %v, want ErrEntry", c.v, err)
			}
		})
	}
	for _, v := range []string{``, `{}`, `{"profile":"triple"}`, `{"profile":1}`, `null`, `{"profile":"double"}x`} {
		if _, err := ParseHosting([]byte(v)); !errors.Is(err, ErrEntry) {
			t.Errorf("ParseHosting(%q) = %v, want ErrEntry", v, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	good := []struct {
		path       string
		kind       entryKind
		id, confer string
	}{
		{"md/alive/md-1", entryAlive, "md-1", ""},
		{"md/conf/room/md-1", entryHosting, "md-1", "room"},
		{"md/conf/a%2Fb/md.2", entryHosting, "md.2", "a/b"},
		{"md/conf/" + hostingKey("x y/ü", "m")[len(confDir):], entryHosting, "m", "x y/ü"},
	}
	for _, g := range good {
		k, id, conf, err := parseKey(g.path)
		if err != nil || k != g.kind || id != g.id || conf != g.confer {
			t.Errorf("parseKey(%q) = %v %q %q %v", g.path, k, id, conf, err)
		}
	}
	bad := map[string]string{
		"other dir":       "md/other/x",
		"empty id":        "md/alive/",
		"id with slash":   "md/alive/a/b",
		"id bad octet":    "md/alive/a b",
		"id too long":     "md/alive/" + strings.Repeat("a", MaxIDLen+1),
		"conf no id":      "md/conf/room",
		"conf empty":      "md/conf//md",
		"conf bad escape": "md/conf/%zz/md",
		"conf not canon":  "md/conf/%61/md",
		"conf too long":   "md/conf/" + strings.Repeat("a", MaxConferenceLen+1) + "/md",
		"huge":            "md/conf/" + strings.Repeat("a", 2000) + "/md",
	}
	for name, p := range bad {
		if _, _, _, err := parseKey(p); !errors.Is(err, ErrEntry) {
			t.Errorf("%s: parseKey(%q) = %v, want ErrEntry", name, p, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	b, _ := testAlive().Marshal()
	f.Add("md/alive/x", b)
	f.Add("md/conf/a%2Fb/y", []byte(`{"profile":"single"}`))
	f.Fuzz(func(t *testing.T, path string, value []byte) {
		kind, id, conf, err := parseKey(path)
		if err == nil {
			if CheckID(id) != nil {
				t.Fatalf("parseKey accepted id %q", id)
			}
			if kind == entryHosting && hostingKey(conf, id) != path {
				t.Fatalf("hosting key %q does not round-trip: %q", path, hostingKey(conf, id))
			}
		}
		if a, err := ParseAlive(value); err == nil {
			out, err := a.Marshal()
			if err != nil {
				t.Fatalf("parsed alive does not marshal: %v", err)
			}
			back, err := ParseAlive(out)
			if err != nil || !back.Equal(a) {
				t.Fatalf("alive does not round-trip: %v", err)
			}
		}
		_, _ = ParseHosting(value)
	})
}

// TestSupersededBy is the rule that tells an earlier incarnation of this
// MD (taken over at once) from another live MD (left alone).
func TestSupersededBy(t *testing.T) {
	self := testAlive()
	for _, c := range []struct {
		name string
		mod  func(*Alive)
		want bool
	}{
		{"same entry (lease lost, registering again)", func(*Alive) {}, true},
		{"restart: started earlier", func(a *Alive) { a.Started = a.Started.Add(-time.Minute) }, true},
		{"started later: a later incarnation or a clone", func(a *Alive) { a.Started = a.Started.Add(time.Nanosecond) }, false},
		{"other media address", func(a *Alive) {
			a.Media = netip.MustParseAddrPort("198.18.0.2:5004")
			a.Started = a.Started.Add(-time.Minute)
		}, false},
		{"other media port", func(a *Alive) { a.Media = netip.MustParseAddrPort("198.18.0.1:5006") }, false},
		{"other cascade address", func(a *Alive) { a.Cascade = netip.MustParseAddrPort("[2001:db8::1]:5005") }, false},
		{"other certificate", func(a *Alive) { a.Fingerprint[31] ^= 1 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			prev := self
			c.mod(&prev)
			if got := prev.supersededBy(self); got != c.want {
				t.Fatalf("%+v superseded by %+v: %v, want %v", prev, self, got, c.want)
			}
		})
	}
}
