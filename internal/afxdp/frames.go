package afxdp

// Owners of a UMEM frame. Every frame has exactly one.
const (
	ownerFree     uint8 = iota // on the free-frame stack
	ownerKernelRx              // in the fill ring, the driver or the RX ring
	ownerUser                  // received or allocated, held by the caller
	ownerKernelTx              // in the TX ring or waiting for completion
	numOwners
)

// frames is the frame allocator and ownership ledger of one UMEM: a stack
// of free frame addresses (chunk-aligned) and the owner of every frame.
type frames struct {
	frameSize uint64
	shift     uint // log2(frameSize)
	total     uint32
	stack     []uint64 // free frame addresses; cap == total
	owner     []uint8
	count     [numOwners]uint32
}

func newFrames(total uint32, frameSize uint64) frames {
	f := frames{
		frameSize: frameSize,
		total:     total,
		stack:     make([]uint64, total),
		owner:     make([]uint8, total),
	}
	for s := frameSize; s > 1; s >>= 1 {
		f.shift++
	}
	// Pop order is ascending addresses.
	for i := range f.stack {
		f.stack[i] = uint64(int(total)-1-i) << f.shift
	}
	f.count[ownerFree] = total
	return f
}

// index returns the frame number of a UMEM address and whether it is in the
// UMEM.
func (f *frames) index(addr uint64) (uint32, bool) {
	i := addr >> f.shift
	return uint32(i), i < uint64(f.total)
}

// move changes the owner of the frame holding addr from one party to
// another; it reports false (and changes nothing) if from is not its owner.
func (f *frames) move(addr uint64, from, to uint8) bool {
	i, ok := f.index(addr)
	if !ok || f.owner[i] != from {
		return false
	}
	f.owner[i] = to
	f.count[from]--
	f.count[to]++
	return true
}

// pop takes a free frame for a new owner.
func (f *frames) pop(to uint8) (uint64, bool) {
	n := len(f.stack)
	if n == 0 {
		return 0, false
	}
	addr := f.stack[n-1]
	f.stack = f.stack[:n-1]
	f.move(addr, ownerFree, to)
	return addr, true
}

// push returns a frame from its owner to the free stack.
func (f *frames) push(addr uint64, from uint8) bool {
	addr = addr >> f.shift << f.shift
	if !f.move(addr, from, ownerFree) {
		return false
	}
	f.stack = append(f.stack, addr)
	return true
}
