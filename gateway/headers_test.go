package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// writeLog keeps every write(2) a server made on its connections.
type writeLog struct {
	mu     sync.Mutex
	writes [][]byte
}

func (l *writeLog) add(b []byte) {
	l.mu.Lock()
	l.writes = append(l.writes, bytes.Clone(b))
	l.mu.Unlock()
}

func (l *writeLog) reset() {
	l.mu.Lock()
	l.writes = nil
	l.mu.Unlock()
}

func (l *writeLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.writes...)
}

type loggedListener struct {
	net.Listener
	log *writeLog
}

func (l loggedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loggedConn{Conn: c, log: l.log}, nil
}

type loggedConn struct {
	net.Conn
	log *writeLog
}

func (c *loggedConn) Write(b []byte) (int, error) {
	c.log.add(b)
	return c.Conn.Write(b)
}

// listed is a scripted provider that lists the model x.
type listed struct{ *scripted }

func (listed) Models(context.Context) ([]string, error) { return []string{"x"}, nil }

// TestStreamEndsInOneWrite: a streamed reply (OpenAI's SSE, Anthropic's,
// Ollama's NDJSON) is chunked, whether it was written as it came or whole
// at its end (a reply with no token), and its last event leaves in the
// same write as the chunked body's end: no flush of its own.
func TestStreamEndsInOneWrite(t *testing.T) {
	empty := listed{&scripted{chat: func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{FinishReason: "stop"}, nil // no token: the reply is written whole at its end
	}}}
	specs := []actors.ProviderSpec{
		{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}), MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
		{Name: "empty", Type: "scripted", Provider: empty, MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
	}
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: specs, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: storage.NewMemory(), Metrics: met, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var log writeLog
	srv := httptest.NewUnstartedServer(newServer(rt, nil, 2048, Config{Metrics: met, Version: "test"}))
	srv.Listener = loggedListener{Listener: srv.Listener, log: &log}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	for _, model := range []string{"sim/sim", "empty/x"} {
		for _, c := range []struct{ api, path, body, last string }{
			{"openai", "/v1/chat/completions", `{"model":"MODEL","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "data: [DONE]\n\n"},
			{"anthropic", "/v1/messages", `{"model":"MODEL","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, `{"type":"message_stop"}` + "\n\n"},
			{"ollama", "/api/chat", `{"model":"MODEL","messages":[{"role":"user","content":"hi"}]}`, "\"done\":true"},
		} {
			t.Run(c.api+"/"+model, func(t *testing.T) {
				log.reset()
				resp, err := http.Post(srv.URL+c.path, "application/json", strings.NewReader(strings.Replace(c.body, "MODEL", model, 1)))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%d %v %s", resp.StatusCode, err, body)
				}
				if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
					t.Fatalf("not chunked: %v, length %d", resp.TransferEncoding, resp.ContentLength)
				}
				if n := strings.Count(strings.Join(resp.Header.Values("Transfer-Encoding"), ","), "chunked"); n > 0 {
					t.Fatalf("Transfer-Encoding left in the headers: %v", resp.Header)
				}
				if !strings.Contains(string(body), c.last) {
					t.Fatalf("no end event %q in %s", c.last, body)
				}
				writes := log.all()
				if len(writes) == 0 {
					t.Fatal("no writes logged")
				}
				final := string(writes[len(writes)-1])
				if !strings.HasSuffix(final, "\r\n0\r\n\r\n") || !strings.Contains(final, c.last) {
					t.Fatalf("the last write is %q; want the last event and the chunked end together", final)
				}
			})
		}
	}
}

