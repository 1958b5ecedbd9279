package afxdp

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mode selects copy or zero-copy binding.
type Mode int

const (
	// ModeAuto binds with XDP_ZEROCOPY and falls back to XDP_COPY when the
	// driver refuses.
	ModeAuto Mode = iota
	// ModeCopy binds with XDP_COPY: the kernel copies frames between its
	// buffers and the UMEM. Every driver supports it.
	ModeCopy
	// ModeZeroCopy binds with XDP_ZEROCOPY: the NIC DMAs straight into the
	// UMEM. Open fails with ErrZeroCopyUnsupported when the driver refuses.
	ModeZeroCopy
)

// String returns "auto", "copy" or "zerocopy".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeCopy:
		return "copy"
	case ModeZeroCopy:
		return "zerocopy"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Defaults used for zero fields of Config.
const (
	DefaultNumFrames = 4096
	DefaultFrameSize = 2048
	DefaultRingSize  = 2048
)

// Config configures one AF_XDP socket and its UMEM.
type Config struct {
	// Ifindex and QueueID name the NIC queue to bind to. The index is
	// resolved in the network namespace of the thread calling Open.
	Ifindex int
	QueueID uint32
	// Mode is copy, zero-copy or auto (zero-copy, else copy).
	Mode Mode
	// NumFrames is the number of UMEM frames (default 4096) and FrameSize
	// their size, 2048 or 4096 octets (default 2048).
	NumFrames uint32
	FrameSize uint32
	// Headroom is the UMEM headroom reserved in front of each received
	// packet, beyond the kernel's own XDP_PACKET_HEADROOM in copy mode.
	Headroom uint32
	// Ring sizes (powers of two, default 2048 each).
	FillRingSize, CompletionRingSize, RxRingSize, TxRingSize uint32
	// FillTarget is how many frames the socket keeps with the kernel for
	// receiving (in the fill ring); the rest are free for Alloc. Default:
	// min(FillRingSize, NumFrames/2).
	FillTarget uint32
	// DisableNeedWakeup binds without XDP_USE_NEED_WAKEUP: every Transmit
	// then kicks the kernel.
	DisableNeedWakeup bool
	// Busy polling (all optional; zero leaves the socket default):
	// SO_PREFER_BUSY_POLL, SO_BUSY_POLL (microseconds) and
	// SO_BUSY_POLL_BUDGET (packets per poll).
	PreferBusyPoll bool
	BusyPollUsec   int
	BusyPollBudget int
}

func (c *Config) setDefaults() error {
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return fmt.Errorf("afxdp: frame size %d: must be 2048 or 4096", c.FrameSize)
	}
	if c.Headroom >= c.FrameSize/2 {
		return fmt.Errorf("afxdp: headroom %d too large for %d-octet frames", c.Headroom, c.FrameSize)
	}
	for _, s := range []*uint32{&c.FillRingSize, &c.CompletionRingSize, &c.RxRingSize, &c.TxRingSize} {
		if *s == 0 {
			*s = DefaultRingSize
		}
		if *s&(*s-1) != 0 {
			return fmt.Errorf("afxdp: ring size %d is not a power of two", *s)
		}
	}
	if c.FillTarget == 0 {
		c.FillTarget = min(c.FillRingSize, c.NumFrames/2)
	}
	if c.FillTarget > c.FillRingSize || c.FillTarget > c.NumFrames {
		return fmt.Errorf("afxdp: fill target %d exceeds the fill ring (%d) or the UMEM (%d frames)",
			c.FillTarget, c.FillRingSize, c.NumFrames)
	}
	if c.Ifindex <= 0 {
		return fmt.Errorf("afxdp: invalid interface index %d", c.Ifindex)
	}
	return nil
}

// Desc is a descriptor of one packet in the UMEM, laid out as the kernel's
// struct xdp_desc: Addr is the offset of the packet's first octet in the
// UMEM, Len its length.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

