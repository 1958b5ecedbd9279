// Command mdfast is the PERC Media Distributor daemon: a kernel-bypass
// (XDP/AF_XDP, or a socket fallback) hop-by-hop SRTP forwarder whose
// endpoints' DTLS handshakes are relayed to a Key Distributor over the
// tunnel of draft-ietf-perc-dtls-tunnel-05 / RFC 9185.
//
// Subcommands:
//
//	mdfast run [flags]           run the daemon (flags and/or -config file.yaml)
//	mdfast check-config [flags]  validate the configuration and exit
//	mdfast version               print the version
//	mdfast stats [-url URL]      live per-queue view read from /metrics
//
// SIGINT and SIGTERM shut down gracefully (EndpointDisconnect for every
// association, workers stopped, XDP detached, tunnels closed); SIGHUP
// reloads what can change safely (limits, timeouts, log level, conference
// mappings and ICE credentials from the file: the options declared Reload
// in internal/config) and names, in one warning, every other option that
// changed and needs a restart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return "dev-" + rev[:min(12, len(rev))] + dirty
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mdfast run|check-config|version|stats [flags]  (mdfast <cmd> -h for flags)")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "mdfast:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return flag.ErrHelp
	}
	switch args[0] {
	case "run":
		return run(ctx, args[1:], stdout, stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "mdfast", versionString())
		return nil
	case "stats":
		return stats(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown subcommand %q", args[0])
}
