package valgrind

import "unsafe"

// Request codes (valgrind.h, callgrind.h).
const (
	reqRunningOnValgrind = 0x1001
	toolBaseCallgrind    = 'C'<<24 | 'T'<<16
	reqDumpStats         = toolBaseCallgrind + 0
	reqZeroStats         = toolBaseCallgrind + 1
	reqToggleCollect     = toolBaseCallgrind + 2
	reqDumpStatsAt       = toolBaseCallgrind + 3
)

// request makes a client request: args[0] is the request code, args[1:]
// its arguments; natively it returns def.
func request(def uint64, code uint64, a1 uintptr) uint64 {
	args := [6]uint64{code, uint64(a1)}
	return clientRequest(&args, def)
}

// RunningOnValgrind reports whether the program runs under valgrind.
func RunningOnValgrind() bool { return request(0, reqRunningOnValgrind, 0) != 0 }

// ToggleCollect switches callgrind's event collection for the calling
// thread on or off (start it off with --collect-atstart=no). Lock the
// goroutine to its thread (runtime.LockOSThread) between two toggles.
func ToggleCollect() { request(0, reqToggleCollect, 0) }

// ZeroStats zeroes callgrind's counters.
func ZeroStats() { request(0, reqZeroStats, 0) }

// DumpStats makes callgrind write a profile of what it collected since the
// last dump and zero its counters.
func DumpStats() { request(0, reqDumpStats, 0) }

// DumpStatsAt is DumpStats with a description: the profile's
// "desc: Trigger: Client Request: <what>" line.
func DumpStatsAt(what string) {
	b := append([]byte(what), 0)
	request(0, reqDumpStatsAt, uintptr(unsafe.Pointer(&b[0])))
}
