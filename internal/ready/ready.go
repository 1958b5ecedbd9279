package ready

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPeriod is the check period used by Run when given 0.
const DefaultPeriod = 250 * time.Millisecond

// logEvery bounds how often a check's state change is logged: a check an
// outsider can make flap (a tunnel to a KD) must not flood the log. The
// gauge and /readyz are always current; a suppressed change is counted in
// the next line logged for that check.
const logEvery = 10 * time.Second

// errNotChecked is every check's state before the first Update.
var errNotChecked = errors.New("not checked yet")

// Check is one named readiness condition.
type Check struct {
	// Name labels the check (the gauge's check label, the /readyz line),
	// e.g. "tunnel".
	Name string
	// Func returns nil when the condition holds, else the reason it does
	// not. It is called from one goroutine at a time.
	Func func() error
}

// Result is the outcome of one check.
type Result struct {
	Name string
	// Err is nil when the check passed.
	Err error
}

// Config configures a Checker.
type Config struct {
	// Checks, in the order /readyz lists their failures.
	Checks []Check
	// OnChange, when not nil, is told each check's state after the first
	// Update and whenever it changes (a gauge 0/1).
	OnChange func(check string, ok bool)
	// Logger, default slog.Default().
	Logger *slog.Logger
}

// Checker runs the checks and keeps their last results.
type Checker struct {
	cfg  Config
	last atomic.Pointer[[]Result]

	mu    sync.Mutex // serializes Update; guards state
	state []checkState
	now   func() time.Time
}

type checkState struct {
	known, ok  bool
	loggedAt   time.Time
	suppressed int
}

// New returns a Checker; it is not ready until the first Update.
func New(cfg Config) *Checker {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Checker{cfg: cfg, state: make([]checkState, len(cfg.Checks)), now: time.Now}
	res := make([]Result, len(cfg.Checks))
	for i, ch := range cfg.Checks {
		res[i] = Result{Name: ch.Name, Err: errNotChecked}
	}
	c.last.Store(&res)
	return c
}

// Update runs every check once, publishes the results and reports changes.
func (c *Checker) Update() {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := make([]Result, len(c.cfg.Checks))
	now := c.now()
	for i, ch := range c.cfg.Checks {
		err := ch.Func()
		res[i] = Result{Name: ch.Name, Err: err}
		ok, st := err == nil, &c.state[i]
		if st.known && st.ok == ok {
			continue
		}
		first := !st.known
		st.known, st.ok = true, ok
		if c.cfg.OnChange != nil {
			c.cfg.OnChange(ch.Name, ok)
		}
		if first {
			continue // the starting state (a tunnel not up yet) is no news
		}
		if !st.loggedAt.IsZero() && now.Sub(st.loggedAt) < logEvery {
			st.suppressed++
			continue
		}
		st.loggedAt = now
		if ok {
			c.cfg.Logger.Info("ready: check passes again", "check", ch.Name, "changes_not_logged", st.suppressed)
		} else {
			c.cfg.Logger.Warn("ready: check fails", "check", ch.Name, "reason", err, "changes_not_logged", st.suppressed)
		}
		st.suppressed = 0
	}
	c.last.Store(&res)
}

// Run calls Update every period (DefaultPeriod when 0) until ctx is done.
func (c *Checker) Run(ctx context.Context, period time.Duration) {
	if period <= 0 {
		period = DefaultPeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Update()
		}
	}
}

// Results returns the last results, in Config.Checks order.
func (c *Checker) Results() []Result { return *c.last.Load() }

// Failures returns "name: reason" for each check that failed last time,
// empty when ready.
func (c *Checker) Failures() []string {
	var out []string
	for _, r := range c.Results() {
		if r.Err != nil {
			out = append(out, fmt.Sprintf("%s: %v", r.Name, r.Err))
		}
	}
	return out
}

// ServeHTTP answers /readyz from the last results: 200 "ready", or 503 with
// one "check: reason" line per failing check. It runs no check.
func (c *Checker) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if why := c.Failures(); len(why) > 0 {
		http.Error(w, strings.Join(why, "\n"), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
