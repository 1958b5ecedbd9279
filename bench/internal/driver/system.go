package driver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/netns"
	"github.com/mdfast/mdfast/internal/syssim"
)

// SystemPath is the full-system path: keydist and the real `mdfast run`
// daemon, keys from DTLS-SRTP handshakes.
const SystemPath = "mdfast-system"

// SystemMode is the data plane mode the system path asks of mdfast; when
// it does not come up, the step is retried with SystemFallback and the
// scenario's mode says so.
const (
	SystemMode     = "xdp-native"
	SystemFallback = "auto"
)

// KeysHandshake says how the system path gets its keys.
const KeysHandshake = "handshake: every endpoint runs a DTLS-SRTP handshake (internal/dtls client, external_session_id, internal/endpointsim; the KD on internal/dtls) " +
	"through `mdfast run` to keydist, all at once, before the step; the loadgen sends with the exported keys (double groups: 0x0009 with EKT, the hop-by-hop halves, the end-to-end salt from the conference's EKTKey)"

const (
	kdTunnel  = "127.0.0.1:5740"
	kdMetrics = "127.0.0.1:9541"
	mdMetrics = "127.0.0.1:9542"
)

// systemBinaries are the executables the system path needs besides loadgen.
var systemBinaries = []string{"mdfast", "keydist"}

// writeSystemFiles writes, in dir, the certificates and registry of the
// system path and a handshake key file for g's participants; it returns
// the key file's path.
func writeSystemFiles(dir string, topo *netns.Topology, g *Group) (*syssim.Files, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("driver: %w", err)
	}
	files, err := syssim.WriteFiles(dir, net.ParseIP("127.0.0.1"), topo.MDAddr.AsSlice())
	if err != nil {
		return nil, "", err
	}
	kf, err := benchkeys.GenerateHandshake(g.KeyProfile(), g.Participants, topo.GenAddr, genPort, netip.AddrPortFrom(topo.MDAddr, mediaPort), files.KDFingerprint)
	if err != nil {
		return nil, "", err
	}
	ids, err := kf.Identities()
	if err != nil {
		return nil, "", err
	}
	if err := files.WriteRegistry("bench", ids); err != nil {
		return nil, "", err
	}
	keys := filepath.Join(dir, "keys.json")
	return files, keys, kf.Write(keys)
}

// systemArgs are mdfast's arguments: the daemon's defaults except for the
// per-source-IP limit on new associations (every endpoint of the benchmark
// has the generator's one address) and the socket buffers (as mdharness).
func systemArgs(files *syssim.Files, topo *netns.Topology, mode string) []string {
	return files.MDFastArgs(syssim.MD{
		Interface: topo.MDIf, Mode: mode, Address: topo.MDAddr.String(), Port: mediaPort,
		KD: kdTunnel, Metrics: mdMetrics,
		Extra: []string{"-new-associations-per-second", "-1", "-socket-buffer", strconv.Itoa(8 << 20), "-log-level", "warn"},
	})
}

// startSystem starts keydist (pinned to the generator's core: it works
// only during the handshakes) and mdfast (pinned to the forwarder's core)
// in the forwarder's namespace, the tunnel on its loopback, and waits for
// mdfast's /readyz. If mdfast does not come up in SystemMode it tries
// SystemFallback once.
func startSystem(ctx context.Context, cfg *Config, topo *netns.Topology, files *syssim.Files, step string) (*forwarder, error) {
	f, err := startSystemMode(ctx, cfg, topo, files, step, SystemMode)
	if err == nil || ctx.Err() != nil {
		return f, err
	}
	cfg.Logger.Warn("driver: mdfast did not start in "+SystemMode+"; trying "+SystemFallback, "err", err)
	f, err2 := startSystemMode(ctx, cfg, topo, files, step, SystemFallback)
	if err2 != nil {
		return nil, fmt.Errorf("%s: %w; %s: %w", SystemMode, err, SystemFallback, err2)
	}
	f.mode += " (fallback: " + SystemMode + " failed: " + lastLine(err.Error()) + ")"
	return f, nil
}

func startSystemMode(ctx context.Context, cfg *Config, topo *netns.Topology, files *syssim.Files, step, mode string) (*forwarder, error) {
	logs := func(name string) string { return files.Path(name + "-" + step + "-" + mode + ".log") }
	kd, err := syssim.Start("keydist", logs("keydist"), netns.Command(ctx, topo.MDNS, cfg.GenCore, cfg.Nice,
		filepath.Join(cfg.Bin, "keydist"), files.KeydistArgs(kdTunnel, kdMetrics)...))
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	md, err := syssim.Start("mdfast", logs("mdfast"), netns.Command(ctx, topo.MDNS, cfg.MDCore, cfg.Nice,
		filepath.Join(cfg.Bin, "mdfast"), systemArgs(files, topo, mode)...))
	if err != nil {
		kd.Stop(syscall.SIGTERM)
		return nil, fmt.Errorf("driver: %w", err)
	}
	stop := func() {
		md.Stop(syscall.SIGTERM)
		kd.Stop(syscall.SIGTERM)
	}
	hc := syssim.HTTPClient(topo.MDNS)
	if err := syssim.WaitReady(ctx, hc, "http://"+mdMetrics+"/readyz", 20*time.Second, md, kd); err != nil {
		tail := lastLine(md.Tail(3))
		stop()
		return nil, fmt.Errorf("driver: %w: mdfast: %s", err, tail)
	}
	path, err := md.ReportedPath()
	if err != nil {
		stop()
		return nil, fmt.Errorf("driver: %w", err)
	}
	f := &forwarder{pid: md.Pid(), mode: path}
	f.done = func() (map[string]uint64, error) {
		drops := map[string]uint64{}
		if _, body, err := syssim.Get(hc, "http://"+mdMetrics+"/metrics"); err == nil {
			for _, l := range syssim.NonZero(body, "mdfast_packets_dropped_total") {
				reason, n := dropSample(l)
				drops["drop_"+reason] += n
			}
		}
		stop()
		if e := md.Err(); e != nil {
			return drops, fmt.Errorf("mdfast: %w: %s", e, lastLine(md.Tail(3)))
		}
		return drops, nil
	}
	return f, nil
}

// dropSample parses a sample of mdfast_packets_dropped_total as NonZero
// returns it, `{queue="0",reason="auth"} 12`, into the reason and count.
func dropSample(l string) (string, uint64) {
	labels, val, _ := strings.Cut(l, "} ")
	reason := strings.TrimPrefix(labels, "{")
	if _, r, ok := strings.Cut(labels, `reason="`); ok {
		reason, _, _ = strings.Cut(r, `"`)
	}
	v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
	return reason, uint64(v)
}