var _ [unsafe.Sizeof(unix.XDPDesc{}) - unsafe.Sizeof(Desc{})]struct{}
var _ [unsafe.Sizeof(Desc{}) - unsafe.Sizeof(unix.XDPDesc{})]struct{}

// Socket is one AF_XDP socket bound to one NIC queue, with its own UMEM.
// It is not safe for concurrent use: one worker goroutine drives it. The
// exception is Wake, which any goroutine may call.
type Socket struct {
	fd       int
	wakeFd   int // eventfd polled beside fd by Wait; written by Wake
	cfg      Config
	mode     Mode // ModeCopy or ModeZeroCopy, as bound
	umem     []byte
	ringMaps [4][]byte

	fill, comp, rx, tx   ring
	fillAddrs, compAddrs []uint64
	rxDescs, txDescs     []Desc

	frames frames
	pollFd [2]unix.PollFd // fd, wakeFd

	// Wake's state, shared with other goroutines. wakePending coalesces
	// wakes: only the Wake that sets it writes the eventfd, and Wait
	// clears it after draining the eventfd. wakeUsers counts Wakes past
	// their wakeShut check; release waits for them before closing wakeFd.
	wakePending atomic.Bool
	wakeShut    atomic.Bool
	wakeUsers   atomic.Int32
	wakeOne     [8]byte // the eventfd increment 1 (host order), read-only
	wakeBuf     [8]byte // Wait's drain scratch

	stats  SoftStats
	closed bool
}

// SoftStats are counters kept by the socket itself.
type SoftStats struct {
	// RxPackets and TxPackets count descriptors received and queued.
	RxPackets, TxPackets uint64
	// Completions counts transmitted frames reaped from the completion ring.
	Completions uint64
	// RxKicks and TxKicks count wakeup syscalls; KickBusy counts those that
	// returned EAGAIN, EBUSY, ENOBUFS or ENETDOWN (retried later).
	RxKicks, TxKicks, KickBusy uint64
	// BadRxDescs counts RX descriptors naming a frame the kernel did not
	// own; they are dropped. It stays 0 unless the kernel misbehaves.
	BadRxDescs uint64
	// RejectedRecycles counts descriptors passed to Recycle that the caller
	// did not own.
	RejectedRecycles uint64
}

// Open creates an AF_XDP socket with its UMEM and rings, binds it to the
// queue and hands FillTarget frames to the kernel for receiving. The socket
// receives nothing until its FD is put in the XDP program's XSKMAP slot for
// the queue.
func Open(cfg Config) (*Socket, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case ModeCopy:
		return open(cfg, ModeCopy)
	case ModeZeroCopy:
		return open(cfg, ModeZeroCopy)
	case ModeAuto:
		s, err := open(cfg, ModeZeroCopy)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrZeroCopyUnsupported) {
			return nil, err
		}
		s, errCopy := open(cfg, ModeCopy)
		if errCopy != nil {
			return nil, errors.Join(err, errCopy)
		}
		return s, nil
	}
	return nil, fmt.Errorf("afxdp: unknown mode %d", int(cfg.Mode))
}