// Every chunk of a stream starts with the head encoded once: the bytes an
// encoding per chunk gives (id, object, created, model, fingerprint), in
// each event of a reply with text, a tool call and the finish.
func TestChunkWriterHeads(t *testing.T) {
	w := deadlineRecorder{httptest.NewRecorder()}
	cw := newChunkWriter(w, `chatcmpl-"q"`, 1700000000)
	served := moltbot.ModelRef{Provider: "a", Model: `m\o`}
	cw.add(moltbot.Chunk{Content: "one", Served: served})
	cw.add(moltbot.Chunk{Content: " two", Served: served})
	cw.add(moltbot.Chunk{ToolCall: &moltbot.ToolCallDelta{Index: 0, ID: "c1", Name: "f", Arguments: "{}"}, Served: served})
	cw.finish(&moltbot.Completion{Served: served, FinishReason: "tool_calls"}, true)
	cw.release()
	want := "data: " + string(openaiwire.AppendHead(nil, `chatcmpl-"q"`, openaiwire.ObjectChunk, 1700000000, served.String(), fingerprint))
	events := strings.Split(strings.TrimSuffix(w.Body.String(), "\n\n"), "\n\n")
	if len(events) != 6 || events[5] != "data: [DONE]" {
		t.Fatalf("events %q", events)
	}
	for i, ev := range events[:5] {
		if !strings.HasPrefix(ev, want) {
			t.Errorf("event %d: %q\nwant the head %q", i, ev, want)
		}
	}
	// The pooled writer's next stream has its own head.
	w2 := deadlineRecorder{httptest.NewRecorder()}
	cw = newChunkWriter(w2, "chatcmpl-2", 1700000001)
	cw.add(moltbot.Chunk{Content: "x", Served: moltbot.ModelRef{Provider: "b", Model: "n"}})
	cw.flush()
	cw.release()
	want2 := "data: " + string(openaiwire.AppendHead(nil, "chatcmpl-2", openaiwire.ObjectChunk, 1700000001, "b/n", fingerprint))
	if !strings.HasPrefix(w2.Body.String(), want2) {
		t.Fatalf("%q\nwant the head %q", w2.Body.String(), want2)
	}
}

