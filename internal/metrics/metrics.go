package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/mdslow"
)

// Namespace prefixes every metric.
const Namespace = "mdfast"

// SlowQueue is the queue label of counters that belong to no worker (the
// slow-path kernel socket in XDP modes).
const SlowQueue = "slow"

// Source is what the Collector reads at scrape time. Any function may be
// nil (its metrics are then absent).
type Source struct {
	// Dataplane returns the running data plane, or nil.
	Dataplane func() *dataplane.Dataplane
	// Table returns the key table's counters.
	Table func() keytable.Stats
	// Slow returns the slow path's counters.
	Slow func() mdslow.Stats
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

var (
	dReceived  = desc("packets_received_total", "UDP datagrams received on the media ports, per queue.", "queue")
	dXDPWait   = desc("xdp_idle_waits_total", "Times an AF_XDP worker found its RX ring empty, per queue, by how the wait ended: poll (slept in poll until the kernel woke it) or spin (the spin after the last packet found more without sleeping).", "queue", "how")
	dRxBytes   = desc("bytes_received_total", "UDP payload octets received, per queue.", "queue")
	dForwarded = desc("packets_forwarded_total", "Media packets forwarded to at least one receiver, per queue.", "queue")
	dSent      = desc("packets_sent_total", "Datagrams sent (one per receiver), per queue.", "queue")
	dTxBytes   = desc("bytes_sent_total", "UDP payload octets sent, per queue.", "queue")
	dSlowPath  = desc("slow_path_packets_total", "Datagrams handed to the slow path (DTLS, STUN), per queue.", "queue")
	dDropped   = desc("packets_dropped_total", "Datagrams dropped, per queue and reason.", "queue", "reason")
	dHandover  = desc("handovers_total", "Hand-overs of senders' receive state between workers, per queue: accepted (state taken over), requested (asked of the owner), parked (left by a stopped worker), mailbox_full (a request the owner's full mailbox could not take; asked again later), deferred (a request the owner kept to answer once the sender has been quiet for 20 ms).", "queue", "event")
	dDwell     = desc("forward_dwell_seconds", "Time each forwarded media packet spent in the Media Distributor, per queue: from the XDP program's redirect of the received frame (its receive time, in the frame's metadata) to the return of the TX kick of the batch carrying its copies (XDP modes; packets without a receive time are not counted).", "queue")
	dMode      = desc("dataplane_mode", "The data path in use (1 for the active mode).", "mode")
	dXDP       = desc("xdp_classifier_total", "XDP classifier verdicts.", "verdict")
	dAssoc     = desc("associations", "Associations with keys installed in the key table.")
	dPending   = desc("associations_pending", "Associations in DTLS handshake.")
	dConfs     = desc("conferences", "Conferences with at least one member.")
	dTable     = desc("keytable_events_total", "Key table events.", "event")
	dSlow      = desc("slowpath_events_total", "Slow path events.", "event")
	dMoves     = desc("endpoint_moves_total", "Associations moved to a new transport address by an ICE check of their session: a nominating one (RFC 8445; mobility, ICE restart on a new port), or the checks of a NAT rebinding (slowpath_events_total{event=\"rebind\"}).")
	dConsent   = desc("consent_expired_total", "Associations of a session that stopped receiving media: no authenticated ICE check from their address for consent-timeout (RFC 7675).")
	dRefused   = desc("endpoints_refused_total", "Endpoints refused because no mapping (tls-id, address) placed them in a conference and single-conference mode is off, per reason: no_mapping (at the ClientHello, access_denied alert), no_mapping_at_keys (mapping removed during the handshake), mapping_removed (established, ended by a mapping change).", "reason")
)

// Collector implements prometheus.Collector over a Source.
type Collector struct{ src Source }

// NewCollector returns a Collector reading src.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dReceived, dXDPWait, dDwell, dRxBytes, dForwarded, dSent, dTxBytes, dSlowPath, dDropped,
		dHandover, dMode, dXDP, dAssoc, dPending, dConfs, dTable, dSlow, dRefused, dMoves, dConsent} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func queueStats(ch chan<- prometheus.Metric, q string, s *dataplane.Stats) {
	counter(ch, dReceived, s[dataplane.RxPackets], q)
	counter(ch, dRxBytes, s[dataplane.RxBytes], q)
	counter(ch, dForwarded, s[dataplane.Forwarded], q)
	counter(ch, dSent, s[dataplane.TxPackets], q)
	counter(ch, dTxBytes, s[dataplane.TxBytes], q)
	counter(ch, dSlowPath, s[dataplane.SlowPath], q)
	counter(ch, dXDPWait, s[dataplane.XDPPollSleeps], q, "poll")
	counter(ch, dXDPWait, s[dataplane.XDPSpinCatches], q, "spin")
	counter(ch, dDropped, s[dataplane.SlowMedia], q, "slow_media")
	counter(ch, dHandover, s[dataplane.Handovers], q, "accepted")
	counter(ch, dHandover, s[dataplane.HandoverRequests], q, "requested")
	counter(ch, dHandover, s[dataplane.HandoversParked], q, "parked")
	counter(ch, dHandover, s[dataplane.HandoverMailboxFull], q, "mailbox_full")
	counter(ch, dHandover, s[dataplane.HandoversDeferred], q, "deferred")
	for r := dataplane.Counter(0); r < dataplane.NumCounters; r++ {
		if r.IsDrop() {
			counter(ch, dDropped, s[r], q, r.String()[len("drop_"):])
		}
	}
}

