package cascade

import (
	"crypto/sha256"
	"encoding/binary"
)

// tagLabel is prepended to the conference name before hashing.
const tagLabel = "mdfast cascade tag v1"

// Tag returns the link tag of a conference: the first four octets, big
// endian, of SHA-256("mdfast cascade tag v1" || name), never 0 (0 becomes
// 1). Every RTP packet on a link carries it as an extra, last CSRC, so the
// receiving MD finds the conference without reading anything else.
func Tag(name string) uint32 {
	h := sha256.New()
	h.Write([]byte(tagLabel))
	h.Write([]byte(name))
	var sum [sha256.Size]byte
	t := binary.BigEndian.Uint32(h.Sum(sum[:0]))
	if t == 0 {
		return 1
	}
	return t
}
