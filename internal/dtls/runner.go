package dtls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Runner drives one Conn from a goroutine of its own: datagrams come in
// through Deliver (from whoever reads the socket), go out through send,
// the retransmission timer fires by itself, and every event is handed to
// onEvent on the Runner's goroutine. It is how an endpoint uses the
// package; the Key Distributor drives its Conns without one.
type Runner struct {
	conn    *Conn
	send    func([]byte) error
	onEvent func(Event)

	in      chan []byte
	do      chan func(*Conn)
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	hsDone chan struct{}
	hsOnce sync.Once
	mu     sync.Mutex
	hsErr  error
	closed error
}

// runnerQueue is how many received datagrams wait for the Runner; more are
// dropped (DTLS retransmits).
const runnerQueue = 64

// NewRunner starts a Runner for c (a client is started at once). send
// writes one datagram to the peer; onEvent may be nil.
func NewRunner(c *Conn, send func([]byte) error, onEvent func(Event)) *Runner {
	r := &Runner{
		conn: c, send: send, onEvent: onEvent,
		in:      make(chan []byte, runnerQueue),
		do:      make(chan func(*Conn)),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		hsDone:  make(chan struct{}),
	}
	go r.loop()
	if !c.server {
		_ = r.Do(func(c *Conn) { _ = c.Start(time.Now()) })
	}
	return r
}

// Deliver hands the Runner a datagram received from the peer; b is copied.
// It never blocks: when the queue is full the datagram is dropped.
func (r *Runner) Deliver(b []byte) bool {
	d := append([]byte(nil), b...)
	select {
	case r.in <- d:
		return true
	default:
		return false
	}
}

// Do runs fn on the Runner's goroutine with the Conn, then sends what fn
// caused. It returns ErrClosed once the Runner has stopped.
func (r *Runner) Do(fn func(*Conn)) error {
	done := make(chan struct{})
	select {
	case r.do <- func(c *Conn) { fn(c); close(done) }:
		<-done
		return nil
	case <-r.stopped:
		return ErrClosed
	}
}

// Handshake waits until the handshake completes, fails, or ctx ends.
func (r *Runner) Handshake(ctx context.Context) error {
	select {
	case <-r.hsDone:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.hsErr
	case <-ctx.Done():
		return fmt.Errorf("dtls: handshake: %w", context.Cause(ctx))
	}
}

// Err is why the Conn ended, nil while it runs.
func (r *Runner) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close sends close_notify (if the handshake got that far), zeroes the
// Conn's secrets and stops the Runner. It waits for the goroutine.
func (r *Runner) Close() error {
	_ = r.Do(func(c *Conn) { c.Close(time.Now()) })
	r.once.Do(func() { close(r.stop) })
	<-r.stopped
	r.endHandshake(ErrClosed)
	return nil
}

func (r *Runner) endHandshake(err error) {
	r.hsOnce.Do(func() {
		r.mu.Lock()
		r.hsErr = err
		r.mu.Unlock()
		close(r.hsDone)
	})
}

func (r *Runner) loop() {
	defer close(r.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		var tc <-chan time.Time
		if d := r.conn.Deadline(); !d.IsZero() {
			timer.Reset(time.Until(d))
			tc = timer.C
		}
		select {
		case b := <-r.in:
			_ = r.conn.HandleDatagram(time.Now(), b)
		case <-tc:
			_ = r.conn.HandleTimeout(time.Now())
		case fn := <-r.do:
			fn(r.conn)
		case <-r.stop:
			return
		}
		r.flush()
	}
}

// flush sends the Conn's datagrams and reports its events.
func (r *Runner) flush() {
	for _, d := range r.conn.Datagrams() {
		_ = r.send(d) // a lost datagram is what DTLS retransmits for
	}
	for _, ev := range r.conn.Events() {
		// onEvent runs first: when Handshake returns, the callback has
		// seen EventHandshakeComplete.
		if r.onEvent != nil {
			r.onEvent(ev)
		} else if ev.EKTKey != nil {
			ev.EKTKey.Zero()
		}
		switch ev.Kind {
		case EventHandshakeComplete:
			r.endHandshake(nil)
		case EventClosed:
			r.mu.Lock()
			r.closed = ev.Err
			r.mu.Unlock()
			r.endHandshake(ev.Err)
		}
	}
}

// PacketRunner is a Runner over a net.PacketConn it owns: a reader
// goroutine delivers the datagrams of one peer.
type PacketRunner struct {
	*Runner
	pc     net.PacketConn
	wg     sync.WaitGroup
	peerMu sync.Mutex
	peer   net.Addr
}

// RunPacketConn runs c over pc towards peer. A server may pass a nil peer:
// the first datagram's source becomes the peer. Close closes pc.
func RunPacketConn(pc net.PacketConn, peer net.Addr, c *Conn, onEvent func(Event)) *PacketRunner {
	p := &PacketRunner{pc: pc, peer: peer}
	p.Runner = NewRunner(c, p.write, onEvent)
	p.wg.Add(1)
	go p.read()
	return p
}

func (p *PacketRunner) write(b []byte) error {
	p.peerMu.Lock()
	peer := p.peer
	p.peerMu.Unlock()
	if peer == nil {
		return errors.New("dtls: no peer yet")
	}
	_, err := p.pc.WriteTo(b, peer)
	return err
}

func (p *PacketRunner) read() {
	defer p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		p.peerMu.Lock()
		if p.peer == nil {
			p.peer = from
		}
		ok := p.peer.String() == from.String()
		p.peerMu.Unlock()
		if ok {
			p.Deliver(buf[:n])
		}
	}
}

// Close stops the Runner (close_notify first) and closes the socket.
func (p *PacketRunner) Close() error {
	_ = p.Runner.Close()
	err := p.pc.Close()
	p.wg.Wait()
	return err
}
