package srtpfast

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestReplayWindowModel checks replayWindow against a model that keeps
// every accepted index, over in-order runs, reordering within and beyond
// the window, and jumps within a block, across blocks and past the ring.
func TestReplayWindowModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var w replayWindow
	seen := map[uint64]bool{}
	top := uint64(1000)
	w.reset(top)
	seen[top] = true
	for i := range 200000 {
		idx := top
		switch n := r.IntN(100); {
		case n < 70:
			idx = top + 1
		case n < 80:
			idx = top + 1 + uint64(r.IntN(64))
		case n < 85:
			idx = top + 64 + uint64(r.IntN(windowBlocks*windowWords*2))
		default:
			idx = top - uint64(r.IntN(ReplayWindow+64))
		}
		want := Error(0)
		switch {
		case idx > top:
		case top-idx >= ReplayWindow:
			want = ErrTooOld
		case seen[idx]:
			want = ErrReplay
		}
		if got := w.check(idx); got != want {
			t.Fatalf("step %d: check(%d) with top %d = %v, want %v", i, idx, top, got, want)
		}
		if want == 0 {
			w.accept(idx)
			seen[idx] = true
			top = max(top, idx)
		}
		if w.top != top {
			t.Fatalf("step %d: top %d, want %d", i, w.top, top)
		}
	}
}

func TestCopyWords(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := range 40 {
		for _, dstLen := range []int{0, n / 2, n, n + 5} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			dst := bytes.Repeat([]byte{0xee}, dstLen)
			want := bytes.Repeat([]byte{0xee}, dstLen)
			copy(want, src)
			copyWords(dst, src)
			if !bytes.Equal(dst, want) {
				t.Fatalf("copyWords(%d octets into %d) = %x, want %x", n, dstLen, dst, want)
			}
			// In place: the octets stay.
			orig := bytes.Clone(src)
			copyWords(src, src)
			if !bytes.Equal(src, orig) {
				t.Fatalf("copyWords in place changed %d octets", n)
			}
		}
	}
}
