package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/afxdp"
	"github.com/mdfast/mdfast/internal/dwell"
	"github.com/mdfast/mdfast/internal/fairq"
	"github.com/mdfast/mdfast/internal/frame"
	"github.com/mdfast/mdfast/internal/neigh"
	"github.com/mdfast/mdfast/internal/slowpkt"
	"github.com/mdfast/mdfast/internal/udpbatch"
)

// Mode is how the data plane receives and sends media.
type Mode int

// Modes.
const (
	// ModeAuto tries XDP native, then XDP generic, then the socket
	// fallback, logging the reason for each step down; without an
	// interface it is the socket mode, with one that does not exist an
	// error.
	ModeAuto Mode = iota
	// ModeXDPNative: the classifier in the driver, AF_XDP sockets.
	ModeXDPNative
	// ModeXDPGeneric: the classifier in the generic (skb) hook, AF_XDP
	// sockets in copy mode.
	ModeXDPGeneric
	// ModeSocket: recvmmsg/sendmmsg on an SO_REUSEPORT group.
	ModeSocket
)

// String returns "auto", "xdp-native", "xdp-generic" or "socket".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeXDPNative:
		return "xdp-native"
	case ModeXDPGeneric:
		return "xdp-generic"
	case ModeSocket:
		return "socket"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses the names String returns.
