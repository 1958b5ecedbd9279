package afxdp

import "fmt"

// verify checks the frame ledger: the counts match the owner array, the
// free stack holds exactly the free frames, each once and chunk-aligned.
func (f *frames) verify() error {
	var count [numOwners]uint32
	for _, o := range f.owner {
		count[o]++
	}
	if count != f.count {
		return fmt.Errorf("owner counts %v, ledger says %v", count, f.count)
	}
	if uint32(len(f.stack)) != f.count[ownerFree] {
		return fmt.Errorf("free stack holds %d frames, ledger says %d free", len(f.stack), f.count[ownerFree])
	}
	seen := make(map[uint64]bool, len(f.stack))
	for _, a := range f.stack {
		i, ok := f.index(a)
		switch {
		case !ok || a%f.frameSize != 0:
			return fmt.Errorf("bad address %d on the free stack", a)
		case seen[a]:
			return fmt.Errorf("frame %d twice on the free stack", a)
		case f.owner[i] != ownerFree:
			return fmt.Errorf("frame %d on the free stack is owned by %d", a, f.owner[i])
		}
		seen[a] = true
	}
	return nil
}
