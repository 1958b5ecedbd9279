package gen

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer waits for points of CLOCK_MONOTONIC on a timerfd, which wakes the
// waiting goroutine through the Go netpoller when the kernel's
// high-resolution timer expires.
//
// time.Sleep does not do for pacing: a goroutine sleeping on an otherwise
// idle P is woken by the runtime's epoll_pwait timeout, in whole
// milliseconds, so a 20 µs Sleep took 1.12–1.16 ms on the benchmark host
// (p50, p99 1.18–1.29 ms) and the sender then sent a millisecond's worth
// of packets at once: at 50 % of saturation, bursts of dozens of packets
// that queued in the forwarder and made its tail latency the generator's.
// On the timerfd the same wait takes the wanted time plus the host's
// wake-up latency (about 50 µs on the benchmark VM), and the sender sends
// what fell due meanwhile: a few packets.
type pacer struct {
	fd  int
	f   *os.File // fd, registered with the netpoller
	buf [8]byte  // the expiration count read from fd
}

// newPacer opens the timerfd.
func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("gen: timerfd_create: %w", err)
	}
	return &pacer{fd: fd, f: os.NewFile(uintptr(fd), "gen-pacer")}, nil
}

// monoNow is CLOCK_MONOTONIC in nanoseconds, the pacer's clock.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail with a valid clock and pointer
	return ts.Nano()
}

// monoOf returns t on the pacer's clock (t must carry Go's monotonic
// reading, as time.Now's does).
func monoOf(t time.Time) int64 { return monoNow() - int64(time.Since(t)) }

// waitUntil blocks until CLOCK_MONOTONIC reaches at (ns); it returns at
// once when at has passed.
func (p *pacer) waitUntil(at int64) error {
	if at <= 0 { // a zero it_value would disarm the timer instead
		return nil
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	if err := unix.TimerfdSettime(p.fd, unix.TFD_TIMER_ABSTIME, &its, nil); err != nil {
		return fmt.Errorf("gen: timerfd_settime: %w", err)
	}
	if _, err := p.f.Read(p.buf[:]); err != nil {
		return fmt.Errorf("gen: timerfd read: %w", err)
	}
	return nil
}

// Close releases the timerfd.
func (p *pacer) Close() error { return p.f.Close() }