func ParseMode(s string) (Mode, error) {
	for m := ModeAuto; m <= ModeSocket; m++ {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("dataplane: unknown mode %q (auto, xdp-native, xdp-generic, socket)", s)
}

// Config configures a Dataplane. Zero fields take the documented defaults.
type Config struct {
	// Mode selects XDP or the socket fallback (default ModeAuto).
	Mode Mode
	// Interface is the NIC (required for the XDP modes).
	Interface string
	// Ports are the media ports (at least one).
	Ports []uint16
	// Address is the address the sockets bind to (the slow-path sockets in
	// XDP mode, the workers' in socket mode); default all addresses.
	Address netip.Addr
	// Queues is the number of NIC queues served, 0..Queues-1, one worker
	// each (default 1). In socket mode it is the number of sockets (and
	// workers) per media port.
	Queues int
	// XSKMode is the AF_XDP bind mode (default afxdp.ModeAuto: zero-copy
	// when the driver offers it).
	XSKMode afxdp.Mode
	// NumFrames (default 4096) and FrameSize (2048 or 4096) size each
	// queue's UMEM; RingSize sizes its four rings (power of two, default
	// 2048).
	NumFrames, FrameSize, RingSize uint32
	// BatchSize is the receive and transmit batch (default 64).
	BatchSize int
	// BusyPoll enables SO_PREFER_BUSY_POLL (AF_XDP) with BusyPollUsec
	// (SO_BUSY_POLL, also on the sockets) and BusyPollBudget.
	BusyPoll       bool
	BusyPollUsec   int
	BusyPollBudget int
	// CPUs pins worker i to CPUs[i % len(CPUs)]; empty means no pinning.
	CPUs []int
	// UDPChecksumIPv4 computes UDP checksums on IPv4 frames sent through
	// AF_XDP (IPv6 always has them).
	UDPChecksumIPv4 bool
	// SocketBuffer sets SO_RCVBUF/SO_SNDBUF of the sockets when non-zero.
	SocketBuffer int
	// SlowQueue is the capacity of the slow path's priority lane (default
	// 1024); the other lane is a fair queue of 16 datagrams for each of
	// at most 4,096 source prefixes.
	SlowQueue int
	// Poll is how long an idle AF_XDP worker sleeps in poll (default 50 ms).
	// Close and hand-over requests wake it earlier (XDPPort.Wake, through
	// the socket's eventfd), and a worker holding a request it can answer
	// only later sleeps no longer than that (see handover.go): so Poll
	// only bounds how often an idle worker reaps completions and publishes
	// its counters.
	Poll time.Duration
	// Wait is how an AF_XDP worker waits for packets (default WaitPoll)
	// and Spin how long WaitAdaptive spins after the last
	// packet (default DefaultSpin). See XDPPortConfig.
	Wait Wait
	Spin time.Duration
	// NoRxTime makes the XDP program leave out the receive time it puts in
	// front of redirected frames (bpf.Options.NoRxTime): no dwell is
	// measured then.
	NoRxTime bool
	// metaless (tests) makes the ports look for receive times although
	// the program writes none (NoRxTime): what a driver without XDP
	// metadata support gives them.
	metaless bool
	// TxKickFrames kicks TX after every this many datagrams queued within
	// a batch (see WorkerConfig.TxKickFrames); 0, the default, once per
	// batch.
	TxKickFrames int
	// MaxSSRCs, MaxSSRCsPerLink and OpenerIdle: see WorkerConfig.
	MaxSSRCs        int
	MaxSSRCsPerLink int
	OpenerIdle      time.Duration
	// Table is the key table (required).
	Table Table
	// Neighbours resolves next hops for AF_XDP; nil makes the Dataplane run
	// its own neigh.Table on the interface.
	Neighbours Neighbours
	// Logger, default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Table == nil {
		return errors.New("dataplane: no key table")
	}
	if len(c.Ports) == 0 {
		return errors.New("dataplane: no media port")
	}
	for _, p := range c.Ports {
		if p == 0 {
			return errors.New("dataplane: media port 0")
		}
	}
	if c.Queues <= 0 {
		c.Queues = 1
	}
	if c.BatchSize <= 0 {
		c.BatchSize = udpbatch.DefaultBatchSize
	}
	if c.SlowQueue <= 0 {
		c.SlowQueue = 1024
	}
	if c.Poll <= 0 {
		c.Poll = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Dataplane owns the classifier attachment, the sockets, the neighbour
// table (when it made it) and the workers' goroutines.
type Dataplane struct {
	cfg  Config
	mode Mode
	log  *slog.Logger

	cl  *bpf.Classifier
	att *bpf.Attachment
	// nl is a netlink handle in the namespace the XDP mode was opened in,
	// for CheckXDP.
	nl  *netlink.Handle
	nb  *neigh.Table
	nbc context.CancelFunc
	nbw chan struct{}

	ports   []Port
	workers []*Worker
	// hub hands senders' receive state between the workers (handover.go).
	hub *hub
	// sendConns send slow-path replies, by media port.
	sendConns map[uint16]*net.UDPConn
	// kernConns are the XDP modes' slow-path sockets.
	kernConns []*udpbatch.Conn
	slowStats [NumCounters]atomic.Uint64

	slow chan SlowPacket
	// slowPrio is the slow path's priority lane; triage picks what goes
	// there (SetSlowTriage).
	slowPrio chan SlowPacket
	triage   atomic.Pointer[func(b []byte, from, to netip.AddrPort) bool]
	// bulk is the slow path's other lane: served fairly across source
	// prefixes (see pumpBulk).
	bulk               *fairq.Queue[netip.Prefix, SlowPacket]
	pumpStop, pumpDone chan struct{}
	started            bool // start ran: the pump runs
	stop               atomic.Bool
	exited             atomic.Pointer[workerExit]
	wg                 sync.WaitGroup
	slowWG             sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

// New sets up the data plane in the network namespace of the calling
// thread and starts its workers. In ModeAuto it steps down from XDP native
// to XDP generic to sockets, logging why.
func New(cfg Config) (*Dataplane, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var (
		d   *Dataplane
		err error
	)
	switch cfg.Mode {
	case ModeXDPNative, ModeXDPGeneric:
		d, err = openXDP(cfg, cfg.Mode)
	case ModeSocket:
		d, err = openSocket(cfg)
	case ModeAuto:
		if cfg.Interface == "" {
			cfg.Logger.Info("dataplane: auto mode without an interface: socket mode")
			d, err = openSocket(cfg)
			break
		}
		// A named interface that does not exist is a configuration error,
		// not a reason to step down: a misspelt name must not quietly
		// give the socket mode.
		if _, ierr := net.InterfaceByName(cfg.Interface); ierr != nil {
			return nil, fmt.Errorf("dataplane: interface %q: %w", cfg.Interface, ierr)
		}
		for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric} {
			if d, err = openXDP(cfg, m); err == nil {
				break
			}
			cfg.Logger.Warn("dataplane: mode unavailable, stepping down", "mode", m, "reason", err)
		}
		if d == nil {
			d, err = openSocket(cfg)
		}
	default:
		return nil, fmt.Errorf("dataplane: unknown mode %d", int(cfg.Mode))
	}
	if err != nil {
		return nil, privilegeHint(err)
	}
	d.start()
	d.log.Info("dataplane: started", "mode", d.mode, "workers", len(d.workers), "ports", cfg.Ports)
	return d, nil
}

// ErrNoPrivilege wraps a failure to open the data plane for want of the
// process's privileges (not, as the kernel's error may suggest, a
// memory-lock limit).
var ErrNoPrivilege = errors.New("dataplane: not permitted: the XDP modes need CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK (run as root or under deploy/mdfast.service)")

// privilegeHint names the missing privileges when err is a permission
// error: loading BPF without CAP_BPF fails with EPERM, which cilium/ebpf
// reports as a possible memory-lock limit.
func privilegeHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrNoPrivilege, err)
	}
	return err
}

