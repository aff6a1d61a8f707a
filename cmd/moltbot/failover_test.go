package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/testutil"
)

// upstream is a real HTTP model server on 127.0.0.1: the simulator, counted,
// with an optional script that fails chosen requests.
type upstream struct {
	srv   *httptest.Server
	sim   *sim.Server
	calls atomic.Int64
	// canceled counts model calls the client (the node) hung up on.
	canceled atomic.Int64
	// failIf returns the status to fail request n (1-based) with, or 0.
	failIf atomic.Pointer[func(n int64) int]
}

func newUpstream(t *testing.T, o sim.Options) *upstream {
	u := &upstream{sim: sim.NewServer(o)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" || r.URL.Path == "/api/chat" {
			n := u.calls.Add(1)
			if f := u.failIf.Load(); f != nil {
				if st := (*f)(n); st != 0 {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(st)
					fmt.Fprintf(w, `{"error":{"message":"scripted failure %d","type":"server_error"}}`, n)
					return
				}
			}
		}
		u.sim.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			u.canceled.Add(1)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) fail(f func(n int64) int) { u.failIf.Store(&f) }

func (u *upstream) faults(t *testing.T, body string) {
	t.Helper()
	method := "POST"
	if body == "" {
		method = "DELETE"
	}
	req, _ := http.NewRequest(method, u.srv.URL+"/sim/faults", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("faults %s: %d %s", body, resp.StatusCode, b)
	}
}

func fastSim() sim.Options {
	return sim.Options{TTFT: time.Millisecond, ITL: 0, Tokens: 6, Seed: 7, Models: []string{"m"}}
}

