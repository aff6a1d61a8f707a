package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/logging"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every response names its request id (the client's when sane, else a new
// one), and the log lines of a failed request name it too.
func TestRequestIDs(t *testing.T) {
	down := &scripted{chat: func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "down", Message: "connection refused"}
	}}
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "down", Provider: down, MaxInFlight: 1, Timeout: time.Second}},
		Chain: []moltbot.ModelRef{{Provider: "down", Model: "m"}}, Store: storage.NewMemory(), Metrics: met, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	var logs syncBuffer
	log, _ := logging.New(&logs, "info", "json")
	srv := httptest.NewServer(newServer(rt, nil, 0, Config{Metrics: met, Logger: log, Version: "test"}))
	defer srv.Close()

	send := func(rid string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Content-Type", "application/json")
		if rid != "" {
			req.Header.Set("X-Request-Id", rid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := send("trace-abc.1")
	if resp.StatusCode != 502 || resp.Header.Get("X-Request-Id") != "trace-abc.1" {
		t.Fatalf("client id: %d %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	if !strings.Contains(logs.String(), `"request_id":"trace-abc.1"`) {
		t.Errorf("the failed request's log line does not name its id:\n%s", logs.String())
	}
	a, b := send(""), send("bad id with spaces")
	ida, idb := a.Header.Get("X-Request-Id"), b.Header.Get("X-Request-Id")
	if !strings.HasPrefix(ida, "req_") || !strings.HasPrefix(idb, "req_") || ida == idb {
		t.Errorf("new ids: %q %q", ida, idb)
	}
}

// A client's retry with the same Idempotency-Key (or external_id) gets the
// stored reply and runs no second turn.
func TestIdempotencyKey(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	_, body := do(t, "POST", e.url+"/v1/conversations", `{}`)
	var c conversationJSON
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	post := func(key, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", e.url+"/v1/conversations/"+c.ID+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	r1, b1 := post("k-1", `{"content":"hi"}`)
	r2, b2 := post("k-1", `{"content":"hi"}`)
	var t1, t2 turnResponse
	json.Unmarshal(b1, &t1)
	json.Unmarshal(b2, &t2)
	if r1.StatusCode != 200 || r2.StatusCode != 200 || t1.Message.Content != t2.Message.Content || t1.Version != t2.Version ||
		r1.Header.Get("X-Moltbot-Replayed") != "" || r2.Header.Get("X-Moltbot-Replayed") != "true" {
		t.Fatalf("retry: %d %s / %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	if r, b := post("k-1", `{"content":"hi","external_id":"other"}`); r.StatusCode != 400 || !strings.Contains(string(b), "external_id") {
		t.Errorf("differing ids: %d %s", r.StatusCode, b)
	}
	if r, b := post("", `{"content":"something else","external_id":"k-1"}`); r.StatusCode != 409 {
		t.Errorf("same id, other content: %d %s", r.StatusCode, b)
	}
	_, body = do(t, "GET", e.url+"/v1/conversations/"+c.ID, ``)
	json.Unmarshal(body, &c)
	if len(c.Messages) != 2 {
		t.Errorf("%d messages after a retried turn, want 2", len(c.Messages))
	}
}
