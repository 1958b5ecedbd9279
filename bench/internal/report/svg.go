package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// pathColors are the series colours, by path.
var pathColors = map[string]string{
	"mdfast-xdp-native":  "#1b9e77",
	"mdfast-xdp-generic": "#7570b3",
	"mdfast-socket":      "#d95f02",
	"mdfast-system":      "#66a61e",
	"baseline":           "#e7298a",
	"reflector":          "#999999",
}

const (
	panelW, panelH = 360, 280
	marginL        = 70
	marginB        = 50
	marginT        = 30
	marginR        = 20
	cols           = 2
)

// SVG draws forwarded rate against offered rate, one panel per scenario
// group that was swept (a saturation step and paced steps), one line per
// path, with the lossless diagonal dashed.
func (r *Run) SVG(w io.Writer) error {
	type series struct {
		path string
		pts  [][2]float64
	}
	groups := map[string][]*series{}
	var order []string
	for _, s := range r.Scenarios {
		if s.Error != "" || s.Pattern == "audio" || s.Pattern == "video" || s.Calibrates != "" {
			continue
		}
		ss, ok := groups[s.Group]
		if !ok {
			order = append(order, s.Group)
		}
		i := slices.IndexFunc(ss, func(x *series) bool { return x.path == s.Path })
		if i < 0 {
			ss = append(ss, &series{path: s.Path})
			i = len(ss) - 1
		}
		ss[i].pts = append(ss[i].pts, [2]float64{s.OfferedPPS, s.ForwardedPPS})
		groups[s.Group] = ss
	}
	n := max(len(order), 1)
	rows := (n + cols - 1) / cols
	legendH := 30
	strips := spreadRows(r.Summary)
	stripH := 0
	if len(strips) > 0 {
		stripH = 40 + len(strips)*stripRow
	}
	W, H := cols*panelW, rows*panelH+legendH+stripH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	// Legend.
	x := 10
	for _, p := range []string{"mdfast-xdp-native", "mdfast-xdp-generic", "mdfast-socket", "baseline"} {
		fmt.Fprintf(&b, `<rect x="%d" y="10" width="14" height="4" fill="%s"/><text x="%d" y="16">%s</text>`+"\n", x, pathColors[p], x+18, p)
		x += 150
	}
	fmt.Fprintf(&b, `<text x="%d" y="16" fill="#888">- - lossless</text>`+"\n", x)
	if len(order) == 0 {
		fmt.Fprintf(&b, `<text x="20" y="%d">no swept scenario in this run</text>`+"\n", legendH+40)
	}
	for gi, g := range order {
		ox := (gi % cols) * panelW
		oy := legendH + (gi/cols)*panelH
		maxV := 1.0
		for _, s := range groups[g] {
			for _, p := range s.pts {
				maxV = math.Max(maxV, math.Max(p[0], p[1]))
			}
		}
		maxV = niceCeil(maxV)
		pw, ph := float64(panelW-marginL-marginR), float64(panelH-marginT-marginB)
		px := func(v float64) float64 { return float64(ox+marginL) + v/maxV*pw }
		py := func(v float64) float64 { return float64(oy+marginT) + ph - v/maxV*ph }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", ox+marginL, oy+marginT-10, html.EscapeString(g))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", ox+marginL, oy+marginT, pw, ph)
		for i := 0; i <= 4; i++ {
			v := maxV * float64(i) / 4
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(v), oy+marginT+int(ph)+14, short(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+marginL-4, py(v)+4, short(v))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered pps</text>`+"\n", px(maxV/2), oy+marginT+int(ph)+30)
		fmt.Fprintf(&b, `<text transform="translate(%d %.1f) rotate(-90)" text-anchor="middle">forwarded pps</text>`+"\n", ox+16, py(maxV/2))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`+"\n", px(0), py(0), px(maxV), py(maxV))
		for _, s := range groups[g] {
			slices.SortFunc(s.pts, func(a, b [2]float64) int { return int(math.Copysign(1, a[0]-b[0])) })
			c := pathColors[s.path]
			if c == "" {
				c = "#000"
			}
			var pts []string
			for _, p := range s.pts {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
			for _, p := range s.pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: offered %.0f, forwarded %.0f</title></circle>`+"\n",
					px(p[0]), py(p[1]), c, html.EscapeString(s.path), p[0], p[1])
			}
		}
	}
	writeStrips(&b, strips, legendH+rows*panelH, W)
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("report: write SVG: %w", err)
	}
	return nil
}

const stripRow = 16

// strip is one row of the spread chart: a figure's median over the
// rounds with a whisker from its min to its max.
type strip struct {
	label, unit string
	path        string
	s           stats.Spread
}

// spreadRows are the rows of the spread chart: every ratio to the
// baseline, then every added p99.
func spreadRows(sum []Aggregate) []strip {
	var out []strip
	for _, a := range sum {
		if a.Ratio.N > 0 {
			out = append(out, strip{label: a.Name + " ratio vs baseline", unit: "×", path: a.Path, s: a.Ratio})
		}
	}
	for _, a := range sum {
		if a.AddedP99us.N > 0 {
			out = append(out, strip{label: a.Name + " added p99", unit: " µs", path: a.Path, s: a.AddedP99us})
		}
	}
	return out
}

// writeStrips draws the spread chart at y: per row, the min–max whisker,
// a tick per round and the median as a square, each row on its own scale
// (0 to the row's max) so that ratios and microseconds share the chart.
func writeStrips(b *strings.Builder, rows []strip, y, w int) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, `<text x="10" y="%d" font-weight="bold">Spread over the rounds: median (square), min–max (line), each round (tick)</text>`+"\n", y+20)
	x0, x1 := 330.0, float64(w-90)
	for i, r := range rows {
		ry := float64(y + 40 + i*stripRow)
		c := pathColors[r.path]
		if c == "" {
			c = "#000"
		}
		hi := math.Max(niceCeil(math.Max(r.s.Max, 1e-9)), 1e-9)
		lo := math.Min(0, r.s.Min)
		px := func(v float64) float64 { return x0 + (v-lo)/(hi-lo)*(x1-x0) }
		fmt.Fprintf(b, `<text x="10" y="%.1f">%s (%s)</text>`+"\n", ry+4, html.EscapeString(r.label), html.EscapeString(r.path))
		fmt.Fprintf(b, `<line class="spread" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", px(r.s.Min), ry, px(r.s.Max), ry, c)
		for _, v := range r.s.Values {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", px(v), ry-5, px(v), ry+5, c)
		}
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"><title>median %.4g, min %.4g, max %.4g over %d rounds</title></rect>`+"\n",
			px(r.s.Median)-3.5, ry-3.5, c, r.s.Median, r.s.Min, r.s.Max, r.s.N)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%.3g%s (%.3g–%.3g)</text>`+"\n", x1+6, ry+4, r.s.Median, html.EscapeString(r.unit), r.s.Min, r.s.Max)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// short formats a rate: 1500 → "1.5k", 2000000 → "2M".
func short(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v/1e6), "0"), ".") + "M"
	case v >= 1e3:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v/1e3), "0"), ".") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}
