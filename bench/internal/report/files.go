package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFiles writes r into dir as <timestamp>.json, <timestamp>.md and
// <timestamp>.svg, with copies at latest.json, latest.md and latest.svg,
// and returns the paths written.
func WriteFiles(dir string, r *Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	stamp := r.Started.UTC().Format("20060102T150405Z")
	var js, md, svg bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		return nil, err
	}
	if err := r.Markdown(&md); err != nil {
		return nil, err
	}
	if err := r.SVG(&svg); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range []struct {
		ext string
		b   []byte
	}{{"json", js.Bytes()}, {"md", md.Bytes()}, {"svg", svg.Bytes()}} {
		for _, name := range []string{stamp + "." + f.ext, "latest." + f.ext} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, f.b, 0o644); err != nil {
				return written, fmt.Errorf("report: %w", err)
			}
			written = append(written, p)
		}
	}
	return written, nil
}
