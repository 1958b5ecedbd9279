package sdp

import (
	"bytes"
	"strings"
)

// Frag is what a trickle-ice-sdpfrag (RFC 8840) PATCH body says: new ICE
// credentials (an ICE restart) and/or candidates, which an ICE-lite
// server does not need.
type Frag struct {
	// ICEUfrag and ICEPwd are the new credentials ("" when the fragment
	// carries none: a trickle of candidates only).
	ICEUfrag, ICEPwd string
	// Candidates counts the a=candidate lines.
	Candidates int
}

// Restart reports whether f carries new ICE credentials.
func (f *Frag) Restart() bool { return f.ICEUfrag != "" }

// ParseFrag parses a trickle-ice-sdpfrag body: a=ice-ufrag, a=ice-pwd,
// a=ice-options, a=group, m=, a=mid, a=candidate and a=end-of-candidates
// lines. Credentials given more than once must be equal; ufrag and
// password come together. Errors wrap ErrMalformed or ErrICE.
func ParseFrag(b []byte) (*Frag, error) {
	if len(b) > MaxOffer {
		return nil, errorf(ErrMalformed, 0, "fragment of %d bytes, at most %d", len(b), MaxOffer)
	}
	var f Frag
	var pwd, ufrag string
	n := 0
	for len(b) > 0 {
		n++
		if n > MaxLines {
			return nil, errorf(ErrMalformed, n, "more than %d lines", MaxLines)
		}
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > MaxLine {
			return nil, errorf(ErrMalformed, n, "line of %d bytes, at most %d", len(line), MaxLine)
		}
		if len(line) == 0 {
			if len(b) == 0 {
				break
			}
			return nil, errorf(ErrMalformed, n, "empty line")
		}
		if len(line) < 2 || line[1] != '=' {
			return nil, errorf(ErrMalformed, n, "not a <type>=<value> line")
		}
		for _, c := range line[2:] {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return nil, errorf(ErrMalformed, n, "control character 0x%02x", c)
			}
		}
		val := string(line[2:])
		switch line[0] {
		case 'm':
			continue
		case 'a':
		default:
			return nil, errorf(ErrMalformed, n, "a trickle-ice-sdpfrag holds a= and m= lines only")
		}
		name, value, _ := strings.Cut(val, ":")
		set := func(p *string) error {
			if value == "" || len(value) > maxToken || strings.ContainsAny(value, " \t") {
				return errorf(ErrMalformed, n, "a=%s wants one value of 1..%d characters", name, maxToken)
			}
			if *p != "" && *p != value {
				return errorf(ErrMalformed, n, "a=%s given twice with different values", name)
			}
			*p = value
			return nil
		}
		var err error
		switch name {
		case "ice-ufrag":
			err = set(&ufrag)
		case "ice-pwd":
			err = set(&pwd)
		case "candidate":
			f.Candidates++
		case "ice-options", "group", "mid", "end-of-candidates":
		default:
			err = errorf(ErrMalformed, n, "unexpected attribute a=%.32s in a trickle-ice-sdpfrag", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if ufrag == "" && pwd == "" {
		return &f, nil
	}
	if ufrag == "" || pwd == "" {
		return nil, errorf(ErrICE, 0, "an ICE restart gives both a=ice-ufrag and a=ice-pwd")
	}
	if err := checkICE(ufrag, pwd); err != nil {
		return nil, err
	}
	f.ICEUfrag, f.ICEPwd = ufrag, pwd
	return &f, nil
}
