package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/testutil"
	"github.com/mdfast/mdfast/perc"
)

// A small ICE client (RFC 8445 checks, RFC 5389 encoding), written here
// and not taken from the MD's code: a Binding request with USERNAME,
// PRIORITY, ICE-CONTROLLING, optionally USE-CANDIDATE, MESSAGE-INTEGRITY
// and FINGERPRINT; the response's MESSAGE-INTEGRITY and FINGERPRINT are
// checked.

func stunAttr(b []byte, typ uint16, val []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// iceCheck returns a Binding request from user (local:remote of the MD's
// view: "mdufrag:endpointufrag") keyed with pwd, and its transaction ID.
func iceCheck(user, pwd string, nominate bool) ([]byte, [12]byte) {
	var tx [12]byte
	_, _ = rand.Read(tx[:])
	b := []byte{0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42}
	b = append(b, tx[:]...)
	b = stunAttr(b, 0x0006, []byte(user))
	b = stunAttr(b, 0x0024, []byte{0x6e, 0, 0x1e, 0xff}) // PRIORITY
	b = stunAttr(b, 0x802A, tx[:8])                      // ICE-CONTROLLING (tie-breaker)
	if nominate {
		b = stunAttr(b, 0x0025, nil) // USE-CANDIDATE
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20+24))
	mac := hmac.New(sha1.New, []byte(pwd))
	mac.Write(b)
	b = stunAttr(b, 0x0008, mac.Sum(nil))
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20+8))
	var fp [4]byte
	binary.BigEndian.PutUint32(fp[:], crc32.ChecksumIEEE(b)^0x5354554e)
	return stunAttr(b, 0x8028, fp[:]), tx
}

// checkResponse reports whether b is a Binding success response to tx
// with a MESSAGE-INTEGRITY keyed with pwd and a valid FINGERPRINT.
func checkResponse(b []byte, tx [12]byte, pwd string) bool {
	if len(b) < 20 || binary.BigEndian.Uint16(b) != 0x0101 || !bytes.Equal(b[8:20], tx[:]) ||
		int(binary.BigEndian.Uint16(b[2:]))+20 != len(b) {
		return false
	}
	miOK, fpOK := false, false
	for off := 20; off+4 <= len(b); {
		typ, n := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+n > len(b) {
			return false
		}
		switch typ {
		case 0x0008:
			h := append([]byte(nil), b[:off]...)
			binary.BigEndian.PutUint16(h[2:], uint16(off+24-20))
			mac := hmac.New(sha1.New, []byte(pwd))
			mac.Write(h)
			miOK = n == 20 && hmac.Equal(mac.Sum(nil), b[off+4:off+24])
		case 0x8028:
			fpOK = n == 4 && binary.BigEndian.Uint32(b[off+4:]) == crc32.ChecksumIEEE(b[:off])^0x5354554e
		}
		off += 4 + (n+3)&^3
	}
	return miOK && fpOK
}

// swapConn is an endpoint's socket that the test can replace by another
// (a new local port, as an ICE restart or a network change opens) under
// the perc.Session that uses it. STUN responses are taken out of what the
// Session reads; the last RTP packet the Session sent is kept, to be
// replayed.
type swapConn struct {
	mu      sync.Mutex
	cur     *net.UDPConn
	closed  bool
	stun    chan []byte
	lastRTP []byte
}

func newSwapConn(c *net.UDPConn) *swapConn { return &swapConn{cur: c, stun: make(chan []byte, 16)} }

func (c *swapConn) conn() *net.UDPConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// swap makes n the socket; the old one is returned, open (the reader
// moves to n).
func (c *swapConn) swap(n *net.UDPConn) *net.UDPConn {
	c.mu.Lock()
	old := c.cur
	c.cur = n
	c.mu.Unlock()
	_ = old.SetReadDeadline(time.Now()) // wake the reader
	return old
}

