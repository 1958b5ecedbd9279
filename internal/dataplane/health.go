package dataplane

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// workerExit records the first worker whose Run returned.
type workerExit struct {
	id  int
	err error
}

// CheckWorkers reports whether every worker is still running: nil while
// they are, else an error naming the first one that stopped and why (a
// worker stops when its port fails, e.g. when the interface under its
// AF_XDP socket is deleted). It reads one atomic and is safe to call from
// any goroutine, as often as wanted.
func (d *Dataplane) CheckWorkers() error {
	e := d.exited.Load()
	switch {
	case e == nil:
		return nil
	case e.err != nil:
		return fmt.Errorf("worker %d stopped: %w", e.id, e.err)
	case d.stop.Load():
		return fmt.Errorf("workers stopped: %w", ErrClosed)
	}
	return fmt.Errorf("worker %d stopped", e.id)
}

// CheckXDP reports whether the classifier is still attached where the data
// plane put it (XDP modes; nil in socket mode): the bpf_link must still be
// on the interface it was attached to (the kernel detaches it when the
// interface is deleted), and the interface now named Config.Interface must
// be that one (a deleted and recreated interface has a new index and no
// program). Either failure means every packet is left to the kernel and no
// media is forwarded.
//
// It costs one bpf(2) call and one netlink request (by name, in the network
// namespace the data plane was opened in); call it from a periodic checker,
// not per request. Safe for concurrent use; after Close it returns
// ErrClosed.
func (d *Dataplane) CheckXDP() error {
	if d.att == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	name, want := d.cfg.Interface, d.att.Ifindex()
	l, err := d.nl.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("XDP program not attached: interface %s is gone", name)
		}
		return fmt.Errorf("XDP program state unknown: look up interface %s: %w", name, err)
	}
	if got := l.Attrs().Index; got != want {
		return fmt.Errorf("XDP program not attached: interface %s was recreated (ifindex %d; the program was on %d)", name, got, want)
	}
	at, err := d.att.AttachedIfindex()
	if err != nil {
		return fmt.Errorf("XDP program state unknown: %w", err)
	}
	if at != want {
		return fmt.Errorf("XDP program detached from %s (ifindex %d)", name, want)
	}
	return nil
}
