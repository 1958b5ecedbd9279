// Package syssim sets up a whole PERC system for the demo and the
// benchmarks: the throwaway tunnel CA and the certificates keydist and
// mdfast need, the Key Distributor's registry file for a set of simulated
// endpoints (package endpointsim) and mdfast's matching conference
// mappings (tls-id to conference), the command lines of both daemons, the
// daemons as child processes (logs to files, stopped on request and killed
// with their parent), and code or HTTP clients run inside a named network
// namespace.
//
// It builds no topology (its callers do: the demo a bridge, the benchmark
// a veth pair) and must not be used by the daemons themselves: the keys it
// writes are throwaway and the files world-readable where the daemons
// allow it.
package syssim
