package keydist

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuf is a concurrency-safe log sink.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogLines: the small lies of the KD's logs stay fixed. A line logged
// with its own reason carries "reason" once (JSON parsers keep only one);
// a tunnel coming up is logged once (by internal/tunnel), not again here;
// associations_moved counts the associations that were on the tunnel that
// went down, not every association of that MD.
func TestLogLines(t *testing.T) {
	var buf lockedBuf
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	rl := newRateLog(log, time.Second, 10)
	rl.Log(slog.LevelWarn, "some_reason", "with its own reason", "reason", "given")
	rl.Log(slog.LevelWarn, "other_reason", "without")
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(l, `"reason":`); n != 1 {
			t.Errorf("%d reason keys in %s", n, l)
		}
	}

	buf = lockedBuf{}
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := New(Config{Certificate: cert, Registry: NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer kd.Close()
	t1 := &fakeTunnel{id: "t1", peer: "md1"}
	t2 := &fakeTunnel{id: "t2", peer: "md1"}
	kd.tunnelUp(t1)
	kd.tunnelUp(t2)
	if strings.Contains(buf.String(), `"msg":"tunnel up"`) {
		t.Errorf("keydist logs tunnel up itself:\n%s", buf.String())
	}
	// One association, talking through t2: t1 going down moves none.
	key := assocKey{peer: "md1", id: [16]byte{1}}
	a, err := newAssociation(kd, key, t2)
	if err != nil {
		t.Fatal(err)
	}
	kd.mu.Lock()
	kd.assocs[key] = a
	kd.mu.Unlock()
	kd.tunnelDown(t1, nil)
	if !strings.Contains(buf.String(), `"associations_moved":0`) {
		t.Errorf("tunnel down of an unused tunnel:\n%s", buf.String())
	}
	kd.tunnelDown(t2, nil)
	if !strings.Contains(buf.String(), `"associations_moved":1`) {
		t.Errorf("tunnel down of the used tunnel:\n%s", buf.String())
	}
	kd.mu.Lock()
	delete(kd.assocs, key)
	kd.mu.Unlock()
}