func newDataplane(cfg Config, m Mode) *Dataplane {
	return &Dataplane{
		cfg: cfg, mode: m, log: cfg.Logger,
		sendConns: make(map[uint16]*net.UDPConn),
		hub:       newHub(),
		slow:      make(chan SlowPacket, slowBulkFIFO),
		slowPrio:  make(chan SlowPacket, cfg.SlowQueue),
		bulk:      fairq.New[netip.Prefix, SlowPacket](bulkPerPrefix, bulkPrefixes),
		pumpStop:  make(chan struct{}),
		pumpDone:  make(chan struct{}),
	}
}

// slowBulkFIFO is the Slow channel's capacity: the fair queue in front of
// it (pumpBulk) decides the order, this only smooths the hand-over.
const slowBulkFIFO = 64

func (c *Config) listenAddr(port uint16) (network, addr string) {
	network = "udp"
	host := ""
	if c.Address.IsValid() {
		host = c.Address.String()
		if c.Address.Is4() {
			network = "udp4"
		} else {
			network = "udp6"
		}
	}
	return network, net.JoinHostPort(host, fmt.Sprint(port))
}

// openSocket builds the socket fallback: Queues sockets per media port in
// one SO_REUSEPORT group each, one worker per socket.
func openSocket(cfg Config) (*Dataplane, error) {
	d := newDataplane(cfg, ModeSocket)
	for _, port := range cfg.Ports {
		network, addr := cfg.listenAddr(port)
		for q := range cfg.Queues {
			conn, err := udpbatch.Listen(context.Background(), network, addr, udpbatch.Options{
				BatchSize: cfg.BatchSize, ReusePort: true,
				RecvBuffer: cfg.SocketBuffer, SendBuffer: cfg.SocketBuffer,
				BusyPollMicros: cfg.BusyPollUsec, ReportFragmented: true,
			})
			if err != nil {
				d.teardown()
				return nil, fmt.Errorf("dataplane: socket mode: %w", err)
			}
			if q == 0 {
				d.sendConns[port] = conn.UDPConn()
				growSendBuffer(conn.UDPConn())
			}
			d.addWorker(NewSocketPort(conn, cfg.BatchSize))
		}
	}
	return d, nil
}

