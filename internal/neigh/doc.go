// Package neigh answers the data plane's question "which Ethernet address
// does a frame to this IP address go to?" without a syscall or a lock on
// the hot path.
//
// The kernel owns routing and neighbour resolution; this package mirrors the
// part the workers need. A control goroutine asks the kernel over netlink
// for the route to each destination the workers want (RTM_GETROUTE: gateway
// or on-link, egress interface) and the neighbour entry of that next hop
// (RTM_GETNEIGH), and publishes the answers as an immutable map behind an
// atomic pointer. Workers call Lookup (a map read, no allocation); on a
// miss they call Miss, which queues the destination without blocking, drop
// the frame and count the reason.
//
// Next hops are normally resolved before the first media packet: the
// endpoint's DTLS handshake travels through the kernel stack on the same
// path, so the kernel has already resolved (and keeps refreshing) the next
// hop when SRTP starts. Entries are refreshed every Options.Refresh, so a
// gateway's MAC change reaches the workers within that interval; Forget
// drops a destination when its endpoint leaves.
//
// The package must not send packets of its own or change kernel state.
package neigh
