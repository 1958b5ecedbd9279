// Package dataplane is the fast path of the Media Distributor: per-queue
// workers that receive SRTP and SRTCP in batches, open the hop-by-hop (HBH)
// layer with the sender's keys, and re-seal a copy for every other member
// of the sender's conference with that member's keys.
//
// # What it owns
//
//   - Worker (worker.go): the per-queue pipeline, its per-worker Openers
//     (never shared between workers), drop counters and Stats.
//   - The hand-over of a sender's Opener (ROC, replay windows) from the
//     worker that holds it to the one its flow moved to (handover.go): an
//     RSS change or an address change moves a flow to another queue; the
//     Opener moves with it, at no instant held by two workers, and a
//     stopped worker parks its Openers for the others.
//   - The hop to peer Media Distributors (link.go): reading a packet's
//     conference tag from a peer's media address, stripping it after the
//     open, adding it to copies for links (never forwarding from a link to
//     a link), and the per-link traffic counters, batched per worker.
//   - Port: batch I/O for one worker behind one interface, with two
//     implementations: the AF_XDP port (an afxdp.Socket; frames parsed and
//     written with package frame, next-hop MACs from package neigh) and the
//     socket port (a udpbatch.Conn in an SO_REUSEPORT group, one socket per
//     worker).
//   - Dataplane: mode selection (XDP native, XDP generic, socket fallback,
//     with a logged reason for every step down), the classifier attachment,
//     the sockets, the neighbour table, the slow-path delivery of DTLS and
//     STUN, and the goroutines; Close stops and releases all of it.
//
// # What it must not do
//
// It must not parse DTLS or hold keys of its own: keys and routing come from
// the key table through the Reader interface declared here (the consumer
// defines what it needs), and non-media datagrams are handed to the slow
// path as copies. It must not allocate, format or panic per packet: bad
// input is a counted drop (Reason).
//
// # Modes
//
// In XDP modes the classifier (package bpf) redirects RTP/RTCP into one
// AF_XDP socket per NIC queue and passes DTLS and STUN to a kernel UDP
// socket that this package reads for the slow path. In socket mode every
// datagram to the media port reaches the workers, which demultiplex by the
// first octet (RFC 7983) and hand DTLS and STUN to the slow path.
package dataplane
