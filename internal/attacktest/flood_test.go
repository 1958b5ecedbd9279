package attacktest

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flood sends what next returns through a raw socket until stopped.
type flood struct {
	stopc       chan struct{}
	done        chan struct{}
	pkts, bytes atomic.Int64
	err         error
}

// startFlood sends rate packets/s (0: as fast as one goroutine can) of
// next(i) (source, payload) to the MD's media port.
func startFlood(r *rawSender, rate int, next func(i int) (netip.AddrPort, []byte)) *flood {
	f := &flood{stopc: make(chan struct{}), done: make(chan struct{})}
	dst := netip.AddrPortFrom(mdIP, mediaPort)
	go func() {
		defer close(f.done)
		const tick = 10 * time.Millisecond
		perTick := rate * int(tick) / int(time.Second)
		t := time.NewTicker(tick)
		defer t.Stop()
		for i := 0; ; {
			if rate > 0 {
				select {
				case <-f.stopc:
					return
				case <-t.C:
				}
			}
			batch := perTick
			if rate == 0 {
				batch = 64
			}
			for range batch {
				src, payload := next(i)
				i++
				if _, err := r.send(src, dst, payload); err != nil {
					f.err = err
					return
				}
				f.pkts.Add(1)
				f.bytes.Add(int64(len(payload)))
			}
			if rate == 0 {
				select {
				case <-f.stopc:
					return
				default:
				}
			}
		}
	}()
	return f
}

// stop stops the flood and returns its error.
func (f *flood) stop() error {
	close(f.stopc)
	<-f.done
	return f.err
}

// joinStaggered starts the joins of eps one after another, gap apart
// (each in its own goroutine, bounded by timeout, so that a slow join does
// not delay the next), waits for them, and returns each join's latency (0
// for a failed join) and the failures.
func (s *sys) joinStaggered(ctx context.Context, eps []*endpoint, gap, timeout time.Duration) ([]time.Duration, []error) {
	lat := make([]time.Duration, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		if i > 0 {
			time.Sleep(gap)
		}
		wg.Go(func() {
			jctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if errs[i] = e.join(jctx, s.files.KDFingerprint); errs[i] == nil {
				lat[i] = e.joinTime
			}
		})
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return lat, failed
}

// checkJoins asserts every join succeeded within limit and logs p50/p99/max.
func checkJoins(t *testing.T, lat []time.Duration, errs []error, limit time.Duration) {
	t.Helper()
	var ok []time.Duration
	for _, d := range lat {
		if d > 0 {
			ok = append(ok, d)
		}
	}
	p50, p99, mx := percentiles(ok)
	t.Logf("legitimate joins during the flood: %d/%d completed, p50=%v p99=%v max=%v", len(ok), len(lat), p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond))
	if len(errs) > 0 {
		t.Errorf("%d of %d joins failed during the flood (2s timeout), first: %v", len(errs), len(lat), errs[0])
	}
	for i, d := range lat {
		if d > limit {
			t.Errorf("join %d took %v (goal: within %v)", i, d.Round(time.Millisecond), limit)
		}
	}
}