func open(cfg Config, mode Mode) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp: create socket: %w", err)
	}
	s := &Socket{fd: fd, wakeFd: -1, cfg: cfg, mode: mode}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	s.wakeFd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("afxdp: create wake eventfd: %w", err)
	}
	*(*uint64)(unsafe.Pointer(&s.wakeOne[0])) = 1

	umemLen := int(cfg.NumFrames) * int(cfg.FrameSize)
	s.umem, err = unix.Mmap(-1, 0, umemLen, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("afxdp: map %d-octet UMEM: %w", umemLen, err)
	}
	reg := unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&s.umem[0]))),
		Len:      uint64(umemLen),
		Size:     cfg.FrameSize,
		Headroom: cfg.Headroom,
	}
	if err := setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("afxdp: register UMEM: %w", err)
	}
	for _, o := range []struct {
		name int
		size uint32
		what string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillRingSize, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionRingSize, "completion"},
		{unix.XDP_RX_RING, cfg.RxRingSize, "RX"},
		{unix.XDP_TX_RING, cfg.TxRingSize, "TX"},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o.name, int(o.size)); err != nil {
			return nil, fmt.Errorf("afxdp: size %s ring (%d): %w", o.what, o.size, err)
		}
	}
	if err := s.setBusyPoll(); err != nil {
		return nil, err
	}

	var off unix.XDPMmapOffsets
	n, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return nil, fmt.Errorf("afxdp: get ring offsets: %w", err)
	}
	if n != unsafe.Sizeof(off) {
		return nil, fmt.Errorf("afxdp: get ring offsets: kernel returned %d octets, want %d (ring flags need Linux 5.4)", n, unsafe.Sizeof(off))
	}
	if err := s.mapRing(0, &s.fill, off.Fr, cfg.FillRingSize, 8, unix.XDP_UMEM_PGOFF_FILL_RING, "fill"); err != nil {
		return nil, err
	}
	if err := s.mapRing(1, &s.comp, off.Cr, cfg.CompletionRingSize, 8, unix.XDP_UMEM_PGOFF_COMPLETION_RING, "completion"); err != nil {
		return nil, err
	}
	if err := s.mapRing(2, &s.rx, off.Rx, cfg.RxRingSize, uint64(unsafe.Sizeof(Desc{})), unix.XDP_PGOFF_RX_RING, "RX"); err != nil {
		return nil, err
	}
	if err := s.mapRing(3, &s.tx, off.Tx, cfg.TxRingSize, uint64(unsafe.Sizeof(Desc{})), unix.XDP_PGOFF_TX_RING, "TX"); err != nil {
		return nil, err
	}
	s.fillAddrs = unsafe.Slice((*uint64)(unsafe.Pointer(&s.ringMaps[0][off.Fr.Desc])), cfg.FillRingSize)
	s.compAddrs = unsafe.Slice((*uint64)(unsafe.Pointer(&s.ringMaps[1][off.Cr.Desc])), cfg.CompletionRingSize)
	s.rxDescs = unsafe.Slice((*Desc)(unsafe.Pointer(&s.ringMaps[2][off.Rx.Desc])), cfg.RxRingSize)
	s.txDescs = unsafe.Slice((*Desc)(unsafe.Pointer(&s.ringMaps[3][off.Tx.Desc])), cfg.TxRingSize)
	s.fill.initProducer()
	s.tx.initProducer()
	s.comp.initConsumer()
	s.rx.initConsumer()

	sa := &unix.SockaddrXDP{Ifindex: uint32(cfg.Ifindex), QueueID: cfg.QueueID}
	if mode == ModeZeroCopy {
		sa.Flags |= unix.XDP_ZEROCOPY
	} else {
		sa.Flags |= unix.XDP_COPY
	}
	if !cfg.DisableNeedWakeup {
		sa.Flags |= unix.XDP_USE_NEED_WAKEUP
	}
	if err := unix.Bind(fd, sa); err != nil {
		if mode == ModeZeroCopy && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
			return nil, fmt.Errorf("afxdp: bind interface %d queue %d in %s mode: %w (%w)",
				cfg.Ifindex, cfg.QueueID, mode, ErrZeroCopyUnsupported, err)
		}
		return nil, fmt.Errorf("afxdp: bind interface %d queue %d in %s mode: %w", cfg.Ifindex, cfg.QueueID, mode, err)
	}

	s.frames = newFrames(cfg.NumFrames, uint64(cfg.FrameSize))
	s.pollFd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	s.pollFd[1] = unix.PollFd{Fd: int32(s.wakeFd), Events: unix.POLLIN}
	s.Refill()
	return s, nil
}

