package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Dist is a latency distribution in milliseconds (JSON names are stable).
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func dist(values []float64) Dist {
	s := Summarize(values)
	return Dist{N: s.N, Mean: s.Mean, Min: s.Min, P50: s.P50, P90: s.P90, P95: s.P95, P99: s.P99, P999: s.P999, Max: s.Max}
}

// Errors counts failed requests by class.
type Errors struct {
	Status4xx  int `json:"4xx"`
	Status429  int `json:"429"`
	Status5xx  int `json:"5xx"`
	Timeout    int `json:"timeout"`
	Connection int `json:"connection"`
	Stream     int `json:"stream"`
}

// Tokens is output token throughput.
type Tokens struct {
	Total int `json:"total"`
	// PerSecond is all output tokens over the run's duration.
	PerSecond float64 `json:"per_second"`
	// PerRequestPerSecond is the median of each request's tokens over its
	// generation time (end to end minus TTFT for streams).
	PerRequestPerSecond float64 `json:"per_request_per_second"`
}

// Goodput counts requests that met the SLOs.
type Goodput struct {
	SLOTTFTMs float64 `json:"slo_ttft_ms,omitempty"`
	SLOE2EMs  float64 `json:"slo_e2e_ms,omitempty"`
	Requests  int     `json:"requests"`
	RPS       float64 `json:"rps"`
	Share     float64 `json:"share"`
}

// Point is one second of the run.
type Point struct {
	T float64 `json:"t"`
	// Seconds is the time the bucket covers: 1, and for the last what is
	// left of the run (1 to 2 s): its rate is Requests / Seconds.
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
}

// Report is everything a run measured.
type Report struct {
	// StartedAt (RFC 3339, UTC), Version and Command say which run this
	// is: when, of which build, with which command line.
	StartedAt     string            `json:"started_at,omitempty"`
	Version       string            `json:"version,omitempty"`
	Command       string            `json:"command,omitempty"`
	URL           string            `json:"url"`
	Mode          Mode              `json:"mode"`
	Scenario      string            `json:"scenario"` // chat or conversations
	Stream        bool              `json:"stream"`
	Concurrency   int               `json:"concurrency,omitempty"`
	OfferedRPS    float64           `json:"offered_rps,omitempty"`
	DurationS     float64           `json:"duration_s"`
	Requests      int               `json:"requests"`
	Successes     int               `json:"successes"`
	ErrorCount    int               `json:"errors"`
	ErrorsByClass Errors            `json:"errors_by_class"`
	RPS           float64           `json:"rps"`
	SuccessRPS    float64           `json:"success_rps"`
	Latency       Dist              `json:"latency_ms"`
	TTFT          *Dist             `json:"ttft_ms,omitempty"`
	ITL           *Dist             `json:"itl_ms,omitempty"`
	TPOT          *Dist             `json:"tpot_ms,omitempty"`
	OutputTokens  Tokens            `json:"output_tokens"`
	Goodput       *Goodput          `json:"goodput,omitempty"`
	Failovers     int               `json:"failovers"`
	FailedOver    int               `json:"requests_failed_over"`
	Providers     map[string]Served `json:"providers"`
	ClientCPU     ClientCPU         `json:"client_cpu"`
	Timeline      []Point           `json:"timeline"`
	Histogram     Histogram         `json:"histogram"`
	Baseline      *OverheadResult   `json:"baseline,omitempty"`
}

// Served is one provider's share of successful requests.
type Served struct {
	Requests int     `json:"requests"`
	Share    float64 `json:"share"`
}

// ClientCPU is the load generator's own CPU use (with --spawn it includes
// the in-process node and simulator).
type ClientCPU struct {
	Seconds       float64 `json:"seconds"`
	PercentOfCore float64 `json:"percent_of_one_core"`
}