// dwellMetric is mdfast_forward_dwell_seconds of queue q.
func dwellMetric(q string, h *dwell.Hist) prometheus.Metric {
	return prometheus.MustNewConstHistogram(dDwell, h.Count(), float64(h.Sum)/1e9, h.PromCounts(), q)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Dataplane != nil {
		if dp := c.src.Dataplane(); dp != nil {
			ws := dp.WorkerStats()
			for i := range ws {
				queueStats(ch, strconv.Itoa(i), &ws[i])
			}
			// The slow-path kernel socket exists only in the XDP modes
			// (socket mode's workers hand DTLS and STUN on themselves).
			if dp.Mode() != dataplane.ModeSocket {
				slow := dp.SlowStats()
				queueStats(ch, SlowQueue, &slow)
				dw := dp.WorkerDwell()
				for i := range dw {
					ch <- dwellMetric(strconv.Itoa(i), &dw[i])
				}
			}
			for _, m := range []dataplane.Mode{dataplane.ModeXDPNative, dataplane.ModeXDPGeneric, dataplane.ModeSocket} {
				v := 0.0
				if dp.Mode() == m {
					v = 1
				}
				gauge(ch, dMode, v, m.String())
			}
			if cc, err := dp.ClassifierCounters(); err == nil {
				for i := bpf.Counter(0); i < bpf.NumCounters; i++ {
					counter(ch, dXDP, cc[i], i.String())
				}
			}
		}
	}
	if c.src.Table != nil {
		t := c.src.Table()
		gauge(ch, dAssoc, float64(t.Associations))
		gauge(ch, dConfs, float64(t.Conferences))
		for _, e := range []struct {
			n string
			v uint64
		}{{"install", t.Installs}, {"rekey", t.Rekeys}, {"remove", t.Removes}, {"expire", t.Expired},
			{"table_full", t.TableFull}, {"ssrc_claim", t.SSRCClaims}, {"ssrc_collision", t.SSRCCollisions},
			{"ssrc_stale_claim", t.StaleClaims}, {"ssrc_claims_full", t.ClaimsFull},
			{"ssrc_over_budget", t.SSRCOverBudget}, {"ssrc_takeover", t.SSRCTakeovers},
			{"ssrc_rebase", t.SSRCRebases}, {"ssrc_index_drop", t.IndexDrops},
			{"misrouted", t.Misrouted}, {"grace_timeout", t.GraceTimeouts}} {
			counter(ch, dTable, e.v, e.n)
		}
	}
	if c.src.Slow != nil {
		s := c.src.Slow()
		gauge(ch, dPending, float64(s.Pending))
		for _, e := range []struct {
			n string
			v uint64
		}{{"association_started", s.Started}, {"association_established", s.Established}, {"association_ended", s.Ended},
			{"expired_idle", s.Expired}, {"handshake_timeout", s.HandshakeTimeouts},
			{"closed_by_kd", s.ClosedByKD}, {"replaced", s.Replaced}, {"evicted_pending", s.Evicted},
			{"hello_verify", s.HelloVerify}, {"drop_bad_hello", s.DropBadHello}, {"drop_association_budget", s.DropAssocBudget}, {"stun_rate_limited", s.STUNRateLimited},
			{"dtls_to_kd", s.DTLSToKD}, {"dtls_to_endpoint", s.DTLSToEndpoint},
			{"drop_no_association", s.DropNoAssociation}, {"drop_rate_limited", s.DropRateLimited},
			{"drop_pending_max", s.DropPendingMax}, {"drop_tunnel", s.DropTunnel}, {"drop_send", s.DropSend},
			{"drop_unknown_id", s.DropUnknownID}, {"install_error", s.InstallErrors}, {"duplicate_keys", s.DuplicateKeys},
			{"stun_answered", s.STUNAnswered}, {"stun_rejected", s.STUNRejected}, {"stun_ignored", s.STUNIgnored},
			{"drop_event_queue", s.DropEventQueue}, {"endpoint_disconnect_lost", s.DisconnectsLost},
			{"move_refused", s.MovesRefused}, {"move_rate_limited", s.MovesRateLimited}, {"rebind", s.Rebinds}, {"stun_replayed", s.STUNReplayed},
			{"consent_restored", s.ConsentRestored}} {
			counter(ch, dSlow, e.v, e.n)
		}
		counter(ch, dMoves, s.Moves)
		counter(ch, dConsent, s.ConsentExpired)
		for f := range mdslow.NumRefusals {
			counter(ch, dRefused, s.Refused[f], f.String())
		}
	}
}

