package keydist

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func record(ct byte, epoch uint16, body []byte) []byte {
	b := []byte{ct, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, byte(len(body) >> 8), byte(len(body))}
	return append(b, body...)
}

func TestStartsNewEpoch(t *testing.T) {
	hs := record(contentHandshake, 0, []byte{2, 0, 0, 0})
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"handshake epoch 0", hs, false},
		{"alert epoch 0", record(contentAlert, 0, []byte{2, 40}), false},
		{"two epoch 0 records", append(bytes.Clone(hs), hs...), false},
		{"ccs", record(contentChangeCipherSpec, 0, []byte{1}), true},
		{"epoch 1 finished", record(contentHandshake, 1, make([]byte, 40)), true},
		{"epoch 0 then ccs", append(bytes.Clone(hs), record(contentChangeCipherSpec, 0, []byte{1})...), true},
		{"truncated header", hs[:5], true},
		{"length past end", hs[:len(hs)-1], true},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startsNewEpoch(tc.in); got != tc.want {
				t.Fatalf("startsNewEpoch = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStartsClientHello(t *testing.T) {
	ch := record(contentHandshake, 0, append([]byte{handshakeTypeClientHello}, make([]byte, 11)...))
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"client hello", ch, true},
		{"short", ch[:20], false},
		{"server hello", record(contentHandshake, 0, append([]byte{2}, make([]byte, 11)...)), false},
		{"epoch 1", record(contentHandshake, 1, append([]byte{1}, make([]byte, 11)...)), false},
		{"alert", record(contentAlert, 0, make([]byte, 12)), false},
		{"garbage", bytes.Repeat([]byte{0xff}, 40), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startsClientHello(tc.in); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDgramConnHoldRelease(t *testing.T) {
	var mu sync.Mutex
	var sent [][]byte
	dc := newDgramConn(uuid.New(), 2, func(b []byte) error {
		mu.Lock()
		sent = append(sent, bytes.Clone(b))
		mu.Unlock()
		return nil
	}, nil)
	flight4 := record(contentHandshake, 0, []byte{2, 0, 0, 0})
	ccs := record(contentChangeCipherSpec, 0, []byte{1})
	fin := record(contentHandshake, 1, make([]byte, 40))
	for _, d := range [][]byte{flight4, ccs, fin} {
		if _, err := dc.WriteTo(d, dc.addr); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if len(sent) != 1 || !bytes.Equal(sent[0], flight4) {
		t.Fatalf("before release sent %d datagrams, want only flight 4", len(sent))
	}
	mu.Unlock()
	dc.release()
	after := record(contentAlert, 1, make([]byte, 26))
	_, _ = dc.WriteTo(after, dc.addr)
	mu.Lock()
	if len(sent) != 4 || !bytes.Equal(sent[1], ccs) || !bytes.Equal(sent[2], fin) || !bytes.Equal(sent[3], after) {
		t.Fatalf("after release: %d datagrams, order wrong", len(sent))
	}
	mu.Unlock()

	// Inbound: bounded queue, deadline, close.
	drops := 0
	dc2 := newDgramConn(uuid.New(), 1, func([]byte) error { return nil }, func() { drops++ })
	if !dc2.deliver([]byte{1}) || dc2.deliver([]byte{2}) || drops != 1 {
		t.Fatalf("queue bound: drops = %d", drops)
	}
	buf := make([]byte, 10)
	if n, addr, err := dc2.ReadFrom(buf); err != nil || n != 1 || addr.String() != dc2.addr.String() {
		t.Fatalf("ReadFrom = %d %v %v", n, addr, err)
	}
	_ = dc2.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, err := dc2.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: err = %v", err)
	}
	_ = dc2.SetReadDeadline(time.Time{})
	go func() { time.Sleep(10 * time.Millisecond); _ = dc2.Close() }()
	if _, _, err := dc2.ReadFrom(buf); err == nil {
		t.Fatal("ReadFrom after Close returned no error")
	}
	if dc2.deliver([]byte{3}) {
		t.Fatal("deliver after Close accepted")
	}
}

func TestAppendAlert(t *testing.T) {
	a := appendAlert(nil, alertHandshakeFailure, 0x0102030405)
	want := []byte{21, 0xfe, 0xfd, 0, 0, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0, 2, 2, 40}
	if !bytes.Equal(a, want) {
		t.Fatalf("alert = %x, want %x", a, want)
	}
}
