// Command mdfast-demo runs the whole system in network namespaces: a Key
// Distributor (keydist), a Media Distributor (mdfast) and simulated
// endpoints (package perc: a DTLS-SRTP client sending external_session_id,
// RFC 8723 double media with EKT), joined by a bridge on 198.18.0.0/24; the
// daemons' certificates, the KD's registry, mdfast's conference mappings
// (every endpoint's tls-id to the demo conference: mdfast refuses an
// endpoint no mapping places) and the processes come from internal/syssim.
// Every endpoint runs a real DTLS-SRTP handshake through the MD to the KD,
// gets the conference's EKTKey, then sends media that the MD re-encrypts
// hop by hop to every other endpoint without being able to read it.
//
// It prints a live progress line on stderr and ends with one summary line
// on stdout:
//
//	demo: endpoints=N handshakes_ok=N forwarded=X delivered_ok=Y lost=Z auth_failures=W path=P profile=0x0009 ekt_ok=N md_e2e_keys=0
//
// where profile is what the MD's control API reports for the
// associations, ekt_ok the endpoints that received an EKTKey, and
// md_e2e_keys the associations for which the MD holds the whole media key
// (0 with the double profile: it holds only the hop-by-hop halves).
//
// and exits 0 only if every handshake completed, nothing was lost and
// nothing failed to authenticate. Namespaces and processes are removed on
// exit, on failure and on SIGINT/SIGTERM.
//
// Environment: DEMO_SECONDS (default 20), DEMO_PATH (auto, xdp-native,
// xdp-generic, socket; default auto), DEMO_ENDPOINTS (default 3), DEMO_BIN
// (directory of the mdfast and keydist binaries, default ./bin),
// DEMO_KD_RESTART=1 (kill keydist mid-conference, restart it, then add a
// late endpoint; runs the legacy profile, since a restarted KD has lost the
// conference's EKT parameter set), DEMO_PROFILE=double|legacy (legacy:
// AEAD_AES_128_GCM, the MD holds the whole keys), DEMO_KEEP_LOGS=1 (keep
// the work directory), DEMO_WEB=1 (no simulated endpoints: keydist runs its
// join endpoint, this host gets 198.18.0.254 on the demo bridge, and the
// demo prints a URL, http://127.0.0.1:8000/, that a person opens in two
// browser tabs to join a legacy WebRTC conference through the join endpoint
// and see each other's camera through mdfast; it runs until Ctrl-C, or
// DEMO_SECONDS when set, and ends with "demo: web url=... joined=N"),
// DEMO_MDS=N (2 to 4: N MDs on a shared directory in etcd, linked to each
// other, endpoint i at MD i mod N; the summary adds each MD's link packets
// sent and received) with DEMO_KDS (1 or 2, default 2 with DEMO_MDS: KD
// replicas sharing the registry layer and the EKT parameter sets in etcd).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "\nmdfast-demo:", err)
		if code == 0 {
			code = 1
		}
	}
	stop()
	os.Exit(code)
}

func options() (opts, error) {
	var o opts
	var err error
	if o.seconds, err = envInt("DEMO_SECONDS", 20); err != nil {
		return o, err
	}
	if o.endpoints, err = envInt("DEMO_ENDPOINTS", 3); err != nil {
		return o, err
	}
	if o.endpoints > 50 {
		return o, errors.New("DEMO_ENDPOINTS: at most 50")
	}
	o.path = os.Getenv("DEMO_PATH")
	if o.path == "" {
		o.path = "auto"
	}
	o.bin = os.Getenv("DEMO_BIN")
	if o.bin == "" {
		o.bin = "bin"
	}
	o.kdRestart = os.Getenv("DEMO_KD_RESTART") == "1"
	switch p := os.Getenv("DEMO_PROFILE"); p {
	case "", "double":
	case "legacy":
		o.legacy = true
	default:
		return o, fmt.Errorf("DEMO_PROFILE=%q: want double or legacy", p)
	}
	o.keepLogs = os.Getenv("DEMO_KEEP_LOGS") == "1"
	o.web = os.Getenv("DEMO_WEB") == "1"
	if o.web && o.kdRestart {
		return o, errors.New("DEMO_WEB and DEMO_KD_RESTART do not go together")
	}
	if o.mds, err = envInt("DEMO_MDS", 1); err != nil {
		return o, err
	}
	defKDs := 1
	if o.mds > 1 {
		defKDs = 2
	}
	if o.kds, err = envInt("DEMO_KDS", defKDs); err != nil {
		return o, err
	}
	switch {
	case o.mds > maxMDs:
		return o, fmt.Errorf("DEMO_MDS: at most %d", maxMDs)
	case o.kds > maxKDs:
		return o, fmt.Errorf("DEMO_KDS: at most %d", maxKDs)
	case o.kds > 1 && o.mds == 1:
		return o, errors.New("DEMO_KDS > 1 needs DEMO_MDS > 1 (the replicas share etcd, which the multi-MD demo starts)")
	case o.mds > 1 && (o.web || o.kdRestart):
		return o, errors.New("DEMO_MDS > 1 does not go with DEMO_WEB or DEMO_KD_RESTART")
	}
	return o, nil
}
