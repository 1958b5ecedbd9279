package keydist

import (
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"testing"
)

// discardLogger returns a logger for tests; KEYDIST_TEST_LOG=1 shows it.
func discardLogger() *slog.Logger {
	if os.Getenv("KEYDIST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startsNewEpoch reports whether a datagram the KD sent carries a
// ChangeCipherSpec or a record of epoch 1 or above (its final flight). A
// datagram that does not parse as records counts as carrying one.
func startsNewEpoch(b []byte) bool {
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			return true
		}
		if b[0] == 20 || binary.BigEndian.Uint16(b[3:5]) >= 1 {
			return true
		}
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[11:13]))
		if n > len(b) {
			return true
		}
		b = b[n:]
	}
	return false
}

func TestStartsClientHello(t *testing.T) {
	ch := record(contentHandshake, 0, append([]byte{handshakeTypeClientHello}, make([]byte, 11)...))
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"client hello", ch, true},
		{"short", ch[:recordHeaderLen+handshakeHeaderLen-1], false},
		{"server hello", record(contentHandshake, 0, append([]byte{2}, make([]byte, 11)...)), false},
		{"epoch 1", record(contentHandshake, 1, append([]byte{1}, make([]byte, 11)...)), false},
		{"alert", record(contentAlert, 0, append([]byte{1}, make([]byte, 11)...)), false},
		{"not DTLS version", append([]byte{22, 3, 3}, ch[3:]...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startsClientHello(tc.in); got != tc.want {
				t.Fatalf("startsClientHello = %v, want %v", got, tc.want)
			}
		})
	}
}