// failoverNode starts an in-process node whose chain is primary/m then
// fallback/m, both OpenAI-compatible upstreams, with extra models: keys.
func failoverNode(t *testing.T, primary, fallback *upstream, models string) *Node {
	t.Helper()
	yaml := fmt.Sprintf(`server: {port: 0, shutdown_timeout: 2s}
log: {level: error}
providers:
  - {name: primary, type: openai, url: "%s/v1"}
  - {name: fallback, type: openai, url: "%s/v1"}
models:
  primary: primary/m
  fallback: [fallback/m]
  health_interval: 100ms
%s
`, primary.srv.URL, fallback.srv.URL, models)
	cfg, err := configs.Parse("failover.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: t.TempDir()}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	waitReady(t, n.URL())
	return n
}

type served struct {
	status    int
	provider  string
	failovers string
	body      string
}

func complete(t *testing.T, n *Node, body string) served {
	t.Helper()
	if body == "" {
		body = `{"messages":[{"role":"user","content":"hello"}]}`
	}
	resp, err := http.Post(n.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return served{resp.StatusCode, resp.Header.Get("X-Moltbot-Provider"), resp.Header.Get("X-Moltbot-Failovers"), string(b)}
}

func breakers(t *testing.T, n *Node) map[string]actors.BreakerStatus {
	t.Helper()
	resp, err := http.Get(n.URL() + "/v1/admin/providers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Breakers []actors.BreakerStatus `json:"breakers"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	m := map[string]actors.BreakerStatus{}
	for _, b := range out.Breakers {
		m[b.Provider+"/"+b.Model] = b
	}
	return m
}

// Primary failing 100%: every client request succeeds from the fallback,
// and once the breaker opens the primary is not even asked.
func TestFailoverPrimaryDown(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	primary.faults(t, `{"error_rate":1}`)
	n := failoverNode(t, primary, fallback, "  min_requests: 10\n  cooldown: 1m")
	var wg sync.WaitGroup
	var bad atomic.Int64
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				if s := complete(t, n, ""); s.status != 200 || s.provider != "fallback/m" || s.failovers != "1" {
					bad.Add(1)
					t.Errorf("request: %+v", s)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d client-visible errors", bad.Load())
	}
	b := breakers(t, n)["primary/m"]
	if b.State != "open" || b.Opens != 1 || b.CooldownLeftMs <= 0 || !strings.Contains(b.LastError, "simulated failure") {
		t.Fatalf("primary breaker %+v", b)
	}
	before := primary.calls.Load()
	for i := 0; i < 10; i++ {
		complete(t, n, "")
	}
	if primary.calls.Load() != before {
		t.Fatalf("an open breaker still sent %d requests to the primary", primary.calls.Load()-before)
	}
	if before > 14 {
		t.Errorf("the breaker opened late: %d requests reached the failing primary (min_requests 10, 4 clients)", before)
	}
	_, body := getBody(t, n.URL()+"/metrics")
	for _, want := range []string{`moltbot_provider_state{provider="primary",model="m"} 2`, `moltbot_provider_state{provider="fallback",model="m"} 0`,
		`moltbot_failovers_total{from="primary/m",to="fallback/m",reason="unavailable"}`, `moltbot_failovers_total{from="primary/m",to="fallback/m",reason="breaker_open"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// And moltbot status shows it.
	code, out, _ := runCLI(t, "", "status", "--url", n.URL())
	if code != 0 || !strings.Contains(out, "primary/m") || !strings.Contains(out, "open") {
		t.Errorf("status:\n%s", out)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	return authedGet(t, url, "")
}

// A primary slower than threshold.latency is abandoned: the answer comes
// from the fallback, the primary's call is canceled, and the breaker and
// the failover metric say why. (Before: a wall-clock bound of 5 s on the
// answer. A primary that is waited for answers itself after its 10 s.)
func TestFailoverSlowPrimary(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	primary.faults(t, `{"latency":"10s"}`)
	n := failoverNode(t, primary, fallback, "  threshold: {latency: 200ms, error_rate: 5%}")
	s := complete(t, n, "")
	if s.status != 200 || s.provider != "fallback/m" || s.failovers != "1" {
		t.Fatalf("%+v", s)
	}
	if b := breakers(t, n)["primary/m"]; b.Requests != 1 || b.ErrorRate != 1 || !strings.Contains(b.LastError, "no first token within 200ms") {
		t.Fatalf("primary breaker %+v", b)
	}
	_, body := getBody(t, n.URL()+"/metrics")
	if !strings.Contains(body, `moltbot_failovers_total{from="primary/m",to="fallback/m",reason="first_token_timeout"} 1`) {
		t.Errorf("metrics:\n%s", grep(body, "failovers"))
	}
	// The node hung up on the primary instead of leaving it running.
	testutil.Eventually(t, 5*time.Second, "the primary's call canceled", func() bool { return primary.canceled.Load() == 1 })
}

// Error rate at exactly 5% keeps the breaker closed; just over opens it.
func TestBreakerErrorRateThreshold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra int64 // one more failure at this request
		state string
		seen  int // requests the primary saw
	}{
		// Every 20th request fails: the rate never rises above 5.0%.
		{"at 5%", 0, "closed", 100},
		// Request 50 fails too: 3 of 50 = 6% > 5%, the breaker opens there.
		{"just over 5%", 50, "open", 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
			primary.fail(func(n int64) int {
				if n%20 == 0 || n == tc.extra {
					return 503
				}
				return 0
			})
			n := failoverNode(t, primary, fallback, "  min_requests: 20\n  window: 1m\n  cooldown: 1m")
			for i := 0; i < 100; i++ {
				if s := complete(t, n, ""); s.status != 200 {
					t.Fatalf("request %d: %+v", i, s)
				}
			}
			b := breakers(t, n)["primary/m"]
			if b.State != tc.state || b.Requests != tc.seen || primary.calls.Load() != int64(tc.seen) {
				t.Fatalf("breaker %+v (primary saw %d), want %s after %d", b, primary.calls.Load(), tc.state, tc.seen)
			}
		})
	}
}

// The primary heals: after the cooldown one probe goes through, succeeds,
// and traffic returns to the primary. Each failed probe doubles the
// cooldown. Probes are counted where they land (the primary's calls), not
// inferred from a sleep: before, a 350 ms sleep against a 300 ms cooldown
// expected exactly one probe, and a slow run made two.
func TestBreakerHealsAndTrafficReturns(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	primary.faults(t, `{"error_rate":1}`)
	n := failoverNode(t, primary, fallback, "  min_requests: 5\n  cooldown: 300ms")
	for i := 0; i < 8; i++ {
		if s := complete(t, n, ""); s.status != 200 || s.provider != "fallback/m" || s.failovers != "1" {
			t.Fatalf("request %d: %+v", i, s)
		}
	}
	// One request at a time: the fifth failure opened the breaker, and
	// every later call the primary saw was a probe.
	const opened = 5
	if b := breakers(t, n)["primary/m"]; b.State != "open" || b.Opens < 1 {
		t.Fatalf("not open: %+v", b)
	}
	// Probe while still failing: it fails over, the breaker opens again and
	// the cooldown doubles.
	testutil.Eventually(t, 30*time.Second, "a probe reaches the primary", func() bool {
		if s := complete(t, n, ""); s.status != 200 || s.provider != "fallback/m" || s.failovers != "1" {
			t.Fatalf("while the primary fails: %+v", s)
		}
		return primary.calls.Load() > opened
	})
	probes := primary.calls.Load() - opened
	if b, want := breakers(t, n)["primary/m"], float64(int64(300)<<probes); b.State != "open" || b.CooldownMs != want {
		t.Fatalf("after %d failed probes: %+v, want open with a cooldown of %v ms", probes, b, want)
	}
	primary.faults(t, "") // heal
	testutil.Eventually(t, 30*time.Second, "traffic back on the primary", func() bool {
		return complete(t, n, "").provider == "primary/m"
	})
	for i := 0; i < 10; i++ {
		if s := complete(t, n, ""); s.provider != "primary/m" || s.failovers != "0" {
			t.Fatalf("after healing: %+v", s)
		}
	}
	if b := breakers(t, n)["primary/m"]; b.State != "closed" || b.CooldownMs != 300 {
		t.Fatalf("healed breaker %+v", b)
	}
}

// 429 fails over at once and its Retry-After keeps the provider aside; a 400
// is the client's fault and is not retried.
func TestRateLimitAndBadRequest(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	// A hold longer than the test: the count below cannot depend on how
	// fast six requests run.
	primary.faults(t, `{"status":429,"retry_after":"1h"}`)
	n := failoverNode(t, primary, fallback, "")
	if s := complete(t, n, ""); s.status != 200 || s.provider != "fallback/m" {
		t.Fatalf("%+v", s)
	}
	for i := 0; i < 5; i++ {
		complete(t, n, "")
	}
	if primary.calls.Load() != 1 {
		t.Fatalf("the rate-limited primary was asked %d times within its Retry-After", primary.calls.Load())
	}
	if b := breakers(t, n)["primary/m"]; b.RateLimitedMs <= 0 || b.RateLimitedMs > 3600_000 {
		t.Fatalf("%+v", b)
	}
	_, body := getBody(t, n.URL()+"/metrics")
	if !strings.Contains(body, `moltbot_failovers_total{from="primary/m",to="fallback/m",reason="rate_limited"} 6`) {
		t.Errorf("metrics:\n%s", grep(body, "failovers"))
	}

	primary2, fallback2 := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	primary2.faults(t, `{"status":400}`)
	n2 := failoverNode(t, primary2, fallback2, "")
	s := complete(t, n2, "")
	if s.status != 400 || fallback2.calls.Load() != 0 || !strings.Contains(s.body, "scripted") && !strings.Contains(s.body, "simulated failure") {
		t.Fatalf("400: %+v, fallback asked %d times", s, fallback2.calls.Load())
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// streamText posts a streaming request and returns the concatenated content
// and whether an error event arrived.
func streamText(t *testing.T, url, body string) (text string, errEvent bool, provider string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, f := range sseFramesFrom(resp.Body) {
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Error *struct{ Message string } `json:"error"`
		}
		json.Unmarshal([]byte(f), &ch)
		if ch.Error != nil {
			errEvent = true
		}
		for _, c := range ch.Choices {
			text += c.Delta.Content
		}
	}
	return text, errEvent, resp.Header.Get("X-Moltbot-Provider")
}

// sseDeltaText is the text of an OpenAI stream: its chunks' deltas, in
// order.
func sseDeltaText(r io.Reader) string {
	var text strings.Builder
	for _, f := range sseFramesFrom(r) {
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		json.Unmarshal([]byte(f), &ch)
		for _, c := range ch.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return text.String()
}

func sseFramesFrom(r io.Reader) []string {
	b, _ := io.ReadAll(r)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "data: "); ok && v != "[DONE]" {
			out = append(out, v)
		}
	}
	return out
}

// A drop mid-stream: terminate ends the stream with an error event and
// stores what the user saw; continue has the fallback finish the text and the
// user sees one uninterrupted answer.
func TestMidStreamDrop(t *testing.T) {
	// What an undisturbed reply to "tell me" looks like.
	clean := newUpstream(t, fastSim())
	want, _, _ := streamText(t, clean.srv.URL+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"tell me"}]}`)
	if strings.Count(want, " ") < 5 {
		t.Fatalf("reference reply %q", want)
	}
	for _, mode := range []string{"terminate", "continue"} {
		t.Run(mode, func(t *testing.T) {
			primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
			primary.faults(t, `{"drop_after":3}`)
			n := failoverNode(t, primary, fallback, "  stream_failure: "+mode)
			code, body := post(t, n.URL()+"/v1/conversations", `{}`)
			var c convBody
			json.Unmarshal(body, &c)
			if code != 201 {
				t.Fatal(code)
			}
			text, errEvent, provider := streamText(t, n.URL()+"/v1/conversations/"+c.ID+"/messages", `{"content":"tell me","stream":true}`)
			got := getConv(t, n.URL(), c.ID)
			stored := got.Messages[len(got.Messages)-1]
			var raw struct {
				Messages []struct{ Incomplete bool } `json:"messages"`
			}
			_, b := getBody(t, n.URL()+"/v1/conversations/"+c.ID)
			json.Unmarshal([]byte(b), &raw)
			incomplete := raw.Messages[len(raw.Messages)-1].Incomplete
			if provider != "primary/m" {
				t.Errorf("stream began on %q", provider)
			}
			switch mode {
			case "terminate":
				if !errEvent || text != strings.Join(strings.Fields(want)[:3], " ") {
					t.Fatalf("terminate: text %q error event %v", text, errEvent)
				}
				if stored.Role != "assistant" || stored.Content != text || !incomplete || fallback.calls.Load() != 0 {
					t.Fatalf("terminate stored %+v incomplete %v", stored, incomplete)
				}
			case "continue":
				if errEvent || text != want {
					t.Fatalf("continue: got %q (error %v), want the uninterrupted %q", text, errEvent, want)
				}
				if stored.Content != want || incomplete || stored.Model != "fallback/m" || fallback.calls.Load() != 1 {
					t.Fatalf("continue stored %+v incomplete %v", stored, incomplete)
				}
			}
		})
	}
}

// Hedging: the primary is slow to start; after hedge_after the fallback is
// asked too, answers first, wins, and the primary's call is canceled. The
// first-token deadline is an hour: only the hedge can bring the fallback in
// (before: a 2 s wall-clock bound told the hedge from the deadline).
func TestHedging(t *testing.T) {
	slow := fastSim()
	slow.TTFT = time.Minute
	primary, fallback := newUpstream(t, slow), newUpstream(t, fastSim())
	n := failoverNode(t, primary, fallback, "  hedge_after: 50ms\n  threshold: {latency: 1h, error_rate: 5%}")
	text, errEvent, provider := streamText(t, n.URL()+"/v1/chat/completions", `{"stream":true,"messages":[{"role":"user","content":"race"}]}`)
	if provider != "fallback/m" || errEvent || !strings.HasPrefix(text, sim.Label) || primary.calls.Load() != 1 {
		t.Fatalf("provider %q text %q error %v primary calls %d", provider, text, errEvent, primary.calls.Load())
	}
	_, body := getBody(t, n.URL()+"/metrics")
	if !strings.Contains(body, `moltbot_failovers_total{from="primary/m",to="fallback/m",reason="hedge"} 1`) {
		t.Errorf("metrics:\n%s", grep(body, "failovers"))
	}
	// The loser's call is canceled, not left running for its minute.
	testutil.Eventually(t, 10*time.Second, "primary call canceled", func() bool {
		_, body := getBody(t, n.URL()+"/metrics")
		return primary.canceled.Load() == 1 &&
			(strings.Contains(body, `moltbot_inference_requests_total{provider="primary",model="m",outcome="canceled"} 1`) ||
				strings.Contains(body, `moltbot_inference_requests_total{provider="primary",model="m",outcome="aborted"} 1`))
	})
	// A hedge race lost is no failure of the primary.
	if b := breakers(t, n)["primary/m"]; b.Requests != 0 || b.State != "closed" {
		t.Fatalf("%+v", b)
	}
}

// /readyz fails when no model of the chain is usable.
func TestReadyzFollowsTheChain(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	n := failoverNode(t, primary, fallback, "")
	primary.srv.Close()
	if code, _ := getBody(t, n.URL()+"/readyz"); code != 200 {
		testutil.Eventually(t, 5*time.Second, "ready on the fallback", func() bool { c, _ := getBody(t, n.URL()+"/readyz"); return c == 200 })
	}
	fallback.srv.Close()
	testutil.Eventually(t, 5*time.Second, "not ready", func() bool {
		c, body := getBody(t, n.URL()+"/readyz")
		return c == 503 && strings.Contains(body, "no model of the chain is usable")
	})
	s := complete(t, n, "")
	if s.status != 502 || !strings.Contains(s.body, "primary/m") || !strings.Contains(s.body, "fallback/m") {
		t.Fatalf("all down: %+v", s)
	}
}

// A reply served by the model asked counts no failover, even when that
// model was skipped first (missing) and asked anyway because nothing else
// was left: X-Moltbot-Failovers is 0, not a "failover" to itself.
func TestFailoversHeaderNotCountedForTheModelItself(t *testing.T) {
	primary, fallback := newUpstream(t, fastSim()), newUpstream(t, fastSim())
	primary.fail(func(n int64) int {
		if n == 1 {
			return 404 // the model is missing once, then back (pulled)
		}
		return 0
	})
	n := failoverNode(t, primary, fallback, "")
	if s := complete(t, n, ""); s.status != 200 || s.provider != "fallback/m" || s.failovers != "1" {
		t.Fatalf("missing primary: %+v", s)
	}
	if b := breakers(t, n)["primary/m"]; !b.Missing {
		t.Fatalf("primary not marked missing: %+v", b)
	}
	for _, body := range []string{`{"model":"primary/m","messages":[{"role":"user","content":"hello"}]}`,
		`{"model":"primary/m","stream":true,"messages":[{"role":"user","content":"hello"}]}`} {
		if s := complete(t, n, body); s.status != 200 || s.provider != "primary/m" || s.failovers != "0" {
			t.Fatalf("%s: %+v", body, s)
		}
	}
}
