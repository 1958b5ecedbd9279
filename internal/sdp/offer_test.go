package sdp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/mdfast/mdfast/internal/identity"
)

// chromeOffer is an offer as Chromium writes it (audio, video, data
// channel), shortened.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0 1 2\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:8Zfi\r\n" +
	"a=ice-pwd:qm5Fc1Z2ZQ7z8y4tM0cN7iWz\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:8Zfi\r\n" +
	"a=ice-pwd:qm5Fc1Z2ZQ7z8y4tM0cN7iWz\r\n" +
	"a=fingerprint:sha-256 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=recvonly\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp-rsize\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtpmap:97 rtx/90000\r\n" +
	"a=fmtp:97 apt=96\r\n" +
	"a=rtpmap:102 H264/90000\r\n" +
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:8Zfi\r\n" +
	"a=ice-pwd:qm5Fc1Z2ZQ7z8y4tM0cN7iWz\r\n" +
	"a=fingerprint:sha-256 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:2\r\n" +
	"a=sctp-port:5000\r\n"

func TestParseChromeOffer(t *testing.T) {
	o, err := ParseOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	if o.ICEUfrag != "8Zfi" || o.ICEPwd != "qm5Fc1Z2ZQ7z8y4tM0cN7iWz" || o.Setup != "actpass" || o.TLSID != "" {
		t.Fatalf("transport: %+v", o)
	}
	want, _ := identity.ParseFingerprint("9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80")
	if o.Fingerprint != want {
		t.Fatal("fingerprint")
	}
	if len(o.Media) != 3 || !o.Media[0].Accepted || !o.Media[1].Accepted || o.Media[2].Accepted {
		t.Fatalf("media: %+v", o.Media)
	}
	if c := o.Media[0].Chosen; c.PT != 111 || c.Name != "opus" || c.Channels != 2 || c.Fmtp != "minptime=10;useinbandfec=1" {
		t.Fatalf("audio codec %+v", c)
	}
	if c := o.Media[1].Chosen; c.PT != 96 || c.Name != "VP8" {
		t.Fatalf("video codec %+v", c)
	}
	a := Answer{ICEUfrag: "abcd1234", ICEPwd: "0123456789abcdefghijklmn", Fingerprint: want, SessionID: 7,
		Candidates: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:4000"), netip.MustParseAddrPort("[2001:db8::1]:4000")}}
	ans := string(a.Write(o))
	for _, line := range []string{
		"a=ice-lite", "a=group:BUNDLE 0 1", "m=audio 4000 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 198.18.0.1",
		"a=setup:passive", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
		"a=sendonly", "a=rtpmap:96 VP8/90000",
		"a=candidate:1 1 udp 2130706431 198.18.0.1 4000 typ host", "a=candidate:2 1 udp 2130706175 2001:db8::1 4000 typ host",
		"m=application 0 UDP/DTLS/SCTP webrtc-datachannel", "a=ice-ufrag:abcd1234", "a=fingerprint:sha-256 " + want.String(),
	} {
		if !strings.Contains(ans, line+"\r\n") {
			t.Errorf("answer lacks %q:\n%s", line, ans)
		}
	}
	if strings.Contains(ans, "tls-id") || strings.Contains(ans, "extmap") || strings.Contains(ans, "H264") || strings.Contains(ans, "rtx") {
		t.Errorf("answer has what it should not:\n%s", ans)
	}
	// The answer parses back with our own parser as an offer would (same
	// grammar), apart from the role.
	if _, err := ParseOffer([]byte(ans)); !errors.Is(err, ErrSetup) {
		t.Fatalf("answer re-parsed: %v, want ErrSetup (passive)", err)
	}
}

// TestPionOfferAnswer cross-checks with an independent implementation:
// pion/webrtc's offer parses, and pion accepts our answer.
func TestPionOfferAnswer(t *testing.T) {
	for _, perc := range []bool{false, true} {
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(k); err != nil {
				t.Fatal(err)
			}
		}
		off, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(off); err != nil {
			t.Fatal(err)
		}
		text := off.SDP
		tlsID := identity.NewTLSID()
		if perc {
			text = strings.ReplaceAll(text, "a=setup:actpass\r\n", "a=setup:actpass\r\na=tls-id:"+tlsID+"\r\n")
		}
		o, err := ParseOffer([]byte(text))
		if err != nil {
			t.Fatalf("pion offer: %v\n%s", err, text)
		}
		certs := pc.GetConfiguration().Certificates
		fps, err := certs[0].GetFingerprints()
		if err != nil {
			t.Fatal(err)
		}
		var want identity.Fingerprint
		for _, f := range fps {
			if f.Algorithm == "sha-256" {
				want, _ = identity.ParseFingerprint(f.Value)
			}
		}
		if o.Fingerprint != want {
			t.Fatalf("fingerprint %s, pion says %s", o.Fingerprint, want)
		}
		if perc != (o.TLSID == tlsID) {
			t.Fatalf("tls-id %q", o.TLSID)
		}
		a := Answer{ICEUfrag: "MDufrag1", ICEPwd: "MDpasswordMDpassword1234", Fingerprint: want,
			Candidates: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:40000")}}
		if perc {
			a.TLSID = identity.NewTLSID()
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(a.Write(o))}); err != nil {
			t.Fatalf("pion refused our answer: %v\n%s", err, a.Write(o))
		}
	}
}