func (s *Socket) setBusyPoll() error {
	opts := []struct {
		name, val int
		what      string
	}{
		{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
		{unix.SO_BUSY_POLL, s.cfg.BusyPollUsec, "SO_BUSY_POLL"},
		{unix.SO_BUSY_POLL_BUDGET, s.cfg.BusyPollBudget, "SO_BUSY_POLL_BUDGET"},
	}
	if !s.cfg.PreferBusyPoll {
		opts[0].val = 0
	}
	for _, o := range opts {
		if o.val == 0 {
			continue
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, o.name, o.val); err != nil {
			return fmt.Errorf("afxdp: set %s to %d: %w", o.what, o.val, err)
		}
	}
	return nil
}

func (s *Socket) mapRing(i int, r *ring, off unix.XDPRingOffset, size uint32, entry uint64, pgoff int64, what string) error {
	length := off.Desc + uint64(size)*entry
	m, err := unix.Mmap(s.fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("afxdp: map %s ring: %w", what, err)
	}
	s.ringMaps[i] = m
	for _, o := range []uint64{off.Producer, off.Consumer, off.Flags} {
		if o+4 > length || o%4 != 0 {
			return fmt.Errorf("afxdp: map %s ring: bad index offset %d", what, o)
		}
	}
	*r = ring{
		producer: (*uint32)(unsafe.Pointer(&m[off.Producer])),
		consumer: (*uint32)(unsafe.Pointer(&m[off.Consumer])),
		flags:    (*uint32)(unsafe.Pointer(&m[off.Flags])),
		mask:     size - 1,
		size:     size,
	}
	return nil
}

// FD returns the socket's file descriptor, to be put in the XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Mode returns the mode the socket is bound in: ModeCopy or ModeZeroCopy.
func (s *Socket) Mode() Mode { return s.mode }

// Config returns the configuration with defaults filled in.
func (s *Socket) Config() Config { return s.cfg }

// Receive takes up to len(descs) received packets from the RX ring and
// writes their descriptors to descs. It returns how many. The frames belong
// to the caller until it passes them to Recycle or Transmit; Frame gives a
// view of each. When nothing was received and the kernel asked for a
// wakeup, Receive kicks it; an unexpected kick error is returned.
func (s *Socket) Receive(descs []Desc) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	idx, got := s.rx.peek(uint32(min(len(descs), int(s.cfg.RxRingSize))))
	n := 0
	for i := uint32(0); i < got; i++ {
		d := s.rxDescs[(idx+i)&s.rx.mask]
		if !s.frames.move(d.Addr>>s.frames.shift<<s.frames.shift, ownerKernelRx, ownerUser) {
			s.stats.BadRxDescs++
			continue
		}
		descs[n] = d
		n++
	}
	if got > 0 {
		s.rx.release()
		s.stats.RxPackets += uint64(n)
	}
	if got == 0 && !s.cfg.DisableNeedWakeup && s.fill.needWakeup() {
		return 0, s.kickRx()
	}
	return n, nil
}

// Frame returns a view of the packet d names: its Len octets, with capacity
// to the end of its UMEM frame. It returns nil for a descriptor outside the
// UMEM or crossing its frame.
func (s *Socket) Frame(d Desc) []byte {
	if d.Addr >= uint64(len(s.umem)) {
		return nil
	}
	end := d.Addr + uint64(d.Len)
	frameEnd := (d.Addr>>s.frames.shift + 1) << s.frames.shift
	if end > frameEnd || frameEnd > uint64(len(s.umem)) {
		return nil
	}
	return s.umem[d.Addr:end:frameEnd]
}

// Alloc takes up to len(descs) free frames for the caller to write packets
// into. Each descriptor's Len is the frame's capacity; set it to the packet
// length before Transmit. It returns how many frames it took.
func (s *Socket) Alloc(descs []Desc) int {
	if s.closed {
		return 0
	}
	for i := range descs {
		addr, ok := s.frames.pop(ownerUser)
		if !ok {
			return i
		}
		descs[i] = Desc{Addr: addr, Len: s.cfg.FrameSize}
	}
	return len(descs)
}

