package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
	"github.com/mdfast/mdfast/bench/internal/payload"
	"github.com/mdfast/mdfast/bench/internal/procstat"
	"github.com/mdfast/mdfast/bench/internal/stats"
	"github.com/mdfast/mdfast/internal/double"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/udpbatch"
)

// RTP payload types of the two phases: receivers count only MeasuredPT.
const (
	MeasuredPT = 96
	WarmupPT   = 97
)

// MaxStreams bounds Config.Streams (mdfast tracks 64 SSRCs per sender).
const MaxStreams = 32

// StreamSSRC is the SSRC of stream k of an endpoint whose first SSRC is
// base.
func StreamSSRC(base uint32, k int) uint32 { return base + uint32(k)<<16 }

const (
	rtpHeaderLen = 12
	tagLen       = 16
	// firstSeq makes every stream's RTP sequence number wrap early in
	// the run, so the ROC handling of the forwarder is exercised.
	firstSeq = 65000
	// warmupRate is the per-sender rate of the warm-up phase.
	warmupRate = 200
)

// Config configures a Run.
type Config struct {
	// Keys are the endpoints; all of them receive, the first Senders send.
	Keys *benchkeys.File
	// Senders is how many endpoints send (1..len(Keys.Endpoints)).
	Senders int
	// Rate is the packets per second of each sender; 0 sends as fast as
	// possible (the high-rate mode).
	Rate float64
	// Burst sends packets in bursts of Burst at Rate/Burst bursts per
	// second (the video pattern); 0 or 1 spaces them evenly.
	Burst int
	// Payload is the RTP payload size (at least payload.HeaderLen).
	Payload int
	// Streams is the SSRCs each sender sends, in turn (default 1; at most
	// MaxStreams). At high rates, several streams keep each SSRC's
	// sequence numbers from wrapping faster than a forwarder's ROC
	// estimate (RFC 3711 appendix A) can follow across a burst of loss.
	Streams int
	// Warmup, Duration and Drain are the phases: warm-up traffic,
	// measured traffic, and the wait for packets still in flight.
	Warmup, Duration, Drain time.Duration
	// Sample verifies one in Sample received packets (default 1: all).
	Sample int
	// Batch is the sendmmsg/recvmmsg batch (default 64).
	Batch int
	// SocketBuffer sets SO_RCVBUF/SO_SNDBUF (default 8 MiB).
	SocketBuffer int
	// MDPid, when not zero, is the forwarder's process: its CPU time over
	// the measured phase is reported. MDCore, when not negative, is the
	// core it is pinned to: that core's busy time is reported too.
	MDPid  int
	MDCore int
	// MDPids are, for a cascade key file (several MDs), the MDs'
	// processes in the order of Keys.Cascade.MDs: each one's CPU time over
	// the measured phase is reported in Result.MDs. With Snapshot, each is
	// sent SIGUSR1 right after its CPU time is read at the start and at
	// the end of the measured phase (bench/mdharness then prints its
	// counters: the driver takes the phase's forwarded packets from them).
	MDPids   []int
	Snapshot bool
	// Reflected says the forwarder is the reflector (bench/reflector),
	// which sends the senders' datagrams on unchanged: receivers open
	// them with the sender's client_write keys instead of their own
	// server_write keys. Single-layer key files only.
	Reflected bool
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Result is what a Run measured.
type Result struct {
	// Profile is the key file's SRTP protection profile
	// (benchkeys.Profile or benchkeys.ProfileDouble).
	Profile   string `json:"profile"`
	Endpoints int    `json:"endpoints"`
	Senders   int    `json:"senders"`
	// Fanout is the receivers of each packet (everyone else).
	Fanout int `json:"fanout"`
	// Seconds is the measured phase's length.
	Seconds float64 `json:"seconds"`
	// Sent counts measured packets sent; SendErrors datagrams the kernel
	// refused. Expected is Sent × Fanout.
	Sent       uint64 `json:"sent"`
	SendErrors uint64 `json:"send_errors"`
	Expected   uint64 `json:"expected"`
	// Received counts measured packets received (from their headers);
	// Unknown datagrams that were not ours; Duplicates repeated indices.
	Received   uint64 `json:"received"`
	Unknown    uint64 `json:"unknown"`
	Duplicates uint64 `json:"duplicates"`
	// Verified counts sampled packets that decrypted and matched octet for
	// octet; VerifyErrors those that did not (FirstError describes one).
	Verified     uint64 `json:"verified"`
	VerifyErrors uint64 `json:"verify_errors"`
	FirstError   string `json:"first_error,omitempty"`
	// InputPPS is the measured packets per second sent to the forwarder;
	// OfferedPPS is InputPPS × Fanout (what a lossless forwarder would
	// deliver); ForwardedPPS what was received per second.
	InputPPS     float64 `json:"input_pps"`
	OfferedPPS   float64 `json:"offered_pps"`
	ForwardedPPS float64 `json:"forwarded_pps"`
	// Loss is 1 - Received/Expected (0 when nothing was expected).
	Loss float64 `json:"loss"`
	// Latency is send-to-receive time through the forwarder (sampled).
	Latency stats.Summary `json:"latency"`
	// JitterUs is the mean RFC 3550 jitter over the streams, µs.
	JitterUs float64 `json:"jitter_us"`
	// SendBursts counts the senders' bursts in the measured phase: the
	// packets a sender found due when its pacer woke it (or a full batch,
	// flat out), handed to sendmmsg together, so they reach the forwarder
	// back to back. Sent / SendBursts is the mean burst; SendBurstMax the
	// largest. A paced step should show bursts of a few packets: bigger
	// ones queue in the forwarder and show in its latency as the
	// generator's doing.
	SendBursts   uint64 `json:"send_bursts"`
	SendBurstMax int    `json:"send_burst_max"`
	// MDCPUSeconds is the forwarder's CPU time over the measured phase;
	// MDCPU that divided by Seconds (1.0 = one core busy). CoreCPU is
	// the busy fraction of its core (MDCore), softirq included; -1 when
	// not measured.
	MDCPUSeconds float64 `json:"md_cpu_seconds"`
	MDCPU        float64 `json:"md_cpu"`
	CoreCPU      float64 `json:"core_cpu"`
	// Handshake is what the handshakes before the run measured (a
	// handshake key file only; set by the caller of Handshake).
	Handshake *HandshakeResult `json:"handshake,omitempty"`
	// MDs is, for a cascade key file, per MD (in the order of
	// Cascade.MDs) what its members did and its CPU time.
	MDs []MDResult `json:"mds,omitempty"`
}

// MDResult is what the generator measured of one MD of a cascade.
type MDResult struct {
	// Members and Senders are its endpoints and how many of them send.
	Members int `json:"members"`
	Senders int `json:"senders"`
	// SentAll counts the packets its senders sent in every phase (the
	// warm-up included): every one of them should cross each link from
	// this MD once. Sent counts the measured phase's.
	SentAll uint64 `json:"sent_all"`
	Sent    uint64 `json:"sent"`
	// Received counts the measured packets its members received.
	Received uint64 `json:"received"`
	// CPUSeconds and CPU are the MD process's CPU time over the measured
	// phase and that per second (-1 when not measured: no MDPids).
	CPUSeconds float64 `json:"md_cpu_seconds"`
	CPU        float64 `json:"md_cpu"`
}

func (c *Config) check() error {
	if c.Keys == nil || len(c.Keys.Endpoints) < 2 {
		return errors.New("gen: need at least two endpoints")
	}
	if c.Senders < 1 || c.Senders > len(c.Keys.Endpoints) {
		return fmt.Errorf("gen: %d senders of %d endpoints", c.Senders, len(c.Keys.Endpoints))
	}
	if c.Payload < payload.HeaderLen || c.Payload > 1400 {
		return fmt.Errorf("gen: payload %d octets, want %d..1400", c.Payload, payload.HeaderLen)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("gen: rate %v", c.Rate)
	}
	if c.Duration <= 0 {
		return errors.New("gen: no measured duration")
	}
	if len(c.MDPids) != 0 && len(c.MDPids) != c.Keys.MDCount() {
		return fmt.Errorf("gen: %d MD processes for %d MDs", len(c.MDPids), c.Keys.MDCount())
	}
	if c.Reflected && c.Keys.Cascade != nil {
		return errors.New("gen: the reflector runs one-MD key files only")
	}
	if c.Reflected && c.Keys.IsDouble() {
		return errors.New("gen: the reflector runs single-layer key files only")
	}
	if c.Streams < 1 {
		c.Streams = 1
	}
	if c.Streams > MaxStreams {
		return fmt.Errorf("gen: %d streams per sender, at most %d", c.Streams, MaxStreams)
	}
	if c.Burst < 1 {
		c.Burst = 1
	}
	if c.Sample < 1 {
		c.Sample = 1
	}
	if c.Batch <= 0 {
		c.Batch = udpbatch.DefaultBatchSize
	}
	if c.SocketBuffer <= 0 {
		c.SocketBuffer = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// clock is the one monotonic clock of senders and receivers.
type clock struct{ base time.Time }

func (c clock) now() int64 { return int64(time.Since(c.base)) }

// Run opens the endpoints' sockets in the current network namespace, runs
// the warm-up, measured and drain phases and returns what was measured.
// Cancelling ctx stops it early with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	eps := cfg.Keys.Endpoints
	conns := make([]*udpbatch.Conn, len(eps))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, e := range eps {
		c, err := udpbatch.Listen(ctx, "udp4", e.Addr.String(), udpbatch.Options{
			BatchSize: cfg.Batch, RecvBuffer: cfg.SocketBuffer, SendBuffer: cfg.SocketBuffer,
		})
		if err != nil {
			return nil, fmt.Errorf("gen: endpoint %d: %w", i, err)
		}
		conns[i] = c
	}
	// Stream index i*Streams+k is stream k of endpoint i.
	ssrcs := make(map[uint32]int, len(eps)*cfg.Streams)
	for i, e := range eps {
		for k := range cfg.Streams {
			ssrc := StreamSSRC(e.SSRC, k)
			if _, dup := ssrcs[ssrc]; dup {
				return nil, fmt.Errorf("gen: SSRC %#x used twice", ssrc)
			}
			ssrcs[ssrc] = i*cfg.Streams + k
		}
	}
	clk := clock{base: time.Now()}

	recvs := make([]*receiver, len(eps))
	var rwg sync.WaitGroup
	for i := range eps {
		r, err := newReceiver(cfg.Keys, i, conns[i], ssrcs, len(eps)*cfg.Streams, cfg, clk)
		if err != nil {
			return nil, err
		}
		recvs[i] = r
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			r.run()
		}()
	}
	senders := make([]*sender, cfg.Senders)
	for i := range senders {
		s, err := newSender(cfg.Keys, i, conns[i], cfg, clk)
		if err != nil {
			return nil, err
		}
		senders[i] = s
		defer s.pace.Close()
	}

	// Warm-up, then the measured phase, both with every sender in step.
	runPhase := func(pt uint8, rate float64, d time.Duration) {
		var wg sync.WaitGroup
		start := time.Now()
		for _, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.run(ctx, pt, rate, start, d)
			}()
		}
		wg.Wait()
	}
	if cfg.Warmup > 0 {
		wr := warmupRate
		if cfg.Rate > 0 {
			wr = int(min(cfg.Rate, warmupRate))
		}
		runPhase(WarmupPT, float64(wr), cfg.Warmup)
		// Let warm-up packets clear before measuring.
		sleepCtx(ctx, 50*time.Millisecond)
	}
	cpu0, err := mdCPU(cfg.MDPid)
	if err != nil {
		return nil, err
	}
	core0 := coreBusy(cfg.MDCore)
	cpus0, err := cfg.mdsCPU()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	runPhase(MeasuredPT, cfg.Rate, cfg.Duration)
	elapsed := time.Since(t0)
	cpu1, err := mdCPU(cfg.MDPid)
	if err != nil {
		return nil, err
	}
	core1 := coreBusy(cfg.MDCore)
	cpus1, err := cfg.mdsCPU()
	if err != nil {
		return nil, err
	}
	sleepCtx(ctx, cfg.Drain)
	for _, c := range conns {
		c.Close()
	}
	rwg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}

	res := &Result{Profile: cfg.Keys.Profile, Endpoints: len(eps), Senders: cfg.Senders, Fanout: len(eps) - 1, Seconds: elapsed.Seconds()}
	for _, s := range senders {
		res.Sent += s.sent
		res.SendErrors += s.errors
		res.SendBursts += s.bursts
		res.SendBurstMax = max(res.SendBurstMax, s.burstMax)
	}
	res.Expected = res.Sent * uint64(res.Fanout)
	var lat stats.Latency
	var jsum float64
	var jn int
	for _, r := range recvs {
		res.Received += r.received
		res.Unknown += r.unknown
		res.Duplicates += r.dups
		res.Verified += r.verified
		res.VerifyErrors += r.verifyErrors
		if res.FirstError == "" && r.firstError != "" {
			res.FirstError = r.firstError
		}
		lat.Merge(&r.lat)
		for i := range r.streams {
			if r.streams[i].jitterSamples > 1 {
				jsum += float64(r.streams[i].jitter.Value())
				jn++
			}
		}
	}
	res.Latency = lat.Summarize()
	if jn > 0 {
		res.JitterUs = jsum / float64(jn) / 1e3
	}
	secs := elapsed.Seconds()
	res.InputPPS = float64(res.Sent) / secs
	res.OfferedPPS = float64(res.Expected) / secs
	res.ForwardedPPS = float64(res.Received) / secs
	if res.Expected > 0 {
		res.Loss = max(0, 1-float64(res.Received)/float64(res.Expected))
	}
	res.MDCPUSeconds, res.MDCPU, res.CoreCPU = -1, -1, -1
	if cfg.MDPid > 0 {
		res.MDCPUSeconds = (cpu1 - cpu0).Seconds()
		res.MDCPU = res.MDCPUSeconds / secs
	}
	if core0 >= 0 && core1 >= 0 {
		res.CoreCPU = (core1 - core0).Seconds() / secs
	}
	if cfg.Keys.Cascade != nil {
		res.MDs = make([]MDResult, cfg.Keys.MDCount())
		for i := range res.MDs {
			m := &res.MDs[i]
			m.CPUSeconds, m.CPU = -1, -1
			if cpus0 != nil {
				m.CPUSeconds = (cpus1[i] - cpus0[i]).Seconds()
				m.CPU = m.CPUSeconds / secs
			}
		}
		for i := range eps {
			m := &res.MDs[eps[i].MD]
			m.Members++
			m.Received += recvs[i].received
			if i < len(senders) {
				m.Senders++
				m.Sent += senders[i].sent
				m.SentAll += senders[i].sentAll
			}
		}
	}
	return res, nil
}

