package keytable

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"
)

// maxReaders bounds the reader IDs, which Reader.Own packs into the low 15
// bits of the owner word; bit 15 (inTransit) marks a hand-over under way.
const (
	maxReaders = 1<<15 - 1
	inTransit  = 1 << 15
	readerMask = inTransit - 1
)

// Reader is one worker's handle on the Table. It publishes which snapshot
// the worker is reading, so that writers can wait for a grace period. A
// Reader is used by one goroutine only; make one per worker with
// Table.NewReader and Close it when the worker stops.
//
//	r := t.NewReader()
//	defer r.Close()
//	for {
//		n := recvBatch(pkts)
//		snap := r.Begin()
//		for _, p := range pkts[:n] {
//			ep := snap.Lookup(keytable.KeyV4(p.src, p.sport))
//			...
//		}
//		r.End()
//	}
type Reader struct {
	_ [64]byte
	// active is the epoch of the snapshot the worker is reading, 0 when
	// it is outside a batch. On its own cache line: writers poll it.
	active atomic.Uint64
	_      [56]byte
	t      *Table
	id     uint16
	// claims caches the claims Admit found, by Endpoint version and
	// SSRC (claimSlotOf): a hit skips the conference's claim map. An
	// entry is used only while its claim is open: every claim leaves the
	// live map closed (replace, retire), so an open one is still the
	// live claim of that SSRC for that Endpoint version. Entries hold
	// their Endpoint and claim, so their addresses are not reused while
	// cached.
	claims [claimSlots]claimSlot
}

// claimSlots is the size of Reader.claims: claimSlotOf's range.
const claimSlots = 1 << 6

type claimSlot struct {
	ep   *Endpoint
	c    *claim
	ssrc uint32
}

// claimSlotOf returns the slot of (ep, ssrc) in Reader.claims.
func claimSlotOf(ep *Endpoint, ssrc uint32) uint64 {
	return (uint64(uintptr(unsafe.Pointer(ep))) ^ uint64(ssrc)) * 0x9e3779b97f4a7c15 >> (64 - 6) // < claimSlots
}

// Admit is Table.Admit for this reader's worker, with the same results
// and counts: it remembers the claims it found, so that a packet of a
// sender and SSRC it saw before, whose claim is still open, does not look
// the claim up again. Only the reader's goroutine may call it.
func (r *Reader) Admit(ep *Endpoint, ssrc uint32, kind Kind, index, maxJoin uint64, now int64) (Claim, bool) {
	var cl Claim
	ok := r.AdmitTo(&cl, ep, ssrc, kind, index, maxJoin, now)
	return cl, ok
}

// AdmitTo is Admit writing the Claim to *cl (the zero Claim on false)
// instead of returning it: the worker keeps one Claim per reader and
// copies none per packet. Only the reader's goroutine may call it. It
// inlines into its caller: admitTo uses the reader's cache or fills it.
func (r *Reader) AdmitTo(cl *Claim, ep *Endpoint, ssrc uint32, kind Kind, index, maxJoin uint64, now int64) bool {
	return r.t.admitTo(cl, &r.claims, ep, ssrc, kind, index, maxJoin, now)
}

// NewReader registers a worker and returns its Reader. It panics if more
// than 32766 Readers are open at once (a programming error).
func (t *Table) NewReader() *Reader {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	old := *t.readers.Load()
	used := make(map[uint16]bool, len(old))
	for _, r := range old {
		used[r.id] = true
	}
	r := &Reader{t: t}
	for id := uint16(1); id < maxReaders; id++ {
		if !used[id] {
			r.id = id
			break
		}
	}
	if r.id == 0 {
		panic("keytable: too many readers")
	}
	nl := append(slices.Clone(old), r)
	t.readers.Store(&nl)
	return r
}

// ID returns the reader's number (1..32766), unique among open Readers.
func (r *Reader) ID() int { return int(r.id) }

// Begin starts a batch: it returns the current snapshot and records that
// the worker is reading it. The worker must call End when it no longer
// uses the snapshot or anything it returned; a removal waits for that.
// Begin neither locks nor allocates.
func (r *Reader) Begin() *Snapshot {
	for {
		s := r.t.snap.Load()
		r.active.Store(s.epoch)
		// A writer that published after our Load may have scanned us
		// before our Store and concluded we were idle: then this
		// re-load sees its snapshot, and we take that one instead.
		if r.t.snap.Load() == s {
			return s
		}
	}
}

// End ends the batch started by Begin: the snapshot and the Endpoints and
// slices taken from it must not be used any more.
func (r *Reader) End() { r.active.Store(0) }

// Close unregisters the Reader; writers stop waiting for it. It must not be
// used afterwards.
func (r *Reader) Close() {
	r.active.Store(0)
	r.claims = [claimSlots]claimSlot{} // let go of the Endpoints and their keys
	t := r.t
	t.rmu.Lock()
	defer t.rmu.Unlock()
	nl := slices.DeleteFunc(slices.Clone(*t.readers.Load()), func(x *Reader) bool { return x == r })
	t.readers.Store(&nl)
}

