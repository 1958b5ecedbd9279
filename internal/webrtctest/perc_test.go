package webrtctest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/identity"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/perc"
)

// percOffer is the SDP offer of a PERC endpoint (package perc): DTLS
// client with its tls-id, no ICE agent (the MD places it by the session's
// tls-id; the ICE credentials are only what the offer must carry).
func percOffer(id endpointsim.Identity, ufrag string) string {
	fp := identity.CertificateFingerprint(id.Cert.Certificate[0])
	return "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n" +
		"a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:percendpointpassword0123\r\n" +
		"a=fingerprint:sha-256 " + fp.String() + "\r\na=setup:active\r\na=tls-id:" + id.TLSID + "\r\n" +
		"a=rtcp-mux\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
}

// TestPERCJoin: two PERC endpoints (double media, EKT) join a conference
// that admits PERC endpoints only, through the join endpoint: the answer
// carries the KD's fingerprint and tls-id, the endpoints dial the KD
// through the MD with what the answer says, and exchange media the MD
// forwards without being able to read it. A legacy pion offer to the same
// conference is refused and registers nothing.
func TestPERCJoin(t *testing.T) {
	s := newSys(t, sysConfig{percConfs: []string{"perc-room"}, endpoints: 3})
	md := netip.AddrPortFrom(mdIP, mediaPort)
	type ep struct {
		id   endpointsim.Identity
		sess *perc.Session
		got  atomic.Int64
		bad  atomic.Int64
	}
	eps := make([]*ep, 2)
	var wg sync.WaitGroup
	for i := range eps {
		id, err := endpointsim.NewIdentity(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e := &ep{id: id}
		eps[i] = e
		code, _, answer, err := s.request("POST", joinURL()+"/v1/join/perc-room", s.token("perc-room"), "application/sdp", percOffer(id, fmt.Sprintf("perc%d", i)))
		if err != nil || code != 201 {
			s.fatal(fmt.Errorf("PERC join: %d %v %s", code, err, answer))
		}
		kdFP, err := identity.ParseFingerprint(attr(answer, "fingerprint"))
		if err != nil || kdFP != s.files.KDFingerprint {
			t.Fatalf("answer fingerprint %q: %v", attr(answer, "fingerprint"), err)
		}
		if identity.ValidateTLSID(attr(answer, "tls-id")) != nil {
			t.Fatalf("answer without the KD's tls-id:\n%s", answer)
		}
		var udp *net.UDPConn
		if err := syssim.InNetns(s.ep.NS.Name, func() error {
			var err error
			udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(epAddr(i), 0)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			sess, err := perc.Dial(ctx, udp, md, perc.Config{Certificate: id.Cert, TLSID: id.TLSID, KDFingerprint: kdFP,
				Profiles: []uint16{0x0009}, OnRTP: func(p perc.RTPPacket) {
					if len(p.Payload) == 8 && binary.BigEndian.Uint32(p.Payload) == p.SSRC {
						e.got.Add(1)
					} else {
						e.bad.Add(1)
					}
				}})
			if err != nil {
				t.Errorf("perc.Dial: %v", err)
				udp.Close()
				return
			}
			e.sess = sess
		})
	}
	wg.Wait()
	for _, e := range eps {
		if e.sess != nil {
			defer e.sess.Close()
		}
	}
	if t.Failed() {
		s.fatal(fmt.Errorf("PERC endpoints did not join"))
	}
	for seq := range 100 {
		for i, e := range eps {
			ssrc := uint32(0x9e4c0000 + i)
			pl := make([]byte, 8)
			binary.BigEndian.PutUint32(pl, ssrc)
			binary.BigEndian.PutUint32(pl[4:], uint32(seq))
			raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(seq), Timestamp: uint32(seq) * 960, SSRC: ssrc}, Payload: pl}).Marshal()
			if err := e.sess.WriteRTP(raw); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := eventually(5*time.Second, func() bool { return eps[0].got.Load() >= 90 && eps[1].got.Load() >= 90 }); !ok {
		s.logMetrics()
		s.fatal(fmt.Errorf("PERC media: %d and %d of 100 packets received", eps[0].got.Load(), eps[1].got.Load()))
	}
	t.Logf("PERC endpoints received %d and %d of 100 double-encrypted packets", eps[0].got.Load(), eps[1].got.Load())
	if eps[0].bad.Load()+eps[1].bad.Load() != 0 {
		t.Error("PERC payloads altered")
	}
	if n := s.mdMetric("mdfast_packets_dropped_total", `reason="auth"`); n != 0 {
		t.Errorf("mdfast dropped %v packets failing authentication", n)
	}
	// A legacy WebRTC client (no a=tls-id) is refused by this conference.
	p := newPeer(t, s, 2, "perc-room")
	offer, _ := p.pc.CreateOffer(nil)
	code, _, body, err := s.request("POST", joinURL()+"/v1/join/perc-room", s.token("perc-room"), "application/sdp", offer.SDP)
	if err != nil || code != 403 {
		t.Errorf("legacy offer to a PERC-only conference: %d %v %s", code, err, body)
	}
	if n := len(s.joinSessions()); n != 2 {
		t.Errorf("%d join sessions, want the 2 PERC ones", n)
	}
}
