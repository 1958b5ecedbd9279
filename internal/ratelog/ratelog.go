// Package ratelog rate-limits log lines that an outsider can trigger: each
// key (a fixed reason, never a peer-chosen string) gets a burst of lines per
// interval; the lines over budget are counted and the next line logged under
// that key says how many were suppressed. It must not be keyed by anything
// an outsider chooses (addresses, identifiers): its memory is bounded by the
// number of keys.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys tracked; keys are meant to be a fixed set.
const maxKeys = 1024

// Logger is a rate-limited front of a slog.Logger. It is safe for
// concurrent use.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	burst    int
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	start      time.Time
	n          int
	suppressed int
}

// New returns a Logger that lets burst lines per key through every
// interval.
func New(log *slog.Logger, interval time.Duration, burst int) *Logger {
	return &Logger{log: log, interval: interval, burst: burst, now: time.Now, keys: map[string]*state{}}
}

// Log logs msg with args at level, unless key has used its budget for the
// current interval. A line logged after suppressed ones carries
// "suppressed_since_last".
func (r *Logger) Log(level slog.Level, key, msg string, args ...any) {
	if r == nil || !r.log.Enabled(context.Background(), level) {
		return
	}
	now := r.now()
	r.mu.Lock()
	s := r.keys[key]
	if s == nil {
		if len(r.keys) >= maxKeys {
			clear(r.keys)
		}
		s = &state{start: now}
		r.keys[key] = s
	}
	if now.Sub(s.start) >= r.interval {
		s.start, s.n = now, 0
	}
	if s.n >= r.burst {
		s.suppressed++
		r.mu.Unlock()
		return
	}
	s.n++
	suppressed := s.suppressed
	s.suppressed = 0
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
