package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// oldPage is the html/template WriteHTML executed before it wrote the page
// by hand (docs/DESIGN.md, "Built: the default build's idle RSS"); kept
// here, in a test, to hold the hand-written page to it byte for byte.
var oldPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:980px}
h1{font-size:20px} h2{font-size:16px;margin-top:2em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
svg{background:#fff;border:1px solid #ddd} .bar{fill:#4a78c2} .l50{stroke:#4a78c2;fill:none;stroke-width:2}
.l99{stroke:#d9534f;fill:none;stroke-width:2} .rps{stroke:#3c9d5d;fill:none;stroke-width:2} .err{fill:#d9534f}
.axis{stroke:#999} text{font-size:11px;fill:#555}
details{margin-top:2em}
</style></head><body>
<h1>{{.Title}}</h1>
<p class="run">{{.Run}}</p>
<pre>{{.Summary}}</pre>
<h2>End-to-end latency histogram</h2>{{.Histogram}}
<h2>Throughput over time (requests per second; errors in red)</h2>{{.Throughput}}
<h2>Latency over time (p50 blue, p99 red)</h2>{{.Latency}}
<details><summary>Raw JSON</summary><pre>{{.JSON}}</pre></details>
</body></html>
`))

func oldWriteHTML(r *Report) string {
	var table strings.Builder
	r.WriteTable(&table)
	raw, _ := json.MarshalIndent(r, "", "  ")
	data := struct {
		Title, Run                     string
		Summary                        string
		Histogram, Throughput, Latency template.HTML
		JSON                           string
	}{
		Title:      fmt.Sprintf("moltbot bench: %s %s", r.Scenario, r.Mode),
		Run:        fmt.Sprintf("%s, moltbot %s: %s", r.StartedAt, r.Version, r.Command),
		Summary:    table.String(),
		Histogram:  template.HTML(r.histogramSVG()),
		Throughput: template.HTML(r.timelineSVG(false)),
		Latency:    template.HTML(r.timelineSVG(true)),
		JSON:       string(raw),
	}
	var b strings.Builder
	if err := oldPage.Execute(&b, data); err != nil {
		panic(err)
	}
	return b.String()
}

// TestWriteHTMLAsTemplate: the page written by hand is the page the
// template wrote, for a real run's report and for fields holding every
// character html/template escapes.
func TestWriteHTMLAsTemplate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{}`) }))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: srv.URL, Requests: 40, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ scenario, command string }{
		{rep.Scenario, rep.Command},
		{`<script>alert("x&y")</script>`, "moltbot bench --prompt 'a+b' \x00 <>&\"é"},
	} {
		rep.Scenario, rep.Command = tc.scenario, tc.command
		var b strings.Builder
		if err := rep.WriteHTML(&b); err != nil {
			t.Fatal(err)
		}
		if got, want := b.String(), oldWriteHTML(rep); got != want {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("scenario %q: the page differs from the template's at byte %d:\n got %q\nwant %q", tc.scenario, i, tail(got, i), tail(want, i))
		}
	}
}

func tail(s string, i int) string {
	return s[i:min(len(s), i+80)]
}

// FuzzEscapeHTML: escapeHTML escapes as html/template does in text (plus)
// and as template.HTMLEscapeString does (no plus), for any string.
func FuzzEscapeHTML(f *testing.F) {
	for _, s := range []string{"", "plain", `<a href="x">&'+</a>`, "\x00é\xff", "1e+03 ≤ 5"} {
		f.Add(s)
	}
	text := template.Must(template.New("t").Parse(`{{.}}`))
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		if err := text.Execute(&b, s); err != nil {
			t.Fatal(err)
		}
		if got := escapeHTML(s, true); got != b.String() {
			t.Errorf("escapeHTML(%q, true) = %q, html/template %q", s, got, b.String())
		}
		if got, want := escapeHTML(s, false), template.HTMLEscapeString(s); got != want {
			t.Errorf("escapeHTML(%q, false) = %q, HTMLEscapeString %q", s, got, want)
		}
	})
}
