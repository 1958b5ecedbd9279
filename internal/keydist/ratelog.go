package keydist

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog lets at most burst lines per key through per interval and
// reports how many were suppressed on the next line that passes, so that a
// flood of bad input cannot flood the log.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	burst    int

	mu   sync.Mutex
	keys map[string]*rateState
}

type rateState struct {
	start      time.Time
	n          int
	suppressed int
}

func newRateLog(log *slog.Logger, interval time.Duration, burst int) *rateLog {
	return &rateLog{log: log, interval: interval, burst: burst, keys: map[string]*rateState{}}
}

// Log logs msg at level under key (the reason), unless the key is over its
// budget.
func (r *rateLog) Log(level slog.Level, key, msg string, args ...any) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	s := r.keys[key]
	if s == nil {
		if len(r.keys) > 1024 { // keys are a fixed set of reasons; be safe anyway
			clear(r.keys)
		}
		s = &rateState{start: now}
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
	r.log.Log(context.Background(), level, msg, append(args, "reason", key)...)
}
