package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/internal/testutil"
)

// BenchmarkWebhookAccept is signed webhook events POSTed to a node (16
// clients at once, the simulator answering every turn at once, the inbox
// synced): each op is one event acknowledged (202: in the inbox, its turn
// to come); it reports the accept latency's median and p99, and waits at
// the end for every turn to be answered (turns/s). Beside it, the same
// node's /v1/chat/completions (one stateless turn each, answered in the
// response): the baseline of what a request costs there.
//
//	go test -run '^$' -bench 'WebhookAccept|ChatCompletionsBaseline' -benchtime 2000x ./cmd/moltbot/
func BenchmarkWebhookAccept(b *testing.B) {
	n := benchNode(b)
	url := n.URL() + "/channels/hooks/"
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	b.SetParallelism(8) // 16 clients on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			body := fmt.Sprintf(`{"id":"e-%d","user":"u%d","text":"where is my order %d?"}`, i, i%512, i) // within the per-pair budget
			ts := time.Now().Unix()
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set(moltbot.HeaderHookTimestamp, strconv.FormatInt(ts, 10))
			req.Header.Set(moltbot.HeaderHookSignature, moltbot.SignHook(hookSecret, ts, []byte(body)))
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != 202 {
				b.Errorf("event %d: %s", i, resp.Status)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	accepted := time.Since(start)
	// Every turn answered (the outbox delivers to no callback: a drop).
	testutil.Eventually(b, 5*time.Minute, "every turn answered", func() bool {
		st, _ := n.chans.StatusOf("hooks")
		return st.Pending == 0
	})
	b.StopTimer()
	all := time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-accept-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-accept-ms")
	}
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(b.N)/all.Seconds(), "turns/s")
}

// BenchmarkChatCompletionsBaseline: the same node, the same clients, a
// stateless chat completion each (the simulator's reply in the response).
func BenchmarkChatCompletionsBaseline(b *testing.B) {
	n := benchNode(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Post(n.URL()+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"moltbot","messages":[{"role":"user","content":"where is my order?"}]}`))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != 200 {
				b.Errorf("%s", resp.Status)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func benchNode(b *testing.B) *Node {
	b.Setenv("HOOK_SECRET", hookSecret)
	ws := filepath.Join(b.TempDir(), "ws")
	os.MkdirAll(ws, 0o700)
	path := filepath.Join(ws, "moltbot.yaml")
	os.WriteFile(path, []byte(`server: {host: 127.0.0.1, port: 0, max_connections_per_client: 256}
log: {level: warn, format: json}
providers:
  - {name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 16}}
models: {primary: sim/sim}
conversations: {max_context_tokens: 1024}
channels:
  - {name: hooks, type: webhook, secret: "${HOOK_SECRET}"}
`), 0o600)
	cfg, err := configs.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	n := &Node{Config: cfg, Workspace: ws, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := n.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}
