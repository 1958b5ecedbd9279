package sdp

import (
	"strconv"
	"strings"

	"github.com/mdfast/mdfast/internal/identity"
)

// Limits of what ParseOffer and ParseFrag read.
const (
	MaxOffer   = 64 << 10 // bytes of a whole offer or fragment
	MaxLines   = 2000     // lines
	MaxLine    = 4096     // bytes of one line
	MaxMedia   = 32       // m-lines
	MaxFormats = 64       // formats of one m-line
	maxCodecs  = 64       // rtpmap lines of one m-line
	maxExtmaps = 32       // extmap lines of one m-line
	maxToken   = 256      // bytes of a mid, ufrag, setup or tls-id value
	maxFmtp    = 1024     // bytes of one fmtp parameter string
)

// ProtoDTLS is the only RTP transport the join endpoint accepts.
const ProtoDTLS = "UDP/TLS/RTP/SAVPF"

// Codec is one rtpmap (and its fmtp) of an m-line.
type Codec struct {
	PT       uint8  // payload type
	Name     string // encoding name as written (compare with strings.EqualFold)
	Clock    uint32 // clock rate
	Channels uint8  // 0 when not given
	Fmtp     string // the fmtp parameters ("" when none)
}

// Extmap is one RTP header extension offered on an m-line (RFC 8285).
type Extmap struct {
	ID  uint8
	URI string
}

// Media is one m-line of an offer.
type Media struct {
	Kind      string   // audio, video, application, ...
	Port      uint16   // as offered (0: rejected by the offerer)
	Proto     string   // transport protocol
	Formats   []string // format list as written
	Mid       string   // a=mid
	RTCPMux   bool     // a=rtcp-mux
	Direction string   // sendrecv (default), sendonly, recvonly or inactive
	Codecs    []Codec  // rtpmap lines, in offer order
	Extmaps   []Extmap // extmap lines
	// Accepted is set by ParseOffer: an audio or video m-line with a port,
	// DTLS-SRTP and a codec the join endpoint supports (see Choose).
	Accepted bool
	// Chosen is the codec of an accepted m-line (see Choose).
	Chosen Codec

	ufrag, pwd, setup, tlsID string
	fp                       fingerprint
}

// fingerprint is what a=fingerprint lines said: the sha-256 value if one
// was given, and whether another hash was.
type fingerprint struct {
	sha256  identity.Fingerprint
	has     bool
	another string // name of a non-sha-256 hash seen
}

// Offer is what the join endpoint needs of an SDP offer.
type Offer struct {
	// ICEUfrag and ICEPwd are the endpoint's ICE credentials.
	ICEUfrag, ICEPwd string
	// Fingerprint is the SHA-256 fingerprint of the endpoint's certificate.
	Fingerprint identity.Fingerprint
	// Setup is "actpass" or "active".
	Setup string
	// TLSID is the endpoint's a=tls-id ("" for a legacy endpoint).
	TLSID string
	// Bundle is the mids of the offer's BUNDLE group.
	Bundle []string
	// Media are the m-lines in offer order.
	Media []Media
}

