// Command mdharness runs mdfast's data plane for the benchmark with keys
// installed directly: it builds the key table and the data plane with the
// settings cmd/mdfast derives from its defaults (internal/config), installs
// every endpoint of a bench key file (benchkeys) into one conference, and
// forwards until SIGTERM or SIGINT. It has no slow path: DTLS and STUN are
// counted and dropped. It is the "keys: direct" configuration of `make
// bench`; the path "mdfast-system" runs cmd/mdfast and keydist with real
// handshakes instead. A double key file (RFC 8723, 0x0009) installs the
// endpoints' hop-by-hop (outer) keys under the double profile: the data
// plane opens and re-seals the outer layer and passes the inner one, whose
// end-to-end key only the endpoints hold.
//
// It prints "ready <mode>" on stdout once forwarding and, on exit, one JSON
// line with the data plane's non-zero counters and each worker's packets.
// -queues runs one worker per NIC queue (or SO_REUSEPORT socket), -cpus
// pins them. On SIGUSR1 it prints one JSON line {"snapshot": counters}
// with the data plane's counters at that moment (the load generator sends
// it at the start and the end of its measured phase: -md-snapshot); in
// the XDP modes the line also has "dwell", the workers' dwell histogram
// summed (dwell.Sparse: each forwarded packet's time from the XDP
// receive to its batch's TX kick).
//
// A cascade key file (benchkeys.Cascade, issue 14) splits the conference
// over several MDs: -md i makes the harness MD i, listening on
// Cascade.MDs[i]; it installs only the endpoints attached to it and one
// link association per peer MD (keytable.Association{Link: true, Tag:
// the conference's tag}, its address the peer's media address, its keys
// the conference's link keys of each direction, benchkeys.Links), so that
// what its members send crosses each link once and what comes from a link
// reaches its members. The exit JSON then has "links": each link's
// traffic (keytable.LinkStats).
//
//	mdharness -keys keys.json -mode xdp-native -iface mdfb-md
//	mdharness -keys cascade.json -md 1 -mode xdp-native -iface mdfb-md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/dataplane"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/keytable"
)

