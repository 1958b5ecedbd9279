// Package bench holds mdfast's benchmarks: the load generator
// (bench/loadgen), the baseline forwarder built the way most Go SFUs are
// (bench/baseline), the harness that runs mdfast's data plane with keys
// installed directly (bench/mdharness) and the driver behind `make bench`
// (bench/run). The shared pieces live in bench/internal/...
//
// Nothing outside bench/ may import it: it measures mdfast, it is not part
// of it.
package bench
