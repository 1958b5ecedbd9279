package keydist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/tunnel"
)

func TestJournalFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "associations.journal")
	j, got, err := openJournal(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("new journal: %v %v", got, err)
	}
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	for _, id := range ids {
		if err := j.add(journalEntry{MD: "md1", ID: id, Conference: "c", TLSID: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.remove("md1", ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := j.remove("md2", ids[0]); err != nil { // another MD's id: not ours
		t.Fatal(err)
	}
	// A crash mid-write leaves a torn last line: skipped.
	if _, err := j.f.WriteString(`{"op":"+","md":"md1","id":"`); err != nil {
		t.Fatal(err)
	}
	_ = j.close()
	j2, got, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.close()
	if len(got) != 2 {
		t.Fatalf("read back %d records: %+v", len(got), got)
	}
	for _, e := range got {
		if e.ID == ids[1] || e.MD != "md1" || e.Conference != "c" {
			t.Fatalf("record %+v", e)
		}
	}
	// Compacted on open: two lines, mode 0600.
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 2 {
		t.Fatalf("%d lines after compaction:\n%s", n, b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}

	for name, content := range map[string]string{
		"not JSON":          "hello\n{}\n",
		"unknown op":        `{"op":"?","md":"m","id":"` + uuid.NewString() + "\"}\n{}\n",
		"record without md": `{"op":"+","id":"` + uuid.NewString() + "\"}\n{}\n",
		"nil id":            `{"op":"+","md":"m","id":"00000000-0000-0000-0000-000000000000"}` + "\n{}\n",
		"line too long":     strings.Repeat("x", maxJournalLine+1) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "j")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := openJournal(p); err == nil {
				t.Fatal("malformed journal accepted")
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Fatal("malformed journal rewritten")
			}
		})
	}
}

// TestRevocationAfterKDRestart: an endpoint keyed by a KD that then died
// can still be revoked by the restarted KD (from its journal): the MD gets
// an EndpointDisconnect for it once its instance's tunnel is back. A
// restored association whose MD instance never comes back is forgotten
// after TunnelGrace; one the MD ends is forgotten at once.
func TestRevocationAfterKDRestart(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "associations.journal")
	reg := NewRegistry()
	inst, err := tunnel.NewInstanceID(0)
	if err != nil {
		t.Fatal(err)
	}
	newKD := func(grace time.Duration) *KeyDistributor {
		cert, err := GenerateCertificate(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := New(Config{Certificate: cert, Registry: reg, Logger: discardLogger(), Journal: journal, TunnelGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kd.Close() })
		return kd
	}
	// First run: three endpoints join through one MD instance.
	kd1 := newKD(time.Hour)
	ft1 := &fakeTunnel{id: "t1", peer: "md1", instance: inst}
	kd1.tunnelUp(ft1)
	kd1.tunnelAnnounced(ft1)
	var ids []uuid.UUID
	var tlsIDs []string
	for range 3 {
		tlsID := NewTLSID()
		cfg, fp := simClientConfig(t, tlsID, 7)
		if _, err := reg.AddEndpoint("call", Endpoint{TLSID: tlsID, Fingerprint: fp}); err != nil {
			t.Fatal(err)
		}
		sc := newSimClient(t, kd1, ft1, cfg)
		sc.drive(5 * time.Second)
		if !sc.c.Established() {
			t.Fatalf("not established: %v", sc.c.Err())
		}
		ids, tlsIDs = append(ids, sc.id), append(tlsIDs, tlsID)
	}
	// kd1 "crashes": a second KD starts on the same journal while kd1's
	// state is left as it was (no shutdown, no EndpointDisconnect).
	kd2 := newKD(300 * time.Millisecond)
	restoredN := func() int {
		n := 0
		for _, a := range kd2.Associations() {
			if a.State == "restored" {
				n++
			}
		}
		return n
	}
	if n := restoredN(); n != 3 {
		t.Fatalf("%d restored associations", n)
	}
	// Revoked while the MD's tunnel is not back yet: sent when it is.
	ft2 := &fakeTunnel{id: "t2", peer: "md1", instance: inst}
	if _, err := reg.RemoveEndpoint("call", tlsIDs[0], nil); err != nil {
		t.Fatal(err)
	}
	kd2.tunnelUp(ft2)
	kd2.tunnelAnnounced(ft2)
	if ft2.count("disconnect") != 1 {
		t.Fatalf("restarted KD sent %d EndpointDisconnects for the revoked endpoint", ft2.count("disconnect"))
	}
	ft2.mu.Lock()
	var got uuid.UUID
	for _, e := range ft2.sent {
		if e.kind == "disconnect" {
			got = e.id
		}
	}
	ft2.mu.Unlock()
	if got != ids[0] {
		t.Fatalf("EndpointDisconnect for %v, want %v", got, ids[0])
	}
	// The MD ends another one itself.
	kd2.handleEndpointDisconnect(ft2, ids[1])
	if n := restoredN(); n != 1 {
		t.Fatalf("%d restored associations, want 1", n)
	}
	// Revoked while connected: at once.
	if _, err := reg.RemoveEndpoint("call", tlsIDs[2], nil); err != nil {
		t.Fatal(err)
	}
	if ft2.count("disconnect") != 2 || restoredN() != 0 {
		t.Fatalf("disconnects %d, restored %d", ft2.count("disconnect"), restoredN())
	}
}

// TestRestoredForgottenWithoutMD: restored associations whose MD instance
// never reconnects are forgotten after TunnelGrace, also while another
// instance of the same MD identity is connected (it may be another host
// with the same certificate: its announcement does not end them at once).
func TestRestoredForgottenWithoutMD(t *testing.T) {
	for _, other := range []bool{false, true} {
		journal := filepath.Join(t.TempDir(), "j")
		inst, _ := tunnel.NewInstanceID(0)
		j, _, err := openJournal(journal)
		if err != nil {
			t.Fatal(err)
		}
		_ = j.add(journalEntry{MD: "md1", ID: uuid.New(), Instance: inst, Conference: "c", TLSID: NewTLSID()})
		_ = j.close()
		cert, _ := GenerateCertificate(time.Hour)
		kd, err := New(Config{Certificate: cert, Registry: NewRegistry(), Logger: discardLogger(), Journal: journal, TunnelGrace: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if len(kd.Associations()) != 1 {
			t.Fatal("not restored")
		}
		if other {
			id, _ := tunnel.NewInstanceID(0)
			ft := &fakeTunnel{id: "t", peer: "md1", instance: id}
			kd.tunnelUp(ft)
			kd.tunnelAnnounced(ft)
			if n := len(kd.Associations()); n != 1 {
				t.Fatalf("another instance's announcement ended %d restored associations at once", 1-n)
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for len(kd.Associations()) != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(kd.Associations()); n != 0 {
			t.Fatalf("after the grace: %d left", n)
		}
		_ = kd.Close()
	}
}