// mutate replaces old with new in chromeOffer (all occurrences).
func mutate(old, new string) string { return strings.ReplaceAll(chromeOffer, old, new) }

func TestBadOffers(t *testing.T) {
	long := strings.Repeat("x", MaxLine+1)
	for _, tc := range []struct {
		name  string
		offer string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"not SDP", "hello world", ErrMalformed},
		{"JSON", `{"sdp":"v=0"}`, ErrMalformed},
		{"no v=0 first", mutate("v=0\r\n", "o=x\r\nv=0\r\n"), ErrMalformed},
		{"v=1", mutate("v=0\r\n", "v=1\r\n"), ErrMalformed},
		{"no o=", mutate("o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n", ""), ErrMalformed},
		{"short o=", mutate("o=- 4611731400430051336 2 IN IP4 127.0.0.1", "o=- 1"), ErrMalformed},
		{"no m=", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", ErrNoMedia},
		{"empty line", mutate("s=-\r\n", "s=-\r\n\r\n"), ErrMalformed},
		{"NUL byte", mutate("s=-", "s=\x00"), ErrMalformed},
		{"line too long", mutate("s=-", "s="+long), ErrMalformed},
		{"too big", chromeOffer + strings.Repeat("a=x\r\n", MaxOffer/5), ErrMalformed},
		{"too many lines", chromeOffer + strings.Repeat("a=x\r\n", MaxLines), ErrMalformed},
		{"too many m-lines", chromeOffer + strings.Repeat("m=audio 0 RTP/AVP 0\r\na=mid:z\r\n", MaxMedia), ErrMalformed},
		{"uppercase type", mutate("s=-", "S=-"), ErrMalformed},
		{"bad port", mutate("m=audio 9 ", "m=audio 99999 "), ErrMalformed},
		{"m-line short", mutate("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102", "m=video 9"), ErrMalformed},
		{"bad rtpmap pt", mutate("a=rtpmap:111 opus", "a=rtpmap:300 opus"), ErrMalformed},
		{"rtpmap twice", mutate("a=rtpmap:0 PCMU/8000", "a=rtpmap:111 PCMU/8000"), ErrMalformed},
		{"bad clock", mutate("opus/48000/2", "opus/x/2"), ErrMalformed},
		{"bad extmap", mutate("a=extmap:4 urn", "a=extmap:0 urn"), ErrMalformed},
		{"fingerprints differ across m-lines", strings.Replace(chromeOffer, "9F:04", "00:04", 1), ErrBundle},
		{"two fingerprints in one m-line", strings.Replace(chromeOffer, "a=setup:actpass\r\n", "a=fingerprint:sha-256 "+strings.Repeat("00:", 31)+"00\r\na=setup:actpass\r\n", 1), ErrMalformed},
		{"bad fingerprint", mutate("9F:04:A8", "9F:04"), ErrMalformed},
		{"no DTLS (SDES)", mutate("UDP/TLS/RTP/SAVPF", "RTP/SAVPF"), ErrNoDTLS},
		{"plain RTP", mutate("UDP/TLS/RTP/SAVPF", "RTP/AVP"), ErrNoDTLS},
		{"no fingerprint", mutate("a=fingerprint:sha-256 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80\r\n", ""), ErrNoDTLS},
		{"sha-1 fingerprint", mutate("a=fingerprint:sha-256 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B:7E:7D:62:52:EF:6F:A8:B2:7C:0F:C1:80", "a=fingerprint:sha-1 9F:04:A8:34:2B:76:53:43:58:43:1C:68:5C:10:AB:A3:21:F6:0C:1B"), ErrFingerprintHash},
		{"sha-512 fingerprint", mutate("a=fingerprint:sha-256", "a=fingerprint:sha-512"), ErrFingerprintHash},
		{"setup passive", mutate("a=setup:actpass", "a=setup:passive"), ErrSetup},
		{"no setup", mutate("a=setup:actpass\r\n", ""), ErrSetup},
		{"no rtcp-mux", mutate("a=rtcp-mux\r\n", ""), ErrNoRTCPMux},
		{"no BUNDLE", mutate("a=group:BUNDLE 0 1 2\r\n", ""), ErrBundle},
		{"BUNDLE without video", mutate("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2"), ErrBundle},
		{"two BUNDLE groups", mutate("a=group:BUNDLE 0 1 2\r\n", "a=group:BUNDLE 0\r\na=group:BUNDLE 1 2\r\n"), ErrBundle},
		{"no mid", mutate("a=mid:1\r\n", ""), ErrBundle},
		{"mid twice", mutate("a=mid:1\r\n", "a=mid:0\r\n"), ErrBundle},
		{"different ufrags", strings.Replace(chromeOffer, "a=ice-ufrag:8Zfi", "a=ice-ufrag:9Zfi", 1), ErrBundle},
		{"no ICE", mutate("a=ice-ufrag:8Zfi\r\n", ""), ErrICE},
		{"short ufrag", mutate("a=ice-ufrag:8Zfi", "a=ice-ufrag:8Zf"), ErrICE},
		{"short pwd", mutate("a=ice-pwd:qm5Fc1Z2ZQ7z8y4tM0cN7iWz", "a=ice-pwd:qm5Fc1"), ErrICE},
		{"ufrag bad char", mutate("a=ice-ufrag:8Zfi", "a=ice-ufrag:8Z:fi"), ErrICE},
		{"ufrag twice differently", mutate("a=ice-ufrag:8Zfi\r\n", "a=ice-ufrag:8Zfi\r\na=ice-ufrag:7Zfi\r\n"), ErrMalformed},
		{"bad tls-id", mutate("a=setup:actpass\r\n", "a=setup:actpass\r\na=tls-id:short\r\n"), ErrMalformed},
		{"no codec", mutate("opus/48000/2", "speex/48000/2"), ErrBundle}, // audio answered rejected, bundle then lacks nothing: see below
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOffer([]byte(tc.offer))
			if tc.name == "no codec" {
				// audio rejected, video still accepted: a valid offer.
				if err != nil || o.Media[0].Accepted || !o.Media[1].Accepted {
					t.Fatalf("no opus: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if o != nil {
				t.Fatal("an offer returned with an error")
			}
			var e *Error
			if !errors.As(err, &e) || len(e.Error()) > 400 {
				t.Fatalf("error %T %q: want a short *Error", err, err)
			}
		})
	}
	// No supported codec anywhere.
	_, err := ParseOffer([]byte(strings.NewReplacer("opus/48000/2", "speex/48000/2", "VP8/90000", "AV1/90000", "H264/90000", "VP9/90000").Replace(chromeOffer)))
	if !errors.Is(err, ErrNoMedia) {
		t.Fatalf("no codec: %v", err)
	}
}