// openXDP builds an XDP mode: the classifier attached in mode m, one AF_XDP
// socket and worker per queue, the slow-path kernel sockets and the
// neighbour table.
func openXDP(cfg Config, m Mode) (_ *Dataplane, err error) {
	if cfg.Interface == "" {
		return nil, errors.New("dataplane: XDP needs an interface")
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dataplane: interface %s: %w", cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("dataplane: interface %s has no Ethernet address", cfg.Interface)
	}
	d := newDataplane(cfg, m)
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	slots := uint32(bpf.DefaultQueueSlots)
	if cfg.Queues > int(slots) {
		slots = uint32(cfg.Queues)
	}
	// DTLS and STUN come through the AF_XDP sockets too (the workers hand
	// them to the slow path, see Worker.slow): under a flood they meet the
	// slow path's triage rather than overflowing the kernel socket, which
	// still receives IP fragments and what arrives on a queue without a
	// socket.
	if d.cl, err = bpf.Load(bpf.Options{QueueSlots: slots, Ports: cfg.Ports, SlowToXSK: true, NoRxTime: cfg.NoRxTime}); err != nil {
		return nil, fmt.Errorf("dataplane: %s: %w", m, err)
	}
	bm := bpf.ModeNative
	if m == ModeXDPGeneric {
		bm = bpf.ModeGeneric
	}
	if d.att, err = d.cl.Attach(ifi.Index, bm); err != nil {
		return nil, fmt.Errorf("dataplane: %s: %w", m, err)
	}
	if d.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("dataplane: %s: netlink: %w", m, err)
	}
	// The kernel sockets DTLS and STUN are passed to, read in batches.
	for _, port := range cfg.Ports {
		network, addr := cfg.listenAddr(port)
		conn, err := udpbatch.Listen(context.Background(), network, addr, udpbatch.Options{
			BatchSize: slowBatch, RecvBuffer: cfg.SocketBuffer, ReportFragmented: true,
		})
		if err != nil {
			return nil, fmt.Errorf("dataplane: %s: slow-path socket: %w", m, err)
		}
		growSendBuffer(conn.UDPConn())
		d.kernConns = append(d.kernConns, conn)
		d.sendConns[port] = conn.UDPConn()
	}
	nb := cfg.Neighbours
	if nb == nil {
		if d.nb, err = neigh.New(neigh.Options{Ifindex: ifi.Index, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("dataplane: %s: %w", m, err)
		}
		nb = d.nb
	}
	pcfg := cfg.PortConfig(ifi.HardwareAddr)
	for q := range cfg.Queues {
		sock, err := cfg.OpenQueue(ifi.Index, q)
		if err != nil {
			return nil, fmt.Errorf("dataplane: %s: %w", m, err)
		}
		d.addWorker(NewXDPPort(sock, nb, pcfg))
		if err := d.cl.RegisterSocket(uint32(q), sock.FD()); err != nil {
			return nil, fmt.Errorf("dataplane: %s: %w", m, err)
		}
	}
	return d, nil
}

// PortConfig is the XDPPortConfig of cfg's ports on an interface with
// Ethernet address mac.
func (cfg *Config) PortConfig(mac net.HardwareAddr) XDPPortConfig {
	return XDPPortConfig{
		MAC: frame.MAC(mac), UDPChecksumIPv4: cfg.UDPChecksumIPv4,
		Poll: cfg.Poll, Batch: cfg.BatchSize, Wait: cfg.Wait, Spin: cfg.Spin,
		NoRxTime: cfg.NoRxTime && !cfg.metaless,
	}
}

// OpenQueue opens the AF_XDP socket of queue q of interface ifindex with
// cfg's bind mode, UMEM and ring sizes and busy-poll settings (the
// daemon's, and the bench reflector's, which must do the same I/O).
func (cfg *Config) OpenQueue(ifindex, q int) (*afxdp.Socket, error) {
	sock, err := afxdp.Open(afxdp.Config{
		Ifindex: ifindex, QueueID: uint32(q), Mode: cfg.XSKMode,
		NumFrames: cfg.NumFrames, FrameSize: cfg.FrameSize,
		FillRingSize: cfg.RingSize, CompletionRingSize: cfg.RingSize,
		RxRingSize: cfg.RingSize, TxRingSize: cfg.RingSize,
		PreferBusyPoll: cfg.BusyPoll, BusyPollUsec: cfg.BusyPollUsec, BusyPollBudget: cfg.BusyPollBudget,
	})
	if err != nil {
		return nil, fmt.Errorf("queue %d: %w", q, err)
	}
	return sock, nil
}

// SetOpenerIdle changes every worker's Opener lifetime (Config.OpenerIdle),
// e.g. when a reload changes the key table's idle expiry, which it must
// exceed.
func (d *Dataplane) SetOpenerIdle(dur time.Duration) {
	for _, w := range d.workers {
		w.SetOpenerIdle(dur)
	}
}

