// Package afxdp owns AF_XDP sockets on golang.org/x/sys/unix: the UMEM (one
// per socket), its fill and completion rings, the RX and TX rings, and the
// accounting of every UMEM frame.
//
// One Socket serves one NIC queue. A worker drives it in a loop, on one
// goroutine (a Socket is not safe for concurrent use):
//
//  1. Receive a batch of descriptors (the frames stay in the UMEM; Frame
//     gives a zero-copy view of each).
//  2. Recycle the frames it is done with: they go back to the fill ring (or
//     to the free-frame stack when the fill ring holds its target).
//  3. Alloc free frames to write new packets into, or forward received
//     frames as they are; Transmit a batch of descriptors.
//  4. Complete: reap the completion ring, returning transmitted frames to
//     the free-frame stack, and Refill the fill ring from it.
//  5. Wait (poll) when there is nothing to do.
//
// Every frame is owned by exactly one party at a time (the free stack, the
// kernel's RX side, the caller, the kernel's TX side); FrameStats reports
// the counts, and a descriptor the caller does not own is refused, so a
// buggy caller cannot corrupt the UMEM or leak a frame unseen.
//
// Ring indices shared with the kernel are read and written only with
// sync/atomic (acquire on load, release on store); cached copies follow
// libxdp's xsk.h. With XDP_USE_NEED_WAKEUP (the default) the kernel is kicked
// with sendto or recvfrom only when the ring flags ask for it; EAGAIN,
// EBUSY, ENOBUFS and ENETDOWN from a kick are normal and retried on the next
// call. No syscall error panics: it is returned or counted.
//
// The package knows nothing of RTP: which frames reach a socket is decided
// by the XDP program (package bpf), whose XSKMAP slot for the queue must
// hold the socket's FD.
package afxdp
