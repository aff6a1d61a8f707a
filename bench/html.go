package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page (inline SVG and CSS, no scripts or
// links to fetch) with the summary, a latency histogram, and throughput and
// latency over time.
//
// The page is written without html/template: executing any text/template
// or html/template looks methods up by a run-time name, and a binary that
// can do that keeps every exported method of every type it links (the
// linker's dead code elimination gives up; docs/DESIGN.md, "Built: the
// default build's idle RSS"). The text fields are escaped as html/template
// escaped them in this page's contexts (text and <title>: escapeHTML);
// TestWriteHTMLAsTemplate renders the old template beside it.
func (r *Report) WriteHTML(w io.Writer) error {
	var table strings.Builder
	r.WriteTable(&table)
	raw, _ := json.MarshalIndent(r, "", "  ")
	title := escapeHTML(fmt.Sprintf("moltbot bench: %s %s", r.Scenario, r.Mode), true)
	var b strings.Builder
	b.WriteString(pageHead)
	b.WriteString(title)
	b.WriteString(pageStyle)
	b.WriteString(title)
	b.WriteString("</h1>\n<p class=\"run\">")
	b.WriteString(escapeHTML(fmt.Sprintf("%s, moltbot %s: %s", r.StartedAt, r.Version, r.Command), true))
	b.WriteString("</p>\n<pre>")
	b.WriteString(escapeHTML(table.String(), true))
	b.WriteString("</pre>\n<h2>End-to-end latency histogram</h2>")
	b.WriteString(r.histogramSVG())
	b.WriteString("\n<h2>Throughput over time (requests per second; errors in red)</h2>")
	b.WriteString(r.timelineSVG(false))
	b.WriteString("\n<h2>Latency over time (p50 blue, p99 red)</h2>")
	b.WriteString(r.timelineSVG(true))
	b.WriteString("\n<details><summary>Raw JSON</summary><pre>")
	b.WriteString(escapeHTML(string(raw), true))
	b.WriteString("</pre></details>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>`

const pageStyle = `</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:980px}
h1{font-size:20px} h2{font-size:16px;margin-top:2em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
svg{background:#fff;border:1px solid #ddd} .bar{fill:#4a78c2} .l50{stroke:#4a78c2;fill:none;stroke-width:2}
.l99{stroke:#d9534f;fill:none;stroke-width:2} .rps{stroke:#3c9d5d;fill:none;stroke-width:2} .err{fill:#d9534f}
.axis{stroke:#999} text{font-size:11px;fill:#555}
details{margin-top:2em}
</style></head><body>
<h1>`

// escapeHTML escapes s for HTML text and RCDATA (<title>) as html/template
// does there (NUL, ", &, ', +, < and >), or with plus false as
// template.HTMLEscapeString does (the same but +).
func escapeHTML(s string, plus bool) string {
	if !strings.ContainsAny(s, "\x00\"&'+<>") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ { // bytes: invalid UTF-8 passes through as it did
		switch c := s[i]; c {
		case 0:
			b.WriteString("\uFFFD")
		case '"':
			b.WriteString("&#34;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&#39;")
		case '+':
			if plus {
				b.WriteString("&#43;")
			} else {
				b.WriteByte(c)
			}
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

const (
	svgW, svgH = 900, 260
	padL, padB = 60, 30
)

func axes(b *strings.Builder, ymax float64, ylabel string, xlabels []string) {
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="10" x2="%d" y2="%d"/>`, padL, padL, svgH-padB)
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, padL, svgH-padB, svgW-10, svgH-padB)
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		y := float64(svgH-padB) - float64(svgH-padB-10)*float64(i)/4
		fmt.Fprintf(b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`, padL-4, y+4, num(v))
	}
	fmt.Fprintf(b, `<text x="12" y="20">%s</text>`, escapeHTML(ylabel, false))
	n := len(xlabels)
	// Labels at least 80 px apart (a histogram's "≤1234.5ms" is ~60 px).
	step := max(1, (n*80+svgW-padL-11)/(svgW-padL-10))
	for i := 0; i < n; i += step {
		x := padL + (svgW-padL-10)*(2*i+1)/(2*max(n, 1))
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, x, svgH-padB+16, escapeHTML(xlabels[i], false))
	}
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func (r *Report) histogramSVG() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="latency histogram">`, svgW, svgH)
	h := r.Histogram
	top := 0
	for _, c := range h.Counts {
		top = max(top, c)
	}
	labels := make([]string, len(h.BoundsMs))
	for i, v := range h.BoundsMs {
		labels[i] = "≤" + num(v) + "ms"
	}
	axes(&b, float64(top), "requests", labels)
	n := len(h.Counts)
	for i, c := range h.Counts {
		if c == 0 || top == 0 {
			continue
		}
		bw := float64(svgW-padL-10) / float64(n)
		bh := float64(svgH-padB-10) * float64(c) / float64(top)
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%d requests ≤ %s ms</title></rect>`,
			float64(padL)+bw*float64(i)+1, float64(svgH-padB)-bh, math.Max(bw-2, 1), bh, c, num(h.BoundsMs[i]))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func (r *Report) timelineSVG(latency bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">`, svgW, svgH)
	pts := r.Timeline
	top := 0.0
	for _, p := range pts {
		if latency {
			top = math.Max(top, p.P99)
		} else {
			top = math.Max(top, rate(p))
		}
	}
	if top == 0 {
		top = 1
	}
	labels := make([]string, len(pts))
	for i, p := range pts {
		labels[i] = fmt.Sprintf("%.0fs", p.T)
	}
	ylabel := "req/s"
	if latency {
		ylabel = "ms"
	}
	axes(&b, top, ylabel, labels)
	n := len(pts)
	x := func(i int) float64 { return float64(padL) + float64(svgW-padL-10)*float64(2*i+1)/float64(2*max(n, 1)) }
	y := func(v float64) float64 { return float64(svgH-padB) - float64(svgH-padB-10)*v/top }
	line := func(class string, val func(Point) float64) {
		var pts2 []string
		for i, p := range pts {
			pts2 = append(pts2, fmt.Sprintf("%.1f,%.1f", x(i), y(val(p))))
		}
		fmt.Fprintf(&b, `<polyline class="%s" points="%s"/>`, class, strings.Join(pts2, " "))
	}
	if latency {
		line("l50", func(p Point) float64 { return p.P50 })
		line("l99", func(p Point) float64 { return p.P99 })
	} else {
		line("rps", rate)
		for i, p := range pts {
			if p.Errors > 0 {
				fmt.Fprintf(&b, `<circle class="err" cx="%.1f" cy="%.1f" r="3"><title>%d errors</title></circle>`, x(i), y(float64(p.Errors)/secondsOf(p)), p.Errors)
			}
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// rate is a timeline point's requests per second.
func rate(p Point) float64 { return float64(p.Requests) / secondsOf(p) }

func secondsOf(p Point) float64 {
	if p.Seconds <= 0 {
		return 1 // a report of an earlier release
	}
	return p.Seconds
}
