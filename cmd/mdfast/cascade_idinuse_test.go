package main

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/etcdtest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestDirectoryIDInUse: an MD whose md-id another live MD holds is not
// ready, says why (naming the other MD's addresses), and says it in
// mdfast_directory_id_in_use and mdfast_directory_registrations_refused_total;
// once the other stops it registers and is ready.
func TestDirectoryIDInUse(t *testing.T) {
	testutil.CheckGoroutines(t)
	c := etcdtest.Start(t, etcdtest.Options{})
	ec := etcdclient.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second}
	start := func(n int) (*cascadeMD, func()) {
		cl, err := etcdclient.New(ec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := directory.New(directory.Config{Client: cl, Key: ec.Key, ID: "md-same", Lease: 2 * time.Second,
			BackoffMax: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Self: directory.Alive{
				Media:       netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(5000+n)),
				Cascade:     netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(5800+n)),
				Fingerprint: [32]byte{byte(n)}, Started: time.Now(),
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = d.Run(ctx) })
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); wg.Wait(); cl.Close() }) }
		t.Cleanup(stop)
		return &cascadeMD{dir: d, cl: cl}, stop
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
		}
	}
	metric := func(cm *cascadeMD, name string) float64 {
		t.Helper()
		col := newCascadeCollector(cm)
		ch := make(chan prometheus.Metric, 16)
		col.collectDirectory(ch)
		close(ch)
		for m := range ch {
			if strings.Contains(m.Desc().String(), `"`+name+`"`) {
				var pb dto.Metric
				if err := m.Write(&pb); err != nil {
					t.Fatal(err)
				}
				if pb.Gauge != nil {
					return pb.Gauge.GetValue()
				}
				return pb.Counter.GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}

	first, stopFirst := start(1)
	waitFor("first ready", func() bool { return first.check() == nil })
	second, _ := start(2)
	waitFor("second refused twice", func() bool { return metric(second, "mdfast_directory_registrations_refused_total") >= 2 })
	err := second.check()
	if err == nil || !strings.Contains(err.Error(), `md-id "md-same" is in use by another live MD (media 198.18.0.1:5001, cascade 198.18.0.1:5801)`) {
		t.Fatalf("readiness of the refused MD: %v", err)
	}
	if metric(second, "mdfast_directory_id_in_use") != 1 || metric(second, "mdfast_directory_registered") != 0 {
		t.Fatal("the refused MD's metrics do not say it")
	}
	if err := first.check(); err != nil || metric(first, "mdfast_directory_id_in_use") != 0 ||
		metric(first, "mdfast_directory_registered") != 1 || metric(first, "mdfast_directory_registrations_total") != 1 {
		t.Fatalf("the first MD disturbed: readiness %v", err)
	}

	stopFirst()
	waitFor("second registered after the first stopped", func() bool {
		return second.check() == nil && metric(second, "mdfast_directory_registered") == 1
	})
	if metric(second, "mdfast_directory_id_in_use") != 0 {
		t.Fatal("mdfast_directory_id_in_use still 1 after registering")
	}
}
