package sdp

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/mdfast/mdfast/internal/identity"
)

// Answer is what the join endpoint answers: the MD's ICE-lite credentials
// and media addresses, the KD's DTLS identity.
type Answer struct {
	// SessionID is the o= session id (a random number).
	SessionID uint64
	// ICEUfrag and ICEPwd are the MD's local ICE credentials.
	ICEUfrag, ICEPwd string
	// Fingerprint is the SHA-256 fingerprint of the KD's DTLS certificate.
	Fingerprint identity.Fingerprint
	// TLSID is the KD's tls-id for this endpoint ("" for a legacy one).
	TLSID string
	// Candidates are the MD's media addresses, one host candidate each.
	Candidates []netip.AddrPort
}

// Write returns the SDP answer to offer o: a=ice-lite, one BUNDLE group
// of the accepted m-lines, each with the chosen codec under the offer's
// payload type, a=setup:passive, a=rtcp-mux and the mirrored direction;
// other m-lines rejected (port 0).
//
// No RTP header extension is negotiated: the MD forwards packets as their
// senders wrote them, and a sender that does not write the mid extension
// would leave receivers that negotiated it unable to place its stream.
// Receivers bind the other members' streams, whose SSRCs no answer can
// list in advance, by payload type (one audio and one video m-line with
// distinct payload types; pion/webrtc needs
// SettingEngine.SetHandleUndeclaredSSRCWithoutAnswer(true)).
func (a *Answer) Write(o *Offer) []byte {
	var b strings.Builder
	line := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
		b.WriteString("\r\n")
	}
	port, cline := "9", "IN IP4 0.0.0.0"
	if len(a.Candidates) > 0 {
		port = strconv.Itoa(int(a.Candidates[0].Port()))
		cline = connection(a.Candidates[0].Addr())
	}
	line("v=0")
	line("o=- ", strconv.FormatUint(a.SessionID&(1<<63-1), 10), " 2 IN IP4 127.0.0.1")
	line("s=-")
	line("t=0 0")
	line("a=ice-lite")
	var mids []string
	for i := range o.Media {
		if o.Media[i].Accepted {
			mids = append(mids, o.Media[i].Mid)
		}
	}
	line("a=group:BUNDLE ", strings.Join(mids, " "))
	for i := range o.Media {
		m := &o.Media[i]
		if !m.Accepted {
			line("m=", m.Kind, " 0 ", m.Proto, " ", m.Formats[0])
			line("c=IN IP4 0.0.0.0")
			line("a=mid:", m.Mid)
			line("a=inactive")
			continue
		}
		pt := strconv.Itoa(int(m.Chosen.PT))
		line("m=", m.Kind, " ", port, " ", ProtoDTLS, " ", pt)
		line("c=", cline)
		line("a=mid:", m.Mid)
		line("a=ice-ufrag:", a.ICEUfrag)
		line("a=ice-pwd:", a.ICEPwd)
		line("a=fingerprint:sha-256 ", a.Fingerprint.String())
		line("a=setup:passive")
		if a.TLSID != "" {
			line("a=tls-id:", a.TLSID)
		}
		line("a=rtcp-mux")
		line("a=", answerDirection(m.Direction))
		enc := m.Chosen.Name + "/" + strconv.FormatUint(uint64(m.Chosen.Clock), 10)
		if m.Chosen.Channels > 0 {
			enc += "/" + strconv.Itoa(int(m.Chosen.Channels))
		}
		line("a=rtpmap:", pt, " ", enc)
		if m.Chosen.Fmtp != "" {
			line("a=fmtp:", pt, " ", m.Chosen.Fmtp)
		}
		for j, c := range a.Candidates {
			line(Candidate(j, c))
		}
		line("a=end-of-candidates")
	}
	return []byte(b.String())
}

// WriteFrag returns the trickle-ice-sdpfrag answering an ICE restart: the
// MD's new credentials and its candidates, for the offer's bundle mid.
func (a *Answer) WriteFrag(mid string) []byte {
	var b strings.Builder
	b.WriteString("a=ice-lite\r\na=ice-ufrag:" + a.ICEUfrag + "\r\na=ice-pwd:" + a.ICEPwd + "\r\n")
	b.WriteString("m=audio 9 " + ProtoDTLS + " 0\r\na=mid:" + mid + "\r\n")
	for j, c := range a.Candidates {
		b.WriteString(Candidate(j, c) + "\r\n")
	}
	b.WriteString("a=end-of-candidates\r\n")
	return []byte(b.String())
}

// Candidate returns the a=candidate line of the i-th host candidate
// (RFC 8839; priority per RFC 8445 section 5.1.2.1, type preference 126,
// local preference decreasing with i).
func Candidate(i int, ap netip.AddrPort) string {
	prio := uint32(126)<<24 | uint32(65535-i)<<8 | 255
	return "a=candidate:" + strconv.Itoa(i+1) + " 1 udp " + strconv.FormatUint(uint64(prio), 10) + " " +
		ap.Addr().Unmap().String() + " " + strconv.Itoa(int(ap.Port())) + " typ host"
}

func connection(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		return "IN IP6 " + ip.String()
	}
	return "IN IP4 " + ip.String()
}

func answerDirection(d string) string {
	switch d {
	case "sendonly":
		return "recvonly"
	case "recvonly":
		return "sendonly"
	case "inactive":
		return "inactive"
	}
	return "sendrecv"
}
