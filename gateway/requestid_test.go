package gateway

import (
	"bytes"
	"context"
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