// Recycle gives frames the caller holds (received or allocated) back: to
// the fill ring while it holds fewer than FillTarget frames, otherwise to
// the free-frame stack. Descriptors the caller does not own are ignored and
// counted in SoftStats.RejectedRecycles.
func (s *Socket) Recycle(descs []Desc) {
	if s.closed {
		return
	}
	want := s.cfg.FillTarget - min(s.cfg.FillTarget, s.frames.count[ownerKernelRx])
	idx, slots := s.fill.reserve(min(want, uint32(min(len(descs), int(s.cfg.FillRingSize)))))
	used := uint32(0)
	for _, d := range descs {
		addr := d.Addr >> s.frames.shift << s.frames.shift
		if used < slots {
			if !s.frames.move(addr, ownerUser, ownerKernelRx) {
				s.stats.RejectedRecycles++
				continue
			}
			s.fillAddrs[(idx+used)&s.fill.mask] = addr
			used++
			continue
		}
		if !s.frames.push(addr, ownerUser) {
			s.stats.RejectedRecycles++
		}
	}
	// Give back reserved slots that rejected descriptors left unused.
	s.fill.cachedProd -= slots - used
	if used > 0 {
		s.fill.submit()
	}
}

// Refill moves free frames to the fill ring until the kernel holds
// FillTarget frames for receiving (or the ring is full). It returns how
// many it moved.
func (s *Socket) Refill() int {
	if s.closed {
		return 0
	}
	want := s.cfg.FillTarget - min(s.cfg.FillTarget, s.frames.count[ownerKernelRx])
	want = min(want, uint32(len(s.frames.stack)))
	if want == 0 {
		return 0
	}
	idx, got := s.fill.reserve(want)
	for i := uint32(0); i < got; i++ {
		addr, _ := s.frames.pop(ownerKernelRx)
		s.fillAddrs[(idx+i)&s.fill.mask] = addr
	}
	if got > 0 {
		s.fill.submit()
	}
	return int(got)
}

// Transmit queues descriptors on the TX ring and kicks the kernel when it
// asked for it (always without need-wakeup). It returns how many it queued,
// from the front of descs; the rest did not fit and remain the caller's.
// Queued frames belong to the kernel until Complete returns them to the
// free-frame stack. A descriptor outside the UMEM, crossing its frame or not
// owned by the caller makes Transmit queue nothing and return an error
// wrapping ErrBadDescriptor.
func (s *Socket) Transmit(descs []Desc) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	for i, d := range descs {
		if d.Len == 0 || s.Frame(d) == nil {
			return 0, fmt.Errorf("afxdp: transmit descriptor %d (addr %d, len %d): %w", i, d.Addr, d.Len, ErrBadDescriptor)
		}
		if fi, _ := s.frames.index(d.Addr); s.frames.owner[fi] != ownerUser {
			return 0, fmt.Errorf("afxdp: transmit descriptor %d (addr %d): frame not held by the caller: %w", i, d.Addr, ErrBadDescriptor)
		}
	}
	idx, got := s.tx.reserve(uint32(min(len(descs), int(s.cfg.TxRingSize))))
	for i := uint32(0); i < got; i++ {
		d := descs[i]
		s.frames.move(d.Addr>>s.frames.shift<<s.frames.shift, ownerUser, ownerKernelTx)
		s.txDescs[(idx+i)&s.tx.mask] = d
	}
	if got > 0 {
		s.tx.submit()
		s.stats.TxPackets += uint64(got)
	}
	if s.cfg.DisableNeedWakeup || s.tx.needWakeup() {
		if err := s.kickTx(); err != nil {
			return int(got), err
		}
	}
	return int(got), nil
}

