package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DefaultQueueSlots is the XSKMAP size used when Options.QueueSlots is 0.
const DefaultQueueSlots = 64

// MaxPorts is the capacity of the media port set.
const MaxPorts = 256

// Counter names one per-CPU verdict counter of the classifier. The values
// mirror enum counter in classify.c.
type Counter uint32

// The counters, one per verdict reason.
const (
	// CounterRedirect counts RTP/RTCP redirected into an AF_XDP socket.
	CounterRedirect Counter = iota
	// CounterPassNoSocket counts RTP/RTCP passed to the kernel because no
	// AF_XDP socket is registered for the frame's RX queue.
	CounterPassNoSocket
	// CounterPassDTLS counts DTLS (first octet 20..63) to a media port.
	CounterPassDTLS
	// CounterPassSTUN counts STUN (first octet 0..3) to a media port.
	CounterPassSTUN
	// CounterPassFragment counts IPv4 and IPv6 fragments, passed to the
	// kernel for reassembly.
	CounterPassFragment
	// CounterPassTruncated counts frames that end inside the Ethernet, IP or
	// UDP header; they are passed untouched.
	CounterPassTruncated
	// CounterPassOther counts every other frame (not UDP, not to a media
	// port, unknown EtherType or IPv6 extension header).
	CounterPassOther
	// CounterDropJunk counts datagrams to a media port whose first payload
	// octet is of no class the Media Distributor accepts.
	CounterDropJunk
	// CounterDropEmpty counts datagrams to a media port with an empty payload.
	CounterDropEmpty
	// CounterDropMalformed counts datagrams to a media port whose UDP length
	// is below 8 octets or beyond the IP payload or the frame.
	CounterDropMalformed
	// CounterRedirectSlow counts DTLS and STUN redirected into an AF_XDP
	// socket (Options.SlowToXSK); without a socket on the RX queue they
	// are passed and counted as CounterPassDTLS or CounterPassSTUN.
	CounterRedirectSlow
	// NumCounters is the number of counters.
	NumCounters
)

var counterNames = [NumCounters]string{
	"redirect", "pass_no_socket", "pass_dtls", "pass_stun", "pass_fragment",
	"pass_truncated", "pass_other", "drop_junk", "drop_empty", "drop_malformed",
	"redirect_slow",
}

// String returns the counter's metric-style name, e.g. "drop_junk".
func (c Counter) String() string {
	if c < NumCounters {
		return counterNames[c]
	}
	return fmt.Sprintf("counter(%d)", uint32(c))
}

// Counters holds the value of every counter summed over all CPUs, indexed by
// Counter.
type Counters [NumCounters]uint64

// Mode selects how Attach attaches the program to an interface.
type Mode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic mode.
	ModeAuto Mode = iota
	// ModeNative attaches in the driver (XDP_FLAGS_DRV_MODE).
	ModeNative
	// ModeGeneric attaches in the kernel's generic, skb-based XDP hook
	// (XDP_FLAGS_SKB_MODE); it works on every interface but is slower.
	ModeGeneric
)

// String returns "auto", "native" or "generic".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Options configure Load.
type Options struct {
	// QueueSlots is the number of XSKMAP entries, that is one more than the
	// highest RX queue index a socket can be registered for. 0 means
	// DefaultQueueSlots.
	QueueSlots uint32
	// Ports is the initial media port set; it can be changed at run time
	// with SetPorts, AddPort and RemovePort.
	Ports []uint16
	// SlowToXSK sends DTLS and STUN to the AF_XDP socket of the RX queue
	// too (counted as CounterRedirectSlow), instead of to the kernel; see
	// slow_to_xsk in classify.c.
	SlowToXSK bool
	// NoRxTime leaves the receive time out of redirected frames (see
	// struct rx_meta in classify.c): the workers then measure no dwell.
	NoRxTime bool
}

// Classifier is the loaded XDP program and its maps. Its methods are safe
// for concurrent use.
type Classifier struct {
	objs       classifyObjects
	queueSlots uint32
	rxTime     bool // redirected frames carry struct rx_meta

	mu          sync.Mutex
	closed      bool
	attachments map[*Attachment]struct{}
}

