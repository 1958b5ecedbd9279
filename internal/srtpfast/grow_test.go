package srtpfast

import (
	"errors"
	"runtime"
	"testing"
)

// TestOpenerGrows: an Opener starts small and grows as SSRCs authenticate,
// up to its maximum; every SSRC keeps its replay state across the growth,
// and the maximum still holds.
func TestOpenerGrows(t *testing.T) {
	k, err := NewKeys(ProfileAEADAES128GCM, make([]byte, 16), make([]byte, 12), nil)
	if err != nil {
		t.Fatal(err)
	}
	const max = 64
	o := NewOpener(k, max)
	if c := cap(o.table.states); c != initialSSRCs {
		t.Fatalf("starts with room for %d SSRCs", c)
	}
	for i := range uint32(max) {
		pkt := sealRTP(t, k, plainRTP(1000+i, 7, 20), 0)
		if _, err := o.OpenRTP(pkt); err != nil {
			t.Fatalf("SSRC %d: %v", i, err)
		}
	}
	if o.NumSSRCs() != max {
		t.Fatalf("%d SSRCs", o.NumSSRCs())
	}
	// Every SSRC is still known with its window: a replay is refused, the
	// next packet accepted.
	for i := range uint32(max) {
		if _, err := o.OpenRTP(sealRTP(t, k, plainRTP(1000+i, 7, 20), 0)); !errors.Is(err, ErrReplay) {
			t.Fatalf("SSRC %d: replay gave %v", i, err)
		}
		if _, err := o.OpenRTP(sealRTP(t, k, plainRTP(1000+i, 8, 20), 0)); err != nil {
			t.Fatalf("SSRC %d: next packet: %v", i, err)
		}
	}
	if _, err := o.OpenRTP(sealRTP(t, k, plainRTP(5000, 1, 20), 0)); !errors.Is(err, ErrSSRCLimit) {
		t.Fatalf("SSRC beyond the maximum: %v", err)
	}
}

// TestOpenerMemory: the receive state of a sender of one SSRC is a few
// hundred octets, not the maximum's worth (it was about 10 KB at 64).
func TestOpenerMemory(t *testing.T) {
	k, err := NewKeys(ProfileAEADAES128GCM, make([]byte, 16), make([]byte, 12), nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	keep := make([]*Opener, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = NewOpener(k, 64)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	t.Logf("an Opener (maximum 64 SSRCs, none seen yet) takes %d octets of heap", per)
	if per > 1024 {
		t.Fatalf("an Opener takes %d octets", per)
	}
	runtime.KeepAlive(keep)
}