func (d *Dataplane) addWorker(p Port) {
	i := len(d.workers)
	cpu, pin := 0, len(d.cfg.CPUs) > 0
	if pin {
		cpu = d.cfg.CPUs[i%len(d.cfg.CPUs)]
	}
	slow, prio := d.slow, d.slowPrio
	d.ports = append(d.ports, p)
	w := NewWorker(i, p, d.cfg.Table.NewReader(), WorkerConfig{
		BatchSize: d.cfg.BatchSize, MaxSSRCs: d.cfg.MaxSSRCs, MaxSSRCsPerLink: d.cfg.MaxSSRCsPerLink, OpenerIdle: d.cfg.OpenerIdle,
		TxKickFrames: d.cfg.TxKickFrames,
		Slow:         slow, SlowPriority: prio, Triage: d.prioritized, Bulk: d.pushBulk, BulkRoom: d.bulkRoom, Pin: pin, CPU: cpu, Logger: d.log,
	})
	d.hub.join(w)
	d.workers = append(d.workers, w)
}

// start runs the workers, the slow-path readers and the neighbour table.
func (d *Dataplane) start() {
	d.started = true
	for _, w := range d.workers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			err := w.Run(&d.stop)
			d.exited.CompareAndSwap(nil, &workerExit{id: w.id, err: err})
			if err != nil {
				d.log.Error("dataplane: worker stopped", "worker", w.id, "err", err)
			}
		}()
	}
	for _, c := range d.kernConns {
		d.slowWG.Add(1)
		go func() {
			defer d.slowWG.Done()
			d.readSlow(c)
		}()
	}
	go func() {
		defer close(d.pumpDone)
		d.pumpBulk(d.pumpStop)
	}()
	if d.nb != nil {
		ctx, cancel := context.WithCancel(context.Background())
		d.nbc, d.nbw = cancel, make(chan struct{})
		go func() {
			defer close(d.nbw)
			_ = d.nb.Run(ctx)
		}()
	}
}

// readSlow reads an XDP mode's kernel socket: DTLS and STUN go to the slow
// path; RTP/RTCP reassembled from IP fragments is dropped as in socket mode
// (see fragmentedMedia); other RTP/RTCP (on a queue without AF_XDP socket)
// and junk are counted.
func (d *Dataplane) readSlow(c *udpbatch.Conn) {
	local := c.UDPConn().LocalAddr().(*net.UDPAddr).AddrPort()
	ms := make([]udpbatch.Message, slowBatch)
	for i := range ms {
		ms[i].Buf = make([]byte, slowBufSize)
	}
	for {
		n, err := c.ReadBatch(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.slowStats[DropRxError].Add(1)
			continue
		}
		for i := range ms[:n] {
			d.slowOne(&ms[i], local)
		}
	}
}

// Slow-path socket reads: datagrams per batch, and the largest accepted
// (DTLS flights are sent in datagrams up to the path MTU; a larger one was
// reassembled from IP fragments).
const (
	slowBatch   = 32
	slowBufSize = 9216
)

// slowOne sorts one datagram of an XDP mode's slow-path socket.
func (d *Dataplane) slowOne(m *udpbatch.Message, local netip.AddrPort) {
	b := m.Buf[:m.N]
	from := netip.AddrPortFrom(m.Addr.Addr().Unmap(), m.Addr.Port())
	d.slowStats[RxPackets].Add(1)
	d.slowStats[RxBytes].Add(uint64(m.N))
	switch {
	case m.Truncated:
		d.slowStats[DropRxError].Add(1)
	case len(b) == 0:
		d.slowStats[DropEmpty].Add(1)
	case isMedia(b) && m.Fragmented:
		d.slowStats[fragmentedMedia].Add(1)
	case isMedia(b):
		d.slowStats[SlowMedia].Add(1)
	case b[0] <= 3 || (b[0] >= 20 && b[0] <= 63):
		if !d.prioritized(b, from, local) {
			if d.bulkRoom(from.Addr()) && d.pushBulk(SlowPacket{Data: append([]byte(nil), b...), From: from, To: local}) {
				d.slowStats[SlowPath].Add(1)
			} else {
				d.slowStats[DropSlowFull].Add(1)
			}
			return
		}
		ch := d.slowPrio
		if len(ch) == cap(ch) {
			d.slowStats[DropSlowFull].Add(1)
			return
		}
		select {
		case ch <- SlowPacket{Data: append([]byte(nil), b...), From: from, To: local}:
			d.slowStats[SlowPath].Add(1)
		default:
			d.slowStats[DropSlowFull].Add(1)
		}
	default:
		d.slowStats[DropJunk].Add(1)
	}
}