func TestParseFrag(t *testing.T) {
	for _, tc := range []struct {
		name, frag string
		restart    bool
		want       error
	}{
		{"restart", "a=ice-ufrag:NeWu\r\na=ice-pwd:newpasswordnewpassword12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 198.18.0.2 5000 typ host\r\n", true, nil},
		{"trickle only", "a=ice-options:trickle\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 198.18.0.2 5000 typ host\r\na=end-of-candidates\r\n", false, nil},
		{"empty", "", false, nil},
		{"ufrag without pwd", "a=ice-ufrag:NeWu\r\n", false, ErrICE},
		{"short pwd", "a=ice-ufrag:NeWu\r\na=ice-pwd:short\r\n", false, ErrICE},
		{"two ufrags", "a=ice-ufrag:NeWu\r\na=ice-ufrag:OlDu\r\na=ice-pwd:newpasswordnewpassword12\r\n", false, ErrMalformed},
		{"not a frag", "v=0\r\n", false, ErrMalformed},
		{"unknown attribute", "a=fingerprint:sha-256 00\r\n", false, ErrMalformed},
		{"garbage", "\x00\x01", false, ErrMalformed},
		{"too big", strings.Repeat("a=candidate:x\r\n", MaxOffer/10), false, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFrag([]byte(tc.frag))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && f.Restart() != tc.restart {
				t.Fatalf("restart %v", f.Restart())
			}
		})
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(chromeOffer))
	f.Add([]byte(mutate("a=setup:actpass\r\n", "a=setup:actpass\r\na=tls-id:"+strings.Repeat("A", 43)+"\r\n")))
	f.Add([]byte("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOffer(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || o != nil {
				t.Fatalf("error %T with offer %v", err, o != nil)
			}
			return
		}
		// Every accepted offer gives an answer that names what it accepted.
		a := Answer{ICEUfrag: "abcd", ICEPwd: strings.Repeat("p", 22), Candidates: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:1")}}
		ans := string(a.Write(o))
		for _, m := range o.Media {
			if m.Accepted && !strings.Contains(ans, "a=mid:"+m.Mid+"\r\n") {
				t.Fatalf("mid %q missing from the answer", m.Mid)
			}
		}
		if strings.Count(ans, "\r\n") > 40*len(o.Media)+10 {
			t.Fatal("answer out of proportion")
		}
	})
}

func FuzzParseFrag(f *testing.F) {
	f.Add([]byte("a=ice-ufrag:NeWu\r\na=ice-pwd:newpasswordnewpassword12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrag(b)
		if err == nil && fr.Restart() && checkICE(fr.ICEUfrag, fr.ICEPwd) != nil {
			t.Fatal("restart with invalid credentials accepted")
		}
	})
}