// floodSetup is the stage of the flood tests: a system whose attacker
// namespace holds attackerAddrs addresses, a 3-party call established
// (conference 0; conference 1 has 10 identities to join during the flood),
// a context for the joins, and a real ClientHello to flood with.
func floodSetup(t *testing.T, attackerAddrs int) (*sys, []*endpoint, context.Context, []byte) {
	t.Helper()
	s := newSys(t, sysConfig{conferences: []confSize{{"call", 3}, {"join", 10}}, attackerAddrs: attackerAddrs})
	call := s.endpoints(0, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := s.joinAll(ctx, call, 3); err != nil {
		s.fatal(err)
	}
	hello, err := realClientHello("attacker-tls-id-0123456789abcdefghij")
	if err != nil {
		t.Fatal(err)
	}
	return s, call, ctx, hello
}

// TestIncompleteHelloFlood: 100 attacker addresses (198.18.16.0/24, real:
// the attacker's namespace holds them) send first-fragment-only
// ClientHellos (fragment_offset 0, fragment_length half the length, new
// client random and source port each time) at 400 packets/s for 10 s. An
// established 3-party call streams and 10 legitimate endpoints join one by
// one meanwhile. Goals: every join completes within 1 s, the call loses no
// packet; both daemons' goroutines and RSS are reported before, during and
// after.
func TestIncompleteHelloFlood(t *testing.T) {
	needRoot(t)
	const sources, rate, duration = 100, 400, 10 * time.Second
	s, call, ctx, hello := floodSetup(t, sources)
	raw, err := newRawSender(s.atk.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.close()
	m := startMedia(call...)
	defer m.stop()
	time.Sleep(1200 * time.Millisecond)
	before := s.daemonStats()

	f := startFlood(raw, rate, func(i int) (netip.AddrPort, []byte) {
		return netip.AddrPortFrom(atkAddr(i%sources), uint16(1024+rand.IntN(60000))), helloFragment(hello)
	})
	floodStart := time.Now()
	time.Sleep(500 * time.Millisecond)
	lat, errs := s.joinStaggered(ctx, s.endpoints(1, 0, 10), 800*time.Millisecond, 2*time.Second)
	during := s.daemonStats()
	time.Sleep(time.Until(floodStart.Add(duration)))
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	floodEnd := time.Now()
	time.Sleep(500 * time.Millisecond)
	for _, err := range m.stop() {
		t.Errorf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	l := account(call, call, floodStart, floodEnd)
	time.Sleep(2 * time.Second)
	after := s.daemonStats()

	sent := f.pkts.Load()
	t.Logf("flood: %d incomplete ClientHellos from %d addresses in %.1fs (%.0f/s)", sent, sources, floodEnd.Sub(floodStart).Seconds(), float64(sent)/floodEnd.Sub(floodStart).Seconds())
	t.Logf("before: %s", before)
	t.Logf("during: %s", during)
	t.Logf("after:  %s", after)
	t.Logf("established call during the flood: %v", l)
	if float64(sent) < 0.8*rate*duration.Seconds() {
		t.Errorf("the attacker sent only %d packets (want about %d): the test did not flood", sent, int(rate*duration.Seconds()))
	}
	checkJoins(t, lat, errs, time.Second)
	if l.lost != 0 || l.expected == 0 {
		t.Errorf("the established call lost media during the flood: %v", l)
	}
}

// TestSpoofedSourceFlood: one attacker goroutine sends, as fast as it can
// for 5 s, complete cookie-less ClientHellos and STUN Binding requests from
// random spoofed sources in 198.19.0.0/16; one in eight comes from
// 198.19.255.0/24 port 40000, which the attacker's namespace answers for,
// so that what the MD sends back to spoofed sources is counted. An
// established 3-party call streams and 10 endpoints join one by one.
// Goals: join p99 within 1 s, the call loses nothing, each daemon's log
// grows by less than 100 KB/s, and the MD sends the reachable spoofed
// sources no more bytes than it received from them (amplification <= 1).
func TestSpoofedSourceFlood(t *testing.T) {
	needRoot(t)
	const duration = 5 * time.Second
	const logLimit = 100 << 10 // bytes/s
	s, call, ctx, hello := floodSetup(t, 0)
	var payloads [][]byte
	for range 64 {
		payloads = append(payloads, freshHello(hello), stunBinding())
	}
	raw, err := newRawSender(s.atk.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.close()
	// What comes back to the reachable spoofed range.
	back, err := s.atk.NS.ListenUDP(netip.IPv4Unspecified(), 40000)
	if err != nil {
		t.Fatal(err)
	}
	var backBytes, backPkts atomic.Int64
	var rwg sync.WaitGroup
	rwg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			backBytes.Add(int64(n))
			backPkts.Add(1)
		}
	})
	defer func() { back.Close(); rwg.Wait() }()

	m := startMedia(call...)
	defer m.stop()
	time.Sleep(1200 * time.Millisecond)
	mdBody0, _ := s.mdMetrics()
	mdLog0, kdLog0 := fileSize(s.mdProc.Log), fileSize(s.kdProc.Log)
	before := s.daemonStats()

	var reachBytes atomic.Int64
	f := startFlood(raw, 0, func(i int) (netip.AddrPort, []byte) {
		p := payloads[i%len(payloads)]
		if i%8 == 0 {
			reachBytes.Add(int64(len(p)))
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 255, byte(1 + rand.IntN(254))}), 40000), p
		}
		src := netip.AddrFrom4([4]byte{198, 19, byte(rand.IntN(255)), byte(1 + rand.IntN(254))})
		return netip.AddrPortFrom(src, uint16(1024+rand.IntN(60000))), p
	})
	floodStart := time.Now()
	time.Sleep(300 * time.Millisecond)
	lat, errs := s.joinStaggered(ctx, s.endpoints(1, 0, 10), 250*time.Millisecond, 2*time.Second)
	during := s.daemonStats()
	time.Sleep(time.Until(floodStart.Add(duration)))
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	floodEnd := time.Now()
	time.Sleep(time.Second) // what the daemons still log about it
	window := time.Since(floodStart).Seconds()
	mdRate := float64(fileSize(s.mdProc.Log)-mdLog0) / window
	kdRate := float64(fileSize(s.kdProc.Log)-kdLog0) / window
	for _, err := range m.stop() {
		t.Errorf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	l := account(call, call, floodStart, floodEnd)
	mdBody1, _ := s.mdMetrics()
	after := s.daemonStats()

	sent := f.pkts.Load()
	t.Logf("flood: %d packets (%.0f/s), %d bytes to the reachable spoofed range", sent, float64(sent)/floodEnd.Sub(floodStart).Seconds(), reachBytes.Load())
	t.Logf("before: %s", before)
	t.Logf("during: %s", during)
	t.Logf("after:  %s", after)
	t.Logf("log growth: mdfast %.1f KB/s, keydist %.1f KB/s", mdRate/1024, kdRate/1024)
	t.Logf("back to the reachable spoofed range: %d packets, %d bytes", backPkts.Load(), backBytes.Load())
	stun0, _ := sumMatching(mdBody0, "stun")
	stun1, lines := sumMatching(mdBody1, "stun")
	t.Logf("mdfast metrics naming stun: %.0f -> %.0f %s", stun0, stun1, strings.Join(lines, " "))
	t.Logf("established call during the flood: %v", l)
	// Where datagrams were lost: the MD's slow-path counters, and the
	// kernel's UDP counters in each namespace (RcvbufErrors: the socket's
	// receive queue overflowed before the MD could read).
	for _, ln := range strings.Split(mdBody1, "\n") {
		if (strings.Contains(ln, "slow") || strings.Contains(ln, "drop")) && !strings.HasPrefix(ln, "#") && !strings.HasSuffix(ln, " 0") {
			t.Logf("mdfast: %s", ln)
		}
	}
	for _, n := range []*node{s.md, s.ep, s.kd} {
		out, _ := exec.Command("ip", "netns", "exec", n.NS.Name, "cat", "/proc/net/snmp").Output()
		for _, ln := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(ln, "Udp:") {
				t.Logf("kernel %s: %s", n.NS.Name, ln)
			}
		}
	}
	checkJoins(t, lat, errs, time.Second)
	if l.lost != 0 || l.expected == 0 {
		t.Errorf("the established call lost media during the flood: %v", l)
	}
	if mdRate > logLimit {
		t.Errorf("mdfast logged %.1f KB/s during the flood (goal: < %d KB/s)", mdRate/1024, logLimit>>10)
	}
	if kdRate > logLimit {
		t.Errorf("keydist logged %.1f KB/s during the flood (goal: < %d KB/s)", kdRate/1024, logLimit>>10)
	}
	if amp := float64(backBytes.Load()) / float64(max(1, reachBytes.Load())); amp > 1 {
		t.Errorf("amplification: the MD sent spoofed sources %d bytes for %d received (factor %.2f, goal <= 1)", backBytes.Load(), reachBytes.Load(), amp)
	}
	if sent < 10000 {
		t.Errorf("the attacker sent only %d packets in %v: the test did not flood", sent, duration)
	}
}
