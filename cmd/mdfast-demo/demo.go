package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/perc"
)

type opts struct {
	seconds, endpoints int
	legacy             bool // DEMO_PROFILE=legacy
	path, bin          string
	kdRestart          bool
	keepLogs           bool
	web                bool // DEMO_WEB=1
	mds, kds           int  // DEMO_MDS, DEMO_KDS
}

// multi says whether this is the multi-MD demo (DEMO_MDS > 1): a shared
// directory on etcd, links between the MDs, KD replicas.
func (o opts) multi() bool { return o.mds > 1 }

const (
	mediaPort  = 5004
	tunnelPort = 5740
	metricsMD  = "127.0.0.1:9542"
	metricsKD  = "127.0.0.1:9541"
	controlMD  = "127.0.0.1:5742"      // mdfast's default control listener
	packetGap  = 20 * time.Millisecond // 50 packets/s per endpoint
)

// start starts argv in namespace ns as a daemon logging to logPath.
func start(ns, name, logPath string, argv ...string) (*syssim.Proc, error) {
	return syssim.Start(name, logPath, exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...))
}

// demo is one run.
type demo struct {
	o     opts
	dir   string
	topo  *topology
	kds   []*syssim.Proc // KD replicas (one unless DEMO_MDS > 1)
	mds   []*syssim.Proc // MDs, endpoint i at MD i mod len(mds)
	etcd  *syssim.Proc   // the multi-MD demo's store
	http  []*http.Client // into each MD's namespace
	eps   []*endpoint
	logs  []*sendLog
	path  string
	files *syssim.Files

	kdHTTP     []*http.Client // into each KD replica's namespace
	joinSecret []byte         // DEMO_WEB
}

func run(ctx context.Context) (int, error) {
	o, err := options()
	if err != nil {
		return 2, err
	}
	if os.Geteuid() != 0 {
		return 2, errors.New("the demo creates network namespaces and attaches XDP: run it as root")
	}
	for _, b := range []string{"mdfast", "keydist"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return 2, fmt.Errorf("binary %s: %w (run make build, or set DEMO_BIN)", b, err)
		}
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return 2, err
	}
	d := &demo{o: o, topo: &topology{prefix: fmt.Sprintf("mdfd%d-", os.Getpid())}}
	defer d.cleanup()
	if err := d.setup(); err != nil {
		return 1, err
	}
	if o.web {
		return d.web(ctx)
	}
	return d.conference(ctx)
}

func (d *demo) cleanup() {
	for _, e := range d.eps {
		e.close()
	}
	for _, p := range append(append(append([]*syssim.Proc(nil), d.mds...), d.kds...), d.etcd) {
		if p != nil {
			p.Stop(syscall.SIGTERM)
		}
	}
	d.topo.cleanup()
	if d.dir != "" {
		if d.o.keepLogs {
			fmt.Fprintln(os.Stderr, "mdfast-demo: logs kept in", d.dir)
		} else {
			_ = os.RemoveAll(d.dir)
		}
	}
}

func (d *demo) fail(err error) error {
	for i, p := range d.mds {
		if p != nil {
			fmt.Fprintf(os.Stderr, "\n--- mdfast %s log (tail) ---\n%s\n", mdRole(i), p.Tail(25))
		}
	}
	for i, p := range d.kds {
		if p != nil {
			fmt.Fprintf(os.Stderr, "--- keydist %s log (tail) ---\n%s\n", kdRole(i), p.Tail(25))
		}
	}
	if d.etcd != nil {
		fmt.Fprintf(os.Stderr, "--- etcd log (tail) ---\n%s\n", d.etcd.Tail(10))
	}
	return err
}

