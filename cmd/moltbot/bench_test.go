//go:build !edge

package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// moltbot bench --spawn works on a fresh machine and its JSON is sane.
func TestBenchSpawnJSON(t *testing.T) {
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	code, out, stderr := runCLI(t, "", "bench", "--spawn", "--sim-ttft", "0s", "--sim-itl", "0s", "--sim-tokens", "16", "--duration", "2s", "--stream", "--concurrency", "8",
		"--slo-ttft", "1m", "--json", jsonPath, "--html", htmlPath, "--baseline", "spawn", "--baseline-rounds", "2", "--baseline-requests", "20")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"end to end", "TTFT", "ITL", "TPOT", "goodput", "served by: sim/sim 100.0%", "added p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Requests  int     `json:"requests"`
		Errors    int     `json:"errors"`
		RPS       float64 `json:"rps"`
		DurationS float64 `json:"duration_s"`
		Latency   struct {
			P50, P99, Max float64
		} `json:"latency_ms"`
		TTFT struct {
			P50 float64 `json:"p50"`
		} `json:"ttft_ms"`
		OutputTokens struct {
			Total     int     `json:"total"`
			PerSecond float64 `json:"per_second"`
		} `json:"output_tokens"`
		Goodput struct {
			Share float64 `json:"share"`
		} `json:"goodput"`
		Providers map[string]struct {
			Share float64 `json:"share"`
		} `json:"providers"`
		Baseline struct {
			AddedP50 float64 `json:"added_p50_ms"`
		} `json:"baseline"`
		Timeline []any `json:"timeline"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	// No throughput or wall-clock figure here (they belong to BENCHMARKS.md):
	// the run lasts at least its --duration, and the figures agree.
	if r.Requests == 0 || r.Errors != 0 || r.DurationS < 2 || math.Abs(r.RPS*r.DurationS-float64(r.Requests)) > 1e-6*float64(r.Requests) {
		t.Errorf("counts: %+v", r)
	}
	if !(r.Latency.P50 > 0 && r.Latency.P99 >= r.Latency.P50 && r.Latency.Max >= r.Latency.P99) || r.TTFT.P50 <= 0 || r.TTFT.P50 > r.Latency.P50 {
		t.Errorf("latency: %+v ttft %+v", r.Latency, r.TTFT)
	}
	if r.OutputTokens.Total != 16*r.Requests || r.OutputTokens.PerSecond <= 0 || r.Goodput.Share != 1 || r.Providers["sim/sim"].Share != 1 {
		t.Errorf("tokens/goodput/providers: %+v", r)
	}
	if r.Baseline.AddedP50 == 0 || len(r.Timeline) < 2 {
		t.Errorf("baseline %+v timeline %d", r.Baseline, len(r.Timeline))
	}
	html, _ := os.ReadFile(htmlPath)
	if !strings.Contains(string(html), "<svg") || !regexp.MustCompile(`<p class="run">20\d\d-\d\d-\d\dT[0-9:]+Z, moltbot dev: \S+ bench --spawn`).Match(html) {
		t.Errorf("no HTML report, or it names no date, version and command line:\n%.600s", html)
	}
	if !strings.Contains(stderr, "(ttft 0s, itl 0s, 16 tokens a reply)") {
		t.Errorf("the spawned simulator's parameters are not said: %q", stderr)
	}
}

func TestBenchConversationsOpenLoop(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	code, out, stderr := runCLI(t, "", "bench", "--spawn", "--mode", "open", "--rate", "300/s", "--conversations", "20", "--turns", "3", "--json", jsonPath)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	b, _ := os.ReadFile(jsonPath)
	var r struct {
		Requests   int     `json:"requests"`
		Errors     int     `json:"errors"`
		Scenario   string  `json:"scenario"`
		OfferedRPS float64 `json:"offered_rps"`
	}
	json.Unmarshal(b, &r)
	if r.Requests != 60 || r.Errors != 0 || r.Scenario != "conversations" || r.OfferedRPS != 300 {
		t.Fatalf("%+v\n%s", r, out)
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"--rate fast --mode open", "--rate"},
		{"--mode sideways", "--mode"},
		{"--header nocolon", "--header"},
		{"--concurrency 0", "--concurrency"},
		{"--baseline spawn", "--baseline spawn needs --spawn"},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"bench"}, strings.Fields(tc.args)...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d %q", tc.args, code, stderr)
		}
	}
	for in, want := range map[string]float64{"200": 200, "200/s": 200, "600/m": 10} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v", in, got, err)
		}
	}
}
