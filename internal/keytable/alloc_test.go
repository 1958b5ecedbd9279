package keytable

import (
	"context"
	"runtime"
	"testing"
	"unsafe"
)

// The worker's per-packet operations do not allocate.
func TestHotPathAllocs(t *testing.T) {
	p := newPair(t, 0)
	tb := newTable(t, Config{})
	bulkInstall(t, tb, 0, 1000, 10, p)
	ep, _ := tb.Get(idOf(5))
	if !tb.ClaimSSRC(ep, 0xdeadbeef) {
		t.Fatal("claim refused")
	}
	intruder, _ := tb.Get(idOf(6)) // same conference
	// A re-based claim: rb re-uses an SSRC that old was sent by a sender
	// that left.
	gone, _ := tb.Get(idOf(7))
	old, _ := tb.Get(idOf(8))
	rb, _ := tb.Get(idOf(9))
	if _, ok := tb.Admit(gone, 0xfeed, KindRTP, 5000, 1<<40, 1); !ok {
		t.Fatal("packet refused")
	}
	if err := tb.Remove(context.Background(), gone.ID()); err != nil {
		t.Fatal(err)
	}
	idx := uint64(10)
	if c, ok := tb.Admit(rb, 0xfeed, KindRTP, idx, 1<<40, 1); !ok || !c.Rebased() {
		t.Fatal("re-based claim refused")
	}
	r := tb.NewReader()
	defer r.Close()
	k := KeyOf(ep.Addr())
	k4 := KeyV4(ep.Addr().Addr().As4(), ep.Addr().Port())
	var sink int
	tests := []struct {
		name string
		f    func()
	}{
		{"Begin+Lookup+Receivers+End", func() {
			s := r.Begin()
			e := s.Lookup(k)
			sink += len(s.Receivers(e))
			r.End()
		}},
		{"KeyV4+Lookup miss", func() {
			s := r.Begin()
			if s.Lookup(KeyV4([4]byte{192, 0, 2, 1}, 9)) == nil {
				sink++
			}
			sink += len(s.Conference(ep.Conference()))
			if s.Lookup(k4) != nil {
				sink++
			}
			r.End()
		}},
		{"ClaimSSRC already claimed", func() {
			if tb.ClaimSSRC(ep, 0xdeadbeef) {
				sink++
			}
		}},
		{"ClaimSSRC collision", func() {
			if !tb.ClaimSSRC(intruder, 0xdeadbeef) {
				sink++
			}
		}},
		{"Admit+Out re-based", func() {
			idx++
			c, ok := tb.Admit(rb, 0xfeed, KindRTP, idx, 1<<40, 1)
			if out, ok2 := c.Out(old); ok && ok2 && out > idx {
				sink++
			}
		}},
		{"Own+Touch", func() {
			if r.Own(ep) {
				sink++
			}
			ep.Touch(int64(sink))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
	runtime.KeepAlive(sink)
}

// TestClaimSize: a claim (two per sender of audio and video) stays in the
// 112-octet size class.
func TestClaimSize(t *testing.T) {
	if n := unsafe.Sizeof(claim{}); n > 112 {
		t.Errorf("a claim is %d octets, want at most 112", n)
	}
}

// TestMemoryPerAssociation measures the heap the table uses per
// association beside the AEAD state (every association here shares one
// srtpfast.Keys pair, so the keys are not counted): Endpoint, association
// state, address map entry, member list slot, ID index entry, and two SSRC
// claims (audio and video) in a conference of 10.
func TestMemoryPerAssociation(t *testing.T) {
	const n = 20_000
	p := newPair(t, 0)
	tb := newTable(t, Config{MaxAssociations: n})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bulkInstall(t, tb, 0, n, 10, p)
	s := tb.snap.Load()
	for i := range n {
		ep := s.LookupAddr(addrOf(i))
		if !tb.ClaimSSRC(ep, uint32(2*i)) || !tb.ClaimSSRC(ep, uint32(2*i+1)) {
			t.Fatalf("claim %d refused", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per association (%d associations, %d shards, 2 SSRCs each, conferences of 10)", per, n, len(s.addrs))
	if per > 1024 {
		t.Errorf("%.0f bytes per association, goal ≤ 1024", per)
	}
	runtime.KeepAlive(tb)
}
