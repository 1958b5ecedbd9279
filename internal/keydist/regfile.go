package keydist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// maxRegistryFile bounds the registry file read into memory.
const maxRegistryFile = 16 << 20

// registryFile is the YAML layout of the registry file:
//
//	conferences:
//	  - id: weekly-sync
//	    allow_legacy: false
//	    endpoints:
//	      - tls_id: "dGhpcyBpcyBhIHRscy1pZCB2YWx1ZQ"
//	        fingerprint: "sha-256 AB:CD:...:EF"
//	        kd_tls_id: "optional; generated when absent"
type registryFile struct {
	Conferences []Conference `yaml:"conferences"`
}

// ParseRegistryFile parses and validates the YAML registry file. Unknown
// keys are errors (a typo must not silently drop an option).
func ParseRegistryFile(data []byte) ([]Conference, error) {
	if len(data) > maxRegistryFile {
		return nil, fmt.Errorf("parse registry file: %d octets: %w", len(data), ErrInvalidRegistryFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f registryFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse registry file: %w: %w", ErrInvalidRegistryFile, err)
	}
	for i := range f.Conferences {
		for j := range f.Conferences[i].Endpoints {
			f.Conferences[i].Endpoints[j].Source = ""
		}
	}
	if err := validateConferences(f.Conferences); err != nil {
		return nil, fmt.Errorf("parse registry file: %w: %w", ErrInvalidRegistryFile, err)
	}
	return f.Conferences, nil
}

// LoadFile reads the registry file at path and replaces the file source
// with it. On error the registry keeps its previous content.
func (r *Registry) LoadFile(path string) error {
	data, err := readLimited(path)
	if err != nil {
		return err
	}
	confs, err := ParseRegistryFile(data)
	if err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return r.ReplaceFile(confs)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read registry file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRegistryFile+1))
	if err != nil {
		return nil, fmt.Errorf("read registry file %s: %w", path, err)
	}
	return data, nil
}

// FileWatcher reloads a registry file when it changes. It polls the file's
// metadata (no inotify: works on every file system and with editors that
// replace the file) and reloads when the size, modification time or inode
// changed and the content hash differs. A file that fails to parse is
// logged and ignored: the registry keeps the last good content.
type FileWatcher struct {
	// Registry receives the file content.
	Registry *Registry
	// Path is the registry file.
	Path string
	// Interval is the polling period (default 2s).
	Interval time.Duration
	// Logger receives reload results (default slog.Default()).
	Logger *slog.Logger
	// OnReload, if not nil, is called after each reload attempt with its
	// result (metrics).
	OnReload func(err error)

	lastStat  os.FileInfo
	lastHash  [sha256.Size]byte
	lastValid bool
}

// Run polls until ctx is done. The caller owns the goroutine.
func (w *FileWatcher) Run(ctx context.Context) {
	iv := w.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Poll()
		}
	}
}

// Poll checks the file once and reloads it if it changed. It returns
// whether a reload was attempted.
func (w *FileWatcher) Poll() bool {
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	st, err := os.Stat(w.Path)
	if err != nil {
		if w.lastStat != nil {
			log.Warn("registry file unreadable; keeping the last content", "path", w.Path, "err", err)
			w.lastStat = nil
		}
		return false
	}
	if w.lastStat != nil && st.Size() == w.lastStat.Size() && st.ModTime().Equal(w.lastStat.ModTime()) && os.SameFile(st, w.lastStat) {
		return false
	}
	w.lastStat = st
	data, err := readLimited(w.Path)
	if err != nil {
		log.Warn("registry file unreadable; keeping the last content", "path", w.Path, "err", err)
		return false
	}
	h := sha256.Sum256(data)
	if w.lastValid && h == w.lastHash {
		return false
	}
	w.lastHash = h
	confs, err := ParseRegistryFile(data)
	if err == nil {
		err = w.Registry.ReplaceFile(confs)
	}
	if w.OnReload != nil {
		w.OnReload(err)
	}
	if err != nil {
		w.lastValid = false
		log.Error("registry file rejected; keeping the last good content", "path", w.Path, "err", err)
		return true
	}
	w.lastValid = true
	log.Info("registry file loaded", "path", w.Path, "conferences", len(confs), "endpoints", w.Registry.NumEndpoints())
	return true
}
