// Package metrics exposes the Media Distributor's Prometheus metrics. A
// custom Collector reads the data plane's per-queue atomic counters, the
// key table's and the slow path's counters at scrape time, so the packet
// path never calls into Prometheus; the few event-driven metrics (tunnel
// state, handshake durations) are ordinary Prometheus types updated from
// the control plane.
//
// It must not hold references to packets or keys, and must not take locks
// the workers take.
package metrics
