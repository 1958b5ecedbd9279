// Package bench holds mdfast's benchmarks: the load generator
// (bench/loadgen), the baseline forwarder built the way most Go SFUs are
// (bench/baseline), the harness that runs mdfast's data plane with keys
// installed directly (bench/mdharness) and the driver behind `make bench`
// (bench/run), which also runs the whole system (keydist and the real
// `mdfast run` daemon, endpoints doing DTLS-SRTP handshakes through them
// with internal/endpointsim) as the path "mdfast-system", and the
// reflector that calibrates the generator's own latency (bench/reflector:
// a fan-out with no keys and no crypto, over UDP sockets for the socket
// paths and over AF_XDP with mdfast's classifier and data-plane port for
// the XDP paths, run at the same rate after every paced step, so that each
// path's added latency is taken against the reflector with its own I/O).
// The cascade groups (issue 14) split a conference over two mdharness MDs
// joined by a link (mdharness -md, benchkeys.Cascade, netns.Cascade) and
// report each MD's forwarded packets per CPU-second next to the one-MD
// figure. The shared pieces live in bench/internal/...
//
// Nothing outside bench/ may import it: it measures mdfast, it is not part
// of it.
package bench
