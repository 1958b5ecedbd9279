// Package slowpkt is what the data plane hands the Media Distributor's slow
// path: a datagram that is not media (DTLS, STUN), and the source prefix the
// slow path is fair by. It is its own package so that the slow path, the
// control API and anything else above them do not depend on the data plane
// (XDP, AF_XDP) to name a datagram.
package slowpkt

import "net/netip"

// Packet is a DTLS or STUN datagram for the slow path. Data is the UDP
// payload, owned by the receiver of the Packet.
type Packet struct {
	Data []byte
	// From is the sender; To the MD address it was sent to (in socket mode
	// the socket's bound address).
	From, To netip.AddrPort
}

// SourcePrefix is the unit of fairness of the slow path: an IPv4 /24 or an
// IPv6 /48 (a site: one holder of a /48 can use 65,536 /64s).
func SourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}