// Events are the event-driven metrics.
type Events struct {
	// TunnelUp is mdfast_tunnel_up{kd}.
	TunnelUp *prometheus.GaugeVec
	// Handshake is mdfast_handshake_duration_seconds.
	Handshake prometheus.Histogram
	// Ready is mdfast_ready{check}: 1 while the readiness check passes,
	// 0 while it fails (the reason is in the /readyz body).
	Ready *prometheus.GaugeVec

	mu  sync.Mutex
	ups map[string]bool
}

// NewEvents returns the event-driven metrics, registered on reg.
func NewEvents(reg prometheus.Registerer) *Events {
	e := &Events{
		TunnelUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "tunnel_up",
			Help: "1 when at least one tunnel to the key distributor is up."}, []string{"kd"}),
		Handshake: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "handshake_duration_seconds",
			Help:    "Time from an endpoint's first ClientHello to its MediaKeys.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		Ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "ready",
			Help: "1 while the readiness check passes, 0 while it fails (/readyz says why): workers, xdp_program, tunnel."}, []string{"check"}),
		ups: map[string]bool{},
	}
	reg.MustRegister(e.TunnelUp, e.Handshake, e.Ready)
	return e
}

// SetTunnel records the tunnel state of kd.
func (e *Events) SetTunnel(kd string, up bool) {
	e.mu.Lock()
	e.ups[kd] = up
	e.mu.Unlock()
	v := 0.0
	if up {
		v = 1
	}
	e.TunnelUp.WithLabelValues(kd).Set(v)
}

// SetReady records the state of readiness check name.
func (e *Events) SetReady(check string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	e.Ready.WithLabelValues(check).Set(v)
}

// AnyUp reports whether a tunnel to some KD is up.
func (e *Events) AnyUp() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range e.ups {
		if u {
			return true
		}
	}
	return false
}

// ObserveHandshake records one handshake duration.
func (e *Events) ObserveHandshake(d time.Duration) { e.Handshake.Observe(d.Seconds()) }