// The chat route's direct dispatch (Server.route) answers as the mux does:
// the same status, Allow and Location, and the same Pattern, for the
// route itself and for what must still go through the mux (a path to
// clean or redirect, an escaped slash, CONNECT, another route).
func TestRouteAsTheMux(t *testing.T) {
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Type: "sim",
		Provider: sim.NewProvider("sim", sim.Options{Tokens: 2, Seed: 1}), MaxInFlight: 4, MaxQueue: 4, Timeout: 5 * time.Second}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: storage.NewMemory(), Metrics: metrics.New("test"), HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	s := newServer(rt, nil, 2048, Config{Version: "test"})
	const body = `{"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ method, target string }{
		{"POST", "/v1/chat/completions"},
		{"GET", "/v1/chat/completions"},
		{"HEAD", "/v1/chat/completions"},
		{"PUT", "/v1/chat/completions"},
		{"POST", "/v1/chat/completions/"},
		{"POST", "/v1//chat/completions"},
		{"POST", "/v1/chat/../chat/completions"},
		{"POST", "/v1/chat%2Fcompletions"},
		{"POST", "/v1/chat/completions?x=1"},
		{"CONNECT", "/v1/chat/completions"},
		{"POST", "/v1/models"},
	} {
		var got, want *httptest.ResponseRecorder
		var gotPattern, wantPattern string
		for i, serve := range []func(http.ResponseWriter, *http.Request){s.route, s.mux.ServeHTTP} {
			r := httptest.NewRequest(c.method, "http://127.0.0.1"+c.target, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			serve(w, r)
			if i == 0 {
				got, gotPattern = w, r.Pattern
			} else {
				want, wantPattern = w, r.Pattern
			}
		}
		if got.Code != want.Code || got.Header().Get("Allow") != want.Header().Get("Allow") ||
			got.Header().Get("Location") != want.Header().Get("Location") || gotPattern != wantPattern {
			t.Errorf("%s %s: route %d %q %q pattern %q; mux %d %q %q pattern %q", c.method, c.target,
				got.Code, got.Header().Get("Allow"), got.Header().Get("Location"), gotPattern,
				want.Code, want.Header().Get("Allow"), want.Header().Get("Location"), wantPattern)
		}
		if c.method == "POST" && c.target == "/v1/chat/completions" && (got.Code != 200 || gotPattern != chatPath) {
			t.Errorf("the chat route: %d %q %s", got.Code, gotPattern, got.Body)
		}
	}
}

// Over HTTP/2 (TLS) a stream's Transfer-Encoding header is not sent (h2
// has no such header; its server drops it) and the stream, written as it
// came or whole at its end, arrives whole.
func TestStreamOverHTTP2(t *testing.T) {
	empty := listed{&scripted{chat: func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{FinishReason: "stop"}, nil
	}}}
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{
		{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}), MaxInFlight: 4, MaxQueue: 4, Timeout: 5 * time.Second},
		{Name: "empty", Type: "scripted", Provider: empty, MaxInFlight: 4, MaxQueue: 4, Timeout: 5 * time.Second}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: storage.NewMemory(), Metrics: metrics.New("test"), HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(newServer(rt, nil, 2048, Config{Version: "test"}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	client := srv.Client()
	for _, model := range []string{"sim/sim", "empty/x"} {
		resp, err := client.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s: %s %d %v", model, resp.Proto, resp.StatusCode, err)
		}
		if v := resp.Header.Values("Transfer-Encoding"); len(v) != 0 || len(resp.TransferEncoding) != 0 {
			t.Fatalf("%s: Transfer-Encoding %v %v over HTTP/2", model, v, resp.TransferEncoding)
		}
		if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
			t.Fatalf("%s: %v\n%s", model, resp.Header, body)
		}
	}
}

// deadlineWriter records a response and takes read and write deadlines,
// as a connection's writer does.
type deadlineWriter struct {
	*httptest.ResponseRecorder
	reads int
}

func (w *deadlineWriter) SetReadDeadline(time.Time) error  { w.reads++; return nil }
func (w *deadlineWriter) SetWriteDeadline(time.Time) error { return nil }

// ServeHTTP gives its handler a request of its own (the id, the
// principal, the body read under the guard's deadline) and leaves the
// server's request as it came: net/http decides from its own request's
// Body whether a connection whose body a handler left unread may serve
// another request. Auth on (a key) and off.
func TestServerRequestUntouched(t *testing.T) {
	for _, authOn := range []bool{false, true} {
		store := storage.NewMemory()
		met := metrics.New("test")
		rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "sim", Type: "sim",
			Provider: sim.NewProvider("sim", sim.Options{Tokens: 2, Seed: 1}), MaxInFlight: 4, MaxQueue: 4, Timeout: 5 * time.Second}},
			Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, Metrics: met, HealthInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Shutdown(context.Background()) })
		var as *auth.Service
		key := ""
		if authOn {
			if as, err = auth.New(auth.Config{Enabled: true}, store); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(as.Close)
			if key, _, err = as.CreateKey("default", "k", auth.ScopeChat, 0); err != nil {
				t.Fatal(err)
			}
		}
		s := newServer(rt, as, 0, Config{Metrics: met, Version: "test"})
		for _, path := range []string{"/v1/chat/completions", "/v1/nowhere"} {
			r := httptest.NewRequest("POST", "http://127.0.0.1"+path, strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
			r.Header.Set("Content-Type", "application/json")
			if key != "" {
				r.Header.Set("Authorization", "Bearer "+key)
			}
			body, ctx := r.Body, r.Context()
			w := &deadlineWriter{ResponseRecorder: httptest.NewRecorder()}
			s.ServeHTTP(w, r)
			if w.reads == 0 {
				t.Fatalf("auth %v %s: no read deadline set (%d)", authOn, path, w.Code)
			}
			if r.Body != body || r.Context() != ctx || r.Pattern != "" {
				t.Errorf("auth %v %s: the server's request was changed (body %T, pattern %q)", authOn, path, r.Body, r.Pattern)
			}
			if want := map[string]int{"/v1/chat/completions": 200, "/v1/nowhere": 404}[path]; w.Code != want {
				t.Errorf("auth %v %s: %d, want %d: %s", authOn, path, w.Code, want, w.Body)
			}
		}
	}
}
