package sdp

import (
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
		switch typ {
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
		err = nil
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
