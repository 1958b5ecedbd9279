// Command run is the driver behind `make bench`: it measures mdfast (XDP
// native, XDP generic, socket fallback; the whole system with keydist and
// DTLS-SRTP handshakes as mdfast-system) and the baseline forwarder in
// network namespaces and writes bench/results/<timestamp>.{json,md,svg}
// and latest.{json,md,svg}, printing the Markdown table. BENCH_QUICK=1
// measures a subset in three rounds (about five minutes); BENCH_MQ=1
// measures 2 queues and 2 workers against 1 in three rounds
// (driver.MQPlan, its own paths unless -paths is given); BENCH_CASCADE=1
// measures only 1→4 at 160 B on one MD against the same conference split
// over two MDs joined by a link (driver.CascadePlan, three rounds; with
// BENCH_QUICK=1 too, 1 s steps). It needs root.
//
//	run -bin bin/bench -out bench/results
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/mdfast/mdfast/bench/internal/driver"
	"github.com/mdfast/mdfast/bench/internal/report"
)

func main() {
	if err := run(); err != nil {
		slog.Error("bench", "err", err)
		os.Exit(1)
	}
}

func run() error {
	exe, _ := os.Executable()
	var (
		bin     = flag.String("bin", filepath.Dir(exe), "directory holding mdharness, baseline, loadgen, and mdfast and keydist for mdfast-system")
		out     = flag.String("out", "bench/results", "results directory")
		mdCore  = flag.Int("md-core", 1, "CPU the forwarder is pinned to")
		genCore = flag.Int("gen-core", 0, "CPU the load generator is pinned to")
		paths   = flag.String("paths", strings.Join(driver.AllPaths, ","), "paths to measure (also: "+strings.Join(slices.Sorted(maps.Keys(driver.Variants)), ", ")+")")
		nice    = flag.Int("nice", -10, "niceness of every measured process (0: inherited)")
		redo    = flag.String("rereport", "", "measure nothing: read this results JSON, derive its summary and findings again with this build's rules and write them to -out")
	)
	flag.Parse()
	if *redo != "" {
		return rereport(*redo, *out)
	}
	quick := os.Getenv("BENCH_QUICK") == "1"
	mq := os.Getenv("BENCH_MQ") == "1"
	cascade := os.Getenv("BENCH_CASCADE") == "1"
	plan := driver.FullPlan()
	command := "make bench"
	switch {
	case cascade:
		plan = driver.CascadePlan()
		command = "BENCH_CASCADE=1 make bench"
		if quick {
			plan.Timing = driver.QuickPlan().Timing
			command = "BENCH_QUICK=1 " + command
		}
	case mq:
		plan = driver.MQPlan()
		command = "BENCH_MQ=1 make bench"
	case quick:
		plan = driver.QuickPlan()
		command = "BENCH_QUICK=1 make bench"
	}
	if !mq && !cascade || isSet("paths") {
		plan.Paths = strings.Split(*paths, ",")
	}
	if isSet("paths") && (mq || cascade || *paths != strings.Join(driver.AllPaths, ",")) {
		command = "BENCH_PATHS=" + *paths + " " + command
	}
	if *nice != -10 {
		command = fmt.Sprintf("BENCH_NICE=%d %s", *nice, command)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := driver.Run(ctx, driver.Config{
		Bin: *bin, Plan: plan, MDCore: *mdCore, GenCore: *genCore, Nice: *nice,
		Progress: os.Stderr, Command: command, Quick: quick, Logger: log,
	})
	if r == nil {
		return err
	}
	if err != nil {
		// Interrupted: keep what was measured, marked as such.
		log.Warn("bench: interrupted; writing partial results", "err", err)
		r.Method = append(r.Method, "INTERRUPTED: partial results ("+err.Error()+").")
		r.Finish()
	}
	files, werr := report.WriteFiles(*out, r)
	if werr != nil {
		return werr
	}
	if merr := r.Markdown(os.Stdout); merr != nil {
		return merr
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", strings.Join(files, ", "))
	return err
}

// isSet reports whether the flag name was given on the command line.
func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// rereport re-derives a results file's summary and findings from its
// scenarios (what was measured is left as it was) and writes it again.
func rereport(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("rereport: %w", err)
	}
	var r report.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("rereport: %s: %w", path, err)
	}
	r.Finish()
	files, err := report.WriteFiles(out, &r)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", strings.Join(files, ", "))
	return nil
}