// Load loads the classifier into the kernel. It does not attach it.
func Load(opts Options) (*Classifier, error) {
	spec, err := loadClassify()
	if err != nil {
		return nil, fmt.Errorf("bpf: load classifier spec: %w", err)
	}
	slots := opts.QueueSlots
	if slots == 0 {
		slots = DefaultQueueSlots
	}
	spec.Maps[classifyMapXsks].MaxEntries = slots
	if opts.SlowToXSK {
		v, ok := spec.Variables["slow_to_xsk"]
		if !ok {
			return nil, errors.New("bpf: classifier has no slow_to_xsk variable")
		}
		if err := v.Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("bpf: set slow_to_xsk: %w", err)
		}
	}

	if opts.NoRxTime {
		v, ok := spec.Variables["no_rx_time"]
		if !ok {
			return nil, errors.New("bpf: classifier has no no_rx_time variable")
		}
		if err := v.Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("bpf: set no_rx_time: %w", err)
		}
	}

	c := &Classifier{queueSlots: slots, rxTime: !opts.NoRxTime, attachments: make(map[*Attachment]struct{})}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load classifier into the kernel: %w", err)
	}
	if len(opts.Ports) > 0 {
		if err := c.SetPorts(opts.Ports...); err != nil {
			c.objs.Close()
			return nil, err
		}
	}
	return c, nil
}

// Program returns the XDP program, e.g. for ebpf.Program.Test. It stays
// owned by the Classifier.
func (c *Classifier) Program() *ebpf.Program { return c.objs.Classify }

// QueueSlots returns the size of the XSKMAP.
func (c *Classifier) QueueSlots() uint32 { return c.queueSlots }

func (c *Classifier) check() error {
	if c.closed {
		return ErrClosed
	}
	return nil
}

// AddPort adds a media port. Adding a port already in the set is a no-op.
func (c *Classifier) AddPort(port uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	return c.addPort(port)
}

func (c *Classifier) addPort(port uint16) error {
	if port == 0 {
		return ErrInvalidPort
	}
	if err := c.objs.MediaPorts.Update(port, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add media port %d: %w", port, err)
	}
	return nil
}

// RemovePort removes a media port. Removing a port not in the set is a
// no-op.
func (c *Classifier) RemovePort(port uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	return c.removePort(port)
}

func (c *Classifier) removePort(port uint16) error {
	err := c.objs.MediaPorts.Delete(port)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: remove media port %d: %w", port, err)
	}
	return nil
}

