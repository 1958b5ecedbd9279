// Package fairq is a bounded queue served fairly across keys (deficit-free
// round robin, one item per key per turn): a producer flooding under a few
// keys fills only those keys' queues, and an item under another key waits
// for at most one turn of the keys that have items, whatever the flood's
// rate. The Media Distributor keys its slow path by source prefix, so that
// a flood of new ClientHellos or STUN from some prefixes cannot crowd out
// an endpoint joining from another.
//
// It holds at most MaxKeys keys with PerKey items each; an item that does
// not fit is refused (the caller counts the drop). It is safe for
// concurrent use; Push and Pop do not allocate once a key's ring exists.
package fairq

import "sync"

// Queue is a fair queue of T keyed by K.
type Queue[K comparable, T any] struct {
	perKey, maxKeys int

	mu     sync.Mutex
	keys   map[K]*ring[T]
	turn   []K // keys with items, in service order
	next   int // index in turn of the next key to serve
	n      int // items queued
	free   []*ring[T]
	ready  chan struct{}
	closed bool
}

type ring[T any] struct {
	items      []T
	head, size int
}

// New returns a Queue holding at most perKey items per key and maxKeys
// keys.
func New[K comparable, T any](perKey, maxKeys int) *Queue[K, T] {
	return &Queue[K, T]{perKey: max(perKey, 1), maxKeys: max(maxKeys, 1), keys: make(map[K]*ring[T]), ready: make(chan struct{}, 1)}
}

// Push queues v under key. It reports false, keeping nothing, when key's
// queue is full, when MaxKeys other keys have items, or after Close.
func (q *Queue[K, T]) Push(key K, v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	r := q.keys[key]
	if r == nil {
		if len(q.keys) >= q.maxKeys {
			q.mu.Unlock()
			return false
		}
		if k := len(q.free); k > 0 {
			r, q.free = q.free[k-1], q.free[:k-1]
		} else {
			r = &ring[T]{items: make([]T, q.perKey)}
		}
		q.keys[key] = r
		q.turn = append(q.turn, key)
	}
	if r.size == len(r.items) {
		q.mu.Unlock()
		return false
	}
	r.items[(r.head+r.size)%len(r.items)] = v
	r.size++
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// Room reports whether a Push under key would be taken now (a hint: other
// producers may take the room first).
func (q *Queue[K, T]) Room(key K) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if r := q.keys[key]; r != nil {
		return r.size < len(r.items)
	}
	return len(q.keys) < q.maxKeys
}

// Pop takes the next item in round-robin order of keys. ok is false when
// the queue is empty.
func (q *Queue[K, T]) Pop() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return v, false
	}
	if q.next >= len(q.turn) {
		q.next = 0
	}
	key := q.turn[q.next]
	r := q.keys[key]
	v = r.items[r.head]
	var zero T
	r.items[r.head] = zero
	r.head = (r.head + 1) % len(r.items)
	r.size--
	q.n--
	if r.size == 0 {
		// The key leaves the turn; the next key moves into its slot.
		delete(q.keys, key)
		q.turn = append(q.turn[:q.next], q.turn[q.next+1:]...)
		r.head = 0
		q.free = append(q.free, r)
	} else {
		q.next++
	}
	if q.n > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return v, true
}

// Ready returns a channel that has a value whenever items may be waiting:
// after a Push, and after a Pop that left items. A consumer selects on it,
// then Pops until empty.
func (q *Queue[K, T]) Ready() <-chan struct{} { return q.ready }

// Len returns the number of items queued.
func (q *Queue[K, T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Close makes later Pushes fail; queued items can still be popped.
func (q *Queue[K, T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
