package metrics

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	r := New("v1.2.3")
	r.Inc(HTTPRequests, "/v1/chat/completions", "200")
	r.Inc(HTTPRequests, "/v1/chat/completions", "200")
	r.Inc(InferenceRequests, "sim", `we"ird`, "ok")
	r.Observe(InferenceTTFT, 30*time.Millisecond, "sim", "sim")
	r.Gauge("moltbot_conversations_active", func() float64 { return 3 })
	var b strings.Builder
	r.WritePrometheus(&b)
	out := b.String()
	for _, want := range []string{
		`moltbot_http_requests_total{route="/v1/chat/completions",code="200"} 2`,
		`moltbot_inference_requests_total{provider="sim",model="we\"ird",outcome="ok"} 1`,
		`moltbot_inference_ttft_seconds_bucket{provider="sim",model="sim",le="0.05"} 1`,
		`moltbot_inference_ttft_seconds_bucket{provider="sim",model="sim",le="0.025"} 0`,
		`moltbot_inference_ttft_seconds_bucket{provider="sim",model="sim",le="+Inf"} 1`,
		`moltbot_conversations_active 3`,
		`moltbot_build_info{version="v1.2.3"} 1`,
		"# HELP moltbot_http_requests_total HTTP requests served",
		"# TYPE moltbot_inference_ttft_seconds histogram",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if r.Sum(HTTPRequests) != 2 || r.Get(HTTPRequests, "/v1/chat/completions", "200") != 2 {
		t.Error("Sum/Get wrong")
	}
}

func BenchmarkInc(b *testing.B) {
	r := New("x")
	b.ReportAllocs()
	for b.Loop() {
		r.Inc(HTTPRequests, "/v1/chat/completions", "200")
	}
}

// Series made and counted from many goroutines at once are each one
// series (counted whole) whether they were found in the lock-free copy or
// under the lock, before and after the copy is made again; a lookup of
// an existing series allocates nothing.
func TestSeriesConcurrent(t *testing.T) {
	r := New("x")
	const workers, per, labels = 8, 300, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				l := strconv.Itoa((w*per + i) % labels)
				r.Inc(AuthFailures, l)
				r.Observe(HTTPDuration, time.Millisecond, l)
			}
		}()
	}
	wg.Wait()
	if got := r.Sum(AuthFailures); got != workers*per {
		t.Fatalf("sum %d, want %d", got, workers*per)
	}
	for i := range labels {
		l := strconv.Itoa(i)
		if got := r.Get(AuthFailures, l); got != workers*per/labels {
			t.Errorf("series %s: %d, want %d", l, got, workers*per/labels)
		}
	}
	var b strings.Builder
	r.WritePrometheus(&b)
	if n := strings.Count(b.String(), "moltbot_auth_failures_total{"); n != labels {
		t.Errorf("%d series exposed, want %d", n, labels)
	}
	if n := strings.Count(b.String(), "moltbot_http_request_duration_seconds_count{"); n != labels {
		t.Errorf("%d histograms exposed, want %d", n, labels)
	}
	if a := testing.AllocsPerRun(100, func() {
		r.Inc(AuthFailures, "7")
		r.Observe(HTTPDuration, time.Millisecond, "7")
	}); a != 0 {
		t.Errorf("%v allocations a lookup", a)
	}
}