// Complete reaps the completion ring: transmitted frames go back to the
// free-frame stack. It returns how many. When the kernel has not consumed
// every queued TX descriptor yet (in copy mode a kick sends at most a
// driver-budget's worth) and asked for a wakeup, it kicks TX again.
func (s *Socket) Complete() (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	idx, got := s.comp.peek(s.cfg.CompletionRingSize)
	for i := uint32(0); i < got; i++ {
		s.frames.push(s.compAddrs[(idx+i)&s.comp.mask], ownerKernelTx)
	}
	if got > 0 {
		s.comp.release()
		s.stats.Completions += uint64(got)
	}
	if s.tx.pending() > 0 && s.tx.needWakeup() {
		return int(got), s.kickTx()
	}
	return int(got), nil
}

// kickTx asks the kernel to process the TX ring.
func (s *Socket) kickTx() error {
	s.stats.TxKicks++
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return s.kickResult(errno, "sendto")
}

// kickRx asks the kernel to refill its RX side from the fill ring.
func (s *Socket) kickRx() error {
	s.stats.RxKicks++
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return s.kickResult(errno, "recvfrom")
}

func (s *Socket) kickResult(errno unix.Errno, what string) error {
	switch errno {
	case 0:
		return nil
	case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN, unix.EINTR:
		s.stats.KickBusy++
		return nil
	}
	return fmt.Errorf("afxdp: kick (%s): %w", what, errno)
}

// Ready reports whether the RX ring has packets, with one atomic load and
// no system call: for a caller that spins on the ring before it sleeps in
// Wait.
func (s *Socket) Ready() bool { return !s.closed && s.rx.avail(1) > 0 }

// Wait blocks until the RX ring has packets, Wake is called or timeout
// passes (a negative timeout waits forever; a positive one is rounded up
// to whole milliseconds, so Wait never returns before it for lack of
// resolution). It reports whether packets are ready. An interrupted poll
// or a Wake reports false and no error. A Wake that came while the caller
// was not waiting makes the next Wait return at once.
func (s *Socket) Wait(timeout time.Duration) (bool, error) {
	if s.closed {
		return false, ErrClosed
	}
	if s.rx.avail(1) > 0 {
		return true, nil
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	s.pollFd[0].Revents, s.pollFd[1].Revents = 0, 0
	n, err := unix.Poll(s.pollFd[:], ms)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return false, nil
		}
		return false, fmt.Errorf("afxdp: poll: %w", err)
	}
	if n > 0 {
		for i := range s.pollFd {
			if s.pollFd[i].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
				return false, fmt.Errorf("afxdp: poll fd %d: revents %#x", i, s.pollFd[i].Revents)
			}
		}
		if s.pollFd[1].Revents&unix.POLLIN != 0 {
			s.drainWake()
		}
	}
	return s.rx.avail(1) > 0, nil
}

// drainWake resets the wake eventfd, then lets the next Wake write it
// again. In that order a Wake is never lost: one that comes between the
// two finds wakePending set and writes nothing, but its effect is already
// due (the caller checks for work after Wait), and one after the Store
// writes the eventfd and so ends the next Wait.
func (s *Socket) drainWake() {
	_, _ = unix.Read(s.wakeFd, s.wakeBuf[:]) // EAGAIN: nothing to drain
	s.wakePending.Store(false)
}

// Woken reports, with one atomic load, whether a Wake is pending (the
// next Wait returns at once and consumes it): for a caller that spins on
// the ring instead of waiting.
func (s *Socket) Woken() bool { return s.wakePending.Load() }

// Wake makes a Wait in progress return soon (or the next one, if none
// is). It is safe to call from any goroutine, also during or after Close
// (then it does nothing); it never blocks and does not allocate. Many
// Wakes before the waiter runs cost one eventfd write.
func (s *Socket) Wake() {
	if s.wakePending.Load() || !s.wakePending.CompareAndSwap(false, true) {
		return // a wake-up is already due
	}
	s.wakeUsers.Add(1)
	if !s.wakeShut.Load() {
		_, _ = unix.Write(s.wakeFd, s.wakeOne[:]) // EAGAIN only at 2^64-1 unread
	}
	s.wakeUsers.Add(-1)
}

