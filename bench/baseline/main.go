// Command baseline is the forwarder mdfast is compared with: a minimal SFU
// loop built the way most Go SFUs are. One goroutine reads the media port
// with net.UDPConn (ReadFromUDPAddrPort, the non-allocating form of
// ReadFromUDP), decrypts each SRTP/SRTCP packet with pion/srtp v3 under the
// sender's keys (replay protection on, as pion/webrtc configures it), and
// for every other member of the one conference re-encrypts it with that
// member's pion/srtp context and writes it with WriteToUDPAddrPort. It uses
// the same bench key file (benchkeys) as the mdfast harness, so both get
// the same keys.
//
// It prints "ready baseline" on stdout once listening and, on SIGTERM or
// SIGINT, one JSON line with its counters.
//
//	baseline -keys keys.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/bench/internal/benchkeys"
)

// replayWindow is pion/webrtc's default SRTP replay window.
const replayWindow = 64

type peer struct {
	addr netip.AddrPort
	recv *srtp.Context // client_write: opens what the peer sends
	send *srtp.Context // server_write: seals what we send to it
}

type counters struct {
	RxPackets       uint64 `json:"rx_packets"`
	TxPackets       uint64 `json:"tx_packets"`
	Forwarded       uint64 `json:"forwarded"`
	DropUnknown     uint64 `json:"drop_unknown_source"`
	DropDecrypt     uint64 `json:"drop_decrypt"`
	DropNotMedia    uint64 `json:"drop_not_media"`
	DropEncrypt     uint64 `json:"drop_encrypt"`
	DropWriteErrors uint64 `json:"drop_tx_error"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("baseline", "err", err)
		os.Exit(1)
	}
}

func run() error {
	keysPath := flag.String("keys", "", "bench key file (required)")
	sockBuf := flag.Int("socket-buffer", 8<<20, "SO_RCVBUF/SO_SNDBUF (0: system default)")
	flag.Parse()
	kf, err := benchkeys.Load(*keysPath)
	if err != nil {
		return err
	}
	if kf.IsDouble() {
		return fmt.Errorf("profile %s: pion/srtp v3 has no RFC 8723 double profile; the baseline runs single-layer SRTP only", kf.Profile)
	}
	peers := make(map[netip.AddrPort]*peer, len(kf.Endpoints))
	members := make([]*peer, 0, len(kf.Endpoints))
	for i := range kf.Endpoints {
		e := &kf.Endpoints[i]
		recv, err := e.ClientContext(srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
		if err != nil {
			return err
		}
		send, err := e.ServerContext()
		if err != nil {
			return err
		}
		p := &peer{addr: e.Addr, recv: recv, send: send}
		peers[e.Addr] = p
		members = append(members, p)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(kf.MD))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", kf.MD, err)
	}
	if *sockBuf > 0 {
		if err := forceBuffers(conn, *sockBuf); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var c counters
	done := make(chan struct{})
	go func() {
		defer close(done)
		forward(conn, peers, members, &c)
	}()
	fmt.Println("ready baseline")
	<-sig
	conn.Close()
	<-done
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"mode": "baseline", "counters": c}); err != nil {
		return fmt.Errorf("print stats: %w", err)
	}
	return nil
}

// forward is the whole forwarder: read, decrypt, re-encrypt per receiver,
// write. It returns when conn is closed.
func forward(conn *net.UDPConn, peers map[netip.AddrPort]*peer, members []*peer, c *counters) {
	buf := make([]byte, 1500)
	plain := make([]byte, 0, 1500)
	out := make([]byte, 0, 1500)
	var hdr rtp.Header
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		c.RxPackets++
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p := peers[from]
		if p == nil {
			c.DropUnknown++
			continue
		}
		pkt := buf[:n]
		if n < 12 || pkt[0] < 128 || pkt[0] > 191 {
			c.DropNotMedia++
			continue
		}
		rtcp := pkt[1] >= 192 && pkt[1] <= 223
		if rtcp {
			plain, err = p.recv.DecryptRTCP(plain[:0], pkt, nil)
		} else {
			plain, err = p.recv.DecryptRTP(plain[:0], pkt, &hdr)
		}
		if err != nil {
			c.DropDecrypt++
			continue
		}
		sent := false
		for _, m := range members {
			if m == p {
				continue
			}
			if rtcp {
				out, err = m.send.EncryptRTCP(out[:0], plain, nil)
			} else {
				out, err = m.send.EncryptRTP(out[:0], plain, nil)
			}
			if err != nil {
				c.DropEncrypt++
				continue
			}
			if _, err := conn.WriteToUDPAddrPort(out, m.addr); err != nil {
				if isClosed(err) {
					return
				}
				c.DropWriteErrors++
				continue
			}
			c.TxPackets++
			sent = true
		}
		if sent {
			c.Forwarded++
		}
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// forceBuffers sets SO_RCVBUFFORCE/SO_SNDBUFFORCE (root), as mdfast's
// sockets do, so both forwarders get the same buffers.
func forceBuffers(conn *net.UDPConn, n int) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket buffers: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); e != nil {
			serr = conn.SetReadBuffer(n)
		}
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n); e != nil && serr == nil {
			serr = conn.SetWriteBuffer(n)
		}
	}); err != nil {
		return fmt.Errorf("socket buffers: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("socket buffers: %w", serr)
	}
	return nil
}
