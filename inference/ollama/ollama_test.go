package ollama

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
)

// line is one NDJSON line of /api/chat as Ollama writes it.
func line(content string, done bool) string {
	b, _ := json.Marshal(content)
	if done {
		return `{"model":"llama3.2","created_at":"2024-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}` + "\n"
	}
	return `{"model":"llama3.2","created_at":"2024-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":` + string(b) + `},"done":false}` + "\n"
}

type gotReq struct {
	Model    string            `json:"model"`
	Messages []json.RawMessage `json:"messages"`
	Stream   bool              `json:"stream"`
	Options  map[string]any    `json:"options"`
}

// recorded is what the fake server saw of the last /api/chat request.
type recorded struct {
	mu     sync.Mutex
	req    gotReq
	api    api.ChatRequest
	header http.Header
	query  string
	conns  int
}

func (r *recorded) get() (gotReq, api.ChatRequest, http.Header, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.req, r.api, r.header, r.query
}

// fake is an Ollama server: /api/tags, and /api/chat answering status and
// the NDJSON lines given, each written and flushed on its own.
func fake(t *testing.T, status int, lines ...string) (*httptest.Server, *recorded) {
	t.Helper()
	return fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(status)
		for _, l := range lines {
			fmt.Fprint(w, l)
			w.(http.Flusher).Flush()
		}
	})
}

