// Package ready is the daemon's readiness: named checks (is every worker
// running, is the XDP program still attached, is a tunnel up) evaluated by
// one periodic goroutine, their last results served by /readyz and reported
// per check through a callback (the mdfast_ready gauge).
//
// It owns the check loop and the cached results. It must not know what a
// check looks at (the caller supplies the functions), and the HTTP handler
// must never run a check itself: checks may cost a syscall or a netlink
// request, and /readyz is reachable by whoever can reach the metrics port.
package ready
