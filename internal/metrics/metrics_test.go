package metrics

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/mdslow"
)

// family returns the gathered family called name, failing the test when it
// is absent.
func family(t *testing.T, fams []*dto.MetricFamily, name string) *dto.MetricFamily {
	t.Helper()
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	t.Fatalf("family %s missing; have %v", name, names)
	return nil
}

func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func labelNames(m *dto.Metric) string {
	var n []string
	for _, l := range m.GetLabel() {
		n = append(n, l.GetName())
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

// sum adds the values of the family's metrics whose labels include want.
func sum(f *dto.MetricFamily, want map[string]string) float64 {
	var v float64
next:
	for _, m := range f.GetMetric() {
		ls := labels(m)
		for k, w := range want {
			if ls[k] != w {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		}
	}
	return v
}

func queuesOf(f *dto.MetricFamily) []string {
	set := map[string]bool{}
	for _, m := range f.GetMetric() {
		set[labels(m)["queue"]] = true
	}
	var qs []string
	for q := range set {
		qs = append(qs, q)
	}
	sort.Strings(qs)
	return qs
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// socketDataplane starts a real data plane in socket mode (no XDP, no root)
// with queues workers on a loopback port.
func socketDataplane(t *testing.T, queues int) (*dataplane.Dataplane, *keytable.Table, uint16) {
	t.Helper()
	table, err := keytable.New(keytable.Config{MaxAssociations: 16})
	if err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	dp, err := dataplane.New(dataplane.Config{
		Mode: dataplane.ModeSocket, Ports: []uint16{port}, Address: netip.MustParseAddr("127.0.0.1"),
		Queues: queues, Table: dataplane.KeyTable{T: table},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("dataplane.New(socket): %v", err)
	}
	t.Cleanup(func() {
		if err := dp.Close(); err != nil {
			t.Errorf("dataplane close: %v", err)
		}
	})
	return dp, table, port
}

func sendTo(t *testing.T, port uint16, payloads ...[]byte) {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor scrapes until cond holds or a deadline passes.
func waitFor(t *testing.T, reg *prometheus.Registry, what string, cond func([]*dto.MetricFamily) bool) []*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := gather(t, reg)
		if cond(fams) {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIssue7Families checks every family issue 7 requires: name, type,
// label names, and that the values follow their sources between scrapes.
func TestIssue7Families(t *testing.T) {
	dp, _, port := socketDataplane(t, 2)

	var mu sync.Mutex
	tab := keytable.Stats{Associations: 3, Conferences: 1, Installs: 3}
	slow := mdslow.Stats{Pending: 2, Started: 5}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(Source{
		Dataplane: func() *dataplane.Dataplane { return dp },
		Table:     func() keytable.Stats { mu.Lock(); defer mu.Unlock(); return tab },
		Slow:      func() mdslow.Stats { mu.Lock(); defer mu.Unlock(); return slow },
	}))
	ev := NewEvents(reg)
	ev.SetTunnel("198.18.0.2:5740", false)
	ev.SetTunnel("198.18.0.3:5740", true)
	ev.ObserveHandshake(30 * time.Millisecond)
	ev.SetReady("workers", true)
	ev.SetReady("tunnel", true)
	ev.SetReady("tunnel", false)

	fams := gather(t, reg)
	for check, want := range map[string]float64{"workers": 1, "tunnel": 0} {
		if v := sum(family(t, fams, "mdfast_ready"), map[string]string{"check": check}); v != want {
			t.Errorf("mdfast_ready{check=%q} = %v, want %v", check, v, want)
		}
	}
	for _, tc := range []struct {
		name   string
		typ    dto.MetricType
		labels string // sorted label names of every metric
	}{
		{"mdfast_packets_received_total", dto.MetricType_COUNTER, "queue"},
		{"mdfast_packets_forwarded_total", dto.MetricType_COUNTER, "queue"},
		{"mdfast_packets_sent_total", dto.MetricType_COUNTER, "queue"},
		{"mdfast_packets_dropped_total", dto.MetricType_COUNTER, "queue,reason"},
		{"mdfast_slow_path_packets_total", dto.MetricType_COUNTER, "queue"},
		{"mdfast_associations", dto.MetricType_GAUGE, ""},
		{"mdfast_associations_pending", dto.MetricType_GAUGE, ""},
		{"mdfast_tunnel_up", dto.MetricType_GAUGE, "kd"},
		{"mdfast_handshake_duration_seconds", dto.MetricType_HISTOGRAM, ""},
		{"mdfast_dataplane_mode", dto.MetricType_GAUGE, "mode"},
		{"mdfast_ready", dto.MetricType_GAUGE, "check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := family(t, fams, tc.name)
			if f.GetType() != tc.typ {
				t.Errorf("type %v, want %v", f.GetType(), tc.typ)
			}
			if len(f.GetMetric()) == 0 {
				t.Fatal("no metrics")
			}
			for _, m := range f.GetMetric() {
				if got := labelNames(m); got != tc.labels {
					t.Errorf("labels %q, want %q", got, tc.labels)
				}
			}
		})
	}

	// Per queue: one series per worker. Socket mode has no slow-path
	// kernel socket, so there is no "slow" queue.
	for _, name := range []string{"mdfast_packets_received_total", "mdfast_packets_forwarded_total", "mdfast_packets_dropped_total"} {
		if qs := queuesOf(family(t, fams, name)); strings.Join(qs, ",") != "0,1" {
			t.Errorf("%s queues = %v, want [0 1]", name, qs)
		}
	}
	// Every drop reason is present per queue, at zero.
	drops := family(t, fams, "mdfast_packets_dropped_total")
	reasons := map[string]int{}
	for _, m := range drops.GetMetric() {
		reasons[labels(m)["reason"]]++
		if strings.HasPrefix(labels(m)["reason"], "drop_") {
			t.Errorf("reason %q keeps its drop_ prefix", labels(m)["reason"])
		}
	}
	for _, r := range []string{"junk", "unknown_source", "auth", "replay", "slow_media", "tx_full"} {
		if reasons[r] != 2 {
			t.Errorf("reason %q in %d queues, want 2", r, reasons[r])
		}
	}
	if v := sum(drops, nil); v != 0 {
		t.Errorf("drops before traffic = %v", v)
	}
	if v := sum(family(t, fams, "mdfast_dataplane_mode"), map[string]string{"mode": "socket"}); v != 1 {
		t.Errorf("dataplane_mode{mode=socket} = %v", v)
	}
	if v := sum(family(t, fams, "mdfast_associations"), nil); v != 3 {
		t.Errorf("associations = %v, want 3", v)
	}
	if v := sum(family(t, fams, "mdfast_associations_pending"), nil); v != 2 {
		t.Errorf("associations_pending = %v, want 2", v)
	}
	tu := family(t, fams, "mdfast_tunnel_up")
	if a, b := sum(tu, map[string]string{"kd": "198.18.0.2:5740"}), sum(tu, map[string]string{"kd": "198.18.0.3:5740"}); a != 0 || b != 1 {
		t.Errorf("tunnel_up = %v, %v; want 0, 1", a, b)
	}
	if !ev.AnyUp() {
		t.Error("AnyUp = false with one tunnel up")
	}
	h := family(t, fams, "mdfast_handshake_duration_seconds").GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() < 0.029 || h.GetSampleSum() > 0.031 {
		t.Errorf("handshake histogram count=%d sum=%v", h.GetSampleCount(), h.GetSampleSum())
	}

	// Change every source, scrape again, see it.
	junk := make([][]byte, 5)
	for i := range junk {
		junk[i] = []byte{0x70, byte(i), 1, 2} // first octet 112: no RFC 7983 class
	}
	rtp := make([]byte, 32)
	rtp[0] = 0x80 // RTP from an address with no association
	sendTo(t, port, append(junk, rtp, rtp, rtp)...)
	mu.Lock()
	tab.Associations, slow.Pending = 7, 0
	mu.Unlock()
	ev.SetTunnel("198.18.0.2:5740", true)
	ev.SetTunnel("198.18.0.3:5740", false)
	ev.ObserveHandshake(2 * time.Second)

	fams = waitFor(t, reg, "8 datagrams counted", func(f []*dto.MetricFamily) bool {
		return sum(family(t, f, "mdfast_packets_received_total"), nil) == 8 &&
			sum(family(t, f, "mdfast_packets_dropped_total"), nil) == 8
	})
	drops = family(t, fams, "mdfast_packets_dropped_total")
	if v := sum(drops, map[string]string{"reason": "junk"}); v != 5 {
		t.Errorf("drops{reason=junk} = %v, want 5", v)
	}
	if v := sum(drops, map[string]string{"reason": "unknown_source"}); v != 3 {
		t.Errorf("drops{reason=unknown_source} = %v, want 3", v)
	}
	// Per queue, what was received was dropped there.
	rx := family(t, fams, "mdfast_packets_received_total")
	for _, q := range []string{"0", "1"} {
		if a, b := sum(rx, map[string]string{"queue": q}), sum(drops, map[string]string{"queue": q}); a != b {
			t.Errorf("queue %s: received %v, dropped %v", q, a, b)
		}
	}
	if v := sum(family(t, fams, "mdfast_bytes_received_total"), nil); v != 5*4+3*32 {
		t.Errorf("bytes_received = %v, want %d", v, 5*4+3*32)
	}
	if v := sum(family(t, fams, "mdfast_packets_forwarded_total"), nil); v != 0 {
		t.Errorf("forwarded = %v, want 0", v)
	}
	if v := sum(family(t, fams, "mdfast_associations"), nil); v != 7 {
		t.Errorf("associations = %v, want 7", v)
	}
	if v := sum(family(t, fams, "mdfast_associations_pending"), nil); v != 0 {
		t.Errorf("associations_pending = %v, want 0", v)
	}
	tu = family(t, fams, "mdfast_tunnel_up")
	if a, b := sum(tu, map[string]string{"kd": "198.18.0.2:5740"}), sum(tu, map[string]string{"kd": "198.18.0.3:5740"}); a != 1 || b != 0 {
		t.Errorf("tunnel_up = %v, %v; want 1, 0", a, b)
	}
	h = family(t, fams, "mdfast_handshake_duration_seconds").GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 {
		t.Errorf("handshake count = %d, want 2", h.GetSampleCount())
	}
	for _, b := range h.GetBucket() {
		want := uint64(2)
		if b.GetUpperBound() < 2 {
			want = 1
		}
		if b.GetUpperBound() >= 0.05 && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	ev.SetTunnel("198.18.0.2:5740", false)
	if ev.AnyUp() {
		t.Error("AnyUp = true with every tunnel down")
	}
}

// TestCountersMonotonic scrapes while traffic flows: a counter must never
// go down between scrapes (Prometheus would read a reset).
func TestCountersMonotonic(t *testing.T) {
	dp, _, port := socketDataplane(t, 2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(Source{Dataplane: func() *dataplane.Dataplane { return dp }}))

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			b := []byte{0x70, 0, 0, 0}
			for !stop.Load() {
				_, _ = c.Write(b)
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	prev := map[string]float64{}
	deadline := time.Now().Add(400 * time.Millisecond)
	scrapes := 0
	for time.Now().Before(deadline) {
		for _, f := range gather(t, reg) {
			if f.GetType() != dto.MetricType_COUNTER {
				continue
			}
			for _, m := range f.GetMetric() {
				key := f.GetName() + labelNames(m) + "|" + labels(m)["queue"] + "|" + labels(m)["reason"]
				v := m.GetCounter().GetValue()
				if v < prev[key] {
					t.Fatalf("%s{queue=%q,reason=%q} went down: %v -> %v", f.GetName(), labels(m)["queue"], labels(m)["reason"], prev[key], v)
				}
				prev[key] = v
			}
		}
		scrapes++
	}
	if prev["mdfast_packets_received_totalqueue|0|"]+prev["mdfast_packets_received_totalqueue|1|"] == 0 {
		t.Fatalf("no packet counted in %d scrapes", scrapes)
	}
}

// TestNilSources: a Source with nil functions (or a nil data plane) yields
// only the event metrics, and Describe lists what Collect can send.
func TestNilSources(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Source{Dataplane: func() *dataplane.Dataplane { return nil }}))
	NewEvents(reg)
	for _, f := range gather(t, reg) {
		// The histogram has its one series from the start.
		if f.GetName() != "mdfast_handshake_duration_seconds" && len(f.GetMetric()) > 0 {
			t.Errorf("family %s present without a source", f.GetName())
		}
	}

	// Pedantic registry: every collected metric must have been described.
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Source{
		Table: func() keytable.Stats { return keytable.Stats{Associations: 1} },
		Slow: func() mdslow.Stats {
			var s mdslow.Stats
			s.Refused[mdslow.RefusedNoMapping], s.Refused[mdslow.RefusedMappingRemoved] = 3, 1
			s.Moves, s.ConsentExpired = 5, 2
			return s
		},
	}))
	fams := gather(t, reg)
	refused := family(t, fams, "mdfast_endpoints_refused_total")
	for reason, want := range map[string]float64{"no_mapping": 3, "no_mapping_at_keys": 0, "mapping_removed": 1} {
		if v := sum(refused, map[string]string{"reason": reason}); v != want {
			t.Errorf("endpoints_refused_total{reason=%q} = %v, want %v", reason, v, want)
		}
	}
	if v := sum(family(t, fams, "mdfast_endpoint_moves_total"), nil); v != 5 {
		t.Errorf("endpoint_moves_total = %v, want 5", v)
	}
	if v := sum(family(t, fams, "mdfast_consent_expired_total"), nil); v != 2 {
		t.Errorf("consent_expired_total = %v, want 2", v)
	}
	if v := sum(family(t, fams, "mdfast_associations"), nil); v != 1 {
		t.Errorf("associations = %v", v)
	}
	family(t, fams, "mdfast_keytable_events_total")
	family(t, fams, "mdfast_slowpath_events_total")
}
