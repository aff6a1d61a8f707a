package metrics

import (
	"strings"
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