// Own claims the receive side of ep's current keys (generation ep.Gen())
// for this reader, and reports whether this reader owns it. The worker that
// owns a generation is the only one that may hold an srtpfast.Opener for
// ep.Recv(): two Openers for one Keys would have two replay windows, and a
// packet replayed to the other worker would be opened and re-sealed twice.
// The first worker to call Own for a generation becomes its owner; a packet
// for it on another worker (after an RSS change or an address change moved
// the flow to another queue) is dropped and counted as Misrouted until the
// owner hands its Opener over (HandOver, then Accept on the new owner) or
// calls Release. A generation in transit (handed over, not yet accepted) is
// owned by nobody: Own refuses it on every reader, the receiving one
// included, so no worker builds a fresh Opener for it meanwhile. Own does
// not allocate.
func (r *Reader) Own(ep *Endpoint) bool {
	want := ep.gen<<16 | uint64(r.id)
	for {
		cur := ep.a.owner.Load()
		switch {
		case cur == want:
			return true
		case cur>>16 < ep.gen || cur == ep.gen<<16:
			// unowned, released, or owned for an older generation:
			// take it.
			if ep.a.owner.CompareAndSwap(cur, want) {
				return true
			}
		default:
			// owned by another reader, in transit, or ep is an old
			// generation.
			r.t.stats.misrouted.Add(1)
			return false
		}
	}
}

// Owner returns who holds the receive side of ep's generation: the ID of
// the owning Reader (0 if nobody owns it yet, or it was released), or, when
// transit is true, the Reader it is being handed to (0: parked, see
// HandOver). stale is true when ep is an older generation than the one
// owned, or than the association's current one if that was claimed.
func (r *Reader) Owner(ep *Endpoint) (reader int, transit, stale bool) {
	cur := ep.a.owner.Load()
	switch {
	case cur>>16 > ep.gen:
		return 0, false, true
	case cur>>16 < ep.gen:
		return 0, false, false
	}
	return int(cur & readerMask), cur&inTransit != 0, false
}

// HandOver gives this reader's ownership of ep's generation to the Reader
// numbered to, in transit: until that reader calls Accept, Own refuses the
// generation everywhere. to == 0 parks it: any reader may then Accept it
// (the caller keeps the Opener where that reader will find it). It reports
// false, changing nothing, when this reader does not own ep's generation.
// The caller must have stopped using its Opener for ep.Recv() before the
// call and must hand it to the new owner after it (see the data plane's
// handover.go for the ordering).
func (r *Reader) HandOver(ep *Endpoint, to int) bool {
	if to < 0 || to >= maxReaders {
		return false
	}
	return ep.a.owner.CompareAndSwap(ep.gen<<16|uint64(r.id), ep.gen<<16|inTransit|uint64(to))
}

// Accept completes a HandOver to this reader, or takes a parked
// generation: afterwards this reader owns ep's generation. Call it only
// when holding the Opener that was handed over. It reports false when the
// generation is not in transit to this reader nor parked (e.g. the keys
// were replaced meanwhile: the Opener handed over is then stale).
func (r *Reader) Accept(ep *Endpoint) bool {
	want := ep.gen<<16 | uint64(r.id)
	return ep.a.owner.CompareAndSwap(ep.gen<<16|inTransit|uint64(r.id), want) ||
		ep.a.owner.CompareAndSwap(ep.gen<<16|inTransit, want)
}

// Release gives up this reader's ownership of ep's current generation, so
// that the next worker to call Own takes it. Call it only when this reader
// holds no Opener for ep.Recv() (or when ep's association is gone):
// building a fresh Opener for keys an Opener already exists for would reset
// the replay windows; to move one, use HandOver.
func (r *Reader) Release(ep *Endpoint) {
	ep.a.owner.CompareAndSwap(ep.gen<<16|uint64(r.id), ep.gen<<16)
}

// waitGrace waits until no Reader is inside a batch that began on a
// snapshot older than epoch, or until ctx is done (then it returns an error
// wrapping ErrGraceTimeout naming the readers still inside).
func (t *Table) waitGrace(ctx context.Context, epoch uint64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.GraceTimeout)
		defer cancel()
	}
	var stuck []int
	for _, r := range *t.readers.Load() {
		sleep := 10 * time.Microsecond
		for i := 0; ; i++ {
			if v := r.active.Load(); v == 0 || v >= epoch {
				break
			}
			if ctx.Err() != nil {
				stuck = append(stuck, r.ID())
				break
			}
			if i < 100 {
				runtime.Gosched()
				continue
			}
			time.Sleep(sleep)
			sleep = min(2*sleep, time.Millisecond)
		}
	}
	if stuck != nil {
		t.stats.graceTimeouts.Add(1)
		return fmt.Errorf("%w: readers %v are still in a batch begun before epoch %d", ErrGraceTimeout, stuck, epoch)
	}
	return nil
}

// Synchronize waits until every batch that began before the call has
// ended: afterwards no worker uses a snapshot older than the current one.
// It returns an error wrapping ErrGraceTimeout if ctx ends first (or, when
// ctx has no deadline, after Config.GraceTimeout).
func (t *Table) Synchronize(ctx context.Context) error {
	if err := t.waitGrace(ctx, t.snap.Load().epoch); err != nil {
		return fmt.Errorf("keytable: synchronize: %w", err)
	}
	return nil
}