func (c *swapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		u, closed := c.cur, c.closed
		c.mu.Unlock()
		if closed {
			return 0, nil, net.ErrClosed
		}
		n, from, err := u.ReadFrom(b)
		if err != nil {
			if c.conn() != u {
				continue
			}
			return n, from, err
		}
		if n > 0 && b[0] < 4 {
			select {
			case c.stun <- bytes.Clone(b[:n]):
			default:
			}
			continue
		}
		return n, from, nil
	}
}

func (c *swapConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if len(b) > 0 && b[0] >= 128 && b[0] <= 191 && (len(b) < 2 || b[1] < 192 || b[1] > 223) {
		c.mu.Lock()
		c.lastRTP = bytes.Clone(b)
		c.mu.Unlock()
	}
	return c.conn().WriteTo(b, to)
}

func (c *swapConn) Close() error {
	c.mu.Lock()
	c.closed = true
	u := c.cur
	c.mu.Unlock()
	return u.Close()
}

func (c *swapConn) LocalAddr() net.Addr                { return c.conn().LocalAddr() }
func (c *swapConn) SetDeadline(t time.Time) error      { return c.conn().SetDeadline(t) }
func (c *swapConn) SetReadDeadline(t time.Time) error  { return c.conn().SetReadDeadline(t) }
func (c *swapConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }

// iceEndpoint is an endpoint joined through a session: its ICE
// credentials, its swapConn, and what it received from each sender.
type iceEndpoint struct {
	*member
	pc              *swapConn
	mdUfrag, mdPwd  string
	epUfrag         string
	md              netip.AddrPort
	checksAnswered  atomic.Int64
	consentStop     chan struct{}
	consentFinished chan struct{}
}

// check sends a check from the current socket and waits for its answer.
// Before the Session reads the socket (before Dial) it reads it itself.
func (e *iceEndpoint) check(t *testing.T, nominate bool, dialed bool) bool {
	t.Helper()
	req, tx := iceCheck(e.mdUfrag+":"+e.epUfrag, e.mdPwd, nominate)
	u := e.pc.conn()
	for range 5 {
		if _, err := u.WriteTo(req, net.UDPAddrFromAddrPort(e.md)); err != nil {
			t.Fatalf("send check: %v", err)
		}
		deadline := time.Now().Add(300 * time.Millisecond)
		if !dialed {
			buf := make([]byte, 1500)
			_ = u.SetReadDeadline(deadline)
			n, _, err := u.ReadFrom(buf)
			_ = u.SetReadDeadline(time.Time{})
			if err == nil && checkResponse(buf[:n], tx, e.mdPwd) {
				return true
			}
			continue
		}
		for time.Now().Before(deadline) {
			select {
			case b := <-e.pc.stun:
				if checkResponse(b, tx, e.mdPwd) {
					e.checksAnswered.Add(1)
					return true
				}
			case <-time.After(time.Until(deadline)):
			}
		}
	}
	return false
}

// keepConsent sends a check (not nominating) every 300 ms until
// stopConsent.
func (e *iceEndpoint) keepConsent(t *testing.T) {
	e.consentStop, e.consentFinished = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(e.consentFinished)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-e.consentStop:
				return
			case <-tick.C:
				req, _ := iceCheck(e.mdUfrag+":"+e.epUfrag, e.mdPwd, false)
				_, _ = e.pc.conn().WriteTo(req, net.UDPAddrFromAddrPort(e.md))
			}
		}
	}()
}

func (e *iceEndpoint) stopConsent() {
	if e.consentStop != nil {
		close(e.consentStop)
		<-e.consentFinished
		e.consentStop = nil
	}
}

// streamer sends RTP from every member every 10 ms until stopped.
type streamer struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func stream(t *testing.T, ms ...*member) *streamer {
	s := &streamer{stop: make(chan struct{})}
	for _, m := range ms {
		s.wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-tick.C:
				}
				seq := m.seq
				m.seq++
				pl := make([]byte, 160)
				binary.BigEndian.PutUint32(pl, m.ssrc)
				raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
					Timestamp: uint32(seq) * 960, SSRC: m.ssrc}, Payload: pl}).Marshal()
				if err != nil {
					t.Error(err)
					return
				}
				_ = m.s.WriteRTP(raw) // a failing write shows as packets not received
			}
		})
	}
	return s
}

