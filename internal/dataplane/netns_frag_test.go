package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
)

// TestNetnsFragments sends real IP-fragmented UDP (the endpoints' kernels
// fragment datagrams larger than the 1500-octet MTU) to the MD in every
// mode, over IPv4 and IPv6, and asserts the same outcome everywhere (see
// fragmentedMedia): fragmented SRTP is not forwarded and is counted as
// drop_frame_fragment; the sender's next, unfragmented packet is forwarded;
// a fragmented DTLS datagram of 4000 octets (larger than an MTU and than a
// 2048-octet frame) reaches the slow path whole.
func TestNetnsFragments(t *testing.T) {
	testutil.NeedRoot(t, "XDP, AF_XDP and network namespaces")
	for _, v6 := range []bool{false, true} {
		ip := "ipv4"
		if v6 {
			ip = "ipv6"
		}
		outcomes := map[Mode]string{}
		for _, m := range []Mode{ModeXDPNative, ModeXDPGeneric, ModeSocket} {
			t.Run(ip+"/"+m.String(), func(t *testing.T) { outcomes[m] = testNetnsFragments(t, m, v6) })
		}
		want := "media forwarded=false drop_frame_fragment=1 next packet forwarded=true dtls to slow path=4000 octets"
		for m, got := range outcomes {
			t.Logf("%s %s: %s", ip, m, got)
			if got != want {
				t.Errorf("%s %s: outcome %q, want %q (the same in every mode)", ip, m, got, want)
			}
		}
	}
}

func testNetnsFragments(t *testing.T, mode Mode, v6 bool) string {
	var star *netnstest.Star
	if v6 {
		star = netnstest.NewStar6(t, 3)
	} else {
		star = netnstest.NewStar(t, 3)
	}
	addr := func(e netnstest.End) netip.Addr {
		if v6 {
			return e.Addr6
		}
		return e.Addr
	}
	tbl := newMemTable()
	as := make([]netip.AddrPort, len(star.Endpoints))
	conns := make([]*net.UDPConn, len(star.Endpoints))
	for i, e := range star.Endpoints {
		as[i] = netip.AddrPortFrom(addr(e), 40000)
		err := e.NS.Do(func() error {
			var err error
			if conns[i], err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(as[i])); err != nil {
				return err
			}
			// Let the kernel fragment what exceeds the MTU.
			return setFragmenting(conns[i], v6)
		})
		if err != nil {
			t.Fatalf("endpoint socket %s: %v", as[i], err)
		}
		defer conns[i].Close()
	}
	eps := newConference(t, tbl, as)
	var dp *Dataplane
	if err := star.MD.NS.Do(func() (err error) {
		dp, err = New(Config{
			Mode: mode, Interface: star.MD.Name, Ports: []uint16{mediaPort},
			NumFrames: 1024, RingSize: 256, BatchSize: 32, Poll: 20 * time.Millisecond,
			UDPChecksumIPv4: true, Table: tbl,
		})
		return err
	}); err != nil {
		t.Fatalf("New: %v", err)
	}
	defer dp.Close()
	if dp.Mode() != mode {
		t.Fatalf("mode %s, want %s", dp.Mode(), mode)
	}
	for _, e := range star.Endpoints {
		dp.Resolve(addr(e))
	}
	md := netip.AddrPortFrom(addr(star.MD), mediaPort)
	send := func(i int, b []byte) {
		t.Helper()
		if _, err := conns[i].WriteToUDPAddrPort(b, md); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(i int, timeout time.Duration) ([]byte, bool) {
		buf := make([]byte, 4096)
		_ = conns[i].SetReadDeadline(time.Now().Add(timeout))
		n, _, err := conns[i].ReadFromUDPAddrPort(buf)
		return buf[:n], err == nil
	}
	drain := func() {
		for r := 1; r < 3; r++ {
			for _, ok := recv(r, 20*time.Millisecond); ok; _, ok = recv(r, 20*time.Millisecond) {
			}
		}
	}

	// Warm up with small packets until both receivers get one.
	for got, try := [3]bool{}, 0; !got[1] || !got[2]; try++ {
		if st := dp.Stats(); try == 50 {
			t.Fatalf("nothing forwarded during warm-up; stats %s", nonZero(&st))
		}
		_, enc := eps[0].sealRTP(t, 100)
		send(0, enc)
		for r := 1; r < 3; r++ {
			if _, ok := recv(r, 50*time.Millisecond); ok {
				got[r] = true
			}
		}
	}
	drain()
	before := dp.Stats()

	// Fragmented SRTP (1700-octet payload), then a small one.
	_, big := eps[0].sealRTP(t, 1700)
	if len(big) <= 1500 {
		t.Fatalf("SRTP packet of %d octets would not be fragmented", len(big))
	}
	send(0, big)
	deadline := time.Now().Add(2 * time.Second)
	for dp.Stats()[DropFrameFragment] == before[DropFrameFragment] && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	plain, small := eps[0].sealRTP(t, 100)
	send(0, small)
	bigForwarded, nextForwarded := false, true
	for r := 1; r < 3; r++ {
		b, ok := recv(r, 2*time.Second)
		if ok && len(b) > 1500 {
			bigForwarded = true
			b, ok = recv(r, 2*time.Second)
		}
		if !ok {
			nextForwarded = false
			continue
		}
		eps[r].open(t, b, plain)
	}
	after := dp.Stats()

	// Fragmented DTLS (4000 octets) from endpoint 2.
	dtls := make([]byte, 4000)
	dtls[0], dtls[1], dtls[2] = 22, 0xfe, 0xfd
	for i := 3; i < len(dtls); i++ {
		dtls[i] = byte(i)
	}
	send(2, dtls)
	slow := "nothing"
	select {
	case sp := <-dp.Slow():
		switch {
		case sp.From != as[2]:
			slow = "from " + sp.From.String()
		case !bytes.Equal(sp.Data, dtls):
			slow = fmt.Sprintf("%d octets, not the datagram sent", len(sp.Data))
		default:
			slow = fmt.Sprintf("%d octets", len(sp.Data))
		}
	case <-time.After(2 * time.Second):
	}
	t.Logf("%s: counters moved: %s", mode, diff(&before, &after))
	return fmt.Sprintf("media forwarded=%v drop_frame_fragment=%d next packet forwarded=%v dtls to slow path=%s",
		bigForwarded, after[DropFrameFragment]-before[DropFrameFragment], nextForwarded, slow)
}

// setFragmenting makes the kernel fragment datagrams larger than the path
// MTU instead of refusing them (IP_PMTUDISC_DONT; IPv6: IPV6_PMTUDISC_DONT
// and IPV6_DONTFRAG off).
func setFragmenting(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 0)
			}
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	})
	if err != nil {
		return err
	}
	return serr
}

// diff lists the counters that moved from a to b.
func diff(a, b *Stats) string {
	var d Stats
	for i := range d {
		d[i] = b[i] - a[i]
	}
	return nonZero(&d)
}