// FrameStats is the UMEM frame accounting: every frame is in exactly one of
// these states, so Free+KernelRx+User+KernelTx == Total always.
type FrameStats struct {
	// Total is the number of UMEM frames.
	Total uint32
	// Free frames are on the free-frame stack, ready for Alloc or Refill.
	Free uint32
	// KernelRx frames are in the fill ring, the driver or the RX ring.
	KernelRx uint32
	// User frames are held by the caller (received or allocated).
	User uint32
	// KernelTx frames are in the TX ring or awaiting completion.
	KernelTx uint32
}

// FrameStats returns the UMEM frame accounting.
func (s *Socket) FrameStats() FrameStats {
	f := &s.frames
	return FrameStats{
		Total: f.total, Free: f.count[ownerFree], KernelRx: f.count[ownerKernelRx],
		User: f.count[ownerUser], KernelTx: f.count[ownerKernelTx],
	}
}

// FreeFrames returns the number of frames on the free-frame stack.
func (s *Socket) FreeFrames() int { return len(s.frames.stack) }

// Stats are the kernel's XDP_STATISTICS for the socket and its own
// counters.
type Stats struct {
	// RxDropped: packets dropped for a reason other than invalid
	// descriptors (e.g. no fill ring entry in copy mode).
	RxDropped uint64
	// RxInvalidDescs and TxInvalidDescs: descriptors the kernel refused.
	RxInvalidDescs, TxInvalidDescs uint64
	// RxRingFull: packets dropped because the RX ring was full.
	RxRingFull uint64
	// RxFillRingEmptyDescs: times the fill ring was found empty.
	RxFillRingEmptyDescs uint64
	// TxRingEmptyDescs: times the kernel found the TX ring empty.
	TxRingEmptyDescs uint64
	// Soft holds the socket's own counters.
	Soft SoftStats
}

// Stats returns the kernel's statistics (getsockopt XDP_STATISTICS) and the
// socket's own counters.
func (s *Socket) Stats() (Stats, error) {
	if s.closed {
		return Stats{}, ErrClosed
	}
	var ks unix.XDPStatistics
	if _, err := getsockopt(s.fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&ks), unsafe.Sizeof(ks)); err != nil {
		return Stats{}, fmt.Errorf("afxdp: get statistics: %w", err)
	}
	return Stats{
		RxDropped:            ks.Rx_dropped,
		RxInvalidDescs:       ks.Rx_invalid_descs,
		TxInvalidDescs:       ks.Tx_invalid_descs,
		RxRingFull:           ks.Rx_ring_full,
		RxFillRingEmptyDescs: ks.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     ks.Tx_ring_empty_descs,
		Soft:                 s.stats,
	}, nil
}

// Close unmaps the rings and the UMEM and closes the socket (which also
// removes it from any XSKMAP). Views returned by Frame must not be used
// afterwards. Close is idempotent.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.release()
}

func (s *Socket) release() error {
	var errs []error
	for i, m := range s.ringMaps {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, fmt.Errorf("afxdp: unmap ring %d: %w", i, err))
			}
			s.ringMaps[i] = nil
		}
	}
	if s.wakeFd >= 0 {
		// No Wake may write the eventfd after this: a Wake that passed
		// its wakeShut check before the Store is counted in wakeUsers.
		s.wakeShut.Store(true)
		for s.wakeUsers.Load() != 0 {
			runtime.Gosched()
		}
		if err := unix.Close(s.wakeFd); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: close wake eventfd: %w", err))
		}
		s.wakeFd = -1
	}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: close socket: %w", err))
		}
		s.fd = -1
	}
	if s.umem != nil {
		if err := unix.Munmap(s.umem); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: unmap UMEM: %w", err))
		}
		s.umem = nil
	}
	s.fillAddrs, s.compAddrs, s.rxDescs, s.txDescs = nil, nil, nil, nil
	return errors.Join(errs...)
}