func (d *demo) setup() error {
	var err error
	if d.dir, err = os.MkdirTemp("", "mdfast-demo-"); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	n := d.o.endpoints
	if d.o.web {
		n = 0 // the browser tabs are the endpoints
	}
	total := n
	if d.o.kdRestart {
		total++ // the late joiner
	}
	// Certificates: tunnel CA, KD and MD tunnel certificates, the KD's
	// DTLS certificate, one per endpoint; the KD's registry.
	if d.files, err = syssim.WriteFiles(d.dir, net.ParseIP(hostAddr(kdHost)), net.ParseIP(hostAddr(mdHost))); err != nil {
		return err
	}
	ids := make([]endpointsim.Identity, 0, total)
	for i := range total {
		e, err := newEndpoint(i, d.topo.ns(fmt.Sprintf("ep%d", i)))
		if err != nil {
			return err
		}
		d.eps = append(d.eps, e)
		d.logs = append(d.logs, &sendLog{})
		ids = append(ids, e.id)
	}
	if err := d.files.WriteRegistry("demo", ids); err != nil {
		return err
	}
	if err := d.topo.build(total, d.o.mds, d.o.kds, d.o.multi()); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	if d.o.web {
		if err := d.topo.addWebLink(); err != nil {
			return fmt.Errorf("topology: link from this host: %w", err)
		}
	}
	for i, e := range d.eps {
		if err := e.open(hostAddr(epHost + i)); err != nil {
			return err
		}
	}
	for m := range d.o.mds {
		d.http = append(d.http, syssim.HTTPClient(d.topo.ns(mdRole(m))))
	}
	for k := range d.o.kds {
		d.kdHTTP = append(d.kdHTTP, syssim.HTTPClient(d.topo.ns(kdRole(k))))
	}
	if d.o.multi() {
		if err := d.startEtcd(); err != nil {
			return d.fail(err)
		}
	}
	d.kds = make([]*syssim.Proc, d.o.kds)
	for k := range d.o.kds {
		if err := d.startKD(k); err != nil {
			return d.fail(err)
		}
	}
	for m := range d.o.mds {
		md := syssim.MD{Interface: "eth0", Mode: d.o.path, Address: hostAddr(mdHostN(m)), Port: mediaPort,
			KD: net.JoinHostPort(hostAddr(kdHost), strconv.Itoa(tunnelPort)), Metrics: metricsMD, Extra: d.webMDArgs()}
		if d.o.multi() {
			if md.Extra, err = d.multiMDArgs(m); err != nil {
				return d.fail(err)
			}
			md.Cert = mdRole(m)
		}
		p, err := start(d.topo.ns(mdRole(m)), "mdfast "+mdRole(m), filepath.Join(d.dir, mdRole(m)+".log"),
			append([]string{filepath.Join(d.o.bin, "mdfast")}, d.files.MDFastArgs(md)...)...)
		if err != nil {
			return d.fail(err)
		}
		d.mds = append(d.mds, p)
	}
	if err := d.waitReady(20 * time.Second); err != nil {
		return d.fail(err)
	}
	if d.path, err = d.mdPath(); err != nil {
		return d.fail(err)
	}
	return nil
}

// startKD starts KD replica k (again, after restartKD).
func (d *demo) startKD(k int) error {
	args := d.files.KeydistArgs(net.JoinHostPort(hostAddr(kdHostN(k)), strconv.Itoa(tunnelPort)), metricsKD)
	if d.o.kds > 1 {
		args = append(args, d.multiKDArgs(k)...)
	}
	if d.o.web {
		web, err := d.webKDArgs()
		if err != nil {
			return err
		}
		args = append(args, web...)
	}
	p, err := start(d.topo.ns(kdRole(k)), "keydist "+kdRole(k), filepath.Join(d.dir, indexed("keydist", k)+".log"), append([]string{filepath.Join(d.o.bin, "keydist")}, args...)...)
	d.kds[k] = p
	return err
}

// kdMetric sums the samples of KD replica k's metric family name whose
// labels contain labels.
func (d *demo) kdMetric(k int, name, labels string) (float64, error) {
	_, body, err := syssim.Get(d.kdHTTP[k], "http://"+metricsKD+"/metrics")
	if err != nil {
		return 0, err
	}
	return sumLabeled(body, name, labels), nil
}

// mdPath is the data-plane path the (first) MD reports.
func (d *demo) mdPath() (string, error) { return d.mds[0].ReportedPath() }

// get fetches a URL on MD m's metrics listener.
func (d *demo) get(m int, path string) (int, string, error) {
	return syssim.Get(d.http[m], "http://"+metricsMD+path)
}

// waitReady waits for every mdfast's /readyz (tunnel up, data plane
// running).
func (d *demo) waitReady(timeout time.Duration) error {
	procs := append(append([]*syssim.Proc(nil), d.mds...), d.kds...)
	for m := range d.mds {
		if err := syssim.WaitReady(context.Background(), d.http[m], "http://"+metricsMD+"/readyz", timeout, procs...); err != nil {
			return fmt.Errorf("%s: %w", mdRole(m), err)
		}
	}
	return nil
}

// waitNotReady waits for /readyz to fail (the tunnel went down).
func (d *demo) waitNotReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, err := d.get(0, "/readyz"); err == nil && code != http.StatusOK {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("mdfast still ready after keydist was killed")
}

// metric sums the samples of a metric family over the MDs' /metrics.
func (d *demo) metric(name string) (float64, error) {
	var sum float64
	for m := range d.mds {
		_, body, err := d.get(m, "/metrics")
		if err != nil {
			return 0, err
		}
		sum += syssim.SumMetric(body, name)
	}
	return sum, nil
}

