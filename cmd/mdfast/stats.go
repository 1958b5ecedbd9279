package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sample is one scrape: per queue counters and global gauges.
type sample struct {
	at     time.Time
	queues map[string]map[string]float64 // queue -> metric -> value
	global map[string]float64
}

func scrape(ctx context.Context, url string) (*sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("stats: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats: scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("stats: parse %s: %w", url, err)
	}
	s := &sample{at: time.Now(), queues: map[string]map[string]float64{}, global: map[string]float64{}}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			v := value(m)
			var q, reason, kd string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "queue":
					q = l.GetValue()
				case "reason":
					reason = l.GetValue()
				case "kd":
					kd = l.GetValue()
				}
			}
			switch {
			case q != "":
				if s.queues[q] == nil {
					s.queues[q] = map[string]float64{}
				}
				key := name
				if reason != "" {
					key = "drops"
				}
				s.queues[q][key] += v
			case kd != "":
				s.global["tunnels_up"] += v
			case reason == "":
				s.global[name] += v
			}
		}
	}
	return s, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func stats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdfast stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:9542/metrics", "the daemon's metrics endpoint")
	interval := fs.Duration("interval", time.Second, "refresh period")
	once := fs.Bool("once", false, "print the totals once and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prev, err := scrape(ctx, *url)
	if err != nil {
		return err
	}
	if *once {
		printStats(stdout, prev, nil)
		return nil
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur, err := scrape(ctx, *url)
		if err != nil {
			fmt.Fprintln(stderr, err)
			continue
		}
		fmt.Fprint(stdout, "\033[H\033[2J")
		printStats(stdout, cur, prev)
		prev = cur
	}
}

var statCols = []struct{ metric, title string }{
	{"mdfast_packets_received_total", "rx"},
	{"mdfast_packets_forwarded_total", "fwd"},
	{"mdfast_packets_sent_total", "tx"},
	{"drops", "drop"},
	{"mdfast_slow_path_packets_total", "slow"},
}

// printStats prints one row per queue: totals, and per-second rates when
// prev is given.
func printStats(w io.Writer, cur, prev *sample) {
	fmt.Fprintf(w, "mdfast  %s  associations=%.0f pending=%.0f tunnels_up=%.0f\n\n", cur.at.Format(time.TimeOnly),
		cur.global["mdfast_associations"], cur.global["mdfast_associations_pending"], cur.global["tunnels_up"])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "queue\t")
	for _, c := range statCols {
		fmt.Fprintf(tw, "%s\t", c.title)
		if prev != nil {
			fmt.Fprintf(tw, "%s/s\t", c.title)
		}
	}
	fmt.Fprintln(tw)
	var qs []string
	for q := range cur.queues {
		qs = append(qs, q)
	}
	sort.Slice(qs, func(i, j int) bool {
		a, ea := strconv.Atoi(qs[i])
		b, eb := strconv.Atoi(qs[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return ea == nil
	})
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t", q)
		for _, c := range statCols {
			v := cur.queues[q][c.metric]
			fmt.Fprintf(tw, "%.0f\t", v)
			if prev != nil {
				dt := cur.at.Sub(prev.at).Seconds()
				rate := 0.0
				if dt > 0 && prev.queues[q] != nil {
					rate = (v - prev.queues[q][c.metric]) / dt
				}
				fmt.Fprintf(tw, "%.0f\t", rate)
			}
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}
