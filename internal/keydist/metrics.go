package keydist

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdfast/mdfast/internal/dtls"
)

// Drop and end reasons, used as metric labels and in logs.
const (
	reasonUnknownAssociation = "unknown_association"
	reasonBadClientHello     = "bad_client_hello"
	reasonUnknownTLSID       = "unknown_tls_id"
	reasonMissingTLSID       = "missing_tls_id"
	reasonNoUseSRTP          = "no_use_srtp"
	reasonNoCommonProfile    = "no_common_profile"
	reasonHelloChanged       = "client_hello_changed"
	reasonFingerprint        = "fingerprint_mismatch"
	reasonUnknownLegacy      = "unknown_legacy_fingerprint"
	reasonLimitTotal         = "limit_total"
	reasonLimitTunnel        = "limit_tunnel"
	reasonLimitPending       = "limit_pending"
	reasonQueueFull          = "queue_full"
	reasonHandshakeTimeout   = "handshake_timeout"
	reasonHandshakeFailed    = "handshake_failed"
	reasonIdleTimeout        = "idle_timeout"
	reasonPeerClosed         = "endpoint_closed"
	reasonMDDisconnect       = "md_disconnect"
	reasonRemoved            = "removed_from_registry"
	reasonMediaKeysFailed    = "media_keys_failed"
	reasonTunnelLost         = "tunnel_lost"
	reasonMDRestarted        = "md_restarted"
	reasonShutdown           = "shutdown"
	reasonClosedMD           = "md_closed_unknown"
	reasonEndpointAlert      = "endpoint_alert"
	reasonNoEKTCipher        = "no_common_ekt_cipher"
	reasonEKTNotAcked        = "ekt_key_not_acknowledged"
	reasonEKTUnavailable     = "ekt_key_unavailable"
)

// metrics are the KD's Prometheus collectors.
type metrics struct {
	associations    *prometheus.GaugeVec
	handshakes      *prometheus.CounterVec
	ended           *prometheus.CounterVec
	drops           *prometheus.CounterVec
	mediaKeys       prometheus.Counter
	disconnectsOut  prometheus.Counter
	disconnectsIn   prometheus.Counter
	disconnectsLost prometheus.Counter
	tunnels         prometheus.Gauge
	hsDuration      prometheus.Histogram
	rxDatagrams     prometheus.Counter
	txDatagrams     prometheus.Counter
	ektKeysSent     prometheus.Counter
	ektKeysAcked    prometheus.Counter
	dtlsDrops       *prometheus.CounterVec
	helloVerify     prometheus.Counter
	ektRekeys       prometheus.Counter
	ektRemoteRekeys prometheus.Counter

	orphansDisconnected     prometheus.Counter
	orphansLeft             prometheus.Counter
	orphanDisconnectRetries prometheus.Counter
	orphanDisconnectsFailed prometheus.Counter
}

// dtlsDrop counts a record or fragment the DTLS servers dropped.
func (m *metrics) dtlsDrop(r dtls.DropReason) { m.dtlsDrops.WithLabelValues(r.String()).Inc() }

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		associations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "keydist", Name: "associations",
			Help: "DTLS associations by state (pending: ClientHello being reassembled).",
		}, []string{"state"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "handshakes_total",
			Help: "Completed association set-ups by result (ok or the rejection reason).",
		}, []string{"result"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "associations_ended_total",
			Help: "Associations ended, by reason.",
		}, []string{"reason"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "dropped_datagrams_total",
			Help: "TunneledDtls payloads dropped, by reason.",
		}, []string{"reason"}),
		mediaKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "media_keys_sent_total",
			Help: "MediaKeys messages written to a tunnel.",
		}),
		disconnectsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "endpoint_disconnects_sent_total",
			Help: "EndpointDisconnect messages sent to media distributors.",
		}),
		disconnectsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "endpoint_disconnects_received_total",
			Help: "EndpointDisconnect messages received from media distributors.",
		}),
		disconnectsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "endpoint_disconnects_lost_total",
			Help: "EndpointDisconnect messages that could not be sent: no live tunnel to the MD instance (the MD also ends the association after its idle timeout).",
		}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "keydist", Name: "tunnels",
			Help: "Live tunnels from media distributors.",
		}),
		hsDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "keydist", Name: "handshake_seconds",
			Help:    "Time from the first ClientHello datagram to MediaKeys written.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}),
		rxDatagrams: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "tunneled_dtls_received_total",
			Help: "TunneledDtls messages received.",
		}),
		txDatagrams: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "tunneled_dtls_sent_total",
			Help: "TunneledDtls messages sent.",
		}),
		ektKeysSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "ekt_keys_sent_total",
			Help: "EKTKey messages (RFC 8870) sent to endpoints.",
		}),
		ektKeysAcked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "ekt_keys_acknowledged_total",
			Help: "EKTKey messages acknowledged by endpoints.",
		}),
		ektRekeys: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "ekt_rekeys_total",
			Help: "New EKT parameter sets given to conferences (a member left or joined, or the key's TTL ran low).",
		}),
		ektRemoteRekeys: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "ekt_remote_rekeys_total",
			Help: "New EKT parameter sets made by another KD replica (seen in the store) and sent to this replica's members.",
		}),
		orphansLeft: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "orphans_left_total",
			Help: "Associations of a vanished KD replica whose end their MD reported here (EndpointDisconnect): forgotten, and their conference re-keyed where this replica has members.",
		}),
		orphansDisconnected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "orphans_disconnected_total",
			Help: "Associations of a vanished KD replica ended at their MD (EndpointDisconnect) because this replica re-keyed their conference.",
		}),
		orphanDisconnectRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "orphan_disconnect_retries_total",
			Help: "Attempts to end an orphaned association that found no live tunnel to its MD (retried on the janitor tick).",
		}),
		orphanDisconnectsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "orphan_disconnects_failed_total",
			Help: "Orphaned associations given up after the bounded retries without a tunnel to their MD (the conference's next re-key tries again).",
		}),
		helloVerify: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keydist", Name: "hello_verify_requests_total",
			Help: "ClientHellos answered statelessly (HelloVerifyRequest, or nothing usable): no association kept.",
		}),
		dtlsDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keydist", Name: "dtls_dropped_records_total",
			Help: "DTLS records or handshake fragments the KD's DTLS servers dropped, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.associations, m.handshakes, m.ended, m.drops, m.mediaKeys,
			m.disconnectsOut, m.disconnectsIn, m.disconnectsLost, m.tunnels, m.hsDuration, m.rxDatagrams, m.txDatagrams,
			m.ektKeysSent, m.ektKeysAcked, m.dtlsDrops, m.helloVerify, m.ektRekeys, m.ektRemoteRekeys,
			m.orphansDisconnected, m.orphansLeft, m.orphanDisconnectRetries, m.orphanDisconnectsFailed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
