package srtpfast

// The replay window is a ring of 64-bit blocks indexed by packet index, as in
// wireguard-go's replay package: accepting a newer index clears the blocks it
// moves past, so the cost is independent of the distance jumped.
const (
	windowBlocks = 8 // power of two
	windowWords  = 64

	// ReplayWindow is the number of packets behind the highest accepted
	// index that are still accepted once (per SSRC, for SRTP and for SRTCP
	// separately). RFC 3711 section 3.3.2 asks for at least 64; 448 covers
	// the reordering of a burst of video at high rate.
	ReplayWindow = (windowBlocks - 1) * windowWords
)

// replayWindow tracks the packet indices accepted for one SSRC: 48-bit SRTP
// indices (ROC<<16 | SEQ) or 31-bit SRTCP indices.
type replayWindow struct {
	top  uint64 // highest index accepted
	ring [windowBlocks]uint64
}

// check reports whether idx may be accepted, without changing anything.
func (w *replayWindow) check(idx uint64) Error {
	if idx > w.top {
		return 0
	}
	if w.top-idx >= ReplayWindow {
		return ErrTooOld
	}
	if w.ring[(idx/windowWords)%windowBlocks]&(1<<(idx%windowWords)) != 0 {
		return ErrReplay
	}
	return 0
}

// reset starts the window at idx (the first accepted index).
func (w *replayWindow) reset(idx uint64) {
	w.top = idx
	w.ring = [windowBlocks]uint64{}
	w.ring[(idx/windowWords)%windowBlocks] = 1 << (idx % windowWords)
}

// accept records idx, which check must have accepted.
func (w *replayWindow) accept(idx uint64) {
	if idx > w.top {
		// Usually within the block of top: nothing to clear.
		if cur, next := w.top/windowWords, idx/windowWords; next != cur {
			diff := min(next-cur, windowBlocks)
			for i := uint64(1); i <= diff; i++ {
				w.ring[(cur+i)%windowBlocks] = 0
			}
		}
		w.top = idx
	}
	w.ring[(idx/windowWords)%windowBlocks] |= 1 << (idx % windowWords)
}

// ssrcState is the receive state of one SSRC.
type ssrcState struct {
	ssrc    uint32
	hasRTP  bool
	hasRTCP bool
	rtp     replayWindow // top is the highest SRTP index: ROC<<16 | s_l
	rtcp    replayWindow
}

// ssrcTable maps SSRCs to their state with an open-addressing hash table:
// lookups never allocate, and inserts only when the table grows (see
// resize). Entries are never removed:
// forgetting an SSRC would let its old packets be accepted (and re-sealed)
// again. Only authenticated packets insert, so the table cannot be filled by
// forged packets.
type ssrcTable struct {
	states []ssrcState // len = number in use
	slots  []int32     // 0 = empty, else index into states + 1
	mask   uint32
	last   *ssrcState // the last state found (in states), nil if none
	max    int        // most SSRCs held
}

// initialSSRCs is the room a table starts with: a sender's audio and video.
// It doubles as SSRCs are inserted, up to max, so that a sender of one
// stream holds a few hundred octets of receive state, not max states'
// worth (about 10 KB at 64).
const initialSSRCs = 2

func newSSRCTable(maxSSRCs int) ssrcTable {
	t := ssrcTable{max: maxSSRCs}
	t.resize(min(initialSSRCs, maxSSRCs))
	return t
}

// resize gives the table room for n states and rebuilds its slots (twice
// as many, a power of two). It allocates: it runs when an SSRC that
// authenticated is inserted into a full table, never per packet.
func (t *ssrcTable) resize(n int) {
	states := make([]ssrcState, len(t.states), n)
	copy(states, t.states)
	size := 4
	for size < 2*n {
		size <<= 1
	}
	t.states, t.slots, t.mask = states, make([]int32, size), uint32(size-1)
	t.last = nil // it pointed into the old states
	for k := range t.states {
		i := hashSSRC(t.states[k].ssrc) & t.mask
		for t.slots[i] != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i] = int32(k + 1)
	}
}

func hashSSRC(ssrc uint32) uint32 {
	return ssrc * 0x9E3779B1
}

// lookup returns the state of ssrc, or nil.
func (t *ssrcTable) lookup(ssrc uint32) *ssrcState {
	if l := t.last; l != nil && l.ssrc == ssrc {
		return l
	}
	for i := hashSSRC(ssrc) & t.mask; t.slots[i] != 0; i = (i + 1) & t.mask {
		if s := t.slots[i] - 1; t.states[s].ssrc == ssrc {
			t.last = &t.states[s]
			return t.last
		}
	}
	return nil
}

// full reports whether no new SSRC can be inserted.
func (t *ssrcTable) full() bool { return len(t.states) >= t.max }

// insert adds ssrc, which must not be present, and returns its zero state.
// The caller checks full first. It may grow the table (so states returned
// before must not be used after).
func (t *ssrcTable) insert(ssrc uint32) *ssrcState {
	if len(t.states) == cap(t.states) {
		t.resize(min(2*cap(t.states), t.max))
	}
	i := hashSSRC(ssrc) & t.mask
	for t.slots[i] != 0 {
		i = (i + 1) & t.mask
	}
	t.states = append(t.states, ssrcState{ssrc: ssrc})
	n := int32(len(t.states))
	t.slots[i] = n
	t.last = &t.states[n-1]
	return t.last
}
