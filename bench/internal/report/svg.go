package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// pathColors are the series colours, by path.
var pathColors = map[string]string{
	"mdfast-xdp-native":  "#1b9e77",
	"mdfast-xdp-generic": "#7570b3",
	"mdfast-socket":      "#d95f02",
	"baseline":           "#e7298a",
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
		if s.Error != "" || s.Pattern == "audio" || s.Pattern == "video" {
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
	W, H := cols*panelW, rows*panelH+legendH
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
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("report: write SVG: %w", err)
	}
	return nil
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
