package webrtctest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/mdfast/mdfast/internal/syssim"
)

// swapConn is the PacketConn under a peer's ICE UDP mux: a UDP socket in
// the endpoints' namespace that the test can swap for one on a new port
// (what a browser does on a network change), and whose outgoing STUN it
// can drop (a peer whose ICE agent stopped answering).
type swapConn struct {
	local    net.Addr
	cur      atomic.Pointer[net.UDPConn]
	in       chan inPkt
	closed   chan struct{}
	once     sync.Once
	dropSTUN atomic.Bool
	staleRx  atomic.Int64 // datagrams that arrived on a swapped-out socket
	mu       sync.Mutex
	all      []*net.UDPConn
	wg       sync.WaitGroup
}

type inPkt struct {
	b    []byte
	from net.Addr
}

func newSwapConn(ns string, ip netip.Addr) (*swapConn, error) {
	c := &swapConn{in: make(chan inPkt, 1024), closed: make(chan struct{})}
	u, err := listenIn(ns, ip)
	if err != nil {
		return nil, err
	}
	c.local = u.LocalAddr()
	c.add(u)
	return c, nil
}

func listenIn(ns string, ip netip.Addr) (*net.UDPConn, error) {
	var u *net.UDPConn
	err := syssim.InNetns(ns, func() error {
		var err error
		u, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	})
	return u, err
}

func (c *swapConn) add(u *net.UDPConn) {
	c.mu.Lock()
	c.all = append(c.all, u)
	c.mu.Unlock()
	c.cur.Store(u)
	c.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			if c.cur.Load() != u {
				c.staleRx.Add(1)
				continue
			}
			select {
			case c.in <- inPkt{append([]byte(nil), buf[:n]...), from}:
			case <-c.closed:
				return
			}
		}
	})
}

// swap moves the peer to a new local port; the old socket stays open and
// counts what still arrives there.
func (c *swapConn) swap(ns string, ip netip.Addr) (netip.AddrPort, error) {
	u, err := listenIn(ns, ip)
	if err != nil {
		return netip.AddrPort{}, err
	}
	c.add(u)
	return u.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

// isSTUN: RFC 7983 demultiplexing (first byte 0..3).
func isSTUN(b []byte) bool { return len(b) > 0 && b[0] < 4 }

func (c *swapConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case pk := <-c.in:
		return copy(p, pk.b), pk.from, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *swapConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.dropSTUN.Load() && isSTUN(p) {
		return len(p), nil
	}
	return c.cur.Load().WriteTo(p, addr)
}

func (c *swapConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		for _, u := range c.all {
			u.Close()
		}
		c.mu.Unlock()
	})
	c.wg.Wait()
	return nil
}

func (c *swapConn) LocalAddr() net.Addr              { return c.local }
func (c *swapConn) SetDeadline(time.Time) error      { return nil }
func (c *swapConn) SetReadDeadline(time.Time) error  { return nil }
func (c *swapConn) SetWriteDeadline(time.Time) error { return nil }

// Media payloads: "MDJT", sender index, kind (0 audio, 1 video), a 32-bit
// sequence number, then bytes derived from both, so that a receiver checks
// every byte and knows who sent it.
const (
	audioSize = 120
	videoSize = 900
	tagLen    = 10
)

func payload(sender byte, kind byte, seq uint32, size int) []byte {
	b := make([]byte, size)
	copy(b, "MDJT")
	b[4], b[5] = sender, kind
	binary.BigEndian.PutUint32(b[6:], seq)
	for i := tagLen; i < size; i++ {
		b[i] = byte(uint32(i)*31 + seq*7 + uint32(sender))
	}
	return b
}

// checkPayload returns the sender and kind of a valid payload.
func checkPayload(b []byte) (sender, kind byte, ok bool) {
	if len(b) < tagLen || string(b[:4]) != "MDJT" || b[5] > 1 {
		return 0, 0, false
	}
	sender, kind = b[4], b[5]
	want := audioSize
	if kind == 1 {
		want = videoSize
	}
	seq := binary.BigEndian.Uint32(b[6:])
	if len(b) != want {
		return 0, 0, false
	}
	for i := tagLen; i < len(b); i++ {
		if b[i] != byte(uint32(i)*31+seq*7+uint32(sender)) {
			return 0, 0, false
		}
	}
	return sender, kind, true
}

