package sdp

import "bytes"

// scanner walks an SDP body line by line within the parser's limits
// (MaxLines lines of at most MaxLine octets). Each line is <type>=<value>
// with a lower-case letter as type and no control character but tab; lines
// end in LF or CRLF, the last one possibly in nothing; an empty line is an
// error except as the final line break.
type scanner struct {
	b []byte
	n int // number of the line last returned, from 1
}

// next returns the next line's type and value; ok is false at the end.
// Errors wrap ErrMalformed and name the line.
func (s *scanner) next() (typ byte, val string, ok bool, err error) {
	if len(s.b) == 0 {
		return 0, "", false, nil
	}
	s.n++
	if s.n > MaxLines {
		return 0, "", false, errorf(ErrMalformed, s.n, "more than %d lines", MaxLines)
	}
	var line []byte
	if i := bytes.IndexByte(s.b, '\n'); i >= 0 {
		line, s.b = s.b[:i], s.b[i+1:]
	} else {
		line, s.b = s.b, nil
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) > MaxLine {
		return 0, "", false, errorf(ErrMalformed, s.n, "line of %d bytes, at most %d", len(line), MaxLine)
	}
	if len(line) == 0 {
		if len(s.b) == 0 {
			return 0, "", false, nil // the final line break
		}
		return 0, "", false, errorf(ErrMalformed, s.n, "empty line")
	}
	if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' {
		return 0, "", false, errorf(ErrMalformed, s.n, "not a <type>=<value> line")
	}
	for _, c := range line[2:] {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return 0, "", false, errorf(ErrMalformed, s.n, "control character 0x%02x", c)
		}
	}
	return line[0], string(line[2:]), true, nil
}