// fakeWith serves /api/chat with h, after recording the request.
func fakeWith(t *testing.T, h http.HandlerFunc) (*httptest.Server, *recorded) {
	t.Helper()
	got := &recorded{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/tags":
			fmt.Fprint(w, `{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":2019393189}]}`)
			return
		case "/api/chat":
		default:
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got.mu.Lock()
		json.Unmarshal(body, &got.req)
		if err := json.Unmarshal(body, &got.api); err != nil {
			t.Errorf("request is not an api.ChatRequest: %v: %s", err, body)
		}
		got.header = r.Header.Clone()
		got.query = r.URL.RawQuery
		got.mu.Unlock()
		h(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			got.mu.Lock()
			got.conns++
			got.mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, got
}

func chat(t *testing.T, srv *httptest.Server) (string, inference.Result, error) {
	t.Helper()
	return chatCtx(t, context.Background(), srv, Config{})
}

func chatCtx(t *testing.T, ctx context.Context, srv *httptest.Server, cfg Config) (string, inference.Result, error) {
	t.Helper()
	cfg.Name, cfg.BaseURL = "local", srv.URL
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res, err := c.Chat(ctx, &inference.Request{Model: "llama3.2",
		Messages:    []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 5}}, func(d inference.Delta) error { b.WriteString(d.Text); return nil })
	return b.String(), res, err
}

func TestChat(t *testing.T) {
	srv, got := fake(t, 200, line("Hel", false), line("lo", false), line("", true))
	text, res, err := chat(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if text != "Hello" || res.Usage != (moltbot.Usage{PromptTokens: 26, CompletionTokens: 282}) || res.FinishReason != "stop" || res.Model != "llama3.2" {
		t.Errorf("text %q res %+v", text, res)
	}
	req, _, h, _ := got.get()
	if !req.Stream || req.Model != "llama3.2" || req.Options["num_predict"] != float64(5) {
		t.Errorf("request %+v", req)
	}
	if h.Get("Content-Type") != "application/json" || h.Get("Accept") != "application/x-ndjson" || !strings.HasPrefix(h.Get("User-Agent"), "ollama/") {
		t.Errorf("headers %v", h)
	}
	if h.Get("Authorization") != "" {
		t.Errorf("Authorization sent without OLLAMA_AUTH: %q", h.Get("Authorization"))
	}
}

// Every option moltbot takes reaches Ollama under Ollama's name.
func TestOptions(t *testing.T) {
	srv, got := fake(t, 200, line("", true))
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	_, err := c.Chat(context.Background(), &inference.Request{Model: "qwen3:0.6b",
		Messages:    []moltbot.Message{{Role: moltbot.RoleSystem, Content: "be brief"}, {Role: moltbot.RoleUser, Content: "hi <there>"}, {Role: moltbot.RoleAssistant, Content: "hello"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 64, Temperature: ptr(0.25), TopP: ptr(0.5), Stop: []string{"\n\n", "END"}, Seed: ptr(int64(7))}},
		func(inference.Delta) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	_, areq, _, _ := got.get()
	if areq.Model != "qwen3:0.6b" || areq.Stream == nil || !*areq.Stream || len(areq.Messages) != 3 ||
		areq.Messages[0].Role != "system" || areq.Messages[0].Content != "be brief" || areq.Messages[1].Content != "hi <there>" || areq.Messages[2].Role != "assistant" {
		t.Errorf("request %+v", areq)
	}
	o := areq.Options
	if o["num_predict"] != float64(64) || o["temperature"] != 0.25 || o["top_p"] != 0.5 || o["seed"] != float64(7) ||
		fmt.Sprint(o["stop"]) != "[\n\n END]" || len(o) != 5 {
		t.Errorf("options %v", o)
	}
}

func TestDoneReason(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"model":"m","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"prompt_eval_count":3,"eval_count":5}`, "length"},
		{`{"model":"m","message":{"role":"assistant","content":""},"done":true}`, "stop"},
	} {
		srv, _ := fake(t, 200, line("a", false), tc.line+"\n")
		_, res, err := chat(t, srv)
		if err != nil || res.FinishReason != tc.want || res.Model != "m" {
			t.Errorf("%s: %+v %v", tc.line, res, err)
		}
	}
}

// A server that ignored "stream" answers one JSON object (no newline).
func TestNotStreamed(t *testing.T) {
	srv, _ := fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"model":"llama3.2","created_at":"2024-08-04T08:52:19Z","message":{"role":"assistant","content":"Hello there, all at once."},"done_reason":"stop","done":true,"prompt_eval_count":4,"eval_count":6}`)
	})
	text, res, err := chat(t, srv)
	if err != nil || text != "Hello there, all at once." || res.Usage != (moltbot.Usage{PromptTokens: 4, CompletionTokens: 6}) {
		t.Fatalf("%q %+v %v", text, res, err)
	}
}

// The stream's framing as real servers and proxies send it: CRLF, blank
// keep-alive lines, lines split across writes, long lines.
func TestStreamFraming(t *testing.T) {
	long := strings.Repeat("long token ", 2000) // 22 KB: more than the 4 KiB reader
	srv, _ := fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		l := line("a", false)
		for _, part := range []string{l[:10], l[10:], "\r\n", strings.TrimSuffix(line("b", false), "\n") + "\r\n", "\n  \n", line(long, false), line("", true)} {
			fmt.Fprint(w, part)
			w.(http.Flusher).Flush()
		}
	})
	text, res, err := chat(t, srv)
	if err != nil || text != "ab"+long || res.FinishReason != "stop" {
		t.Fatalf("%d bytes, %+v %v", len(text), res, err)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		lines  []string
		kind   inference.Kind
		msg    string
	}{
		{"missing model", 404, []string{`{"error":"model \"llama3.2\" not found, try pulling it first"}`}, inference.KindModelNotFound, "not found"},
		{"missing model, other status", 400, []string{`{"error":"model 'x' not found"}`}, inference.KindModelNotFound, "not found"},
		{"404 without a body", 404, nil, inference.KindModelNotFound, "Not Found"},
		{"server error", 500, []string{`{"error":"llama runner process has terminated"}`}, inference.KindUnavailable, "terminated"},
		{"server error, empty body", 500, nil, inference.KindUnavailable, "HTTP 500: Internal Server Error"},
		{"server error, text body", 502, []string{"bad gateway from the proxy\n"}, inference.KindUnavailable, "bad gateway from the proxy"},
		{"busy", 503, []string{`{"error":"server busy, please try again.  maximum pending requests exceeded"}`}, inference.KindUnavailable, "server busy"},
		{"bad request", 400, []string{`{"error":"invalid options"}`}, inference.KindBadRequest, "invalid options"},
		{"unauthorized", 401, []string{`{"error":"unauthorized","signin_url":"https://ollama.com/connect"}`}, inference.KindAuth, "unauthorized"},
		{"forbidden", 403, []string{`{"error":"forbidden"}`}, inference.KindAuth, "forbidden"},
		{"rate limited", 429, []string{`{"error":"too many requests"}`}, inference.KindRateLimited, "too many requests"},
		{"stream cut", 200, []string{line("a", false)}, inference.KindStream, "ended"},
		{"empty stream", 200, nil, inference.KindStream, "ended"},
		{"error mid-stream", 200, []string{line("a", false), `{"error":"out of memory"}` + "\n"}, inference.KindStream, "out of memory"},
		{"error first", 200, []string{`{"error":"model requires more system memory (5.1 GiB) than is available (2.0 GiB)"}` + "\n"}, inference.KindStream, "more system memory"},
		{"malformed line", 200, []string{line("a", false), "not json\n"}, inference.KindStream, `malformed stream line "not json"`},
		{"wrong type", 200, []string{`{"done":"yes"}` + "\n"}, inference.KindStream, "malformed stream line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fake(t, tc.status, tc.lines...)
			_, _, err := chat(t, srv)
			e, ok := inference.AsError(err)
			if !ok || e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("err = %v (%T), want kind %v with %q", err, err, tc.kind, tc.msg)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	srv, _ := fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(429)
		fmt.Fprint(w, `{"error":"slow down"}`)
	})
	_, _, err := chat(t, srv)
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindRateLimited || e.RetryAfter != 7*time.Second {
		t.Fatalf("err = %#v", err)
	}
}

// A line over the bound ends the call with an error naming the bound, and
// the reader does not wait for the rest of the line.
func TestLineTooLong(t *testing.T) {
	srv, _ := fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, line("a", false))
		fmt.Fprint(w, `{"message":{"content":"`+strings.Repeat("x", 8000))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the rest of the line never comes
	})
	text, _, err := chatCtx(t, context.Background(), srv, Config{MaxLineBytes: 4096})
	e, ok := inference.AsError(err)
	if !ok || e.Kind != inference.KindStream || !strings.Contains(e.Message, "4096-byte bound") || text != "a" {
		t.Fatalf("text %q, err %v", text, err)
	}
}

// The caller leaving mid-stream is a cancellation (the breakers count it as
// neither success nor failure), its deadline a timeout; both end the call
// at once.
func TestCanceledMidStream(t *testing.T) {
	srv, _ := fakeWith(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, line("first", false))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	req := &inference.Request{Model: "llama3.2", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}}

	ctx, cancel := context.WithCancel(context.Background())
	var text strings.Builder
	_, err := c.Chat(ctx, req, func(d inference.Delta) error { s := d.Text; text.WriteString(s); cancel(); return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindCanceled || text.String() != "first" {
		t.Fatalf("canceled: text %q, err %v", text.String(), err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Chat(ctx, req, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindTimeout {
		t.Fatalf("deadline: err %v", err)
	}
}

// An error from the callback stops the call and comes back unchanged.
func TestCallbackError(t *testing.T) {
	srv, _ := fake(t, 200, line("a", false), line("b", false), line("", true))
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	stop := errors.New("client gone")
	n := 0
	_, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("err %v after %d calls", err, n)
	}
}

// Calls one after the other share one connection: the stream is read to
// its end after the done line.
func TestConnectionReused(t *testing.T) {
	srv, got := fake(t, 200, line("a", false), line("", true))
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	for i := 0; i < 5; i++ {
		if _, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if got.conns != 1 {
		t.Fatalf("%d connections for 5 calls", got.conns)
	}
}

// A call in flight holds kilobytes: ollama/api's client held 8 MiB each.
func TestHeapPerCallInFlight(t *testing.T) {
	if per := heapPerCallInFlight(t, 64); per > 64<<10 {
		t.Fatalf("a call in flight holds %.0f bytes of heap, want at most 64 KiB", per)
	}
}

// With OLLAMA_AUTH set (or for ollama.com) requests are signed as the
// ollama CLI signs them: the key in ~/.ollama/id_ed25519 signs
// "POST,/api/chat?ts=<unix seconds>", sent as "<public key>:<signature>".
func TestSignedRequest(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("OLLAMA_AUTH", "1")

	srv, got := fake(t, 200, line("", true))
	_, _, err := chat(t, srv)
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindAuth || !strings.Contains(e.Message, "signing the request") {
		t.Fatalf("without a key: %v", err)
	}

	key, err := os.ReadFile("testdata/id_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(home, ".ollama"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".ollama", "id_ed25519"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := chat(t, srv); err != nil {
		t.Fatal(err)
	}
	_, _, h, query := got.get()
	ts := strings.TrimPrefix(query, "ts=")
	pub, sig, ok := strings.Cut(h.Get("Authorization"), ":")
	if !ok || ts == query {
		t.Fatalf("Authorization %q, query %q", h.Get("Authorization"), query)
	}
	blob, err1 := base64.StdEncoding.DecodeString(pub)
	rawSig, err2 := base64.StdEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	// The public key in SSH wire format: string "ssh-ed25519", string key.
	var pk []byte
	if n := binary.BigEndian.Uint32(blob); int(n) == len("ssh-ed25519") && len(blob) == 4+int(n)+4+ed25519.PublicKeySize {
		pk = blob[4+n+4:]
	}
	if pk == nil || !ed25519.Verify(pk, []byte("POST,/api/chat?ts="+ts), rawSig) {
		t.Fatalf("signature does not verify for ts=%s", ts)
	}
}

func TestDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	_, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindUnavailable {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Models(context.Background()); err == nil {
		t.Fatal("Models on a closed server succeeded")
	}
}

func TestModels(t *testing.T) {
	srv, _ := fake(t, 200)
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	got, err := c.Models(context.Background())
	if err != nil || len(got) != 1 || got[0] != "llama3.2:latest" {
		t.Fatalf("%v %v", got, err)
	}
}

// A base URL with a path (Ollama behind a reverse proxy) keeps it.
func TestBasePath(t *testing.T) {
	var path string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		path = r.URL.Path
		mu.Unlock()
		fmt.Fprint(w, line("", true))
	}))
	defer srv.Close()
	c, _ := New(Config{Name: "local", BaseURL: srv.URL + "/ollama/"})
	if _, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if path != "/ollama/api/chat" {
		t.Fatalf("path %q", path)
	}
}
