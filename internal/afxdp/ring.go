package afxdp

import "sync/atomic"

// ring is the user-space half of one AF_XDP ring: pointers to the producer
// and consumer indices and the flags word shared with the kernel, and cached
// copies of them (as in libxdp's xsk.h). Indices are free-running uint32
// counters: they wrap at 2^32 and only their difference matters; mask maps
// one to a slot.
//
// For a producer ring (fill, TX) cachedCons is kept one ring size ahead of
// the consumer index, so cachedCons-cachedProd is the number of free slots.
// For a consumer ring (RX, completion) cachedProd-cachedCons is the number
// of filled slots.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32

	cachedProd uint32
	cachedCons uint32
}

// initProducer and initConsumer load the indices as libxdp does at setup.
func (r *ring) initProducer() {
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
}

func (r *ring) initConsumer() {
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
}

// free returns the number of free slots of a producer ring, reloading the
// kernel's consumer index only when the cache shows fewer than n.
func (r *ring) free(n uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= n {
		return free
	}
	// Acquire: the kernel is done with the slots before it publishes them.
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	return r.cachedCons - r.cachedProd
}

// reserve reserves up to n slots of a producer ring and returns the index
// of the first and how many it got. The slots are the caller's to write
// until submit.
func (r *ring) reserve(n uint32) (idx, got uint32) {
	got = min(r.free(n), n)
	idx = r.cachedProd
	r.cachedProd += got
	return idx, got
}

// submit publishes every reserved slot to the kernel. The atomic store is a
// release: the slot writes before it are visible to the kernel first.
func (r *ring) submit() {
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// avail returns the number of filled slots of a consumer ring, at most n,
// reloading the kernel's producer index only when the cache shows fewer.
func (r *ring) avail(n uint32) uint32 {
	entries := r.cachedProd - r.cachedCons
	if entries < n {
		// Acquire: the kernel's slot writes are visible after this load.
		r.cachedProd = atomic.LoadUint32(r.producer)
		entries = r.cachedProd - r.cachedCons
	}
	return min(entries, n)
}

// peek takes up to n filled slots of a consumer ring and returns the index
// of the first and how many it got. They stay valid until release.
func (r *ring) peek(n uint32) (idx, got uint32) {
	got = r.avail(n)
	idx = r.cachedCons
	r.cachedCons += got
	return idx, got
}

// release hands every peeked slot back to the kernel (a release store: the
// slot reads before it are complete first).
func (r *ring) release() {
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// pending returns how many submitted entries of a producer ring the kernel
// has not consumed yet.
func (r *ring) pending() uint32 {
	return r.cachedProd - atomic.LoadUint32(r.consumer)
}

// needWakeup reports whether the kernel asked to be kicked for this ring.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}
