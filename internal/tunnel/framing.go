package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// MinFrameLimit is the smallest frame size limit accepted: enough for
	// every fixed-size message and a SupportedProfiles with all the profiles
	// this package knows.
	MinFrameLimit = 64
	frameBufInit  = 4096
	// maxEmptyReads bounds how many (0, nil) reads are tolerated in a row
	// before the reader gives up with io.ErrNoProgress.
	maxEmptyReads = 100
)

// FrameReader splits a byte stream into tunnel frames (header and body). It
// copes with partial reads, several frames per read and one frame spread over
// many reads, and refuses a frame larger than its limit as soon as the header
// is read, before buffering the body. It reuses one buffer, grown on demand
// up to the limit. A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r          io.Reader
	limit      int
	buf        []byte
	start, end int // unread data is buf[start:end]
	err        error
}

// NewFrameReader returns a FrameReader reading from r. limit is the largest
// frame accepted, header included; 0 (or a value above MaxFrameSize) means
// MaxFrameSize and values below MinFrameLimit are raised to it.
func NewFrameReader(r io.Reader, limit int) *FrameReader {
	if limit <= 0 || limit > MaxFrameSize {
		limit = MaxFrameSize
	}
	limit = max(limit, MinFrameLimit)
	return &FrameReader{r: r, limit: limit, buf: make([]byte, min(frameBufInit, limit))}
}

// Limit returns the largest frame size accepted.
func (f *FrameReader) Limit() int { return f.limit }

// Next returns the next complete frame. The frame aliases the reader's
// buffer: it is valid only until the next call to Next. At a clean end of
// stream between frames Next returns io.EOF; in the middle of a frame,
// io.ErrUnexpectedEOF. A frame over the limit returns an error wrapping
// ErrFrameTooLarge. Read errors are sticky: frames completed before the
// error are returned first.
func (f *FrameReader) Next() ([]byte, error) {
	empty := 0
	for {
		avail := f.buf[f.start:f.end]
		need := HeaderLen
		if len(avail) >= HeaderLen {
			need = HeaderLen + int(binary.BigEndian.Uint16(avail[1:3]))
			if need > f.limit {
				return nil, fmt.Errorf("%w: %s frame of %d octets, limit %d", ErrFrameTooLarge, MsgType(avail[0]), need, f.limit)
			}
			if len(avail) >= need {
				f.start += need
				return avail[:need:need], nil
			}
		}
		if f.err != nil {
			// Frames completed before the read failed have been returned
			// above; what is left is an incomplete frame or nothing.
			if errors.Is(f.err, io.EOF) && f.start != f.end {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, f.err
		}
		f.makeRoom(need)
		n, err := f.r.Read(f.buf[f.end:])
		if n < 0 || n > len(f.buf)-f.end {
			f.err = fmt.Errorf("tunnel: read returned invalid count %d", n)
			continue
		}
		f.end += n
		switch {
		case err != nil:
			f.err = err
		case n == 0:
			if empty++; empty >= maxEmptyReads {
				f.err = io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
}

// makeRoom ensures buf[start:] can hold need octets and that there is free
// space after end, compacting or growing the buffer.
func (f *FrameReader) makeRoom(need int) {
	if f.start == f.end {
		f.start, f.end = 0, 0
	}
	if len(f.buf)-f.start >= need && f.end < len(f.buf) {
		return
	}
	if need > len(f.buf) {
		nb := make([]byte, min(max(need, 2*len(f.buf)), f.limit))
		f.end = copy(nb, f.buf[f.start:f.end])
		f.start = 0
		f.buf = nb
		return
	}
	f.end = copy(f.buf, f.buf[f.start:f.end])
	f.start = 0
}
