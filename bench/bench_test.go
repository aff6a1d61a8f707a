package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The open loop sends on schedule even when the server is slow: with a
// server that takes 300 ms per request and 50 req/s offered for 1 s, every
// request starts on its 20 ms slot (a closed loop of 1 would send 3), and
// the latency counts from the scheduled time. In a synctest bubble over an
// in-memory network: the clock is fake, so the slots and the latencies are
// exact whatever the machine's load.
func TestOpenLoopKeepsSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var arrivals []time.Time
		client, url := pipeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
			time.Sleep(300 * time.Millisecond)
			w.Header().Set("X-Moltbot-Provider", "slow/m")
			fmt.Fprint(w, `{"usage":{"completion_tokens":3}}`)
		}))
		begin := time.Now()
		rep, err := Run(t.Context(), Config{URL: url, Client: client, Mode: Open, Rate: 50, Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests != 50 || rep.Successes != 50 || rep.OfferedRPS != 50 {
			t.Fatalf("requests %d successes %d", rep.Requests, rep.Successes)
		}
		sortTimes(arrivals)
		for i, a := range arrivals {
			if due := begin.Add(time.Duration(i) * 20 * time.Millisecond); !a.Equal(due) {
				t.Errorf("request %d arrived %v after its slot: the slow server held the sender back", i, a.Sub(due))
			}
		}
		if rep.Latency.Min != 300 || rep.Latency.Max != 300 || rep.OutputTokens.Total != 150 || rep.Providers["slow/m"].Share != 1 {
			t.Errorf("report %+v", rep)
		}
	})
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// TTFT and ITL from a server with known gaps: 100 ms before the first token,
// then 4 tokens 40 ms apart. On synctest's fake clock over an in-memory
// network the figures are exact (before: ±25 ms of the wall clock, which
// failed under load).
func TestStreamTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, url := pipeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("X-Moltbot-Provider", "p/m")
			fl := w.(http.Flusher)
			fl.Flush()
			time.Sleep(100 * time.Millisecond)
			for i := 0; i < 5; i++ {
				if i > 0 {
					time.Sleep(40 * time.Millisecond)
				}
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
				fl.Flush()
			}
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"completion_tokens\":5}}\n\ndata: [DONE]\n\n")
		}))
		rep, err := Run(t.Context(), Config{URL: url, Client: client, Stream: true, Concurrency: 2, Requests: 6})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name      string
			got, want float64
		}{
			{"TTFT p50", rep.TTFT.P50, 100}, {"TTFT max", rep.TTFT.Max, 100},
			{"ITL p50", rep.ITL.P50, 40}, {"ITL max", rep.ITL.Max, 40},
			{"TPOT p50", rep.TPOT.P50, 40},
			{"e2e p50", rep.Latency.P50, 260}, {"e2e max", rep.Latency.Max, 260},
		} {
			if math.Abs(f.got-f.want) > 1e-3 {
				t.Errorf("%s = %v ms, want %v", f.name, f.got, f.want)
			}
		}
		if rep.ITL.N != 6*4 || rep.OutputTokens.Total != 30 {
			t.Errorf("ITL samples %d, tokens %d", rep.ITL.N, rep.OutputTokens.Total)
		}
	})
}

func TestErrorClasses(t *testing.T) {
	var n int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		switch i % 4 {
		case 0:
			w.WriteHeader(429)
		case 1:
			w.WriteHeader(500)
		case 2:
			w.WriteHeader(400)
		default:
			w.Header().Set("X-Moltbot-Failovers", "2")
			fmt.Fprint(w, `{}`)
		}
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: srv.URL, Concurrency: 1, Requests: 8, SLOE2E: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := rep.ErrorsByClass
	if rep.ErrorCount != 6 || e.Status429 != 2 || e.Status5xx != 2 || e.Status4xx != 2 || rep.Failovers != 4 || rep.FailedOver != 2 || rep.Goodput.Requests != 2 {
		t.Fatalf("%+v", rep)
	}
	srv.Close()
	rep, _ = Run(context.Background(), Config{URL: srv.URL, Concurrency: 1, Requests: 2})
	if rep.ErrorsByClass.Connection != 2 {
		t.Fatalf("closed server: %+v", rep.ErrorsByClass)
	}
}

// The conversations scenario creates N conversations and runs M turns each,
// one at a time per conversation.
func TestConversationsScenario(t *testing.T) {
	var mu sync.Mutex
	turns := map[string]int{}
	busy := map[string]bool{}
	var overlap bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/conversations" {
			mu.Lock()
			id := fmt.Sprintf("c%d", len(turns))
			turns[id] = 0
			mu.Unlock()
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"id":%q}`, id)
			return
		}
		id := strings.Split(r.URL.Path, "/")[3]
		mu.Lock()
		if busy[id] {
			overlap = true
		}
		busy[id] = true
		turns[id]++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		busy[id] = false
		mu.Unlock()
		fmt.Fprint(w, `{"usage":{"completion_tokens":1}}`)
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: srv.URL, Conversations: 5, Turns: 4, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 20 || rep.Scenario != "conversations" || overlap {
		t.Fatalf("requests %d overlap %v", rep.Requests, overlap)
	}
	for id, n := range turns {
		if n != 4 {
			t.Errorf("%s had %d turns", id, n)
		}
	}
}

func TestReportJSONAndHTML(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{}`) }))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: srv.URL, Requests: 50, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"requests", "errors", "rps", "latency_ms", "errors_by_class", "output_tokens", "timeline", "histogram", "client_cpu"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if lat := m["latency_ms"].(map[string]any); lat["p50"] == nil || lat["p99"] == nil {
		t.Errorf("latency_ms: %v", lat)
	}
	var h strings.Builder
	if err := rep.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	page := h.String()
	if !strings.Contains(page, "<svg") || strings.Contains(page, "<script") || strings.Contains(page, "src=") || strings.Contains(page, "<link") {
		t.Errorf("HTML is not self-contained or lacks charts")
	}
	if strings.Count(page, "<svg") != 3 {
		t.Errorf("%d charts", strings.Count(page, "<svg"))
	}
}

// Several URLs: the load is spread over every node.
func TestSeveralURLs(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	mk := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			if r.URL.Path == "/v1/conversations" {
				w.WriteHeader(201)
				fmt.Fprint(w, `{"id":"c1"}`)
				return
			}
			fmt.Fprint(w, `{}`)
		}))
	}
	a, b := mk("a"), mk("b")
	defer a.Close()
	defer b.Close()
	rep, err := Run(context.Background(), Config{URL: a.URL + ", " + b.URL + "/", Requests: 40, Concurrency: 4})
	if err != nil || rep.Requests != 40 {
		t.Fatal(err)
	}
	if hits["a"] != 20 || hits["b"] != 20 {
		t.Fatalf("hits %v", hits)
	}
	hits = map[string]int{}
	if _, err := Run(context.Background(), Config{URL: a.URL + "," + b.URL, Conversations: 2, Turns: 4, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	if hits["a"] < 4 || hits["b"] < 4 {
		t.Fatalf("conversations not spread: %v", hits)
	}
}