func (s *streamer) end() { close(s.stop); s.wg.Wait() }

// nsDaemon is "mdfast run" (socket or XDP mode, two queues) in the MD namespace of a veth
// pair, its KD in the peer namespace, its metrics and control API on the
// MD namespace's loopback.
type nsDaemon struct {
	client           *http.Client
	metrics, control string
	stderr           *syncBuffer
}

func startNSDaemon(t *testing.T, pair *netnstest.Pair, p *pki, mode, kdAddr string, extra ...string) *nsDaemon {
	t.Helper()
	cfg := p.writeConfig(t, "mdfast.yaml", strings.Join(append([]string{
		"mode: " + mode,
		"interface: " + pair.MD.Name,
		"queues: 2",
		"address: " + pair.MD.Addr.String(),
		"media-ports: [5004]",
		"kd: [" + kdAddr + "]",
		"kd-server-name: kd",
		"tunnel-cert: " + p.certFile,
		"tunnel-key: " + p.key,
		"tunnel-ca: " + p.caFile,
		"tunnel-backoff-max: 200ms",
		"control-listen: 127.0.0.1:0",
		"control-token-file: " + p.tokenFile,
		"metrics-listen: 127.0.0.1:0",
		"new-associations-per-second: -1",
	}, extra...), "\n")+"\n")
	stderr, exited := runInNetns(t, pair.MD.NS.Name, cfg)
	d := &nsDaemon{stderr: stderr, client: netnsHTTPClient(pair.MD.NS, 5*time.Second)}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, m := range listenRE.FindAllStringSubmatch(d.stderr.String(), -1) {
			if m[1] == "metrics" {
				d.metrics = "http://" + m[2]
			} else {
				d.control = "http://" + m[2]
			}
		}
		if d.metrics != "" && d.control != "" {
			if code, _ := d.do(t, "GET", d.metrics+"/readyz", ""); code == http.StatusOK {
				return d
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mdfast exited (%v):\n%s", err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mdfast not ready in 15s:\n%s", d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *nsDaemon) do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123456789abcdef")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric sums the samples of the metrics page whose series (name and
// labels) match re.
func (d *nsDaemon) metric(t *testing.T, re string) float64 {
	t.Helper()
	code, body := d.do(t, "GET", d.metrics+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	rx := regexp.MustCompile(`^` + re + ` (\S+)$`)
	var sum float64
	for l := range strings.SplitSeq(body, "\n") {
		if m := rx.FindStringSubmatch(l); m != nil {
			var f float64
			if _, err := fmt.Sscan(m[1], &f); err == nil {
				sum += f
			}
		}
	}
	return sum
}

// byQueue returns the samples of metric name with labels queue and
// reason (or event) = value, per queue.
func (d *nsDaemon) byQueue(t *testing.T, name, label, value string) map[string]float64 {
	t.Helper()
	code, body := d.do(t, "GET", d.metrics+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	rx := regexp.MustCompile(`^` + name + `\{queue="([^"]*)",` + label + `="` + value + `"\} (\S+)$`)
	out := map[string]float64{}
	for l := range strings.SplitSeq(body, "\n") {
		if m := rx.FindStringSubmatch(l); m != nil {
			var f float64
			if _, err := fmt.Sscan(m[2], &f); err == nil {
				out[m[1]] = f
			}
		}
	}
	return out
}

// queueOf sends an RTP-looking datagram from u (not an endpoint's
// address) and returns the queue (worker) that dropped it as
// unknown_source: in socket mode the kernel picks a flow's socket by a
// hash of its addresses.
func (d *nsDaemon) queueOf(t *testing.T, u *net.UDPConn, md netip.AddrPort) string {
	t.Helper()
	before := d.byQueue(t, "mdfast_packets_dropped_total", "reason", "unknown_source")
	if _, err := u.WriteTo([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}, net.UDPAddrFromAddrPort(md)); err != nil {
		t.Fatal(err)
	}
	var q string
	waitFor(time.Second, func() bool {
		for k, v := range d.byQueue(t, "mdfast_packets_dropped_total", "reason", "unknown_source") {
			if v > before[k] {
				q = k
				return true
			}
		}
		return false
	})
	return q
}

type sessionView struct {
	ID, Conference, Association, Addr string
	Consent                           bool
	Moves                             uint64
}

func (d *nsDaemon) session(t *testing.T, id string) sessionView {
	t.Helper()
	code, body := d.do(t, "GET", d.control+"/v1/sessions", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/sessions = %d %s", code, body)
	}
	if strings.Contains(body, "pwd") {
		t.Errorf("GET /v1/sessions shows a password: %s", body)
	}
	var l struct{ Sessions []sessionView }
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Sessions {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no session %q in %s", id, body)
	return sessionView{}
}

// waitFor polls cond every 10 ms for up to within; it returns how long it
// took, or within+ if it never held.
func waitFor(within time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionMobility runs the daemon (socket, xdp-generic and
// xdp-native modes, two queues: two workers) in a network namespace, its KD and three legacy endpoints in another. Endpoint
// a joins through a control API session (no mapping: the MD places it by
// its ICE check), b and c by tls-id mapping. While all three stream:
//
//	(a) a opens a new local port and sends a nominating check from it:
//	    media resumes both ways within 1 s; a packet from the old port is
//	    dropped as unknown_source; the last packet a sent from the old
//	    port, replayed from the new one, is dropped as a replay (the
//	    receive state moved with the endpoint);
//	(b) NAT rebinding: an SNAT rule in a's namespace gives its flow a new
//	    source port mid-call: its media is dropped as unknown_source until
//	    its next nominating check, which moves it; media resumes;
//	(c) consent: a stops sending checks: within consent-timeout (+ the
//	    consent tick) it receives nothing, while b and c still receive its
//	    media; its next check gives media back;
//
// and a DELETE of the session ends a's association.
func TestSessionMobility(t *testing.T) {
	testutil.NeedRoot(t, "runs mdfast in network namespaces and installs nftables SNAT rules")
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatalf("nft(8) missing (scripts/deps.sh installs nftables): %v", err)
	}
	for _, mode := range []string{"socket", "xdp-generic", "xdp-native"} {
		t.Run(mode, func(t *testing.T) { testSessionMobility(t, mode, nft) })
	}
}

func testSessionMobility(t *testing.T, mode, nft string) {
	p := writePKI(t)
	pair := netnstest.NewPairQueues(t, 2)
	a, b, c := newMember(t, "a", 0xA1), newMember(t, "b", 0xB1), newMember(t, "c", 0xC1)
	reg := keydist.NewRegistry()
	conf := keydist.Conference{ID: "room"}
	for _, m := range []*member{a, b, c} {
		conf.Endpoints = append(conf.Endpoints, keydist.Endpoint{TLSID: m.id.TLSID, Fingerprint: m.id.Fingerprint()})
	}
	if err := reg.ReplaceFile([]keydist.Conference{conf}); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := pair.Peer.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", pair.Peer.Addr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kdAddr, kdFP := serveKDRegistry(t, p, ln, reg)
	const consentTimeout = 2 * time.Second
	d := startNSDaemon(t, pair, p, mode, kdAddr,
		"consent-timeout: 2s",
		"mappings:",
		"  tls-ids:",
		fmt.Sprintf("    %q: room", b.id.TLSID),
		fmt.Sprintf("    %q: room", c.id.TLSID))
	md := netip.AddrPortFrom(pair.MD.Addr, 5004)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	listen := func() *net.UDPConn {
		t.Helper()
		u, err := pair.Peer.NS.ListenUDP(pair.Peer.Addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	dial := func(m *member, pc net.PacketConn) {
		t.Helper()
		m.got = map[uint32]int{}
		s, err := perc.Dial(ctx, pc, md, perc.Config{
			Certificate: m.id.Cert, TLSID: m.id.TLSID, KDFingerprint: kdFP,
			Profiles: []uint16{perc.ProfileAES128GCM}, HandshakeTimeout: 10 * time.Second,
			OnRTP: func(p perc.RTPPacket) {
				m.mu.Lock()
				m.got[p.SSRC]++
				m.mu.Unlock()
			},
		})
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		m.s = s
		t.Cleanup(m.close)
	}

	// The session (what the KD's join endpoint would PUT).
	ea := &iceEndpoint{member: a, mdUfrag: "mdUfragA", mdPwd: "mdPasswordA0123456789xyz", epUfrag: "epUfragA", md: md}
	body := `{"conference":"room","ice_ufrag":"mdUfragA","ice_pwd":"mdPasswordA0123456789xyz","remote_ufrag":"epUfragA"}`
	if code, resp := d.do(t, "PUT", d.control+"/v1/sessions/sa", body); code != http.StatusCreated {
		t.Fatalf("PUT /v1/sessions/sa = %d %s", code, resp)
	}
	// In socket mode, a's first and second ports are chosen so that the
	// kernel gives their flows to different workers: the move then hands
	// a's receive state (replay window, ROC) over from one to the other.
	first, second := listen(), (*net.UDPConn)(nil)
	if mode == "socket" {
		qa := d.queueOf(t, first, md)
		for range 64 {
			u := listen()
			if q := d.queueOf(t, u, md); q != "" && q != qa {
				second = u
				break
			}
			u.Close()
		}
		if qa == "" || second == nil {
			t.Fatalf("no two source ports found whose flows go to different workers (first on %q)", qa)
		}
	} else {
		second = listen()
	}
	ea.pc = newSwapConn(first)
	// A check with the wrong password is refused (401: no answer we accept).
	good := ea.mdPwd
	ea.mdPwd = "wrongPasswordA0123456789"
	if ea.check(t, true, false) {
		t.Fatal("a check with a wrong password was answered")
	}
	ea.mdPwd = good
	if !ea.check(t, true, false) {
		t.Fatal("a's check not answered")
	}
	dial(a, ea.pc)
	ea.keepConsent(t)
	defer ea.stopConsent()
	dial(b, listen())
	dial(c, listen())
	if s := d.session(t, "sa"); s.Association == "" || s.Addr != ea.pc.conn().LocalAddr().String() || !s.Consent || s.Conference != "room" {
		t.Fatalf("session after the join: %+v", s)
	}

	st := stream(t, a, b, c)
	defer st.end()
	// received waits until rx gets new packets from tx.
	flowing := func(rx, tx *member, within time.Duration) (time.Duration, bool) {
		n0 := rx.received(tx)
		return waitFor(within, func() bool { return rx.received(tx) > n0+5 })
	}
	for _, pr := range [][2]*member{{a, b}, {b, a}, {c, a}, {a, c}} {
		if _, ok := flowing(pr[0], pr[1], 3*time.Second); !ok {
			t.Fatalf("%s receives nothing from %s after the join", pr[0].name, pr[1].name)
		}
	}

	dropped := func(reason string) float64 {
		return d.metric(t, `mdfast_packets_dropped_total\{queue="[^"]*",reason="`+reason+`"\}`)
	}

	// (a) A new local port and a nominating check from it.
	ea.pc.mu.Lock()
	oldPkt := bytes.Clone(ea.pc.lastRTP)
	ea.pc.mu.Unlock()
	handovers0 := d.metric(t, `mdfast_handovers_total\{event="accepted",queue="[^"]*"\}`)
	old := ea.pc.swap(second)
	defer old.Close()
	moved := time.Now()
	if !ea.check(t, true, true) {
		t.Fatal("the nominating check from the new port was not answered")
	}
	took, ok := flowing(a, b, time.Second)
	if !ok {
		t.Fatalf("a receives nothing at its new port 1 s after its nominating check")
	}
	if _, ok := flowing(b, a, time.Second); !ok {
		t.Fatalf("b receives nothing from a's new port 1 s after its nominating check")
	}
	t.Logf("(a) media to the new port flowing %v after the nominating check was sent (%v after it was answered)", time.Since(moved), took)
	if v := d.metric(t, `mdfast_endpoint_moves_total`); v != 1 {
		t.Errorf("mdfast_endpoint_moves_total = %v after the move, want 1", v)
	}
	if s := d.session(t, "sa"); s.Addr != ea.pc.conn().LocalAddr().String() || s.Moves != 1 {
		t.Errorf("session after the move: %+v, want addr %v", s, ea.pc.conn().LocalAddr())
	}
	unknown0, replay0 := dropped("unknown_source"), dropped("replay")
	if _, err := old.WriteTo(oldPkt, net.UDPAddrFromAddrPort(md)); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(2*time.Second, func() bool { return dropped("unknown_source") >= unknown0+1 }); !ok {
		t.Errorf("a packet from the old address was not dropped as unknown_source (%v -> %v)", unknown0, dropped("unknown_source"))
	}
	if _, err := ea.pc.conn().WriteTo(oldPkt, net.UDPAddrFromAddrPort(md)); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(2*time.Second, func() bool { return dropped("replay") >= replay0+1 }); !ok {
		t.Errorf("an old packet replayed from the new address was not dropped as a replay (%v -> %v)", replay0, dropped("replay"))
	}
	// A check without USE-CANDIDATE from the old port moves nothing.
	req, _ := iceCheck(ea.mdUfrag+":"+ea.epUfrag, ea.mdPwd, false)
	if _, err := old.WriteTo(req, net.UDPAddrFromAddrPort(md)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := d.session(t, "sa"); s.Addr != ea.pc.conn().LocalAddr().String() || s.Moves != 1 {
		t.Errorf("a check without USE-CANDIDATE moved the session: %+v", s)
	}

	// (b) NAT rebinding: SNAT a's flow to a new source port.
	local := ea.pc.conn().LocalAddr().(*net.UDPAddr)
	natPort := local.Port + 1
	if natPort > 65000 {
		natPort = local.Port - 1
	}
	nftRun := func(args ...string) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", pair.Peer.NS.Name, nft}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
	}
	nftRun("add", "table", "ip", "mdfnat")
	// The NAT has forgotten the old mapping: what the MD still sends to
	// the old port is dropped before conntrack sees it (else it would
	// make an inbound entry whose reply direction a's packets match,
	// unNATed).
	nftRun("add", "chain", "ip", "mdfnat", "pre", "{ type filter hook prerouting priority -300 ; }")
	nftRun("add", "rule", "ip", "mdfnat", "pre", "ip", "saddr", pair.MD.Addr.String(), "udp", "sport", "5004",
		"udp", "dport", fmt.Sprint(local.Port), "drop")
	nftRun("add", "chain", "ip", "mdfnat", "post", "{ type nat hook postrouting priority 100 ; }")
	nftRun("add", "rule", "ip", "mdfnat", "post", "ip", "daddr", pair.MD.Addr.String(), "udp", "sport", fmt.Sprint(local.Port),
		"udp", "dport", "5004", "snat", "to", fmt.Sprintf("%s:%d", pair.Peer.Addr, natPort))
	// The flow's conntrack entry, if one was made before the rules, would
	// keep the old mapping.
	if err := pair.Peer.NS.Netlink().ConntrackTableFlush(netlink.ConntrackTable); err != nil && !errors.Is(err, unix.ENOENT) {
		t.Logf("conntrack flush: %v", err)
	}
	unknown0 = dropped("unknown_source")
	if _, ok := waitFor(2*time.Second, func() bool { return dropped("unknown_source") > unknown0+5 }); !ok {
		t.Fatalf("a's media from its NAT-rebound port is not dropped as unknown_source (%v -> %v): SNAT not in effect?", unknown0, dropped("unknown_source"))
	}
	if !ea.check(t, true, true) {
		t.Fatal("the nominating check through the NAT was not answered")
	}
	if _, ok := flowing(b, a, time.Second); !ok {
		t.Fatal("b receives nothing from a 1 s after its nominating check through the NAT")
	}
	if _, ok := flowing(a, b, time.Second); !ok {
		t.Fatal("a receives nothing 1 s after its nominating check through the NAT")
	}
	want := fmt.Sprintf("%s:%d", pair.Peer.Addr, natPort)
	if s := d.session(t, "sa"); s.Addr != want || s.Moves != 2 {
		t.Errorf("session after the NAT rebinding: %+v, want addr %s and 2 moves", s, want)
	}
	if v := d.metric(t, `mdfast_endpoint_moves_total`); v != 2 {
		t.Errorf("mdfast_endpoint_moves_total = %v, want 2", v)
	}

	if h := d.metric(t, `mdfast_handovers_total\{event="accepted",queue="[^"]*"\}`); mode == "socket" && h <= handovers0 {
		t.Errorf("socket mode: no receive-state hand-over after a moved to a port the other worker serves (%v -> %v)", handovers0, h)
	} else {
		t.Logf("receive-state hand-overs accepted: %v -> %v", handovers0, h)
	}

	// (c) Consent: a stops checking.
	ea.stopConsent()
	stopped := time.Now()
	var lastA int
	quiet, ok := waitFor(consentTimeout+2*time.Second, func() bool {
		n := a.received(b)
		if n != lastA {
			lastA = n
			return false
		}
		// No packet for 200 ms (b sends every 10 ms).
		time.Sleep(200 * time.Millisecond)
		return a.received(b) == n
	})
	if !ok {
		t.Fatalf("a still receives %v after its last consent check (consent-timeout %v)", time.Since(stopped), consentTimeout)
	}
	if quiet-200*time.Millisecond > consentTimeout+time.Second {
		t.Errorf("a stopped receiving %v after its last check, consent-timeout is %v", quiet, consentTimeout)
	}
	t.Logf("(c) a stopped receiving %v after its last consent check (consent-timeout %v)", quiet, consentTimeout)
	if _, ok := flowing(b, a, time.Second); !ok {
		t.Error("b no longer receives a's media after a's consent expired")
	}
	if _, ok := flowing(c, a, time.Second); !ok {
		t.Error("c no longer receives a's media after a's consent expired")
	}
	if _, ok := flowing(b, c, time.Second); !ok {
		t.Error("b no longer receives c after a's consent expired")
	}
	if v := d.metric(t, `mdfast_consent_expired_total`); v != 1 {
		t.Errorf("mdfast_consent_expired_total = %v, want 1", v)
	}
	if s := d.session(t, "sa"); s.Consent || s.Association == "" {
		t.Errorf("session without consent: %+v", s)
	}
	n := a.received(b)
	time.Sleep(500 * time.Millisecond)
	if m := a.received(b); m != n {
		t.Errorf("a received %d packets without consent", m-n)
	}
	// Its next check gives media back.
	if !ea.check(t, false, true) {
		t.Fatal("consent check not answered")
	}
	if _, ok := flowing(a, b, time.Second); !ok {
		t.Fatal("a receives nothing after consent came back")
	}

	// DELETE ends the session's association (EndpointDisconnect to the KD).
	if code, resp := d.do(t, "DELETE", d.control+"/v1/sessions/sa", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE /v1/sessions/sa = %d %s", code, resp)
	}
	if v := d.metric(t, `mdfast_associations`); v != 2 {
		t.Errorf("mdfast_associations = %v after the session was deleted, want 2", v)
	}
	if code, _ := d.do(t, "DELETE", d.control+"/v1/sessions/sa", ""); code != http.StatusNotFound {
		t.Errorf("second DELETE = %d, want 404", code)
	}
}
