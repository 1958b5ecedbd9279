// Command loadgen is the load generator: the endpoints of a bench key file
// send SRTP (AEAD_AES_128_GCM) to the forwarder the file names, receive
// what it forwards, decrypt it with their own keys (pion/srtp) and verify
// it octet for octet; with a double key file (-profile
// DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM) they seal and open both RFC
// 8723 layers with internal/double; it prints one JSON object (gen.Result) with loss,
// latency percentiles, jitter and, given -md-pid, the forwarder's CPU time.
// See package bench/internal/gen for how it sends and measures.
//
//	loadgen -keys keys.json -senders 1 -rate 0 -payload 160 -duration 3s -sample 16
//
// Given a handshake key file (the driver's mdfast-system path), it first
// runs every endpoint's DTLS-SRTP handshake at once through the real mdfast
// daemon to keydist (gen.Handshake), sends with the negotiated keys, and
// adds the handshake times to the JSON ("handshake").
//
// Given a cascade key file (members split over several MDs), each endpoint
// sends to its own MD; -md-pids names the MDs' processes for their CPU
// times, and the JSON gets per MD what its members sent and received
// ("mds").
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/gen"
)

func main() {
	if err := run(); err != nil {
		slog.Error("loadgen", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg      gen.Config
		keysPath string
		pattern  string
	)
	flag.StringVar(&keysPath, "keys", "", "bench key file (required)")
	flag.IntVar(&cfg.Senders, "senders", 1, "how many endpoints send (the first ones); all receive")
	flag.Float64Var(&cfg.Rate, "rate", 0, "packets per second per sender; 0 = as fast as possible")
	flag.StringVar(&pattern, "pattern", "", "audio (50 pps, 160 B), video (1200 B in bursts of 8) or empty for -rate/-payload/-burst")
	flag.IntVar(&cfg.Payload, "payload", 160, "RTP payload octets")
	profile := flag.String("profile", "", "SRTP profile to send, checked against the key file's: "+benchkeys.Profile+" or "+benchkeys.ProfileDouble+" (RFC 8723 double; a double key file); empty: the key file's")
	flag.IntVar(&cfg.Burst, "burst", 1, "packets per burst")
	flag.IntVar(&cfg.Streams, "streams", 1, "SSRCs per sender, sent in turn")
	flag.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "warm-up phase")
	flag.DurationVar(&cfg.Duration, "duration", 3*time.Second, "measured phase")
	flag.DurationVar(&cfg.Drain, "drain", 300*time.Millisecond, "wait for packets in flight")
	flag.IntVar(&cfg.Sample, "sample", 1, "decrypt and verify one in this many received packets")
	flag.IntVar(&cfg.Batch, "batch", 64, "sendmmsg/recvmmsg batch")
	flag.IntVar(&cfg.MDPid, "md-pid", 0, "forwarder process, for its CPU time")
	flag.IntVar(&cfg.MDCore, "md-core", -1, "forwarder's core, for its busy time")
	mdPids := flag.String("md-pids", "", "a cascade key file's MD processes, comma-separated in the file's order, for each one's CPU time")
	flag.BoolVar(&cfg.Snapshot, "md-snapshot", false, "send each of -md-pids SIGUSR1 at the start and the end of the measured phase (bench/mdharness prints its counters)")
	flag.BoolVar(&cfg.Reflected, "reflected", false, "the forwarder is bench/reflector: open with the sender's keys")
	hsTimeout := flag.Duration("handshake-timeout", 20*time.Second, "bound on each DTLS handshake (handshake key files)")
	verbose := flag.Bool("v", false, "debug logs")
	flag.Parse()
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if *mdPids != "" {
		for _, f := range strings.Split(*mdPids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return fmt.Errorf("-md-pids %q: bad process id %q", *mdPids, f)
			}
			cfg.MDPids = append(cfg.MDPids, pid)
		}
	}
	switch pattern {
	case "":
	case "audio":
		cfg.Rate, cfg.Payload, cfg.Burst = 50, 160, 1
	case "video":
		if cfg.Rate == 0 {
			cfg.Rate = 240
		}
		cfg.Payload, cfg.Burst = 1200, 8
	default:
		return fmt.Errorf("unknown pattern %q", pattern)
	}
	kf, err := benchkeys.Load(keysPath)
	if err != nil {
		return err
	}
	if *profile != "" && *profile != kf.Profile {
		return fmt.Errorf("-profile %s, but key file %s is %s", *profile, keysPath, kf.Profile)
	}
	cfg.Keys = kf
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var hs *gen.HandshakeResult
	if kf.Handshake {
		if hs, err = gen.Handshake(ctx, kf, *hsTimeout); err != nil {
			return err
		}
	}
	res, err := gen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Handshake = hs
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	return nil
}
