package keydist

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
)

// The association journal lets the KD keep its authority over media that
// outlives it. When keydist dies (a crash, kill -9), the Media Distributors
// keep forwarding for the endpoints it had keyed: their hop-by-hop keys are
// installed there. Without a record of those associations a restarted KD
// cannot end any of them, so removing an endpoint from the registry (or the
// admin API) would not stop media already flowing. The journal records, for
// each established association, who relays it and whom it was matched to:
// never a key. A restarted KD reads it back as restored associations, which
// have no DTLS state but can still be ended: when their registry entry goes
// away, the KD sends the MD an EndpointDisconnect for them. They are
// forgotten when the MD ends them, when their MD instance is known to be
// gone, or after TunnelGrace if that MD instance never reconnects.
//
// Format: one JSON object per line, "+" records and "-" removals, compacted
// at start and whenever removals outnumber live records. Writes are not
// synced: a crash of the KD process loses nothing (the page cache survives
// it); a crash of its host may lose the last records, whose associations
// then cannot be ended by the restarted KD (they end at the MD when the
// endpoint goes idle).

// journalEntry is one line of the journal.
type journalEntry struct {
	Op         string      `json:"op"` // "+" or "-"
	MD         string      `json:"md"`
	ID         uuid.UUID   `json:"id"`
	Instance   uuid.UUID   `json:"instance,omitzero"`
	Conference string      `json:"conference,omitempty"`
	TLSID      string      `json:"tls_id,omitempty"`
	FP         Fingerprint `json:"fingerprint"`
	Legacy     bool        `json:"legacy,omitempty"`
	Since      time.Time   `json:"since,omitzero"`
}

// maxJournalLine bounds one line read back (a record is a few hundred
// octets).
const maxJournalLine = 64 << 10

// journal appends association records to a file. Safe for concurrent use.
type journal struct {
	path string
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	live map[assocKey]journalEntry
	dead int // removals since the last compaction
}

// openJournal reads the journal at path (missing is empty), compacts it
// and returns it open for appending with the records it held.
func openJournal(path string) (*journal, []journalEntry, error) {
	j := &journal{path: path, live: map[assocKey]journalEntry{}}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("keydist: journal: %w", err)
	default:
		err := j.read(f)
		_ = f.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	if err := j.compact(); err != nil {
		return nil, nil, err
	}
	out := make([]journalEntry, 0, len(j.live))
	for _, e := range j.live {
		out = append(out, e)
	}
	return j, out, nil
}

// read folds the journal's lines into j.live. A torn last line (a crash
// mid-write) is skipped; any other malformed line is an error, so that a
// wrong file is not silently rewritten.
func (j *journal) read(r io.Reader) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), maxJournalLine)
	var bad error
	line := 0
	for s.Scan() {
		line++
		if bad != nil {
			return bad // a malformed line that was not the last
		}
		var e journalEntry
		if err := json.Unmarshal(s.Bytes(), &e); err != nil || e.MD == "" || e.ID == uuid.Nil || (e.Op != "+" && e.Op != "-") {
			bad = fmt.Errorf("keydist: journal %s line %d: not an association record", j.path, line)
			continue
		}
		k := assocKey{peer: e.MD, id: e.ID}
		if e.Op == "+" {
			j.live[k] = e
		} else {
			delete(j.live, k)
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("keydist: journal %s: %w", j.path, err)
	}
	return nil
}

// compact rewrites the journal with the live records only (atomically:
// temporary file, then rename) and reopens it for appending. Called with
// j.mu held or before j is shared.
func (j *journal) compact() error {
	if j.f != nil {
		_ = j.w.Flush()
		_ = j.f.Close()
		j.f = nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(j.path), ".journal-*")
	if err != nil {
		return fmt.Errorf("keydist: journal: %w", err)
	}
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	for _, e := range j.live {
		if err := enc.Encode(e); err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("keydist: journal: %w", err)
		}
	}
	err = w.Flush()
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Close()
	} else {
		_ = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), j.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("keydist: journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("keydist: journal: %w", err)
	}
	j.f, j.w, j.dead = f, bufio.NewWriter(f), 0
	return nil
}

// add records an established association.
func (j *journal) add(e journalEntry) error {
	e.Op = "+"
	j.mu.Lock()
	defer j.mu.Unlock()
	j.live[assocKey{peer: e.MD, id: e.ID}] = e
	return j.write(e)
}

// remove records that an association ended; unknown ones are ignored.
func (j *journal) remove(md string, id uuid.UUID) error {
	k := assocKey{peer: md, id: id}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.live[k]; !ok {
		return nil
	}
	delete(j.live, k)
	j.dead++
	if j.dead > len(j.live)+1024 {
		return j.compact()
	}
	return j.write(journalEntry{Op: "-", MD: md, ID: id})
}

// write appends one line and flushes it to the file. Called with j.mu held.
func (j *journal) write(e journalEntry) error {
	if j.f == nil {
		return errors.New("keydist: journal closed")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("keydist: journal: %w", err)
	}
	_, _ = j.w.Write(b)
	_ = j.w.WriteByte('\n')
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("keydist: journal: %w", err)
	}
	return nil
}

// close flushes and closes the file.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.w.Flush()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}
