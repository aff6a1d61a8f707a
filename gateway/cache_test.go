package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// cacheServer is a node without auth whose turns go through a memory
// output cache (as cmd wires it); withCache false: no cache.
func cacheServer(t *testing.T, withCache bool) string {
	t.Helper()
	met := metrics.New("test")
	cfg := actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 6, Seed: 1}),
		MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second}}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: storage.NewMemory(), Metrics: met, HealthInterval: time.Hour}
	mcfg := manage.Config{}
	if withCache {
		oc, err := cache.New(cache.Config{Type: cache.TypeMemory, Metrics: met})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { oc.Close() })
		cfg.Around = []actors.AroundModel{cache.NewStage(oc)}
		mcfg.Cache = oc
	}
	rt, err := actors.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mcfg.Runtime = rt
	srv := httptest.NewServer(New(chat.New(rt, nil, chat.Config{Metrics: met}), manage.New(mcfg), Config{Metrics: met, Version: "test"}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	return srv.URL
}

func send(t *testing.T, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

// contentOf is a completion's text, or a stream's (its deltas joined, one
// per line).
func contentOf(t *testing.T, body string, stream bool) string {
	t.Helper()
	if !stream {
		var c struct {
			Choices []struct {
				Message struct{ Content string }
			}
		}
		if err := json.Unmarshal([]byte(body), &c); err != nil || len(c.Choices) != 1 {
			t.Fatalf("%v: %s", err, body)
		}
		return c.Choices[0].Message.Content
	}
	var pieces []string
	for _, f := range sseFrames(t, strings.NewReader(body)) {
		var c struct {
			Choices []struct {
				Delta struct{ Content string }
			}
		}
		if json.Unmarshal([]byte(f), &c) == nil && len(c.Choices) == 1 && c.Choices[0].Delta.Content != "" {
			pieces = append(pieces, c.Choices[0].Delta.Content)
		}
	}
	return strings.Join(pieces, "\n")
}

// X-Moltbot-Cache says hit or miss on chat completions, streamed or not,
// and is absent when the cache has no part; the request header and
// Cache-Control steer it.
func TestCacheHeader(t *testing.T) {
	url := cacheServer(t, true) + "/v1/chat/completions"
	text := "hi there"
	body := func(extra string) string {
		return `{"model":"moltbot","messages":[{"role":"user","content":"` + text + `"}]` + extra + `}`
	}
	for _, stream := range []bool{false, true} {
		s := `,"stream":false`
		if stream {
			// Another question: a reply stored unstreamed replays in one piece.
			s, text = `,"stream":true`, "hi there, streamed"
		}
		var first string
		for i, tc := range []struct {
			extra string
			hdr   []string
			want  string
		}{
			{`,"temperature":0`, nil, "miss"},
			{`,"temperature":0`, nil, "hit"},
			{`,"temperature":0`, []string{"X-Moltbot-Cache", "bypass"}, ""},
			{`,"temperature":0`, []string{"Cache-Control", "no-store"}, ""},
			{`,"temperature":0`, []string{"Cache-Control", "max-age=0, no-cache"}, "miss"},
			{`,"temperature":0`, nil, "hit"},
			{`,"temperature":0.7`, nil, ""},
			{`,"temperature":0.7`, []string{"X-Moltbot-Cache", "use"}, "miss"},
			{`,"temperature":0.7`, []string{"X-Moltbot-Cache", "Use"}, "hit"},
			{`,"seed":4`, nil, "miss"},
		} {
			resp, out := send(t, "POST", url, body(tc.extra+s), tc.hdr...)
			if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Cache") != tc.want {
				t.Fatalf("stream=%v %d %s %v: %d, X-Moltbot-Cache %q, want %q\n%s", stream, i, tc.extra, tc.hdr, resp.StatusCode,
					resp.Header.Get("X-Moltbot-Cache"), tc.want, out)
			}
			if i == 0 {
				first = contentOf(t, out, stream)
			}
			if i == 1 && contentOf(t, out, stream) != first {
				t.Errorf("stream=%v: the hit says %q, the miss said %q", stream, contentOf(t, out, stream), first)
			}
		}
		if stream && !strings.Contains(first, "\n") {
			t.Errorf("the stream came in one piece: %q", first)
		}
	}
	resp, out := send(t, "POST", url, body(`,"temperature":0`), "X-Moltbot-Cache", "always")
	if resp.StatusCode != 400 || !strings.Contains(out, "X-Moltbot-Cache must be use, bypass or refresh") {
		t.Errorf("a bad header: %d %s", resp.StatusCode, out)
	}
	// Without a cache the headers change nothing and none is answered.
	url = cacheServer(t, false) + "/v1/chat/completions"
	if resp, _ := send(t, "POST", url, body(`,"temperature":0`), "X-Moltbot-Cache", "always"); resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Cache") != "" {
		t.Errorf("without a cache: %d %q", resp.StatusCode, resp.Header.Get("X-Moltbot-Cache"))
	}
}

