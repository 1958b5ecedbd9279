package afxdp

import (
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/bpf"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestWake checks that a Wake from another goroutine ends a Wait that
// would otherwise block for 10 s, that Wakes made while nobody waits end
// the next Wait at once and are coalesced into one eventfd write, and that
// a Wait after the wake-up is drained blocks for its timeout again.
func TestWake(t *testing.T) {
	testutil.NeedRoot(t, "AF_XDP sockets, XDP programs and network namespaces")
	st := newSetup(t, bpf.ModeGeneric, Config{Mode: ModeCopy, NumFrames: 64})
	s := st.sock

	// A Wake from another goroutine while Wait sleeps.
	woke := make(chan struct{})
	go func() {
		defer close(woke)
		time.Sleep(50 * time.Millisecond) // let Wait reach poll(2); not needed for correctness
		s.Wake()
	}()
	start := time.Now()
	ready, err := s.Wait(10 * time.Second)
	took := time.Since(start)
	<-woke
	if err != nil || ready {
		t.Fatalf("Wait after Wake: ready %v, err %v", ready, err)
	}
	if took > 5*time.Second {
		t.Fatalf("Wait returned after %v: not because of the Wake", took)
	}
	t.Logf("Wait returned %v after it began (Wake after 50 ms)", took.Round(time.Millisecond))

	// Many Wakes while nobody waits: one eventfd write, and the next Wait
	// returns at once.
	for range 1000 {
		s.Wake()
	}
	if v := eventfdValue(t, s); v != 1 {
		t.Fatalf("1000 Wakes wrote %d to the eventfd, want 1 (coalesced)", v)
	}
	// eventfdValue consumed the count; wake again for the Wait below.
	s.wakePending.Store(false)
	s.Wake()
	start = time.Now()
	if _, err := s.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Wait after an earlier Wake took %v", took)
	}

	// Drained: the next Wait sleeps its whole timeout.
	start = time.Now()
	if ready, err := s.Wait(100 * time.Millisecond); err != nil || ready {
		t.Fatalf("idle Wait: ready %v, err %v", ready, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("idle Wait returned after %v, before its 100 ms timeout: wake-up not drained", took)
	}

	if a := testing.AllocsPerRun(100, s.Wake); a != 0 {
		t.Fatalf("Wake allocates %v times", a)
	}
}

// eventfdValue reads (and so resets) the wake eventfd's counter.
func eventfdValue(t *testing.T, s *Socket) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := unix.Read(s.wakeFd, b[:]); err != nil {
		t.Fatalf("read eventfd: %v", err)
	}
	return *(*uint64)(unsafe.Pointer(&b[0]))
}

// TestWakeClose checks that Close closes the wake eventfd (the process's
// descriptor count is back where it was) and that Wake after Close, or
// racing with it, does nothing.
func TestWakeClose(t *testing.T) {
	testutil.NeedRoot(t, "AF_XDP sockets and network namespaces")
	pair := netnstest.NewPair(t)
	before := countFDs(t)
	var s *Socket
	if err := pair.MD.NS.Do(func() (err error) {
		s, err = Open(Config{Ifindex: pair.MD.Index, Mode: ModeCopy, NumFrames: 64})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := countFDs(t); n != before+2 {
		t.Errorf("open socket: %d descriptors, want %d (socket and eventfd)", n, before+2)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // Wakes racing with Close
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				s.Wake()
				s.wakePending.Store(false)
			}
		}
	}()
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	s.Wake()
	if n := countFDs(t); n != before {
		t.Fatalf("after Close: %d descriptors, want %d (leak)", n, before)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
