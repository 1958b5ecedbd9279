// Command reflector is the load generator's calibration for `make bench`:
// the simplest forwarder that fans out. For every media datagram from an
// endpoint of the bench key file it sends the same octets unchanged to
// every other endpoint. It has no keys and does no crypto: the receivers
// open what it sends with the sender's client_write keys (loadgen
// -reflected). What the generator measures through it is its own latency,
// the veth's and that of a minimal forwarder with the same I/O as the path
// it calibrates; the driver subtracts it from that path's to report the
// latency a forwarder adds.
//
// -mode socket (the default) reads the media port in batches (recvmmsg
// through internal/udpbatch) and sends with sendmmsg: the calibration of
// the socket paths (mdfast-socket, the baseline).
//
// -mode xdp-native and -mode xdp-generic are the calibration of the XDP
// paths: the packet path up to user space is mdfast's own. The reflector
// attaches the classifier mdfast loads (bpf/, with DTLS and STUN to the
// AF_XDP socket as the daemon does) to -iface in that mode, opens one
// AF_XDP socket per queue (-queues) with the daemon's default sizes, bind
// mode and idle wait (internal/config), and runs each through
// dataplane.NewXDPPort with a neighbour table, one goroutine per queue.
// Per received batch, every media datagram (RFC 7983: first octet
// 128..191) from an endpoint is copied into one TX frame per other member
// (TxBuffer, copy, Commit) and the batch is flushed at once (Flush); the
// RX frames go back to the fill ring. No key table, no crypto, no
// allocation per packet. XDP_TX or XDP_REDIRECT alone cannot fan out (one
// frame out per frame in), hence the AF_XDP copy.
//
// It prints "ready reflector" (socket) or "ready reflector <mode>" on
// stdout once it reflects and, on SIGTERM or SIGINT, one JSON line with its
// counters (XDP modes: the data plane's counter names, the non-zero ones).
// In the XDP modes, each SIGUSR1 (loadgen -md-snapshot, at the start and
// the end of the measured phase) prints one JSON line {"snapshot":
// counters, "dwell": histogram}: the counters so far and the dwell
// histogram of the reflected datagrams (dwell.Sparse), measured as
// mdfast's workers measure theirs (XDP receive time to the return of the
// batch's TX kick). In socket mode SIGUSR1 is not handled.
//
//	reflector -keys keys.json
//	reflector -keys keys.json -mode xdp-native -iface mdfb-md
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/udpbatch"
)

func main() {
	if err := run(); err != nil {
		slog.Error("reflector", "err", err)
		os.Exit(1)
	}
}

func run() error {
	keysPath := flag.String("keys", "", "bench key file (required): the endpoints and the address to listen on")
	modeName := flag.String("mode", "socket", "socket, xdp-native or xdp-generic")
	iface := flag.String("iface", "", "interface to attach the classifier to (XDP modes)")
	queues := flag.Int("queues", 1, "NIC queues, one AF_XDP socket and goroutine each (XDP modes)")
	sockBuf := flag.Int("socket-buffer", 8<<20, "SO_RCVBUF/SO_SNDBUF (as the forwarders; socket mode)")
	batch := flag.Int("batch", udpbatch.DefaultBatchSize, "recvmmsg batch (socket mode)")
	flag.Parse()
	kf, err := benchkeys.Load(*keysPath)
	if err != nil {
		return err
	}
	members := make([]netip.AddrPort, len(kf.Endpoints))
	for i, e := range kf.Endpoints {
		members[i] = netip.AddrPortFrom(e.Addr.Addr().Unmap(), e.Addr.Port())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var out map[string]any
	switch *modeName {
	case "socket":
		c, err := runSocket(ctx, kf.MD, members, *sockBuf, *batch, func() { fmt.Println("ready reflector") })
		if err != nil {
			return err
		}
		out = map[string]any{"mode": "reflector", "counters": c}
	case "xdp-native", "xdp-generic":
		mode, _ := dataplane.ParseMode(*modeName)
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		x, err := openXDP(xdpOptions{
			Mode: mode, Interface: *iface, Port: kf.MD.Port(), Queues: *queues, Members: members, Logger: log,
		})
		if err != nil {
			return err
		}
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		fmt.Printf("ready reflector %s\n", x.Describe())
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-usr1:
				st, h := x.Stats(), x.Dwell()
				if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"snapshot": st.NonZero(), "dwell": h.Sparse()}); err != nil {
					return fmt.Errorf("print snapshot: %w", err)
				}
			}
		}
		st, err := x.Close()
		out = map[string]any{"mode": "reflector " + mode.String(), "counters": st.NonZero()}
		if err != nil {
			log.Error("reflector: close", "err", err)
		}
	default:
		return errors.New("reflector: -mode must be socket, xdp-native or xdp-generic, not " + *modeName)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	return nil
}
