package tunnel

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// streamOf encodes msgs back to back.
func streamOf(t testing.TB, msgs ...Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = AppendMessage(b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// chunkReader returns the stream in reads of the given sizes, cycling.
type chunkReader struct {
	b     []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[r.i%len(r.sizes)], len(p), len(r.b))
	r.i++
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func TestFrameReaderSplitsStreams(t *testing.T) {
	big := &TunneledDtls{AssociationID: testID, Message: bytes.Repeat([]byte{0x17}, 9000)} // larger than the initial buffer
	msgs := []Message{
		&SupportedProfiles{Profiles: []ProtectionProfile{7, 9}},
		&TunneledDtls{AssociationID: testID, Message: []byte{1, 2, 3}},
		big,
		&EndpointDisconnect{AssociationID: testID},
		&UnsupportedVersion{HighestVersion: 0},
		big,
	}
	stream := streamOf(t, msgs...)
	readers := map[string]func() io.Reader{
		"one byte per read":     func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"everything at once":    func() io.Reader { return bytes.NewReader(stream) },
		"data with EOF":         func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
		"odd chunks":            func() io.Reader { return &chunkReader{b: stream, sizes: []int{2, 7, 1, 4000, 3}} },
		"half reads":            func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"interleaved (0, nil)s": func() io.Reader { return &zeroReader{r: iotest.OneByteReader(bytes.NewReader(stream))} },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			fr := NewFrameReader(mk(), 0)
			rest := stream
			for i := range msgs {
				frame, err := fr.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				n := HeaderLen + (int(rest[1])<<8 | int(rest[2]))
				if !bytes.Equal(frame, rest[:n]) {
					t.Fatalf("frame %d: got %d octets %x..., want %x...", i, len(frame), frame[:min(8, len(frame))], rest[:8])
				}
				rest = rest[n:]
			}
			if _, err := fr.Next(); err != io.EOF {
				t.Fatalf("after last frame: %v, want io.EOF", err)
			}
		})
	}
}

type zeroReader struct {
	r io.Reader
	n int
}

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n++; z.n%2 == 0 {
		return 0, nil
	}
	return z.r.Read(p)
}

func TestFrameReaderErrors(t *testing.T) {
	stream := streamOf(t, &TunneledDtls{AssociationID: testID, Message: make([]byte, 200)})
	t.Run("EOF inside a frame", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader(stream[:50]), 0)
		if _, err := fr.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("EOF inside a header", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader(stream[:2]), 0)
		if _, err := fr.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("frame over the limit refused from its header", func(t *testing.T) {
		r := &countingReader{r: bytes.NewReader(stream)}
		fr := NewFrameReader(iotest.OneByteReader(r), 100)
		if _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v", err)
		}
		if r.n != HeaderLen {
			t.Fatalf("read %d octets before refusing, want %d", r.n, HeaderLen)
		}
		if _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("error not sticky: %v", err)
		}
	})
	t.Run("limit equal to the frame accepted", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader(stream), len(stream))
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("read error after a complete frame", func(t *testing.T) {
		boom := errors.New("boom")
		fr := NewFrameReader(io.MultiReader(bytes.NewReader(stream), iotest.ErrReader(boom)), 0)
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
		if _, err := fr.Next(); !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reader making no progress", func(t *testing.T) {
		fr := NewFrameReader(&zeroReader{r: eofReader{}, n: 1}, 0)
		if _, err := fr.Next(); err != io.ErrNoProgress && err != io.EOF {
			t.Fatalf("got %v", err)
		}
		fr = NewFrameReader(alwaysZero{}, 0)
		if _, err := fr.Next(); err != io.ErrNoProgress {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("limits clamped", func(t *testing.T) {
		if l := NewFrameReader(nil, 1).Limit(); l != MinFrameLimit {
			t.Fatalf("low limit: %d", l)
		}
		if l := NewFrameReader(nil, 1<<20).Limit(); l != MaxFrameSize {
			t.Fatalf("high limit: %d", l)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type alwaysZero struct{}

func (alwaysZero) Read([]byte) (int, error) { return 0, nil }

// The reader keeps one buffer: steady-state reading of small frames does not
// allocate.
func TestFrameReaderReusesBuffer(t *testing.T) {
	one := streamOf(t, &TunneledDtls{AssociationID: testID, Message: make([]byte, 300)})
	stream := bytes.Repeat(one, 200)
	r := bytes.NewReader(stream)
	fr := NewFrameReader(r, 0)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per frame", allocs)
	}
}
