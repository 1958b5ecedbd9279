package dataplane

import (
	"bytes"
	"testing"

	"github.com/mdfast/mdfast/internal/srtpfast"
)

// FuzzWorker feeds arbitrary datagrams, from a known sender and from a
// stranger, through the worker: none may panic, and nothing unauthenticated
// may be forwarded.
func FuzzWorker(f *testing.F) {
	fx := newFixture(f, 3)
	_, rtp := fx.eps[0].sealRTP(f, 40)
	_, rtcp := fx.eps[0].sealRTCP(f)
	for _, s := range [][]byte{rtp, rtcp, {22, 0xfe, 0xfd}, {0, 1}, {0x80}, {0x80, 200}, {0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff}} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, stranger bool) {
		fx := newFixture(t, 3)
		src := fx.eps[0].peer.Addr
		if stranger {
			src = addrs(4)[3]
		}
		if len(b) > 2000 {
			b = b[:2000]
		}
		valid := !stranger && (bytes.Equal(b, rtp) || bytes.Equal(b, rtcp)) // same keys: the fixture is deterministic
		fx.port.push(b, src)
		fx.poll(t)
		if bufs, _ := fx.port.sent(); len(bufs) != 0 && !valid {
			t.Fatalf("forwarded %d datagrams of unauthenticated input", len(bufs))
		}
	})
}

// FuzzWorkerDoubleEKT feeds a double-profile sender's packets, valid ones
// with each kind of EKTField and arbitrary ones, through the worker: no
// panic; what is forwarded carries exactly the sender's EKTField, and
// nothing is forwarded that the sender did not seal.
func FuzzWorkerDoubleEKT(f *testing.F) {
	tbl := newMemTable()
	eps := newDoubleConference(f, srtpfast.ProfileDoubleAEADAES128GCM, tbl, 3)
	for k, field := range ektFields(f) {
		eps[0].ektField = field
		orig, roc := eps[0].nextRTP(k, 30)
		w, _ := eps[0].seal(f, orig, roc, -1)
		f.Add(w)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 2000 {
			b = b[:2000]
		}
		port := newFakePort(64, 64)
		w := NewWorker(0, port, tbl.NewReader(), WorkerConfig{})
		in := bytes.Clone(b)
		port.push(b, eps[0].peer.Addr)
		if err := w.poll(); err != nil {
			t.Fatal(err)
		}
		bufs, _ := port.sent()
		if len(bufs) == 0 {
			return
		}
		// Forwarded: the outer layer must be the sender's (the fixture's
		// keys are the same in every fuzzing process, its SSRCs are not).
		srtp, want, err := splitEKT(in)
		if err != nil || !eps[0].outerAuthentic(srtp) {
			t.Fatalf("forwarded %d datagrams of input the sender never sealed", len(bufs))
		}
		for _, out := range bufs {
			if _, field, err := splitEKT(out); err != nil || !bytes.Equal(field, want) {
				t.Fatalf("forwarded EKTField %x, sent %x", field, want)
			}
		}
	})
}
