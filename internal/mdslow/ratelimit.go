package mdslow

import (
	"net/netip"
	"time"
)

// limiter is a token bucket per source address. It holds at most max
// sources (see allow for what happens when it is full).
type limiter struct {
	rate, burst float64
	max         int
	buckets     map[netip.Addr]*bucket
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

// take takes a token from b, which refills at rate per second up to
// burst (a new bucket starts full).
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
