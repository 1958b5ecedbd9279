package valgrind

// clientRequest is in request_amd64.s.
//
//go:noescape
func clientRequest(args *[6]uint64, def uint64) uint64