// SetPorts replaces the media port set. New ports are added before old ones
// are removed, so a port in both sets is never missing.
func (c *Classifier) SetPorts(ports ...uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	want := make(map[uint16]bool, len(ports))
	for _, p := range ports {
		if p == 0 {
			return ErrInvalidPort
		}
		want[p] = true
	}
	if len(want) > MaxPorts {
		return fmt.Errorf("bpf: set %d media ports: more than %d", len(want), MaxPorts)
	}
	old, err := c.ports()
	if err != nil {
		return err
	}
	for p := range want {
		if err := c.addPort(p); err != nil {
			return err
		}
	}
	for _, p := range old {
		if !want[p] {
			if err := c.removePort(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ports returns the media port set, in no particular order.
func (c *Classifier) Ports() ([]uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.ports()
}

func (c *Classifier) ports() ([]uint16, error) {
	var (
		port  uint16
		val   uint8
		ports []uint16
	)
	it := c.objs.MediaPorts.Iterate()
	for it.Next(&port, &val) {
		ports = append(ports, port)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: list media ports: %w", err)
	}
	return ports, nil
}

// RegisterSocket puts the AF_XDP socket fd into the XSKMAP slot of the RX
// queue: from then on RTP and RTCP received on that queue go to it. The
// socket must be bound to the same interface and queue.
func (c *Classifier) RegisterSocket(queue uint32, fd int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	if queue >= c.queueSlots {
		return fmt.Errorf("bpf: register socket on queue %d of %d: %w", queue, c.queueSlots, ErrQueueOutOfRange)
	}
	if fd < 0 {
		return fmt.Errorf("bpf: register socket on queue %d: invalid fd %d", queue, fd)
	}
	if err := c.objs.Xsks.Update(queue, uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: register socket on queue %d: %w", queue, err)
	}
	return nil
}

// UnregisterSocket empties the XSKMAP slot of the RX queue: RTP and RTCP
// received on it are passed to the kernel again. Unregistering an empty slot
// is a no-op. (Closing a socket also removes it from the map.)
func (c *Classifier) UnregisterSocket(queue uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return err
	}
	if queue >= c.queueSlots {
		return fmt.Errorf("bpf: unregister socket on queue %d of %d: %w", queue, c.queueSlots, ErrQueueOutOfRange)
	}
	err := c.objs.Xsks.Delete(queue)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: unregister socket on queue %d: %w", queue, err)
	}
	return nil
}

// Counters returns every counter summed over all CPUs.
func (c *Classifier) Counters() (Counters, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Counters
	if err := c.check(); err != nil {
		return out, err
	}
	var perCPU []uint64
	for i := range NumCounters {
		if err := c.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return out, fmt.Errorf("bpf: read counter %s: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// Attachment is the classifier attached to one interface through a bpf_link:
// it is detached by Close, by Classifier.Close, or when the process exits.
type Attachment struct {
	c       *Classifier
	link    link.Link
	mode    Mode
	ifindex int
}

// Mode returns the mode the program was attached in: ModeNative or
// ModeGeneric, never ModeAuto.
func (a *Attachment) Mode() Mode { return a.mode }

// Ifindex returns the interface the program is attached to.
func (a *Attachment) Ifindex() int { return a.ifindex }

// AttachedIfindex asks the kernel which interface the bpf_link is attached
// to now: a.Ifindex() while it is, 0 once the link was detached (the
// interface was deleted, or the link detached from outside, e.g. with
// `bpftool link detach`). It is one bpf(2) call, cheap enough for a
// periodic readiness check.
func (a *Attachment) AttachedIfindex() (int, error) {
	info, err := a.link.Info()
	if err != nil {
		return 0, fmt.Errorf("bpf: XDP link info: %w", err)
	}
	x := info.XDP()
	if x == nil {
		return 0, fmt.Errorf("bpf: link %d is no XDP link", info.ID)
	}
	return int(x.Ifindex), nil
}

// Close detaches the program from the interface. It is idempotent.
func (a *Attachment) Close() error {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	return a.c.detach(a)
}

func (c *Classifier) detach(a *Attachment) error {
	if _, ok := c.attachments[a]; !ok {
		return nil
	}
	delete(c.attachments, a)
	if err := a.link.Close(); err != nil {
		return fmt.Errorf("bpf: detach from interface %d: %w", a.ifindex, err)
	}
	return nil
}

// Attach attaches the classifier to the interface with a bpf_link. ModeAuto
// tries native mode first and falls back to generic mode; the mode used is
// reported by Attachment.Mode. The interface index is resolved in the
// network namespace of the calling OS thread.
func (c *Classifier) Attach(ifindex int, mode Mode) (*Attachment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return nil, err
	}
	var (
		l   link.Link
		err error
	)
	switch mode {
	case ModeNative, ModeGeneric:
		l, err = c.attach(ifindex, mode)
	case ModeAuto:
		mode = ModeNative
		l, err = c.attach(ifindex, ModeNative)
		if err != nil {
			var errGeneric error
			mode = ModeGeneric
			l, errGeneric = c.attach(ifindex, ModeGeneric)
			if errGeneric != nil {
				err = errors.Join(err, errGeneric)
			} else {
				err = nil
			}
		}
	default:
		return nil, fmt.Errorf("bpf: attach to interface %d: unknown mode %d", ifindex, int(mode))
	}
	if err != nil {
		return nil, err
	}
	a := &Attachment{c: c, link: l, mode: mode, ifindex: ifindex}
	c.attachments[a] = struct{}{}
	return a, nil
}

func (c *Classifier) attach(ifindex int, mode Mode) (link.Link, error) {
	flags := link.XDPDriverMode
	if mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{
		Program:   c.objs.Classify,
		Interface: ifindex,
		Flags:     flags,
	})
	if err != nil {
		return nil, fmt.Errorf("bpf: attach to interface %d in %s mode: %w", ifindex, mode, err)
	}
	return l, nil
}

// Close detaches every attachment and unloads the program and its maps. It
// is idempotent.
func (c *Classifier) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for a := range c.attachments {
		errs = append(errs, c.detach(a))
	}
	if err := c.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: unload classifier: %w", err))
	}
	return errors.Join(errs...)
}
