package dataplane

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// failingPort is a Port whose Receive fails once told to (as an AF_XDP
// socket does when its interface goes).
type failingPort struct {
	fakePort
	fail atomic.Bool
}

var errPortGone = errors.New("port gone")

func (p *failingPort) Receive(rx []RxPacket) (int, error) {
	if p.fail.Load() {
		return 0, errPortGone
	}
	time.Sleep(time.Millisecond)
	return p.fakePort.Receive(rx)
}

// TestCheckWorkers: nil while every worker runs; the first worker whose
// port fails is named with its error; after Close, ErrClosed.
func TestCheckWorkers(t *testing.T) {
	d := newDataplane(Config{Table: newMemTable(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ModeSocket)
	ports := []*failingPort{{fakePort: *newFakePort(4, 4)}, {fakePort: *newFakePort(4, 4)}}
	for _, p := range ports {
		d.addWorker(p)
	}
	d.start()
	defer d.Close()
	if err := d.CheckWorkers(); err != nil {
		t.Fatalf("CheckWorkers while running: %v", err)
	}
	if err := d.CheckXDP(); err != nil {
		t.Fatalf("CheckXDP in socket mode: %v", err)
	}
	ports[1].fail.Store(true)
	deadline := time.Now().Add(2 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		err = d.CheckWorkers()
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, errPortGone) || !strings.Contains(err.Error(), "worker 1 stopped") {
		t.Fatalf("CheckWorkers after worker 1's port failed = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// The stopped worker stays the reported one.
	if err := d.CheckWorkers(); !errors.Is(err, errPortGone) {
		t.Errorf("CheckWorkers after Close = %v", err)
	}

	d2 := newDataplane(Config{Table: newMemTable(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ModeSocket)
	d2.addWorker(&failingPort{fakePort: *newFakePort(4, 4)})
	d2.start()
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d2.CheckWorkers(); !errors.Is(err, ErrClosed) {
		t.Errorf("CheckWorkers after a clean Close = %v, want ErrClosed", err)
	}
}