// Conversation turns carry the header too; the admin API shows the
// cache's figures and purges it.
func TestCacheConversationsAndAdmin(t *testing.T) {
	base := cacheServer(t, true)
	for i, want := range []string{"miss", "hit"} {
		resp, out := send(t, "POST", base+"/v1/conversations", `{"system":"be brief"}`)
		if resp.StatusCode != 201 {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
		var c struct{ ID string }
		json.Unmarshal([]byte(out), &c)
		resp, out = send(t, "POST", base+"/v1/conversations/"+c.ID+"/messages", `{"content":"hello","temperature":0}`)
		if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Cache") != want {
			t.Fatalf("turn %d: %d %q %s", i, resp.StatusCode, resp.Header.Get("X-Moltbot-Cache"), out)
		}
	}
	resp, out := send(t, "GET", base+"/v1/admin/cache", "")
	var st cache.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil || resp.StatusCode != 200 || st.Type != "memory" || st.Tiers[0].Hits != 1 || st.Tiers[0].Entries != 1 {
		t.Fatalf("stats %d %s", resp.StatusCode, out)
	}
	resp, out = send(t, "POST", base+"/v1/admin/cache/purge", `{"tenant":"default"}`)
	if resp.StatusCode != 200 || !strings.Contains(out, `"memory":1`) {
		t.Fatalf("purge %d %s", resp.StatusCode, out)
	}
	if resp, out := send(t, "POST", base+"/v1/admin/cache/purge", `{"tenant":"no such/"}`); resp.StatusCode != 400 {
		t.Errorf("purge of a bad tenant id: %d %s", resp.StatusCode, out)
	}
	if resp, _ := send(t, "GET", cacheServer(t, false)+"/v1/admin/cache", ""); resp.StatusCode != 404 {
		t.Errorf("stats without a cache: %d", resp.StatusCode)
	}
}

// The Ollama and Anthropic APIs go through the same cache and say so.
func TestCacheHeaderOtherAPIs(t *testing.T) {
	url := cacheServer(t, true)
	for _, c := range []struct{ path, body string }{
		{"/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"temperature":0}}`},
		{"/api/generate", `{"model":"moltbot","prompt":"hello","stream":false,"options":{"seed":7}}`},
		{"/v1/messages", `{"model":"moltbot","max_tokens":16,"temperature":0,"messages":[{"role":"user","content":"hey"}]}`},
	} {
		for _, want := range []string{"miss", "hit"} {
			resp, body := send(t, "POST", url+c.path, c.body)
			if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Cache") != want {
				t.Fatalf("%s: %d %q (want %s): %s", c.path, resp.StatusCode, resp.Header.Get("X-Moltbot-Cache"), want, body)
			}
		}
		resp, _ := send(t, "POST", url+c.path, c.body, "X-Moltbot-Cache", "bypass")
		if resp.Header.Get("X-Moltbot-Cache") != "" {
			t.Fatalf("%s: bypassed but %q", c.path, resp.Header.Get("X-Moltbot-Cache"))
		}
	}
}