// fragmentedMedia documents the one rule for IP-fragmented media, the same
// in every mode: RTP or RTCP that reached the MD in IP fragments is dropped
// and counted as DropFrameFragment; fragmented DTLS and STUN go to the slow
// path like any other.
//
// How each mode gets there: the XDP classifier passes every fragment to
// the kernel (it cannot tell a later fragment's port, and fragments of
// other traffic and of DTLS must reassemble); the kernel reassembles and
// delivers the datagram to the slow-path socket, which sees that it was
// reassembled (IP_RECVFRAGSIZE/IPV6_RECVFRAGSIZE, udpbatch.Fragmented). In
// socket mode the worker's socket sees the same. Why drop rather than
// forward: a reassembled datagram cannot take the AF_XDP path (it arrives
// on a kernel socket, beside the queue that owns the sender's Opener), so
// forwarding it would need a second Opener for the sender, whose replay
// window would accept again every packet the first one accepted - a
// replayed packet, sent in fragments, would be forwarded twice. Nor can it
// be sent as one AF_XDP frame larger than the MTU. And RTP senders size
// packets to the path MTU (RFC 8085 section 3.2: applications SHOULD NOT
// send datagrams that get fragmented), so fragmented media is an error or
// an attack, never normal traffic. Socket mode used to forward it; now
// both modes drop it and the counter says so.
const fragmentedMedia = DropFrameFragment

// isMedia reports whether a UDP payload is RTP or RTCP by its first octet
// (RFC 7983: 128..191).
func isMedia(b []byte) bool { return len(b) > 0 && b[0] >= 128 && b[0] <= 191 }

// Mode returns the mode in use (never ModeAuto).
func (d *Dataplane) Mode() Mode { return d.mode }

// Slow returns the channel of DTLS and STUN datagrams for the slow path.
// It is closed by Close.
func (d *Dataplane) Slow() <-chan SlowPacket { return d.slow }

// SlowPriority returns the slow path's priority lane: the datagrams the
// triage function (SetSlowTriage) picks. The slow path serves it first, so
// that a flood of datagrams the triage does not pick (new ClientHellos,
// STUN from unknown sources) cannot crowd out the endpoints it does (those
// with an association, handshakes that passed the cookie exchange). Its
// queue is as long as Slow's; it is closed by Close.
func (d *Dataplane) SlowPriority() <-chan SlowPacket { return d.slowPrio }

// SetSlowTriage sets the function that picks the priority lane's datagrams.
// It runs on the data plane's goroutines for every slow-path datagram,
// before the copy: it must be cheap, not allocate and not keep b.
func (d *Dataplane) SetSlowTriage(f func(b []byte, from, to netip.AddrPort) bool) { d.triage.Store(&f) }

// Bulk-lane bounds: datagrams waiting per source prefix, and prefixes.
const (
	bulkPerPrefix = 16
	bulkPrefixes  = 4096
)

// pushBulk queues a slow-path datagram the triage did not pick, under its
// source prefix (an IPv4 /24, an IPv6 /48).
func (d *Dataplane) pushBulk(sp SlowPacket) bool {
	return d.bulk.Push(slowpkt.SourcePrefix(sp.From.Addr()), sp)
}

// bulkRoom reports whether the fair lane may take a datagram from a.
func (d *Dataplane) bulkRoom(a netip.Addr) bool { return d.bulk.Room(slowpkt.SourcePrefix(a)) }

// pumpBulk moves the bulk lane into the Slow channel, one datagram per
// source prefix in turn: a flood from some prefixes fills their own queues
// (and is dropped there) while a datagram from another prefix waits at
// most one turn. It returns when stop is closed.
func (d *Dataplane) pumpBulk(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-d.bulk.Ready():
		}
		for {
			sp, ok := d.bulk.Pop()
			if !ok {
				break
			}
			select {
			case d.slow <- sp:
			case <-stop:
				return
			}
		}
	}
}

func (d *Dataplane) prioritized(b []byte, from, to netip.AddrPort) bool {
	if f := d.triage.Load(); f != nil {
		return (*f)(b, from, to)
	}
	return false
}