// ParseOffer parses and checks a WebRTC offer (see the package doc). The
// returned error is an *Error wrapping ErrMalformed, ErrNoDTLS,
// ErrFingerprintHash, ErrSetup, ErrNoRTCPMux, ErrBundle, ErrICE or
// ErrNoMedia.
func ParseOffer(b []byte) (*Offer, error) {
	if len(b) > MaxOffer {
		return nil, errorf(ErrMalformed, 0, "offer of %d bytes, at most %d", len(b), MaxOffer)
	}
	var (
		o                        Offer
		sess                     Media // session-level transport attributes
		cur                      *Media
		sawV, sawO, sawS, sawT   bool
		bundles                  int
		sawBundleLine, sawOrigin bool
	)
	sc := scanner{b: b}
	for {
		typ, val, ok, err := sc.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		n := sc.n
		if n == 1 {
			if typ != 'v' || val != "0" {
				return nil, errorf(ErrMalformed, n, "an SDP body starts with v=0")
			}
			sawV = true
			continue
		}
		switch typ {
		case 'v':
			return nil, errorf(ErrMalformed, n, "v= twice")
		case 'o':
			if cur != nil || sawOrigin {
				return nil, errorf(ErrMalformed, n, "misplaced o= line")
			}
			if len(strings.Fields(val)) != 6 {
				return nil, errorf(ErrMalformed, n, "o= wants 6 fields")
			}
			sawO, sawOrigin = true, true
		case 's':
			if cur != nil {
				return nil, errorf(ErrMalformed, n, "misplaced s= line")
			}
			sawS = true
		case 't':
			if cur != nil {
				return nil, errorf(ErrMalformed, n, "misplaced t= line")
			}
			sawT = true
		case 'm':
			if !sawO || !sawS || !sawT {
				return nil, errorf(ErrMalformed, n, "m= before the o=, s= and t= lines")
			}
			if len(o.Media) == MaxMedia {
				return nil, errorf(ErrMalformed, n, "more than %d m-lines", MaxMedia)
			}
			m, err := parseMLine(val, n)
			if err != nil {
				return nil, err
			}
			o.Media = append(o.Media, m)
			cur = &o.Media[len(o.Media)-1]
		case 'a':
			name, value, hasValue := strings.Cut(val, ":")
			if cur == nil && name == "group" {
				sem, rest, _ := strings.Cut(value, " ")
				if sem == "BUNDLE" {
					if sawBundleLine {
						bundles++
					}
					sawBundleLine = true
					o.Bundle = strings.Fields(rest)
					if len(o.Bundle) > MaxMedia {
						return nil, errorf(ErrMalformed, n, "BUNDLE group of more than %d mids", MaxMedia)
					}
				}
				continue
			}
			target := &sess
			if cur != nil {
				target = cur
			}
			if err := parseAttr(target, cur != nil, name, value, hasValue, n); err != nil {
				return nil, err
			}
		default:
			// b=, c=, i=, u=, e=, p=, r=, z=, k=: nothing the join needs.
		}
	}
	if !sawV {
		return nil, errorf(ErrMalformed, 0, "empty offer")
	}
	if !sawO || !sawS || !sawT {
		return nil, errorf(ErrMalformed, 0, "missing o=, s= or t= line")
	}
	if bundles > 0 {
		return nil, errorf(ErrBundle, 0, "more than one BUNDLE group")
	}
	if err := o.check(&sess); err != nil {
		return nil, err
	}
	return &o, nil
}

// parseMLine parses "audio 9 UDP/TLS/RTP/SAVPF 111 0".
func parseMLine(val string, n int) (Media, error) {
	f := strings.Fields(val)
	if len(f) < 4 {
		return Media{}, errorf(ErrMalformed, n, "m= wants <media> <port> <proto> <fmt>...")
	}
	if len(f)-3 > MaxFormats {
		return Media{}, errorf(ErrMalformed, n, "more than %d formats", MaxFormats)
	}
	if !isToken(f[0]) || len(f[0]) > 32 {
		return Media{}, errorf(ErrMalformed, n, "bad media type")
	}
	portStr, _, _ := strings.Cut(f[1], "/") // port/number-of-ports
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return Media{}, errorf(ErrMalformed, n, "bad port %.20q", f[1])
	}
	if len(f[2]) > 64 {
		return Media{}, errorf(ErrMalformed, n, "bad proto")
	}
	for _, x := range f[3:] {
		if len(x) > 64 || !isToken(x) {
			return Media{}, errorf(ErrMalformed, n, "bad format %.20q", x)
		}
	}
	return Media{Kind: f[0], Port: uint16(port), Proto: f[2], Formats: f[3:], Direction: "sendrecv"}, nil
}

