package driver

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line progress bar (redrawn with \r).
type progress struct {
	w     io.Writer
	total int
	done  int
	start time.Time
	now   func() time.Time
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, total: total, start: time.Now(), now: time.Now}
}

// line renders the bar for the step about to run.
func (p *progress) line(what string) string {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.done * width / p.total
	}
	el := p.now().Sub(p.start).Round(time.Second)
	eta := "?"
	if p.done > 0 {
		left := time.Duration(float64(p.now().Sub(p.start)) / float64(p.done) * float64(p.total-p.done))
		eta = left.Round(time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %d/%d %s elapsed, ~%s left  %-50.50s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total, el, eta, what)
}

func (p *progress) show(what string) {
	if p.w != nil {
		fmt.Fprintf(p.w, "\r%s", p.line(what))
	}
}

func (p *progress) step() { p.done++ }

func (p *progress) finish() {
	if p.w != nil {
		fmt.Fprintf(p.w, "\r%s\n", p.line("done"))
	}
}