// join runs the handshakes of endpoints idx concurrently and returns how
// many succeeded.
func (d *demo) join(ctx context.Context, idx []int) (int, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(idx))
	for k, i := range idx {
		md := netip.AddrPortFrom(netip.MustParseAddr(hostAddr(mdHostN(i%len(d.mds)))), mediaPort)
		wg.Go(func() { errs[k] = d.eps[i].handshake(ctx, md, d.files.KDFingerprint, d.profiles()) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	return ok, errors.Join(errs...)
}

// conference runs the handshakes, the media and the summary.
func (d *demo) conference(ctx context.Context) (int, error) {
	n := d.o.endpoints
	initial := make([]int, n)
	for i := range initial {
		initial[i] = i
	}
	if d.o.multi() {
		fmt.Fprintf(os.Stderr, "demo: etcd, %d keydist replicas, %d mdfast (path=%s) and %d endpoints up; handshaking through the MDs\n", d.o.kds, d.o.mds, d.path, n)
	} else {
		fmt.Fprintf(os.Stderr, "demo: keydist, mdfast (path=%s) and %d endpoints up; handshaking through the MD\n", d.path, n)
	}
	ok0, err := d.join(ctx, initial)
	var hsOK atomic.Int64
	hsOK.Store(int64(ok0))
	var restartMsg atomic.Pointer[string]
	empty := ""
	restartMsg.Store(&empty)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: handshake errors:", err)
	}
	if d.o.multi() {
		if err := d.waitLinks(ctx, 20*time.Second); err != nil {
			return 1, d.fail(err)
		}
	}
	duration := time.Duration(d.o.seconds) * time.Second
	startAt := time.Now()
	stopSend := make(chan struct{})
	var senders sync.WaitGroup
	sendErrs := make(chan error, len(d.eps))
	startSender := func(i int) {
		senders.Go(func() {
			e := d.eps[i]
			t := time.NewTicker(packetGap)
			defer t.Stop()
			for seq := uint16(0); ; seq++ {
				select {
				case <-stopSend:
					return
				case <-t.C:
				}
				if err := e.send(seq, d.logs[i]); err != nil {
					select {
					case sendErrs <- fmt.Errorf("endpoint %d send: %w", i, err):
					default:
					}
					return
				}
			}
		})
	}
	for i := range n {
		if d.eps[i].joined.Load() != 0 {
			startSender(i)
		}
	}
	restartErr := make(chan error, 1)
	if d.o.kdRestart {
		go func() { restartErr <- d.restartKD(ctx, startAt, duration, &hsOK, startSender, &restartMsg) }()
	} else {
		restartErr <- nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-tick.C:
			el := time.Since(startAt).Truncate(time.Second)
			fwd, _ := d.metric("mdfast_packets_forwarded_total")
			var sent uint64
			for _, e := range d.eps {
				sent += e.sent.Load()
			}
			fmt.Fprintf(os.Stderr, "\r[%3ds/%ds] handshakes=%d/%d sent=%d forwarded=%.0f %s   ", int(el.Seconds()), d.o.seconds, hsOK.Load(), len(d.eps), sent, fwd, *restartMsg.Load())
			if el >= duration {
				break loop
			}
			for m, p := range d.mds {
				if !p.Alive() {
					close(stopSend)
					senders.Wait()
					return 1, d.fail(fmt.Errorf("mdfast %s exited during the demo: %v", mdRole(m), p.Err()))
				}
			}
		}
	}
	close(stopSend)
	senders.Wait()
	fmt.Fprintln(os.Stderr)
	if interrupted {
		return 130, errors.New("interrupted")
	}
	rerr := <-restartErr
	time.Sleep(time.Second) // drain in-flight packets
	fwd, err := d.metric("mdfast_packets_forwarded_total")
	if err != nil {
		return 1, d.fail(fmt.Errorf("read mdfast metrics: %w", err))
	}
	delivered, lost, authFail := d.account()
	for m := range d.mds {
		if _, body, err := d.get(m, "/metrics"); err == nil {
			if drops := syssim.NonZero(body, "mdfast_packets_dropped_total"); len(drops) > 0 {
				fmt.Fprintf(os.Stderr, "demo: mdfast %s drops: %s\n", mdRole(m), strings.Join(drops, " "))
			}
		}
	}
	links := ""
	if d.o.multi() {
		if links, err = d.linkSummary(); err != nil {
			return 1, d.fail(err)
		}
	}
	profile, mdKeys, ektOK, perr := d.privacy()
	if perr != nil {
		return 1, d.fail(perr)
	}
	fmt.Printf("demo: endpoints=%d handshakes_ok=%d forwarded=%.0f delivered_ok=%d lost=%d auth_failures=%d path=%s profile=%s ekt_ok=%d md_e2e_keys=%d%s\n",
		len(d.eps), hsOK.Load(), fwd, delivered, lost, authFail, d.path, profile, ektOK, mdKeys, links)
	select {
	case err := <-sendErrs:
		return 1, d.fail(err)
	default:
	}
	if rerr != nil {
		return 1, d.fail(rerr)
	}
	if int(hsOK.Load()) != len(d.eps) || lost != 0 || authFail != 0 || delivered == 0 {
		return 1, d.fail(errors.New("demo failed: a handshake failed, packets were lost or did not authenticate"))
	}
	return 0, nil
}

