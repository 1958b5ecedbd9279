package callgrind

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by every error about a malformed profile.
var ErrFormat = errors.New("callgrind: malformed profile")

// Profile is one callgrind profile (one dump).
type Profile struct {
	// Events are the event names, in the order of every cost vector.
	Events []string
	// Summary is the "summary:" (or "totals:") cost vector, nil if absent.
	Summary []uint64
	// Trigger is the "desc: Trigger:" text (what made callgrind dump).
	Trigger string
	// Self is each function's exclusive cost, by name.
	Self map[string][]uint64
	// Called is the inclusive cost of the calls made to each function,
	// summed over its call sites: its inclusive cost when it does not
	// recurse.
	Called map[string][]uint64
	// Calls is the number of calls made to each function.
	Calls map[string]uint64
}

// maxLine bounds a profile line (C++ names can be long; nothing real is
// near this).
const maxLine = 1 << 20

// Parse reads a profile.
func Parse(r io.Reader) (*Profile, error) {
	p := &Profile{Self: map[string][]uint64{}, Called: map[string][]uint64{}, Calls: map[string]uint64{}}
	var (
		positions = 1
		names     = map[string]string{} // compressed function names: "(id)" → name
		fn, cfn   string
		haveFn    bool
		callCost  bool // the next cost line is a call's inclusive cost
		body      bool // past the header
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		bad := func(why string) error {
			return fmt.Errorf("%w: line %d: %s: %.80q", ErrFormat, ln, why, line)
		}
		switch c := line[0]; {
		case c >= '0' && c <= '9' || c == '+' || c == '-' || c == '*':
			if !haveFn {
				return nil, bad("cost before any fn=")
			}
			cost, err := costs(line, positions, len(p.Events))
			if err != nil {
				return nil, bad(err.Error())
			}
			if callCost {
				add(p.Called, cfn, cost)
				callCost = false
			} else {
				add(p.Self, fn, cost)
			}
			continue
		}
		if callCost {
			return nil, bad("calls= not followed by its cost line")
		}
		key, val, ok := strings.Cut(line, "=")
		if ok && !strings.ContainsAny(key, " :") {
			body = true
			switch key {
			case "fn", "cfn", "cfn1":
				name, err := name(names, val)
				if err != nil {
					return nil, bad(err.Error())
				}
				if key == "fn" {
					fn, haveFn = name, true
				} else {
					cfn = name
				}
			case "calls":
				if cfn == "" {
					return nil, bad("calls= without cfn=")
				}
				f := strings.Fields(val)
				if len(f) == 0 {
					return nil, bad("calls= without a count")
				}
				n, err := strconv.ParseUint(f[0], 10, 64)
				if err != nil {
					return nil, bad("call count")
				}
				p.Calls[cfn] += n
				callCost = true
			case "ob", "fl", "fi", "fe", "cob", "cfi", "cfl", "jump", "jcnd":
				// Objects, files, jumps: not kept.
			default:
				return nil, bad("unknown specification " + key)
			}
			continue
		}
		key, val, ok = strings.Cut(line, ":")
		if !ok {
			return nil, bad("neither a cost, a specification nor a header line")
		}
		val = strings.TrimSpace(val)
		switch key {
		case "events":
			if body || p.Events != nil {
				return nil, bad("events: after the costs began, or twice")
			}
			p.Events = strings.Fields(val)
			if len(p.Events) == 0 {
				return nil, bad("no events")
			}
		case "positions":
			if body {
				return nil, bad("positions: after the costs began")
			}
			positions = len(strings.Fields(val))
			if positions == 0 || positions > 2 {
				return nil, bad("positions: one or two of instr, line")
			}
		case "summary", "totals":
			c, err := costs(val, 0, len(p.Events))
			if err != nil {
				return nil, bad(err.Error())
			}
			p.Summary = c
		case "desc":
			if t, ok := strings.CutPrefix(val, "Trigger:"); ok {
				p.Trigger = strings.TrimSpace(t)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("callgrind: read profile: %w", err)
	}
	if callCost {
		return nil, fmt.Errorf("%w: ends after calls= without its cost line", ErrFormat)
	}
	if p.Events == nil {
		return nil, fmt.Errorf("%w: no events: line", ErrFormat)
	}
	return p, nil
}

// name resolves a (possibly compressed) name: "(id) name" defines id,
// "(id)" refers to it, anything else is the name itself.
func name(names map[string]string, v string) (string, error) {
	if !strings.HasPrefix(v, "(") {
		if v == "" {
			return "", errors.New("empty name")
		}
		return v, nil
	}
	end := strings.IndexByte(v, ')')
	if end < 0 {
		return "", errors.New("unterminated name id")
	}
	id, rest := v[:end+1], strings.TrimSpace(v[end+1:])
	if _, err := strconv.ParseUint(id[1:end], 10, 32); err != nil {
		return "", errors.New("name id is not a number")
	}
	if rest == "" {
		n, ok := names[id]
		if !ok {
			return "", fmt.Errorf("name %s used before it was defined", id)
		}
		return n, nil
	}
	names[id] = rest
	return rest, nil
}

// costs parses a cost line: npos positions (numbers, "+n", "-n" or "*"),
// then up to nev event counts (missing ones are zero).
func costs(line string, npos, nev int) ([]uint64, error) {
	f := strings.Fields(line)
	if len(f) < npos {
		return nil, errors.New("missing position")
	}
	for _, s := range f[:npos] {
		if s == "*" {
			continue
		}
		if _, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 0, 64); err != nil {
			return nil, errors.New("bad position")
		}
	}
	f = f[npos:]
	if len(f) > nev {
		return nil, fmt.Errorf("%d costs for %d events", len(f), nev)
	}
	out := make([]uint64, nev)
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, errors.New("bad cost")
		}
		out[i] = v
	}
	return out, nil
}