// Histogram is the end-to-end latency histogram (log buckets).
type Histogram struct {
	BoundsMs []float64 `json:"bounds_ms"`
	Counts   []int     `json:"counts"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func buildReport(cfg *Config, shards []*shard, elapsed, cpu time.Duration) *Report {
	rep := &Report{URL: cfg.URL, Mode: cfg.Mode, Scenario: "chat", Stream: cfg.Stream, DurationS: elapsed.Seconds(),
		Providers: map[string]Served{}}
	if cfg.Conversations > 0 {
		rep.Scenario = "conversations"
	}
	if cfg.Mode == Open {
		rep.OfferedRPS = cfg.Rate
	} else {
		rep.Concurrency = cfg.Concurrency
	}
	var all []result
	var itl []float64
	for _, sh := range shards {
		all = append(all, sh.results...)
		for _, v := range sh.itl {
			itl = append(itl, float64(v))
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	rep.Requests = len(all)
	var e2e, ttft, tpot, perReq []float64
	good := 0
	// One bucket a whole second; the last takes the fraction left over (a
	// bucket of the run's last 0.02 s alone looked like a collapse).
	secs := int(elapsed.Seconds())
	perSec := make([][]float64, max(secs, 1))
	errSec := make([]int, max(secs, 1))
	for _, r := range all {
		sec := min(int(r.start/time.Second), len(perSec)-1)
		if r.class != ClassOK {
			rep.ErrorCount++
			errSec[sec]++
			switch r.class {
			case Class4xx:
				rep.ErrorsByClass.Status4xx++
			case Class429:
				rep.ErrorsByClass.Status429++
			case Class5xx:
				rep.ErrorsByClass.Status5xx++
			case ClassTimeout:
				rep.ErrorsByClass.Timeout++
			case ClassConnection:
				rep.ErrorsByClass.Connection++
			case ClassStream:
				rep.ErrorsByClass.Stream++
			}
			continue
		}
		rep.Successes++
		l := ms(r.e2e)
		e2e = append(e2e, l)
		perSec[sec] = append(perSec[sec], l)
		rep.OutputTokens.Total += r.tokens
		gen := r.e2e
		if cfg.Stream && r.ttft > 0 {
			ttft = append(ttft, ms(r.ttft))
			gen = r.e2e - r.ttft
			if r.tokens > 1 {
				tpot = append(tpot, ms(gen)/float64(r.tokens-1))
			}
		}
		if r.tokens > 0 && gen > 0 {
			perReq = append(perReq, float64(r.tokens)/gen.Seconds())
		}
		if r.failovers > 0 {
			rep.FailedOver++
			rep.Failovers += r.failovers
		}
		p := r.provider
		if p == "" {
			p = "unknown"
		}
		s := rep.Providers[p]
		s.Requests++
		rep.Providers[p] = s
		if (cfg.SLOTTFT <= 0 || !cfg.Stream || r.ttft <= cfg.SLOTTFT) && (cfg.SLOE2E <= 0 || r.e2e <= cfg.SLOE2E) {
			good++
		}
	}
	for k, s := range rep.Providers {
		s.Share = float64(s.Requests) / float64(max(rep.Successes, 1))
		rep.Providers[k] = s
	}
	rep.RPS = float64(rep.Requests) / elapsed.Seconds()
	rep.SuccessRPS = float64(rep.Successes) / elapsed.Seconds()
	rep.Histogram = histogram(e2e)
	rep.Latency = dist(e2e)
	if cfg.Stream {
		d, i, t := dist(ttft), dist(itl), dist(tpot)
		rep.TTFT, rep.ITL, rep.TPOT = &d, &i, &t
	}
	rep.OutputTokens.PerSecond = float64(rep.OutputTokens.Total) / elapsed.Seconds()
	if len(perReq) > 0 {
		rep.OutputTokens.PerRequestPerSecond = Median(perReq)
	}
	if cfg.SLOTTFT > 0 || cfg.SLOE2E > 0 {
		rep.Goodput = &Goodput{SLOTTFTMs: ms(cfg.SLOTTFT), SLOE2EMs: ms(cfg.SLOE2E), Requests: good,
			RPS: float64(good) / elapsed.Seconds(), Share: float64(good) / float64(max(rep.Requests, 1))}
	}
	for i := range perSec {
		v := perSec[i]
		sort.Float64s(v)
		p := Point{T: float64(i + 1), Seconds: 1, Requests: len(v) + errSec[i], Errors: errSec[i]}
		if i == len(perSec)-1 {
			p.Seconds = math.Max(elapsed.Seconds()-float64(i), 0.001)
		}
		if len(v) > 0 {
			p.P50, p.P99 = Percentile(v, 50), Percentile(v, 99)
		}
		rep.Timeline = append(rep.Timeline, p)
	}
	rep.ClientCPU = ClientCPU{Seconds: cpu.Seconds(), PercentOfCore: 100 * cpu.Seconds() / elapsed.Seconds()}
	return rep
}

// histogram buckets values (ms) on a log scale from 0.05 ms, 5 per decade.
func histogram(values []float64) Histogram {
	var h Histogram
	if len(values) == 0 {
		return h
	}
	hi := 0.0
	for _, v := range values {
		hi = max(hi, v)
	}
	for b := 0.05; ; b *= math.Pow(10, 0.2) {
		h.BoundsMs = append(h.BoundsMs, math.Round(b*1000)/1000)
		if b >= hi {
			break
		}
	}
	h.Counts = make([]int, len(h.BoundsMs))
	for _, v := range values {
		i := sort.SearchFloat64s(h.BoundsMs, v)
		h.Counts[min(i, len(h.Counts)-1)]++
	}
	return h
}

// WriteTable prints the report for a terminal.
func (r *Report) WriteTable(w io.Writer) {
	load := fmt.Sprintf("closed loop, concurrency %d", r.Concurrency)
	if r.Mode == Open {
		load = fmt.Sprintf("open loop, offered %.0f req/s", r.OfferedRPS)
	}
	kind := "non-streaming"
	if r.Stream {
		kind = "streaming"
	}
	fmt.Fprintf(w, "\n%s %s, %s, %s, %.1fs\n", r.URL, r.Scenario, kind, load, r.DurationS)
	fmt.Fprintf(w, "requests %d  successes %d  errors %d", r.Requests, r.Successes, r.ErrorCount)
	if r.ErrorCount > 0 {
		e := r.ErrorsByClass
		fmt.Fprintf(w, " (4xx %d, 429 %d, 5xx %d, timeout %d, connection %d, stream %d)", e.Status4xx, e.Status429, e.Status5xx, e.Timeout, e.Connection, e.Stream)
	}
	fmt.Fprintf(w, "\nthroughput %.1f req/s achieved", r.RPS)
	if r.Mode == Open {
		fmt.Fprintf(w, " of %.0f offered", r.OfferedRPS)
	}
	fmt.Fprintf(w, ", %.1f successful req/s\n\n", r.SuccessRPS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ms\tmean\tp50\tp90\tp95\tp99\tp99.9\tmax\t")
	row := func(name string, d *Dist) {
		if d == nil || d.N == 0 {
			return
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, d.Mean, d.P50, d.P90, d.P95, d.P99, d.P999, d.Max)
	}
	row("end to end", &r.Latency)
	row("TTFT", r.TTFT)
	row("ITL", r.ITL)
	row("TPOT", r.TPOT)
	tw.Flush()
	fmt.Fprintf(w, "\noutput tokens %d: %.0f tokens/s total, %.0f tokens/s per request (median)\n",
		r.OutputTokens.Total, r.OutputTokens.PerSecond, r.OutputTokens.PerRequestPerSecond)
	if g := r.Goodput; g != nil {
		var slo []string
		if g.SLOTTFTMs > 0 {
			slo = append(slo, fmt.Sprintf("TTFT <= %gms", g.SLOTTFTMs))
		}
		if g.SLOE2EMs > 0 {
			slo = append(slo, fmt.Sprintf("end to end <= %gms", g.SLOE2EMs))
		}
		fmt.Fprintf(w, "goodput (%s): %d requests, %.1f req/s, %.1f%%\n", strings.Join(slo, ", "), g.Requests, g.RPS, 100*g.Share)
	}
	names := make([]string, 0, len(r.Providers))
	for k := range r.Providers {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*r.Providers[k].Share))
	}
	fmt.Fprintf(w, "served by: %s; failovers: %d on %d requests\n", strings.Join(parts, ", "), r.Failovers, r.FailedOver)
	fmt.Fprintf(w, "load generator CPU: %.2fs, %.0f%% of one core\n", r.ClientCPU.Seconds, r.ClientCPU.PercentOfCore)
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "\nadded latency over the baseline (concurrency 1, %d interleaved rounds):\n", len(b.Rounds))
		fmt.Fprintf(w, "  baseline p50 %.3f ms p99 %.3f ms; via moltbot p50 %.3f ms p99 %.3f ms\n", b.DirectP50, b.DirectP99, b.ViaP50, b.ViaP99)
		fmt.Fprintf(w, "  added p50 %.3f ms (rounds %.3f..%.3f), p99 %.3f ms (rounds %.3f..%.3f)\n",
			b.AddedP50, b.AddedP50Min, b.AddedP50Max, b.AddedP99, b.AddedP99Min, b.AddedP99Max)
	}
}