func main() {
	if err := run(); err != nil {
		slog.Error("mdharness", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		keysPath = flag.String("keys", "", "bench key file (required)")
		modeName = flag.String("mode", "auto", "data plane mode: xdp-native, xdp-generic, socket, auto")
		iface    = flag.String("iface", "", "interface (XDP modes)")
		sockBuf  = flag.Int("socket-buffer", 8<<20, "SO_RCVBUF/SO_SNDBUF of the sockets (0: daemon default)")
		queues   = flag.Int("queues", 1, "NIC queues (AF_XDP sockets) or SO_REUSEPORT sockets, one worker each")
		cpuList  = flag.String("cpus", "", "comma-separated CPUs to pin worker i to (i modulo the list); empty: no pinning")
		waitName = flag.String("wait", "", "AF_XDP idle wait: poll, adaptive, spin, or busypoll (poll with SO_PREFER_BUSY_POLL, SO_BUSY_POLL 50 µs, budget 64); empty: the daemon's default")
		spin     = flag.Duration("spin", 0, "spin of the adaptive wait after the last packet (0: default)")
		kick     = flag.Int("tx-kick-frames", 0, "kick TX after every this many datagrams queued within a batch (0: once per batch, the default)")
		mdIndex  = flag.Int("md", 0, "in a cascade key file: which of its MDs this harness is (index in cascade.mds)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kf, err := benchkeys.Load(*keysPath)
	if err != nil {
		return err
	}
	mode, err := dataplane.ParseMode(*modeName)
	if err != nil {
		return err
	}
	// The daemon's defaults, as cmd/mdfast turns them into a data plane.
	c := config.Defaults()
	table, err := keytable.New(keytable.Config{MaxAssociations: c.MaxAssociation})
	if err != nil {
		return fmt.Errorf("key table: %w", err)
	}
	if *mdIndex < 0 || *mdIndex >= kf.MDCount() {
		return fmt.Errorf("-md %d: the key file has %d MDs", *mdIndex, kf.MDCount())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	members := kf.Members(*mdIndex)
	for _, i := range members {
		e := &kf.Endpoints[i]
		recv, err := e.ClientKeys(kf.SRTPProfile())
		if err != nil {
			return fmt.Errorf("endpoint %d: %w", i, err)
		}
		send, err := e.ServerKeys(kf.SRTPProfile())
		if err != nil {
			return fmt.Errorf("endpoint %d: %w", i, err)
		}
		if _, err := table.Install(ctx, keytable.Association{
			ID: e.ID, Addr: e.Addr, Conference: keytable.ConferenceID(kf.Conference), Recv: recv, Send: send,
		}); err != nil {
			return fmt.Errorf("install endpoint %d: %w", i, err)
		}
	}
	links, err := installLinks(ctx, table, kf, *mdIndex)
	if err != nil {
		return err
	}
	self := kf.MD
	if kf.Cascade != nil {
		self = kf.Cascade.MDs[*mdIndex]
	}
	dpCfg, err := c.Dataplane(dataplane.KeyTable{T: table}, log)
	if err != nil {
		return fmt.Errorf("daemon defaults: %w", err)
	}
	dpCfg.Mode, dpCfg.Interface = mode, *iface
	dpCfg.Ports, dpCfg.Address = []uint16{self.Port()}, self.Addr()
	dpCfg.SocketBuffer = *sockBuf
	dpCfg.Queues = *queues
	if *cpuList != "" {
		for _, f := range strings.Split(*cpuList, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("-cpus %q: %w", *cpuList, err)
			}
			dpCfg.CPUs = append(dpCfg.CPUs, c)
		}
	}
	waitDesc := ""
	if *waitName != "" {
		w := *waitName
		if w == "busypoll" {
			w = "poll"
			dpCfg.BusyPoll, dpCfg.BusyPollUsec, dpCfg.BusyPollBudget = true, 50, 64
		}
		if dpCfg.Wait, err = dataplane.ParseWait(w); err != nil {
			return err
		}
		waitDesc = " (wait " + *waitName + ")"
	}
	if *spin > 0 {
		dpCfg.Spin = *spin
		waitDesc += " (spin " + spin.String() + ")"
	}
	if *kick > 0 {
		dpCfg.TxKickFrames = *kick
		waitDesc += fmt.Sprintf(" (tx kick every %d)", *kick)
	}
	dp, err := dataplane.New(dpCfg)
	if err != nil {
		return fmt.Errorf("data plane: %w", err)
	}
	for _, i := range members {
		dp.Resolve(kf.Endpoints[i].Addr.Addr())
	}
	for _, l := range links {
		dp.Resolve(l.addr.Addr())
	}
	// No slow path here: drain what the data plane hands to it.
	go func() {
		for range dp.Slow() {
		}
	}()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	fmt.Printf("ready %s%s\n", dp.Mode(), waitDesc)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-usr1:
			st := dp.Stats()
			snap := map[string]any{"snapshot": st.NonZero()}
			if dp.Mode() != dataplane.ModeSocket {
				var sum dwell.Hist
				ws := dp.WorkerDwell()
				for i := range ws {
					sum.Add(&ws[i])
				}
				snap["dwell"] = sum.Sparse()
			}
			if err := json.NewEncoder(os.Stdout).Encode(snap); err != nil {
				return fmt.Errorf("print snapshot: %w", err)
			}
		}
	}
	st := dp.Stats()
	ws := dp.WorkerStats()
	if err := dp.Close(); err != nil {
		log.Error("mdharness: close", "err", err)
	}
	return printStats(dp.Mode(), &st, ws, links)
}

// link is an installed link association.
type link struct {
	peer int
	addr netip.AddrPort
	ep   *keytable.Endpoint
}

// installLinks installs MD self's link associations of a cascade key file
// (none without one): one per peer MD for the file's conference.
func installLinks(ctx context.Context, table *keytable.Table, kf *benchkeys.File, self int) ([]link, error) {
	if kf.Cascade == nil {
		return nil, nil
	}
	ls, err := kf.Links(self)
	if err != nil {
		return nil, err
	}
	var out []link
	for _, l := range ls {
		ep, err := table.Install(ctx, keytable.Association{
			ID: uuid.New(), Addr: l.Addr, Conference: keytable.ConferenceID(kf.Conference),
			Recv: l.Recv, Send: l.Send, Link: true, Tag: l.Tag,
		})
		if err != nil {
			return nil, fmt.Errorf("install link to MD %d (%s): %w", l.Peer, l.Addr, err)
		}
		out = append(out, link{peer: l.Peer, addr: l.Addr, ep: ep})
	}
	return out, nil
}

// printStats prints the totals ("counters"), per worker the packets
// received, forwarded and the hand-overs ("workers") and, in a cascade,
// each link's traffic ("links").
func printStats(m dataplane.Mode, st *dataplane.Stats, ws []dataplane.Stats, links []link) error {
	out := map[string]any{"mode": m.String()}
	var workers []map[string]uint64
	for i := range ws {
		workers = append(workers, map[string]uint64{
			"rx_packets": ws[i][dataplane.RxPackets], "forwarded": ws[i][dataplane.Forwarded],
			"handovers": ws[i][dataplane.Handovers], "drop_misrouted": ws[i][dataplane.DropMisrouted],
		})
	}
	out["workers"] = workers
	out["counters"] = st.NonZero()
	if len(links) > 0 {
		var ls []map[string]any
		for _, l := range links {
			s := l.ep.LinkStats()
			ls = append(ls, map[string]any{"peer": l.peer, "addr": l.addr.String(),
				"tx_packets": s.TxPackets, "tx_bytes": s.TxBytes, "rx_packets": s.RxPackets, "rx_bytes": s.RxBytes,
				"tx_drops": s.TxDrops, "rx_drops": s.RxDrops})
		}
		out["links"] = ls
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	return nil
}
