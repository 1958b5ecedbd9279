// Command ir is the driver behind `make bench-ir`: it counts the
// instructions per forwarded packet of mdfast's worker, of raw
// crypto/cipher AES-GCM and of pion/srtp (open once, seal per receiver)
// with callgrind, and writes the table to bench/results/ir-<timestamp>.md
// and .json, and ir-latest.md and .json, printing the Markdown.
//
// The measurements are internal/dataplane's TestIRCallgrind (see its
// ir_test.go), run from that package's test binary under
// `valgrind --tool=callgrind --collect-atstart=no`: the test collects on
// its own thread only while packets are processed and dumps one profile
// per phase (N, then 2N packets), named by a client request. Instruction
// counts do not depend on the machine's load, so the figures are
// comparable across runs on the same build and CPU features.
//
//	ir -test bin/bench/dataplane.test -out bench/results
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/bench/internal/callgrind"
)

func main() {
	if err := run(); err != nil {
		slog.Error("ir", "err", err)
		os.Exit(1)
	}
}

type config struct {
	test     string
	out      string
	valgrind string
	n        int
	jobs     int
	top      int
	goal     float64
	sizes    []int
	fanouts  []int
	senders  []int
}

func run() error {
	var (
		c                       config
		sizes, fanouts, senders string
		command                 = "make bench-ir"
	)
	flag.StringVar(&c.test, "test", "", "internal/dataplane test binary (go test -c); built into a temporary directory when empty")
	flag.StringVar(&c.out, "out", "bench/results", "results directory")
	flag.StringVar(&c.valgrind, "valgrind", "valgrind", "valgrind executable")
	flag.IntVar(&c.n, "n", 256, "packets in phase A (phase B has twice as many); a multiple of 64")
	flag.IntVar(&c.jobs, "jobs", 2, "valgrind processes run at once")
	flag.IntVar(&c.top, "top", 12, "functions listed per mdfast row")
	flag.Float64Var(&c.goal, "goal", 1.15, "goal: mdfast Ir/packet at most this times raw GCM's")
	flag.StringVar(&sizes, "sizes", "160,1200", "SRTP packet sizes")
	flag.StringVar(&fanouts, "fanouts", "1,4,16", "receivers per packet")
	flag.StringVar(&senders, "senders", "1,4", "senders whose packets alternate one by one (at most 16)")
	flag.Parse()
	var err error
	if c.sizes, err = ints(sizes); err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	if c.fanouts, err = ints(fanouts); err != nil {
		return fmt.Errorf("-fanouts: %w", err)
	}
	if c.senders, err = ints(senders); err != nil {
		return fmt.Errorf("-senders: %w", err)
	}
	if c.n <= 0 || c.n%64 != 0 {
		return fmt.Errorf("-n %d: want a positive multiple of 64", c.n)
	}
	c.jobs = max(1, c.jobs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	r, err := measureAll(ctx, c)
	if err != nil {
		return err
	}
	r.Command = command
	r.Started = start.UTC().Format(time.RFC3339)
	r.Seconds = time.Since(start).Seconds()
	var md, js bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		return err
	}
	if err := r.WriteJSON(&js); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("ir: results directory: %w", err)
	}
	stamp := start.UTC().Format("20060102T150405Z")
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{"ir-" + stamp + ".md", md.Bytes()}, {"ir-" + stamp + ".json", js.Bytes()},
		{"ir-latest.md", md.Bytes()}, {"ir-latest.json", js.Bytes()},
	} {
		if err := os.WriteFile(filepath.Join(c.out, f.name), f.b, 0o644); err != nil {
			return fmt.Errorf("ir: write results: %w", err)
		}
	}
	os.Stdout.Write(md.Bytes())
	fmt.Printf("\nwritten: %s, %s (and ir-latest.*); %.0f s\n",
		filepath.Join(c.out, "ir-"+stamp+".md"), filepath.Join(c.out, "ir-"+stamp+".json"), time.Since(start).Seconds())
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// measureAll builds the test binary when needed, runs the cases in
// c.jobs valgrind processes and reads their profiles.
func measureAll(ctx context.Context, c config) (*Report, error) {
	vg, err := exec.LookPath(c.valgrind)
	if err != nil {
		return nil, fmt.Errorf("ir: %w (scripts/deps.sh installs valgrind)", err)
	}
	version, err := exec.CommandContext(ctx, vg, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("ir: valgrind --version: %w", err)
	}
	tmp, err := os.MkdirTemp("", "mdfast-ir-")
	if err != nil {
		return nil, fmt.Errorf("ir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if c.test == "" {
		c.test = filepath.Join(tmp, "dataplane.test")
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", c.test, "./internal/dataplane")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("ir: build the dataplane test binary: %w", err)
		}
	}
	var cases []Case
	for _, size := range c.sizes {
		for _, fanout := range c.fanouts {
			for _, snd := range c.senders {
				for _, impl := range impls {
					cases = append(cases, Case{impl, size, fanout, snd})
				}
			}
		}
	}
	// Spread the cases over the jobs, the costly ones (large fan-out)
	// first so that the jobs end together.
	groups := make([][]Case, min(c.jobs, len(cases)))
	for i, cs := range byCost(cases) {
		groups[i%len(groups)] = append(groups[i%len(groups)], cs)
	}
	profiles := map[string]*Phases{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make([]error, len(groups))
	)
	for g, cs := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := runGroup(ctx, vg, c, tmp, g, cs)
			if err != nil {
				errs[g] = err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range got {
				profiles[k] = v
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r := &Report{
		Go: runtime.Version(), Valgrind: strings.TrimSpace(string(version)),
		N: c.n, Goal: c.goal,
	}
	for _, cs := range cases {
		ph := profiles[cs.String()]
		if ph == nil {
			return nil, fmt.Errorf("ir: no profiles for %s", cs)
		}
		m, err := measure(cs, *ph, c.n, c.top)
		if err != nil {
			return nil, fmt.Errorf("ir: %w", err)
		}
		if cs.Impl != implMdfast {
			m.Top = nil
		}
		r.Cases = append(r.Cases, m)
	}
	if r.Rows, err = rows(r.Cases, c.goal); err != nil {
		return nil, fmt.Errorf("ir: %w", err)
	}
	return r, nil
}

// byCost orders cases by decreasing size × fan-out (stable otherwise).
func byCost(cases []Case) []Case {
	out := append([]Case(nil), cases...)
	cost := func(c Case) int { return c.Size * (c.Fanout + 1) }
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && cost(out[j]) > cost(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// runGroup runs the cases in one valgrind process and returns their
// profiles by case.
func runGroup(ctx context.Context, vg string, c config, tmp string, g int, cases []Case) (map[string]*Phases, error) {
	names := make([]string, len(cases))
	for i, cs := range cases {
		names[i] = cs.String()
	}
	prefix := filepath.Join(tmp, fmt.Sprintf("cg.%d", g))
	cmd := exec.CommandContext(ctx, vg, "--tool=callgrind", "--collect-atstart=no",
		"--callgrind-out-file="+prefix, c.test, "-test.run", "^TestIRCallgrind$", "-test.count", "1", "-test.v")
	cmd.Env = append(os.Environ(),
		// asyncpreemptoff: valgrind and Go's signal-based preemption do
		// not mix; cpu.rdtscp=off: valgrind 3.19 does not decode RDTSCP
		// (runtime.cputicks).
		"GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off",
		"MDFAST_IR_CASES="+strings.Join(names, ","),
		"MDFAST_IR_N="+strconv.Itoa(c.n))
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ir: valgrind (%s): %w\n%s", strings.Join(names, ","), err, tail(log.String(), 40))
	}
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, fmt.Errorf("ir: %w", err)
	}
	out := map[string]*Phases{}
	for _, f := range files {
		p, err := parseFile(f)
		if err != nil {
			return nil, err
		}
		what, ok := strings.CutPrefix(p.Trigger, "Client Request: ir ")
		if !ok {
			continue
		}
		name, phase, ok := strings.Cut(what, " ")
		if !ok {
			return nil, fmt.Errorf("ir: %s: trigger %q", f, p.Trigger)
		}
		ph := out[name]
		if ph == nil {
			ph = &Phases{}
			out[name] = ph
		}
		switch phase {
		case "A":
			ph.A = p
		case "B":
			ph.B = p
		default:
			return nil, fmt.Errorf("ir: %s: trigger %q", f, p.Trigger)
		}
	}
	for _, n := range names {
		if ph := out[n]; ph == nil || ph.A == nil || ph.B == nil {
			return nil, fmt.Errorf("ir: valgrind wrote no profiles of both phases of %s\n%s", n, tail(log.String(), 40))
		}
	}
	return out, nil
}

func parseFile(name string) (*callgrind.Profile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("ir: %w", err)
	}
	defer f.Close()
	p, err := callgrind.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("ir: %s: %w", name, err)
	}
	return p, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