// SendSlow sends a slow-path datagram (e.g. a DTLS record) from the media
// port to dst. It never waits for room in the socket's send buffer
// (ErrSendWouldBlock; see sendNoWait).
func (d *Dataplane) SendSlow(port uint16, b []byte, dst netip.AddrPort) error {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return ErrClosed
	}
	c, ok := d.sendConns[port]
	if !ok {
		return fmt.Errorf("dataplane: send from port %d: %w", port, ErrNoSlowSocket)
	}
	return sendNoWait(c, b, dst)
}

// Resolve asks for the next hop towards addr to be resolved now, so that
// the first media packets to a newly installed endpoint are not dropped as
// drop_no_neighbour. Call it when an endpoint is installed; it is a no-op in
// socket mode (the kernel routes) and when Config.Neighbours was supplied
// (its owner resolves). It never blocks on the network: the lookup is a
// netlink request/answer.
func (d *Dataplane) Resolve(addr netip.Addr) {
	if d.nb == nil {
		return
	}
	// A destination not resolved yet stays wanted: the resolver retries
	// it on every refresh.
	if _, _, err := d.nb.Want(addr); err != nil {
		d.log.Warn("dataplane: next hop not tracked", "dst", addr, "err", err)
	}
}

// Forget stops tracking addr's next hop (the endpoint has left).
func (d *Dataplane) Forget(addr netip.Addr) {
	if d.nb != nil {
		d.nb.Forget(addr)
	}
}

// Stats returns the sum of every worker's counters and the slow-path
// socket's.
func (d *Dataplane) Stats() Stats {
	var s Stats
	for _, w := range d.workers {
		ws := w.Stats()
		s.Add(&ws)
	}
	slow := d.SlowStats()
	s.Add(&slow)
	return s
}

// SlowStats returns the counters of the slow-path kernel socket alone (XDP
// modes: what XDP passed up to the kernel on the media ports). They are
// zero in socket mode, where the workers hand DTLS and STUN on themselves.
func (d *Dataplane) SlowStats() Stats {
	var s Stats
	for i := range s {
		s[i] = d.slowStats[i].Load()
	}
	return s
}

// WorkerDwell returns each worker's dwell histogram: the time from the XDP
// receive of each forwarded media packet to the return of the TX kick of
// the batch that carried its copies (empty in socket mode).
func (d *Dataplane) WorkerDwell() []dwell.Hist {
	out := make([]dwell.Hist, len(d.workers))
	for i, w := range d.workers {
		w.Dwell(&out[i])
	}
	return out
}

// WorkerStats returns each worker's counters.
func (d *Dataplane) WorkerStats() []Stats {
	out := make([]Stats, len(d.workers))
	for i, w := range d.workers {
		out[i] = w.Stats()
	}
	return out
}

// ClassifierCounters returns the XDP classifier's verdict counters (XDP
// modes only).
func (d *Dataplane) ClassifierCounters() (bpf.Counters, error) {
	if d.cl == nil {
		return bpf.Counters{}, fmt.Errorf("dataplane: no classifier in %s mode", d.mode)
	}
	return d.cl.Counters()
}

// Close stops the workers, closes the sockets, detaches the classifier and
// closes the Slow channel. It is idempotent.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.stop.Store(true)
	for _, p := range d.ports {
		p.Interrupt()
	}
	d.wg.Wait()
	err := d.teardown()
	d.log.Info("dataplane: stopped", "mode", d.mode)
	return err
}

// teardown releases everything; the workers must not be running.
func (d *Dataplane) teardown() error {
	var errs []error
	for _, p := range d.ports {
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dataplane: close port: %w", err))
		}
	}
	for _, c := range d.kernConns {
		c.UDPConn().Close()
	}
	d.slowWG.Wait()
	if d.att != nil {
		if err := d.att.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.cl != nil {
		if err := d.cl.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.nl != nil {
		d.nl.Close()
	}
	if d.nb != nil {
		if d.nbc != nil {
			d.nbc()
			<-d.nbw
		}
		d.nb.Close()
	}
	// The producers (workers, readers) have stopped: stop the pump, then
	// close the lanes.
	d.bulk.Close()
	close(d.pumpStop)
	if d.started {
		<-d.pumpDone
	}
	close(d.slow)
	close(d.slowPrio)
	return errors.Join(errs...)
}
