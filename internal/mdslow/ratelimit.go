package mdslow

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source address. It holds at most max
// sources (see allow for what happens when it is full).
type limiter struct {
	rate, burst float64
	max         int
	buckets     map[netip.Addr]*bucket
	resets      int // times it was full and forgot every source
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.Addr]*bucket)}
}

// set changes the rate and burst (a reload).
func (l *limiter) set(rate float64, burst int) { l.rate, l.burst = rate, float64(burst) }

// allow takes a token for src at now.
func (l *limiter) allow(src netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) >= l.max {
			// Full (a flood from many, likely spoofed, sources): forget
			// the sources back at a full bucket, and if that is not
			// enough, all of them. Refusing unknown sources instead would
			// let such a flood lock every newcomer out. Memory stays
			// bounded; a source's budget is at most reset once per max
			// new sources.
			l.sweep(now)
			if len(l.buckets) >= l.max {
				clear(l.buckets)
				l.resets++
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets sources whose bucket is full again.
func (l *limiter) sweep(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
}

// prefixBudget is a token bucket per source prefix under a global one. It
// is safe for concurrent use.
type prefixBudget struct {
	mu     sync.Mutex
	per    *limiter
	global bucket
	rate   float64 // of the global bucket
}

func newPrefixBudget(rate float64, burst int, globalRate float64, max int) *prefixBudget {
	return &prefixBudget{per: newLimiter(rate, burst, max), rate: globalRate, global: bucket{tokens: globalRate}}
}

// allow takes a token from the prefix's bucket and from the global one.
func (b *prefixBudget) allow(prefix netip.Addr, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := &b.global
	if g.last.IsZero() {
		g.last = now
	}
	g.tokens = min(b.rate, g.tokens+now.Sub(g.last).Seconds()*b.rate)
	g.last = now
	if g.tokens < 1 || !b.per.allow(prefix, now) {
		return false
	}
	g.tokens--
	return true
}

func (b *prefixBudget) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.per.sweep(now)
}
