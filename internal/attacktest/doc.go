// Package attacktest holds the privileged black-box attack tests of issue
// 15 ("An outsider must not be able to end a call or block joins"): the
// real mdfast and keydist binaries, built by the tests, run in network
// namespaces on one bridge (198.18.0.0/15) with legitimate endpoints
// (package perc) that measure join latency and media loss while an
// attacker namespace spoofs, floods or the daemons are killed and
// restarted.
//
// The tests assert only what is visible from outside the daemons:
// endpoint loss and join latency, the association lists of the KD admin
// API and the MD control API, /readyz, /metrics (read leniently: metric
// families summed by name, Go runtime and process metrics) and log file
// sizes. They must keep passing, unchanged, when the daemons' internals
// are renamed.
//
// The package owns no production code: everything is in _test.go files.
// It must not be imported, must not touch the host's namespace beyond
// creating and deleting its own, and sends test traffic only inside those
// namespaces. The tests skip only when not run as root.
package attacktest