// peer is one pion/webrtc endpoint: an audio and a video track sent every
// 20 ms with checkable payloads, and counters of what it receives.
type peer struct {
	t     *testing.T
	s     *sys
	idx   byte
	conf  string
	ip    netip.Addr
	conn  *swapConn
	pc    *webrtc.PeerConnection
	audio *webrtc.TrackLocalStaticRTP
	video *webrtc.TrackLocalStaticRTP

	location, etag, answer string
	connected              chan struct{}

	mu       sync.Mutex
	got      map[[2]byte]int       // (sender, kind) -> packets
	lastFrom map[byte]time.Time    // sender -> last packet
	firstAt  map[[2]byte]time.Time // (sender, kind) -> first packet after mark
	bad      atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

func newPeer(t *testing.T, s *sys, idx int, conf string) *peer {
	t.Helper()
	p := &peer{t: t, s: s, idx: byte(idx), conf: conf, ip: epAddr(idx), connected: make(chan struct{}),
		got: map[[2]byte]int{}, lastFrom: map[byte]time.Time{}, firstAt: map[[2]byte]time.Time{}, stop: make(chan struct{})}
	var err error
	if p.conn, err = newSwapConn(s.ep.NS.Name, p.ip); err != nil {
		t.Fatal(err)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = os.Stderr
	if os.Getenv("WEBRTCTEST_PION_LOG") == "" {
		lf.DefaultLogLevel = logging.LogLevelDisabled
	}
	se.LoggerFactory = lf
	se.SetICEUDPMux(webrtc.NewICEUDPMux(lf.NewLogger("mux"), p.conn))
	se.SetICETimeouts(30*time.Second, 60*time.Second, 500*time.Millisecond)
	// The MD's answer cannot list the other members' SSRCs: streams are
	// bound to transceivers by payload type.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	if p.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	p.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", fmt.Sprint("p", idx))
	p.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", fmt.Sprint("p", idx))
	for _, tr := range []*webrtc.TrackLocalStaticRTP{p.audio, p.video} {
		if _, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	p.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(p.connected) })
		}
	})
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.wg.Go(func() {
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				sender, kind, ok := checkPayload(pkt.Payload)
				if !ok {
					p.bad.Add(1)
					continue
				}
				now := time.Now()
				k := [2]byte{sender, kind}
				p.mu.Lock()
				p.got[k]++
				p.lastFrom[sender] = now
				if _, seen := p.firstAt[k]; !seen {
					p.firstAt[k] = now
				}
				p.mu.Unlock()
			}
		})
	})
	t.Cleanup(p.close)
	return p
}

// join posts the offer to the join endpoint and applies the answer.
func (p *peer) join() {
	t := p.t
	t.Helper()
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	code, hdr, body, err := p.s.request("POST", joinURL()+"/v1/join/"+p.conf, p.s.token(p.conf), "application/sdp", p.pc.LocalDescription().SDP)
	if err != nil || code != 201 {
		p.s.fatal(fmt.Errorf("join %s: %d %v %s", p.conf, code, err, body))
	}
	p.location, p.etag, p.answer = hdr.Get("Location"), hdr.Get("ETag"), body
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatalf("pion refused the join answer: %v\n%s", err, body)
	}
}

func (p *peer) waitConnected(timeout time.Duration) {
	select {
	case <-p.connected:
	case <-time.After(timeout):
		p.s.fatal(fmt.Errorf("peer %d not connected after %s (state %s)", p.idx, timeout, p.pc.ConnectionState()))
	}
}

// send starts writing audio and video every 20 ms until close.
func (p *peer) send() {
	p.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var seq uint32
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			seq++
			for kind, tr := range []*webrtc.TrackLocalStaticRTP{p.audio, p.video} {
				size := audioSize
				if kind == 1 {
					size = videoSize
				}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seq), Timestamp: seq * 960, Marker: true},
					Payload: payload(p.idx, byte(kind), seq, size)}
				if err := tr.WriteRTP(pkt); err != nil && !errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}
	})
}

func (p *peer) count(sender *peer, kind byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[[2]byte{sender.idx, kind}]
}

func (p *peer) last(sender *peer) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastFrom[sender.idx]
}

// foreign counts packets from senders not in others.
func (p *peer) foreign(members ...*peer) int {
	in := map[byte]bool{p.idx: true}
	for _, m := range members {
		in[m.idx] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.got {
		if !in[k[0]] {
			n += v
		}
	}
	return n
}

// iceRestart moves the peer to a new local port and restarts ICE through
// the join endpoint (PATCH with the new credentials); it returns when the
// new remote credentials are applied.
func (p *peer) iceRestart(newPort bool) netip.AddrPort {
	t := p.t
	t.Helper()
	var ap netip.AddrPort
	if newPort {
		var err error
		if ap, err = p.conn.swap(p.s.ep.NS.Name, p.ip); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ufrag, pwd := attr(offer.SDP, "ice-ufrag"), attr(offer.SDP, "ice-pwd")
	frag := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
	code, hdr, body, err := p.s.request("PATCH", joinURL()+p.location, p.s.token(p.conf), "application/trickle-ice-sdpfrag", frag, "If-Match", p.etag)
	if err != nil || code != 200 {
		p.s.fatal(fmt.Errorf("ICE restart PATCH: %d %v %s", code, err, body))
	}
	p.etag = hdr.Get("ETag")
	answer := strings.Replace(p.answer, "a=ice-ufrag:"+attr(p.answer, "ice-ufrag"), "a=ice-ufrag:"+attr(body, "ice-ufrag"), -1)
	answer = strings.Replace(answer, "a=ice-pwd:"+attr(p.answer, "ice-pwd"), "a=ice-pwd:"+attr(body, "ice-pwd"), -1)
	if answer == p.answer {
		t.Fatal("the restart answer has the old credentials")
	}
	p.answer = answer
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("restart answer: %v", err)
	}
	return ap
}

// attr returns the first a=name: value of an SDP text.
func attr(sdpText, name string) string {
	for line := range strings.SplitSeq(sdpText, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

func (p *peer) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.pc.Close()
	_ = p.conn.Close()
	p.wg.Wait()
}
