package neigh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/frame"
)

// Options configures a Table.
type Options struct {
	// Ifindex is the egress interface the data plane transmits on; a
	// destination routed through another interface is not resolved.
	Ifindex int
	// Handle is the netlink handle to use (for another network namespace);
	// nil uses the calling process's namespace.
	Handle *netlink.Handle
	// Refresh is how often resolved entries are re-read from the kernel.
	// Zero means 1 s.
	Refresh time.Duration
	// MaxEntries bounds the number of destinations tracked. Zero means
	// 65536.
	MaxEntries int
	// Logger receives resolution failures (rate-limited by Refresh).
	Logger *slog.Logger
}

// Entry is the resolution of one destination.
type Entry struct {
	// MAC is the next hop's Ethernet address.
	MAC frame.MAC
	// Src is the preferred source address of the route (the address the
	// MD sends from), when the kernel gives one.
	Src netip.Addr
}

// Table is the mirrored neighbour table. Lookup and Miss are safe for
// concurrent use by any number of workers.
type Table struct {
	opts  Options
	nl    *netlink.Handle
	ownNL bool
	snap  atomic.Pointer[map[netip.Addr]Entry]
	gen   atomic.Uint64 // bumped after each snapshot that differs
	miss  chan netip.Addr
	wake  chan struct{}
	mu    sync.Mutex // guards want
	want  map[netip.Addr]struct{}
	fails atomic.Uint64
}

// ErrTooMany is returned by Want when MaxEntries destinations are tracked.
var ErrTooMany = errors.New("neigh: too many destinations")

// New returns a Table. Run must be called to resolve anything.
func New(opts Options) (*Table, error) {
	if opts.Ifindex <= 0 {
		return nil, fmt.Errorf("neigh: invalid egress ifindex %d", opts.Ifindex)
	}
	if opts.Refresh <= 0 {
		opts.Refresh = time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 65536
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nl, own := opts.Handle, false
	if nl == nil {
		own = true
		var err error
		if nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("neigh: netlink handle: %w", err)
		}
	}
	t := &Table{
		opts: opts, nl: nl, ownNL: own,
		miss: make(chan netip.Addr, 1024),
		wake: make(chan struct{}, 1),
		want: make(map[netip.Addr]struct{}),
	}
	empty := map[netip.Addr]Entry{}
	t.snap.Store(&empty)
	return t, nil
}

// Lookup returns the resolution of dst. It does not allocate.
func (t *Table) Lookup(dst netip.Addr) (Entry, bool) {
	e, ok := (*t.snap.Load())[dst]
	return e, ok
}

// Miss asks for dst to be resolved. It never blocks: when the queue is full
// the request is dropped (the next miss asks again).
func (t *Table) Miss(dst netip.Addr) {
	select {
	case t.miss <- dst:
	default:
	}
}

// Want adds dst to the destinations kept resolved and resolves it now,
// returning its entry when the kernel has one.
func (t *Table) Want(dst netip.Addr) (Entry, bool, error) {
	t.mu.Lock()
	if _, ok := t.want[dst]; !ok && len(t.want) >= t.opts.MaxEntries {
		t.mu.Unlock()
		return Entry{}, false, ErrTooMany
	}
	t.want[dst] = struct{}{}
	t.mu.Unlock()
	t.refresh()
	e, ok := t.Lookup(dst)
	return e, ok, nil
}

// Forget stops tracking dst.
func (t *Table) Forget(dst netip.Addr) {
	t.mu.Lock()
	delete(t.want, dst)
	t.mu.Unlock()
	t.poke()
}

// Close releases the netlink handle New opened (not one passed in
// Options.Handle). Call it after Run has returned.
func (t *Table) Close() {
	if t.ownNL {
		t.nl.Close()
	}
}

// Failures is the number of failed resolutions so far.
func (t *Table) Failures() uint64 { return t.fails.Load() }

func (t *Table) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run resolves wanted destinations until ctx is done.
func (t *Table) Run(ctx context.Context) error {
	tick := time.NewTicker(t.opts.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case dst := <-t.miss:
			t.mu.Lock()
			if len(t.want) < t.opts.MaxEntries {
				t.want[dst] = struct{}{}
			}
			t.mu.Unlock()
			// Collect what else is queued, then resolve once.
			for more := true; more; {
				select {
				case d := <-t.miss:
					t.mu.Lock()
					if len(t.want) < t.opts.MaxEntries {
						t.want[d] = struct{}{}
					}
					t.mu.Unlock()
				default:
					more = false
				}
			}
			t.refresh()
		case <-t.wake:
			t.refresh()
		case <-tick.C:
			t.refresh()
		}
	}
}

// refresh re-reads every wanted destination and publishes a new snapshot.
func (t *Table) refresh() {
	t.mu.Lock()
	dsts := make([]netip.Addr, 0, len(t.want))
	for d := range t.want {
		dsts = append(dsts, d)
	}
	t.mu.Unlock()

	neighs := map[int]map[netip.Addr]net.HardwareAddr{}
	next := make(map[netip.Addr]Entry, len(dsts))
	for _, dst := range dsts {
		e, err := t.resolve(dst, neighs)
		if err != nil {
			t.fails.Add(1)
			t.opts.Logger.Debug("neigh: cannot resolve", "dst", dst, "err", err)
			continue
		}
		next[dst] = e
	}
	if maps.Equal(*t.snap.Load(), next) {
		return // unchanged: what callers cached by Gen stays valid
	}
	t.snap.Store(&next)
	t.gen.Add(1)
}

// Gen returns the table's generation. It changes after every change of
// the table: what a caller derived from Lookup results while Gen returned
// g (read before the lookups) is current as long as Gen still returns g.
func (t *Table) Gen() uint64 { return t.gen.Load() }

func (t *Table) resolve(dst netip.Addr, cache map[int]map[netip.Addr]net.HardwareAddr) (Entry, error) {
	routes, err := t.nl.RouteGet(dst.AsSlice())
	if err != nil {
		return Entry{}, fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(routes) == 0 {
		return Entry{}, fmt.Errorf("no route to %s", dst)
	}
	r := routes[0]
	if r.LinkIndex != t.opts.Ifindex {
		return Entry{}, fmt.Errorf("route to %s leaves through ifindex %d, not %d", dst, r.LinkIndex, t.opts.Ifindex)
	}
	hop := dst
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && gw.IsValid() && !gw.IsUnspecified() {
		hop = gw.Unmap()
	}
	table, ok := cache[r.LinkIndex]
	if !ok {
		table, err = t.neighbours(r.LinkIndex)
		if err != nil {
			return Entry{}, err
		}
		cache[r.LinkIndex] = table
	}
	mac, ok := table[hop]
	if !ok || len(mac) != 6 {
		return Entry{}, fmt.Errorf("next hop %s of %s not in the neighbour table", hop, dst)
	}
	e := Entry{MAC: frame.MAC(mac)}
	if src, ok := netip.AddrFromSlice(r.Src); ok {
		e.Src = src.Unmap()
	}
	return e, nil
}

// usable are the neighbour states whose link-layer address can be used.
const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

func (t *Table) neighbours(ifindex int) (map[netip.Addr]net.HardwareAddr, error) {
	m := map[netip.Addr]net.HardwareAddr{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := t.nl.NeighList(ifindex, fam)
		if err != nil {
			return nil, fmt.Errorf("neighbours of ifindex %d: %w", ifindex, err)
		}
		for _, n := range list {
			if n.State&usable == 0 {
				continue
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				m[a.Unmap()] = n.HardwareAddr
			}
		}
	}
	return m, nil
}