// parseAttr applies one a= line to m (the session-level pseudo m-line when
// !media).
func parseAttr(m *Media, media bool, name, value string, hasValue bool, n int) error {
	tok := func() (string, error) {
		if !hasValue || value == "" || len(value) > maxToken || strings.ContainsAny(value, " \t") {
			return "", errorf(ErrMalformed, n, "a=%.32s wants one value of 1..%d characters", name, maxToken)
		}
		return value, nil
	}
	set := func(p *string) error {
		v, err := tok()
		if err != nil {
			return err
		}
		if *p != "" && *p != v {
			return errorf(ErrMalformed, n, "a=%s given twice with different values", name)
		}
		*p = v
		return nil
	}
	switch name {
	case "ice-ufrag":
		return set(&m.ufrag)
	case "ice-pwd":
		return set(&m.pwd)
	case "setup":
		return set(&m.setup)
	case "tls-id":
		return set(&m.tlsID)
	case "fingerprint":
		hash, fp, ok := strings.Cut(value, " ")
		if !ok || hash == "" || len(hash) > 32 {
			return errorf(ErrMalformed, n, "a=fingerprint wants <hash> <value>")
		}
		if !strings.EqualFold(hash, "sha-256") {
			m.fp.another = hash
			return nil
		}
		f, err := identity.ParseFingerprint(fp)
		if err != nil {
			return errorf(ErrMalformed, n, "a=fingerprint: bad sha-256 value")
		}
		if m.fp.has && m.fp.sha256 != f {
			return errorf(ErrMalformed, n, "two different sha-256 fingerprints")
		}
		m.fp.sha256, m.fp.has = f, true
	}
	if !media {
		return nil
	}
	switch name {
	case "mid":
		return set(&m.Mid)
	case "rtcp-mux":
		m.RTCPMux = true
	case "sendrecv", "sendonly", "recvonly", "inactive":
		m.Direction = name
	case "rtpmap":
		if len(m.Codecs) == maxCodecs {
			return errorf(ErrMalformed, n, "more than %d rtpmap lines", maxCodecs)
		}
		c, err := parseRtpmap(value, n)
		if err != nil {
			return err
		}
		for _, o := range m.Codecs {
			if o.PT == c.PT {
				return errorf(ErrMalformed, n, "payload type %d mapped twice", c.PT)
			}
		}
		m.Codecs = append(m.Codecs, c)
	case "fmtp":
		pt, params, ok := strings.Cut(value, " ")
		v, err := strconv.ParseUint(pt, 10, 7)
		if !ok || err != nil {
			return errorf(ErrMalformed, n, "a=fmtp wants <payload type> <parameters>")
		}
		if len(params) > maxFmtp {
			return errorf(ErrMalformed, n, "a=fmtp parameters longer than %d", maxFmtp)
		}
		for i := range m.Codecs {
			if m.Codecs[i].PT == uint8(v) {
				m.Codecs[i].Fmtp = strings.TrimSpace(params)
			}
		}
	case "extmap":
		if len(m.Extmaps) == maxExtmaps {
			return errorf(ErrMalformed, n, "more than %d extmap lines", maxExtmaps)
		}
		f := strings.Fields(value)
		if len(f) < 2 || len(f[1]) > maxToken {
			return errorf(ErrMalformed, n, "a=extmap wants <id> <uri>")
		}
		idStr, _, _ := strings.Cut(f[0], "/") // id/direction
		id, err := strconv.ParseUint(idStr, 10, 8)
		if err != nil || id < 1 || id > 255 {
			return errorf(ErrMalformed, n, "a=extmap: bad id")
		}
		m.Extmaps = append(m.Extmaps, Extmap{ID: uint8(id), URI: f[1]})
	}
	return nil
}

