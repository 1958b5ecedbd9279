package attacktest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/perc"
)

// rawSender sends IPv4/UDP datagrams with any source address and port
// (IPPROTO_RAW: the header is ours, IP_HDRINCL implied) from inside a
// namespace.
type rawSender struct {
	fd  int
	buf []byte
	id  uint16
}

func newRawSender(ns *netnstest.NS) (*rawSender, error) {
	r := &rawSender{fd: -1}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		r.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("attacker in %s: %w", ns.Name, err)
	}
	return r, nil
}

// send sends payload from src to dst. It returns the IP datagram's length.
func (r *rawSender) send(src, dst netip.AddrPort, payload []byte) (int, error) {
	r.id++
	// netnstest builds the Ethernet frame with both checksums; the raw
	// socket takes it from the IP header on.
	r.buf = netnstest.AppendUDP4(r.buf[:0], netnstest.UDP4{SrcMAC: make(net.HardwareAddr, 6), DstMAC: make(net.HardwareAddr, 6),
		Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(), ID: r.id}, payload)
	pkt := r.buf[netnstest.EthLen:]
	for {
		err := unix.Sendto(r.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("raw send %s -> %s: %w", src, dst, err)
		}
		return len(pkt), nil
	}
}

func (r *rawSender) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// DTLS record content types and versions.
const (
	ctAlert     = 21
	ctHandshake = 22
	ctAppData   = 23
)

// record builds a DTLS record: content type, version, epoch, 48-bit
// sequence number, body.
func record(ct byte, version uint16, epoch uint16, seq uint64, body []byte) []byte {
	b := []byte{ct}
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint16(b, epoch)
	b = append(b, byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// randomBytes is n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// realClientHello returns the first datagram our DTLS client (perc.Dial)
// sends for tlsID: a complete ClientHello record (epoch 0, message_seq 0,
// no cookie). It is captured on the test process's loopback.
func realClientHello(tlsID string) ([]byte, error) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("capture ClientHello: %w", err)
	}
	defer srv.Close()
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("capture ClientHello: %w", err)
	}
	id, err := endpointsim.NewIdentity(time.Hour)
	if err != nil {
		return nil, fmt.Errorf("capture ClientHello: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = perc.Dial(ctx, cli, srv.LocalAddr().(*net.UDPAddr).AddrPort(), perc.Config{Certificate: id.Cert, TLSID: tlsID, HandshakeTimeout: 5 * time.Second})
	}()
	defer func() { cancel(); <-done }()
	buf := make([]byte, 4096)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := srv.ReadFromUDP(buf)
	if err != nil {
		return nil, fmt.Errorf("capture ClientHello: %w", err)
	}
	b := buf[:n]
	if n < 13+12 || b[0] != ctHandshake || b[13] != 1 {
		return nil, fmt.Errorf("capture ClientHello: first datagram is not a ClientHello record: % x", b[:min(n, 32)])
	}
	return b, nil
}

// helloFragment turns a complete one-record ClientHello into its first
// fragment only: fragment_offset 0, fragment_length half the length, the
// client random replaced (so that every copy is a new hello).
func helloFragment(hello []byte) []byte {
	body := hello[13:]
	length := int(body[1])<<16 | int(body[2])<<8 | int(body[3])
	fragLen := length / 2
	hs := append([]byte(nil), body[:12+fragLen]...)
	// fragment_offset 0, fragment_length fragLen.
	hs[6], hs[7], hs[8] = 0, 0, 0
	hs[9], hs[10], hs[11] = byte(fragLen>>16), byte(fragLen>>8), byte(fragLen)
	// client_version(2) then random(32).
	if len(hs) >= 12+2+32 {
		_, _ = rand.Read(hs[14 : 14+32])
	}
	return record(ctHandshake, 0xfefd, 0, 0, hs)
}

// freshHello is hello with a new client random (a new, complete, cookie-
// less ClientHello).
func freshHello(hello []byte) []byte {
	b := append([]byte(nil), hello...)
	if len(b) >= 13+12+2+32 {
		_, _ = rand.Read(b[13+12+2 : 13+12+2+32])
	}
	return b
}

// stunBinding is a STUN Binding request (RFC 8489) with a USERNAME and a
// FINGERPRINT, as an ICE connectivity check looks.
func stunBinding() []byte {
	user := []byte("attk:legit")
	b := []byte{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42}
	b = append(b, randomBytes(12)...)
	b = binary.BigEndian.AppendUint16(b, 0x0006)
	b = binary.BigEndian.AppendUint16(b, uint16(len(user)))
	b = append(b, user...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint16(b, 0x8028)
	b = binary.BigEndian.AppendUint16(b, 4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20+4))
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b)^0x5354554e)
	return b
}