// account counts deliveries: a packet sent by s at time t is expected at
// every other endpoint whose handshake had completed by t. The KD sends
// MediaKeys before its Finished, and the MD installs them (and resolves the
// endpoint's next hop) before it relays that Finished, so an endpoint that
// has completed its handshake is already a receiver at the MD.
func (d *demo) account() (delivered, lost, authFail uint64) {
	for s, e := range d.eps {
		d.logs[s].mu.Lock()
		times := append([]int64(nil), d.logs[s].times...)
		d.logs[s].mu.Unlock()
		for seq, t := range times {
			for r, rcv := range d.eps {
				if r == s {
					continue
				}
				j := rcv.joined.Load()
				if j == 0 || j > t {
					continue
				}
				if rcv.received(e.ssrc, uint16(seq)) {
					delivered++
				} else {
					lost++
				}
			}
		}
	}
	for _, e := range d.eps {
		authFail += e.authFailures()
	}
	return
}

// profiles is what the endpoints offer: the double profile with EKT, or
// with DEMO_PROFILE=legacy (and with DEMO_KD_RESTART, whose restarted KD
// would not know the conference's EKT parameter set) AEAD_AES_128_GCM,
// whose whole key the MD holds.
func (d *demo) profiles() []uint16 {
	if d.o.legacy || d.o.kdRestart {
		return []uint16{perc.ProfileAES128GCM}
	}
	return []uint16{perc.ProfileDoubleAES128GCM}
}

// privacy reads from the MD's control API the profile of every association
// and how many of them give the MD the whole media key, and counts the
// endpoints that received an EKTKey.
func (d *demo) privacy() (profile string, mdMediaKeys, ektOK int, err error) {
	type assoc struct {
		ProfileID       uint16 `json:"profile_id"`
		MDHoldsMediaKey bool   `json:"md_holds_media_key"`
	}
	var assocs []assoc
	for m := range d.mds {
		code, body, err := syssim.GetAuth(d.http[m], "http://"+controlMD+"/v1/associations", d.files.ControlToken())
		if err != nil || code != http.StatusOK {
			return "", 0, 0, fmt.Errorf("%s control API associations: status %d: %v", mdRole(m), code, err)
		}
		var l []assoc
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			return "", 0, 0, fmt.Errorf("%s control API associations: %w", mdRole(m), err)
		}
		assocs = append(assocs, l...)
	}
	ids := map[uint16]bool{}
	for _, a := range assocs {
		ids[a.ProfileID] = true
		if a.MDHoldsMediaKey {
			mdMediaKeys++
		}
	}
	var names []string
	for id := range ids {
		names = append(names, fmt.Sprintf("%#04x", id))
	}
	sort.Strings(names)
	for _, e := range d.eps {
		if s := e.s.Load(); s != nil && s.Stats().EKTKeys > 0 {
			ektOK++
		}
	}
	return strings.Join(names, ","), mdMediaKeys, ektOK, nil
}

// restartKD kills keydist a third into the run, checks that the tunnel goes
// down while the media keeps flowing, restarts keydist, waits for the
// tunnel, and has the late endpoint join.
func (d *demo) restartKD(ctx context.Context, startAt time.Time, duration time.Duration, hsOK *atomic.Int64, startSender func(int), msg *atomic.Pointer[string]) error {
	set := func(s string) { msg.Store(&s) }
	select {
	case <-time.After(time.Until(startAt.Add(duration / 4))):
	case <-ctx.Done():
		return nil
	}
	set("kd=killed")
	d.kds[0].Kill()
	if err := d.waitNotReady(10 * time.Second); err != nil {
		return err
	}
	set("kd=down")
	time.Sleep(duration / 6)
	if err := d.startKD(0); err != nil {
		return err
	}
	set("kd=restarted")
	if err := d.waitReady(15 * time.Second); err != nil {
		return fmt.Errorf("after the keydist restart: %w", err)
	}
	set("kd=up late-joiner=handshaking")
	late := len(d.eps) - 1
	ok, err := d.join(ctx, []int{late})
	hsOK.Add(int64(ok))
	if err != nil {
		return fmt.Errorf("late endpoint after the keydist restart: %w", err)
	}
	startSender(late)
	set("kd=up late-joiner=joined")
	return nil
}