// parseRtpmap parses "111 opus/48000/2".
func parseRtpmap(value string, n int) (Codec, error) {
	pt, enc, ok := strings.Cut(value, " ")
	v, err := strconv.ParseUint(pt, 10, 7)
	if !ok || err != nil {
		return Codec{}, errorf(ErrMalformed, n, "a=rtpmap wants <payload type 0..127> <encoding>/<clock>")
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || len(parts[0]) > 64 || !isToken(parts[0]) {
		return Codec{}, errorf(ErrMalformed, n, "a=rtpmap: bad encoding")
	}
	clock, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || clock == 0 {
		return Codec{}, errorf(ErrMalformed, n, "a=rtpmap: bad clock rate")
	}
	c := Codec{PT: uint8(v), Name: parts[0], Clock: uint32(clock)}
	if len(parts) == 3 {
		ch, err := strconv.ParseUint(parts[2], 10, 8)
		if err != nil || ch == 0 {
			return Codec{}, errorf(ErrMalformed, n, "a=rtpmap: bad channel count")
		}
		c.Channels = uint8(ch)
	}
	return c, nil
}

// isToken reports whether s is made of visible ASCII without '/' or ':'
// troubles: letters, digits and "-_.+!#$%&'*^`{|}~".
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.+!#$%&'*^`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// check applies the WebRTC rules to a syntactically valid offer.
func (o *Offer) check(sess *Media) error {
	if len(o.Media) == 0 {
		return errorf(ErrNoMedia, 0, "no m-line")
	}
	mids := map[string]bool{}
	var first *Media
	for i := range o.Media {
		m := &o.Media[i]
		if m.Mid == "" {
			return errorf(ErrBundle, 0, "m-line %d has no a=mid", i)
		}
		if mids[m.Mid] {
			return errorf(ErrBundle, 0, "mid %q used twice", m.Mid)
		}
		mids[m.Mid] = true
		if m.Port == 0 || (m.Kind != "audio" && m.Kind != "video") {
			continue
		}
		if m.Proto != ProtoDTLS {
			return errorf(ErrNoDTLS, 0, "m-line %d (%s) uses %.64q, want %s (DTLS-SRTP)", i, m.Kind, m.Proto, ProtoDTLS)
		}
		inherit(m, sess)
		if !m.fp.has {
			if m.fp.another != "" {
				return errorf(ErrFingerprintHash, 0, "a=fingerprint hash %.32q is not supported: give a sha-256 fingerprint", m.fp.another)
			}
			return errorf(ErrNoDTLS, 0, "m-line %d has no a=fingerprint", i)
		}
		if m.setup != "actpass" && m.setup != "active" {
			return errorf(ErrSetup, 0, "m-line %d: a=setup:%.32s; the key distributor is the DTLS server: want actpass or active", i, m.setup)
		}
		if !m.RTCPMux {
			return errorf(ErrNoRTCPMux, 0, "m-line %d has no a=rtcp-mux", i)
		}
		if m.ufrag == "" || m.pwd == "" {
			return errorf(ErrICE, 0, "m-line %d has no a=ice-ufrag or a=ice-pwd", i)
		}
		if err := checkICE(m.ufrag, m.pwd); err != nil {
			return err
		}
		if m.tlsID != "" {
			if err := identity.ValidateTLSID(m.tlsID); err != nil {
				return errorf(ErrMalformed, 0, "m-line %d: a=tls-id: %v", i, err)
			}
		}
		if !m.choose() {
			continue // answered rejected: no codec we forward
		}
		m.Accepted = true
		if first == nil {
			first = m
			o.ICEUfrag, o.ICEPwd, o.Fingerprint, o.Setup, o.TLSID = m.ufrag, m.pwd, m.fp.sha256, m.setup, m.tlsID
			continue
		}
		if m.ufrag != first.ufrag || m.pwd != first.pwd || m.fp.sha256 != first.fp.sha256 || m.tlsID != first.tlsID || m.setup != first.setup {
			return errorf(ErrBundle, 0, "m-lines %q and %q differ in ICE credentials, fingerprint, setup or tls-id", first.Mid, m.Mid)
		}
	}
	if first == nil {
		return errorf(ErrNoMedia, 0, "no audio or video m-line with a supported codec (opus, VP8, H264)")
	}
	inBundle := map[string]bool{}
	for _, mid := range o.Bundle {
		inBundle[mid] = true
	}
	for i := range o.Media {
		if m := &o.Media[i]; m.Accepted && !inBundle[m.Mid] {
			return errorf(ErrBundle, 0, "mid %q is not in the offer's BUNDLE group", m.Mid)
		}
	}
	return nil
}

// inherit fills m's transport attributes from the session level.
func inherit(m, sess *Media) {
	for _, p := range []struct{ dst, src *string }{{&m.ufrag, &sess.ufrag}, {&m.pwd, &sess.pwd}, {&m.setup, &sess.setup}, {&m.tlsID, &sess.tlsID}} {
		if *p.dst == "" {
			*p.dst = *p.src
		}
	}
	if !m.fp.has {
		m.fp.sha256, m.fp.has = sess.fp.sha256, sess.fp.has
	}
	if m.fp.another == "" {
		m.fp.another = sess.fp.another
	}
}

// choose picks the m-line's codec: the first offered opus (audio) or the
// first VP8, else the first H264 with packetization-mode=1 (video).
func (m *Media) choose() bool {
	offered := map[string]bool{}
	for _, f := range m.Formats {
		offered[f] = true
	}
	pick := func(name string, ok func(*Codec) bool) bool {
		for _, c := range m.Codecs {
			if strings.EqualFold(c.Name, name) && offered[strconv.Itoa(int(c.PT))] && ok(&c) {
				m.Chosen = c
				return true
			}
		}
		return false
	}
	always := func(*Codec) bool { return true }
	switch m.Kind {
	case "audio":
		return pick("opus", func(c *Codec) bool { return c.Clock == 48000 })
	case "video":
		return pick("VP8", func(c *Codec) bool { return c.Clock == 90000 }) ||
			pick("H264", func(c *Codec) bool { return c.Clock == 90000 && strings.Contains(c.Fmtp, "packetization-mode=1") }) ||
			pick("H264", always)
	}
	return false
}

// checkICE checks ICE credentials against RFC 8839 section 5.4: ufrag 4..256
// and password 22..256 ice-chars.
func checkICE(ufrag, pwd string) error {
	if len(ufrag) < 4 || len(ufrag) > 256 || !iceChars(ufrag) {
		return errorf(ErrICE, 0, "a=ice-ufrag wants 4..256 ice-chars")
	}
	if len(pwd) < 22 || len(pwd) > 256 || !iceChars(pwd) {
		return errorf(ErrICE, 0, "a=ice-pwd wants 22..256 ice-chars")
	}
	return nil
}

// iceChars reports whether s is ALPHA / DIGIT / "+" / "/" only.
func iceChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
