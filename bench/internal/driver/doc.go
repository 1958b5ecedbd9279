// Package driver runs `make bench`: it builds the topology (package
// netns), and for every path (mdfast in XDP native, XDP generic and socket
// mode through bench/mdharness, the whole system as "mdfast-system":
// keydist and `mdfast run` started with internal/syssim, keys from real
// DTLS-SRTP handshakes that bench/loadgen runs and times, and
// bench/baseline; and bench/reflector, the calibration: after each paced
// step the reflector with the path's I/O, ReflectorFor) and every scenario
// group of a Plan starts the forwarder pinned to one core, runs
// bench/loadgen pinned to another, collects the results and writes them
// (package report). It owns the child processes and the namespaces and
// removes both on return, including on cancellation (Ctrl-C).
package driver