// mdsCPU reads the CPU time of every MDPids process and, with Snapshot,
// then sends each SIGUSR1 (nil without MDPids).
func (c *Config) mdsCPU() ([]time.Duration, error) {
	if len(c.MDPids) == 0 {
		return nil, nil
	}
	out := make([]time.Duration, len(c.MDPids))
	for i, pid := range c.MDPids {
		d, err := mdCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
		if c.Snapshot {
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				return nil, fmt.Errorf("gen: snapshot of MD %d (pid %d): %w", i, pid, err)
			}
		}
	}
	return out, nil
}

func mdCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, nil
	}
	d, err := procstat.CPUTime(pid)
	if err != nil {
		return 0, fmt.Errorf("gen: forwarder CPU time: %w", err)
	}
	return d, nil
}

func coreBusy(cpu int) time.Duration {
	if cpu < 0 {
		return -1
	}
	d, err := procstat.CoreBusy(cpu)
	if err != nil {
		return -1
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sender is one sending endpoint.
type sender struct {
	conn    *udpbatch.Conn
	keys    *srtpfast.Keys
	dbl     *double.Endpoint // a double file: seals both layers instead of keys
	sc      srtpfast.Scratch
	ssrcs   []uint32
	seqs    []uint64 // per stream: packets sent so far, all phases (the payload's Seq)
	next    int      // stream of the next packet
	dst     netip.AddrPort
	cfg     *Config
	clk     clock
	plain   []byte
	msgs    []udpbatch.Message
	bufs    [][]byte
	pace    *pacer
	sent    uint64 // measured phase only
	sentAll uint64 // every phase
	errors  uint64
	// bursts and burstMax: Result.SendBursts and SendBurstMax.
	bursts   uint64
	burstMax int
}

func newSender(kf *benchkeys.File, i int, c *udpbatch.Conn, cfg Config, clk clock) (*sender, error) {
	e := &kf.Endpoints[i]
	var k *srtpfast.Keys
	var dbl *double.Endpoint
	var err error
	if kf.IsDouble() {
		dbl, err = newDouble(kf, i)
	} else {
		k, err = e.ClientKeys(kf.SRTPProfile())
	}
	if err != nil {
		return nil, fmt.Errorf("gen: endpoint %s: %w", e.Addr, err)
	}
	s := &sender{
		conn: c, keys: k, dbl: dbl, dst: kf.MDOf(i), cfg: &cfg, clk: clk,
		ssrcs: make([]uint32, cfg.Streams), seqs: make([]uint64, cfg.Streams),
		plain: make([]byte, rtpHeaderLen+cfg.Payload),
		msgs:  make([]udpbatch.Message, cfg.Batch),
		bufs:  make([][]byte, cfg.Batch),
	}
	for i := range s.bufs {
		s.bufs[i] = make([]byte, 0, rtpHeaderLen+cfg.Payload+double.EndpointOverhead)
	}
	for k := range s.ssrcs {
		s.ssrcs[k] = StreamSSRC(e.SSRC, k)
	}
	if s.pace, err = newPacer(); err != nil {
		return nil, fmt.Errorf("gen: endpoint %s: %w", e.Addr, err)
	}
	return s, nil
}

// run sends phase pt at rate (0: flat out) from start for d.
func (s *sender) run(ctx context.Context, pt uint8, rate float64, start time.Time, d time.Duration) {
	var done uint64
	burst := uint64(s.cfg.Burst)
	base := monoOf(start)
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= d {
			return
		}
		n := len(s.msgs)
		if rate > 0 {
			due := uint64(el.Seconds()*rate/float64(burst)+1) * burst // first burst at t=0
			if due <= done {
				// Wait until the next burst is due, at most 2 ms (ctx).
				next := time.Duration(float64(done/burst) * float64(burst) / rate * 1e9)
				if err := s.pace.waitUntil(base + int64(min(next, el+2*time.Millisecond))); err != nil {
					s.cfg.Logger.Error("gen: pacing", "err", err)
					return
				}
				continue
			}
			n = int(min(due-done, uint64(n)))
		}
		done += uint64(n)
		s.sendBatch(pt, n)
		if rate == 0 {
			// Flat out on one core: let the receivers drain their
			// sockets between batches.
			runtime.Gosched()
		}
	}
}

func (s *sender) sendBatch(pt uint8, n int) {
	if pt == MeasuredPT {
		s.bursts++
		s.burstMax = max(s.burstMax, n)
	}
	now := s.clk.now()
	for i := range n {
		st := s.next
		s.next = (s.next + 1) % len(s.ssrcs)
		seq, ssrc := s.seqs[st], s.ssrcs[st]
		s.seqs[st]++
		h := s.plain[:rtpHeaderLen]
		h[0] = 0x80
		h[1] = pt
		binary.BigEndian.PutUint16(h[2:], uint16(firstSeq+seq))
		binary.BigEndian.PutUint32(h[4:], uint32(seq*960))
		binary.BigEndian.PutUint32(h[8:], ssrc)
		// Cannot fail: the size was checked in Config.check.
		_ = payload.Fill(s.plain[rtpHeaderLen:], payload.Info{Stream: ssrc, Seq: seq, SendNanos: now})
		roc := uint32((firstSeq + seq) >> 16)
		var out []byte
		var err error
		if s.dbl != nil {
			out, err = s.dbl.Seal(s.bufs[i][:0], s.plain, roc)
		} else {
			out, err = s.keys.SealRTP(&s.sc, s.bufs[i][:0], s.plain, roc)
		}
		if err != nil {
			s.errors++ // cannot happen with our own headers; counted anyway
			out = nil
		}
		s.msgs[i] = udpbatch.Message{Buf: out, Addr: s.dst}
	}
	ms := s.msgs[:n]
	for len(ms) > 0 {
		k, err := s.conn.WriteBatch(ms)
		if pt == MeasuredPT {
			s.sent += uint64(k)
		}
		s.sentAll += uint64(k)
		if err == nil {
			break
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		// ms[k] was refused: count it and go on with the rest.
		s.errors++
		ms = ms[k+1:]
	}
}

// stream is what a receiver tracks of one sender.
type stream struct {
	highest       uint64 // highest packet index seen (RTP seq + 65536·ROC)
	have          bool
	seen          []uint64 // bitmap of the last window indices, for duplicates
	jitter        stats.Jitter
	jitterSamples int
}

const dupWindow = 4096

// index extends a 16-bit sequence number (RFC 3711 appendix A) and reports
// whether it was seen before (within dupWindow).
func (st *stream) index(seq uint16) (idx uint64, dup bool) {
	if !st.have {
		st.have, st.highest = true, uint64(seq)
		st.mark(uint64(seq))
		return uint64(seq), false
	}
	idx = st.highest&^0xffff | uint64(seq)
	switch {
	case idx+0x8000 < st.highest:
		idx += 0x10000
	case idx > st.highest+0x8000 && idx >= 0x10000:
		idx -= 0x10000
	}
	if idx+dupWindow <= st.highest {
		return idx, false // too old to tell
	}
	if idx > st.highest {
		for i := st.highest + 1; i < idx && i < st.highest+1+dupWindow; i++ {
			st.seen[(i/64)%uint64(len(st.seen))] &^= 1 << (i % 64)
		}
		st.highest = idx
	} else if st.seen[(idx/64)%uint64(len(st.seen))]&(1<<(idx%64)) != 0 {
		return idx, true
	}
	st.mark(idx)
	return idx, false
}

func (st *stream) mark(i uint64) { st.seen[(i/64)%uint64(len(st.seen))] |= 1 << (i % 64) }

// receiver is one endpoint's receiving side.
type receiver struct {
	conn    *udpbatch.Conn
	dec     *srtp.Context    // single-layer files
	decs    []*srtp.Context  // Reflected: per sending endpoint, its client_write context (used instead of dec)
	dbl     *double.Endpoint // double files: opens both layers instead of dec
	ssrcs   map[uint32]int
	streams []stream
	cfg     *Config
	clk     clock
	self    int // the endpoint's index: its own streams are not expected back

	n                       uint64
	received, unknown, dups uint64
	verified, verifyErrors  uint64
	firstError              string
	lat                     stats.Latency
	hdr                     rtp.Header
	out                     []byte
}

func newReceiver(kf *benchkeys.File, self int, c *udpbatch.Conn, ssrcs map[uint32]int, n int, cfg Config, clk clock) (*receiver, error) {
	e := &kf.Endpoints[self]
	var dec *srtp.Context
	var dbl *double.Endpoint
	var err error
	if kf.IsDouble() {
		dbl, err = newDouble(kf, self)
	} else {
		dec, err = e.ServerContext(srtp.SRTPNoReplayProtection())
	}
	if err != nil {
		return nil, fmt.Errorf("gen: endpoint %s: %w", e.Addr, err)
	}
	r := &receiver{conn: c, dec: dec, dbl: dbl, ssrcs: ssrcs, streams: make([]stream, n), cfg: &cfg, clk: clk,
		self: self, out: make([]byte, 0, 2048)}
	if cfg.Reflected {
		r.decs = make([]*srtp.Context, cfg.Senders)
		for j := range r.decs {
			if r.decs[j], err = kf.Endpoints[j].ClientContext(srtp.SRTPNoReplayProtection()); err != nil {
				return nil, fmt.Errorf("gen: endpoint %s: %w", kf.Endpoints[j].Addr, err)
			}
		}
	}
	for i := range r.streams {
		r.streams[i].seen = make([]uint64, dupWindow/64*2)
	}
	return r, nil
}

func (r *receiver) run() {
	ms := make([]udpbatch.Message, r.cfg.Batch)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := r.conn.ReadBatch(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			r.cfg.Logger.Debug("gen: receive", "err", err)
			continue
		}
		now := r.clk.now()
		for i := range n {
			r.handle(ms[i].Buf[:ms[i].N], now)
			ms[i].Buf = ms[i].Buf[:cap(ms[i].Buf)]
		}
	}
}

func (r *receiver) handle(b []byte, now int64) {
	if len(b) < rtpHeaderLen+tagLen || b[0]>>6 != 2 {
		r.unknown++
		return
	}
	pt := b[1] & 0x7f
	ssrc := binary.BigEndian.Uint32(b[8:])
	si, ok := r.ssrcs[ssrc]
	if !ok || si/r.cfg.Streams == r.self || (pt != MeasuredPT && pt != WarmupPT) {
		r.unknown++
		return
	}
	st := &r.streams[si]
	idx, dup := st.index(binary.BigEndian.Uint16(b[2:]))
	if dup {
		r.dups++
		return
	}
	if pt != MeasuredPT {
		return
	}
	r.received++
	r.n++
	if r.n%uint64(r.cfg.Sample) != 0 {
		return
	}
	out, ok := r.decrypt(b, ssrc, idx, si/r.cfg.Streams)
	if !ok {
		return
	}
	info, err := payload.Check(out[len(out)-r.cfg.Payload:])
	switch {
	case err != nil:
		r.fail(fmt.Sprintf("payload from SSRC %#x: %v", ssrc, err))
		return
	case len(out) != rtpHeaderLen+r.cfg.Payload || r.hdr.PayloadType != MeasuredPT:
		r.fail(fmt.Sprintf("packet from SSRC %#x: %d octets, payload type %d", ssrc, len(out), r.hdr.PayloadType))
		return
	case info.Stream != ssrc || uint16(firstSeq+info.Seq) != r.hdr.SequenceNumber || uint64(firstSeq)+info.Seq != idx:
		r.fail(fmt.Sprintf("packet from SSRC %#x: payload says stream %#x seq %d, header seq %d index %d",
			ssrc, info.Stream, info.Seq, r.hdr.SequenceNumber, idx))
		return
	}
	r.verified++
	r.lat.Add(time.Duration(now - info.SendNanos))
	st.jitter.Update(info.SendNanos, now)
	st.jitterSamples++
}

// decrypt opens a received packet with the endpoint's keys, both layers of
// a double one, and returns the plaintext header and payload (r.hdr set).
func (r *receiver) decrypt(b []byte, ssrc uint32, idx uint64, from int) ([]byte, bool) {
	roc := uint32(idx >> 16)
	if r.dbl != nil {
		// No SEQ rewrites: the original ROC is the one we tracked.
		o, err := r.dbl.Open(b, roc, roc)
		if err != nil {
			r.fail(fmt.Sprintf("double open from SSRC %#x: %v", ssrc, err))
			return nil, false
		}
		// The original header and the payload, as pion's output is.
		out := append(append(r.out[:0], o.Header...), o.Payload...)
		r.hdr.PayloadType = o.Header[1] & 0x7f
		r.hdr.SequenceNumber = binary.BigEndian.Uint16(o.Header[2:])
		return out, true
	}
	// pion estimates the ROC from the packets it decrypts; with sampling
	// it does not see them all, so tell it the ROC we tracked.
	dec := r.dec
	if r.decs != nil {
		if from >= len(r.decs) {
			r.fail(fmt.Sprintf("reflected packet from SSRC %#x of endpoint %d, which does not send", ssrc, from))
			return nil, false
		}
		dec = r.decs[from]
	}
	dec.SetROC(ssrc, roc)
	out, err := dec.DecryptRTP(r.out[:0], b, &r.hdr)
	if err != nil {
		r.fail(fmt.Sprintf("decrypt from SSRC %#x: %v", ssrc, err))
		return nil, false
	}
	return out, true
}

// newDouble is endpoint i's RFC 8723 endpoint side (package double).
func newDouble(kf *benchkeys.File, i int) (*double.Endpoint, error) {
	k, err := kf.DoubleKeys(i)
	if err != nil {
		return nil, err
	}
	return double.New(k)
}

func (r *receiver) fail(msg string) {
	r.verifyErrors++
	if r.firstError == "" {
		r.firstError = msg
	}
}
