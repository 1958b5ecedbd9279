// Package frame parses and writes the Ethernet, IPv4/IPv6 and UDP headers
// of the frames the AF_XDP data plane receives and transmits.
//
// It owns header layout and checksums; it does not know what the UDP
// payload carries, and it never allocates: Parse fills a caller-owned
// Headers, and Write fills headers in place in front of a payload the caller
// has already put into the frame buffer.
//
// What it accepts mirrors the XDP classifier (package bpf): Ethernet II with
// at most one 802.1Q or 802.1ad tag; IPv4 with options (IHL honoured), not
// fragmented; IPv6 with at most three hop-by-hop, routing or destination
// options extension headers, no fragment header; UDP whose length field fits
// the IP payload. Anything else is an error from errors.go, which the worker
// counts as a drop reason.
package frame