func add(m map[string][]uint64, k string, c []uint64) {
	v := m[k]
	if v == nil {
		v = make([]uint64, len(c))
		m[k] = v
	}
	for i := range c {
		v[i] += c[i]
	}
}

// Event returns the index of the named event.
func (p *Profile) Event(name string) (int, error) {
	for i, e := range p.Events {
		if e == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("callgrind: no event %s in %v", name, p.Events)
}

// Func returns the one function whose name is suffix or ends in
// "."+suffix (a Go function given without its package path).
func (p *Profile) Func(suffix string) (string, error) {
	var found []string
	seen := func(n string) {
		if n == suffix || strings.HasSuffix(n, "."+suffix) {
			for _, f := range found {
				if f == n {
					return
				}
			}
			found = append(found, n)
		}
	}
	for n := range p.Self {
		seen(n)
	}
	for n := range p.Called {
		seen(n)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("callgrind: no function %s in the profile", suffix)
	case 1:
		return found[0], nil
	}
	sort.Strings(found)
	return "", fmt.Errorf("callgrind: %d functions match %s: %v", len(found), suffix, found)
}

// Inclusive returns event ev of the inclusive cost of the calls made to
// the function named by suffix (see Func).
func (p *Profile) Inclusive(suffix string, ev int) (uint64, error) {
	n, err := p.Func(suffix)
	if err != nil {
		return 0, err
	}
	c := p.Called[n]
	if c == nil {
		return 0, fmt.Errorf("callgrind: no call to %s recorded", n)
	}
	return c[ev], nil
}

// FuncCost is one function's cost of one event.
type FuncCost struct {
	Name string
	Cost uint64
}

// Top returns the n functions of highest self cost of event ev, highest
// first (ties by name).
func (p *Profile) Top(ev, n int) []FuncCost {
	all := make([]FuncCost, 0, len(p.Self))
	for name, c := range p.Self {
		if c[ev] > 0 {
			all = append(all, FuncCost{name, c[ev]})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Cost != all[j].Cost {
			return all[i].Cost > all[j].Cost
		}
		return all[i].Name < all[j].Name
	})
	return all[:min(n, len(all))]
}

// SelfTotal returns the sum of the self costs of event ev of the functions
// keep accepts.
func (p *Profile) SelfTotal(ev int, keep func(name string) bool) uint64 {
	var s uint64
	for name, c := range p.Self {
		if keep(name) {
			s += c[ev]
		}
	}
	return s
}
