package gen

import (
	"testing"
	"time"
)

func TestStreamIndex(t *testing.T) {
	st := stream{seen: make([]uint64, dupWindow/64*2)}
	steps := []struct {
		name string
		seq  uint16
		want uint64
		dup  bool
	}{
		{"first", 65000, 65000, false},
		{"next", 65001, 65001, false},
		{"wrap", 3, 65539, false},
		{"late from before the wrap", 65500, 65500, false},
		{"duplicate", 3, 65539, true},
		{"duplicate before the wrap", 65001, 65001, true},
		{"gap", 20000, 85536, false},
		{"behind, same ROC", 100, 65636, false},
		{"forward", 50000, 115536, false},
		{"second wrap", 100, 131172, false},
	}
	for _, s := range steps {
		idx, dup := st.index(s.seq)
		if idx != s.want || dup != s.dup {
			t.Fatalf("%s: index(%d) = %d, %v; want %d, %v", s.name, s.seq, idx, dup, s.want, s.dup)
		}
	}
}

func TestStreamSSRC(t *testing.T) {
	seen := map[uint32]bool{}
	for e := range uint32(100) {
		for k := range MaxStreams {
			s := StreamSSRC(0x4d440000+e, k)
			if seen[s] {
				t.Fatalf("SSRC %#x twice", s)
			}
			seen[s] = true
		}
	}
}

func TestConfigCheck(t *testing.T) {
	if err := (&Config{}).check(); err == nil {
		t.Fatal("empty config accepted")
	}
}

// TestPacer: the timerfd never wakes the sender before the time it asked
// for, returns at once for a time already passed, and waits again after
// each expiry (the expiration count is consumed).
func TestPacer(t *testing.T) {
	p, err := newPacer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 50 {
		at := monoNow() + int64(i%5)*100_000 // 0–400 µs ahead
		if err := p.waitUntil(at); err != nil {
			t.Fatal(err)
		}
		if now := monoNow(); now < at {
			t.Fatalf("wait %d: woke %d ns early", i, at-now)
		}
	}
	past := monoNow() - int64(time.Second)
	done := make(chan error, 1)
	go func() { done <- p.waitUntil(past) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting for a time already passed did not return")
	}
	if err := p.waitUntil(0); err != nil { // never arms a zero (disarming) time
		t.Fatal(err)
	}
}

// TestMonoOf: a time.Time maps onto the pacer's clock in order and to
// within the time the conversion takes.
func TestMonoOf(t *testing.T) {
	before := monoNow()
	at := time.Now()
	after := monoNow()
	m := monoOf(at)
	if m < before-int64(time.Millisecond) || m > after+int64(time.Millisecond) {
		t.Fatalf("monoOf(now) = %d, not within [%d, %d]", m, before, after)
	}
	if later := monoOf(at.Add(time.Second)); later-m < int64(time.Second)-int64(time.Millisecond) || later-m > int64(time.Second)+int64(time.Millisecond) {
		t.Fatalf("one second later maps %d ns later", later-m)
	}
}
