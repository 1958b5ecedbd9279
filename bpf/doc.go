// Package bpf owns the XDP classifier of the Media Distributor: classify.c,
// its bpf2go output (classify_bpfel.go and classify_bpfel.o, committed and
// reproduced byte for byte by `make generate`) and a small loader.
//
// The classifier sorts every frame received on an interface by the first
// octet of the UDP payload (RFC 7983) when the datagram goes to one of the
// configured media ports: RTP and RTCP (128..191) are redirected into the
// AF_XDP socket registered for the frame's RX queue (or passed to the kernel
// when there is none), DTLS (20..63) and STUN (0..3) are passed to the
// kernel's UDP socket, anything else to a media port is dropped and counted.
// Every other frame, IP fragments included, is passed untouched. Each verdict
// is counted in per-CPU counters that Classifier.Counters sums.
//
// Parsing covers Ethernet with at most one 802.1Q or 802.1ad tag (NICs that
// strip VLAN tags in hardware deliver untagged frames, which is also fine),
// IPv4 with options, and IPv6 with up to three hop-by-hop, routing or
// destination-options extension headers before UDP; any other IPv6 extension
// header makes the frame "other" and it is passed.
//
// Only the 802.3 frame is looked at: the package knows the RFC 7983 ranges
// but nothing of SRTP, keys or AF_XDP rings (internal/afxdp owns those), and
// it never needs clang at `go build` time.
package bpf
