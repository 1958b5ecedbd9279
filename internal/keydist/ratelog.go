package keydist

import (
	"log/slog"
	"slices"
	"time"

	"github.com/mdfast/mdfast/internal/ratelog"
)

// rateLog lets at most burst lines per reason through per interval (see
// package ratelog), so that a flood of bad input cannot flood the log. Each
// line carries the reason once.
type rateLog struct{ l *ratelog.Logger }

func newRateLog(log *slog.Logger, interval time.Duration, burst int) *rateLog {
	return &rateLog{l: ratelog.New(log, interval, burst)}
}

// Log logs msg at level under key (the reason), unless the key is over its
// budget. The line gets "reason" = key unless args already name one.
func (r *rateLog) Log(level slog.Level, key, msg string, args ...any) {
	if !hasKey(args, "reason") {
		args = append(slices.Clip(args), "reason", key)
	}
	r.l.Log(level, key, msg, args...)
}

// hasKey reports whether slog key-value args contain key.
func hasKey(args []any, key string) bool {
	for i := 0; i+1 < len(args); i += 2 {
		if s, ok := args[i].(string); ok && s == key {
			return true
		}
	}
	return false
}
