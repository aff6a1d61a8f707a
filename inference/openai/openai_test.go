package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// fake answers /v1/chat/completions with the SSE frames given, flushing each.
func fake(t *testing.T, status int, header map[string]string, frames ...string) (*httptest.Server, *chatRequest) {
	t.Helper()
	var got chatRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			if r.Header.Get("Authorization") != "Bearer sk-test" {
				w.WriteHeader(401)
				fmt.Fprint(w, `{"error":{"message":"bad key","type":"invalid_request_error"}}`)
				return
			}
			fmt.Fprint(w, `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"},{"id":"gpt-4o","object":"model"}]}`)
			return
		case "/v1/chat/completions":
		default:
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decode request: %v", err)
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		w.WriteHeader(status)
		for _, f := range frames {
			fmt.Fprint(w, f)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func sseChunk(content string) string {
	b, _ := json.Marshal(content)
	return `data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":` + string(b) + `},"finish_reason":null}]}` + "\n\n"
}

const finish = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
const usage = `data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}` + "\n\n"

func run(t *testing.T, srv *httptest.Server) (string, inference.Result, error) {
	t.Helper()
	c := New(Config{Name: "cloud", BaseURL: srv.URL + "/v1", APIKey: "sk-test"})
	var text strings.Builder
	temp := 0.5
	res, err := c.Chat(context.Background(), &inference.Request{Model: "gpt-4o-mini",
		Messages:    []moltbot.Message{{Role: moltbot.RoleSystem, Content: "be brief"}, {Role: moltbot.RoleUser, Content: "hi"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 16, Temperature: &temp}},
		func(d inference.Delta) error { s := d.Text; text.WriteString(s); return nil })
	return text.String(), res, err
}

func TestChatStream(t *testing.T) {
	// Keep-alive comments, a frame split across two writes, CRLF endings,
	// finish, usage, [DONE].
	srv, got := fake(t, 200, nil,
		": keep-alive\n\n",
		sseChunk("Hel"),
		`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"con`,
		`tent":"lo"},"finish_reason":null}]}`+"\r\n\r\n",
		sseChunk(" world"),
		finish, usage, "data: [DONE]\n\n")
	text, res, err := run(t, srv)
	if err != nil {
		t.Fatal(err)
	}
	if text != "Hello world" {
		t.Errorf("text = %q", text)
	}
	if res.Usage != (moltbot.Usage{PromptTokens: 9, CompletionTokens: 3}) || res.FinishReason != "stop" || res.Model != "gpt-4o-mini" {
		t.Errorf("result = %+v", res)
	}
	if !got.Stream || got.StreamOptions == nil || !got.StreamOptions.IncludeUsage || got.MaxTokens != 16 || *got.Temperature != 0.5 || len(got.Messages) != 2 || got.Messages[0].Role != "system" {
		t.Errorf("request = %+v", got)
	}
}

func TestChatJSONFallback(t *testing.T) {
	srv, _ := fake(t, 200, map[string]string{"Content-Type": "application/json"},
		`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`)
	text, res, err := run(t, srv)
	if err != nil || text != "whole" || res.Usage.CompletionTokens != 2 {
		t.Fatalf("text %q res %+v err %v", text, res, err)
	}
}

func TestChatErrors(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		header   map[string]string
		frames   []string
		kind     inference.Kind
		msg      string
		retry    time.Duration
		failover bool
	}{
		{"rate limited", 429, map[string]string{"Retry-After": "7", "Content-Type": "application/json"},
			[]string{`{"error":{"message":"slow down","type":"rate_limit_error"}}`}, inference.KindRateLimited, "slow down", 7 * time.Second, true},
		{"model missing", 404, nil, []string{`{"error":{"message":"The model 'x' does not exist","type":"invalid_request_error","code":"model_not_found"}}`},
			inference.KindModelNotFound, "does not exist", 0, true},
		{"bad request", 400, nil, []string{`{"error":{"message":"context too long","type":"invalid_request_error"}}`}, inference.KindBadRequest, "context too long", 0, false},
		{"server error", 503, nil, []string{"upstream down"}, inference.KindUnavailable, "upstream down", 0, true},
		{"auth", 401, nil, []string{`{"error":"bad key"}`}, inference.KindAuth, "bad key", 0, true},
		{"stream cut", 200, nil, []string{sseChunk("partial")}, inference.KindStream, "ended", 0, true},
		{"error chunk", 200, nil, []string{sseChunk("a"), `data: {"error":{"message":"overloaded"}}` + "\n\n"}, inference.KindStream, "overloaded", 0, true},
		{"garbage chunk", 200, nil, []string{"data: {not json\n\n"}, inference.KindStream, "malformed", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fake(t, tc.status, tc.header, tc.frames...)
			_, _, err := run(t, srv)
			e, ok := inference.AsError(err)
			if !ok {
				t.Fatalf("err = %v (%T), want *inference.Error", err, err)
			}
			if e.Kind != tc.kind || !strings.Contains(e.Error(), tc.msg) || e.RetryAfter != tc.retry || e.Failover() != tc.failover {
				t.Errorf("err = %v kind %v retry %v failover %v; want kind %v containing %q retry %v failover %v", e, e.Kind, e.RetryAfter, e.Failover(), tc.kind, tc.msg, tc.retry, tc.failover)
			}
			if e.Provider != "cloud" {
				t.Errorf("provider = %q", e.Provider)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := New(Config{Name: "gone", BaseURL: url})
	_, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return nil })
	e, ok := inference.AsError(err)
	if !ok || e.Kind != inference.KindUnavailable || !e.Failover() {
		t.Fatalf("err = %v", err)
	}
}

func TestTimeoutAndCallbackError(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, sseChunk("a"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := New(Config{Name: "slow", BaseURL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Chat(ctx, &inference.Request{Model: "m"}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
	stop := errors.New("client left")
	_, err = c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
}

func TestModels(t *testing.T) {
	srv, _ := fake(t, 200, nil)
	got, err := New(Config{Name: "c", BaseURL: srv.URL, APIKey: "sk-test"}).Models(context.Background())
	if err != nil || strings.Join(got, ",") != "gpt-4o-mini,gpt-4o" {
		t.Fatalf("models %v err %v", got, err)
	}
	_, err = New(Config{Name: "c", BaseURL: srv.URL, APIKey: "wrong"}).Models(context.Background())
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindAuth {
		t.Fatalf("err = %v", err)
	}
}

func TestParseError(t *testing.T) {
	for in, want := range map[string]string{
		`{"error":{"message":"m1","type":"t"}}`: "m1",
		`{"error":"m2"}`:                        "m2",
		`plain text`:                            "plain text",
	} {
		if got := ParseError([]byte(in)); got != want {
			t.Errorf("ParseError(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestScanChunk(t *testing.T) {
	cases := []struct {
		in      string
		content string
		finish  string
		usage   int
		errMsg  string
	}{
		{`{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \"there\"\n\u00e9"},"finish_reason":null}]}`, "Hi \"there\"\né", "", 0, ""},
		// logprobs carry a "content" array: not the delta's content.
		{`{"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x"}]},"finish_reason":"stop"}]}`, "x", "stop", 0, ""},
		{`{"choices":[{"index":0,"logprobs":{"content":[{"token":"y"}]},"delta":{},"finish_reason":"length"}]}`, "", "length", 0, ""},
		{`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7,"total_tokens":10}}`, "", "", 7, ""},
		{`{"error":{"message":"overloaded","type":"server_error"}}`, "", "", 0, "overloaded"},
		{`{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}`, "a", "", 0, ""},
		{`{"choices":[{"delta":{"content":"emoji 🤖 \ud83e\udd16"}}]}`, "emoji 🤖 🤖", "", 0, ""},
	}
	for _, tc := range cases {
		got, err := scanChunk([]byte(tc.in), true)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		u := 0
		if got.usage != nil {
			u = got.usage.CompletionTokens
		}
		if got.content != tc.content || got.finish != tc.finish || u != tc.usage || got.errMsg != tc.errMsg {
			t.Errorf("%s: got %+v", tc.in, got)
		}
	}
	for _, bad := range []string{`{not json`, `[1,2]`, `{"choices":[{"delta":{"content":"\x"}}]}`} {
		if _, err := scanChunk([]byte(bad), true); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestAppendRequest(t *testing.T) {
	temp, topP, seed := 0.7, 0.9, int64(42)
	req := &inference.Request{Model: "gpt-<4>", Messages: []moltbot.Message{{Role: moltbot.RoleSystem, Content: "q\"uote\\ \x01 é"}, {Role: moltbot.RoleUser, Content: "hi"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 5, Temperature: &temp, TopP: &topP, Stop: []string{"\n", "END"}, Seed: &seed}}
	b := AppendRequest(nil, req)
	var got chatRequest
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got.Model != req.Model || len(got.Messages) != 2 || got.Messages[0].Content != req.Messages[0].Content || !got.Stream || !got.StreamOptions.IncludeUsage ||
		got.MaxTokens != 5 || *got.Temperature != 0.7 || *got.TopP != 0.9 || strings.Join(got.Stop, "|") != "\n|END" || *got.Seed != 42 {
		t.Errorf("%s -> %+v", b, got)
	}
	if b := AppendRequest(nil, &inference.Request{Model: "m"}); string(b) != `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}` {
		t.Errorf("minimal: %s", b)
	}
}

func BenchmarkScanChunk(b *testing.B) {
	for _, bc := range []struct{ name, data string }{
		{"token", `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"x","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}`},
		{"usage", `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":16,"total_tokens":21}}`},
	} {
		data := []byte(bc.data)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				scanChunk(data, false)
			}
		})
		b.Run(bc.name+"/shape", func(b *testing.B) {
			// The stream's next chunk: another text in the same bytes.
			var s shape
			s.scan(bytes.Replace(data, []byte(`" token"`), []byte(`" other"`), 1), false)
			b.ReportAllocs()
			for b.Loop() {
				s.scan(data, false)
			}
		})
		b.Run(bc.name+"/slow", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				scanChunkSlow(data, false)
			}
		})
	}
}

// Several API keys: a 401 or 429 on one moves to the next within the call.
func TestKeyPool(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("Authorization")
		seen = append(seen, k)
		switch k {
		case "Bearer bad":
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"message":"invalid api key"}}`)
		case "Bearer limited":
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"message":"slow down"}}`)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, sseChunk("ok")+finish+"data: [DONE]\n\n")
		}
	}))
	defer srv.Close()
	c := New(Config{Name: "cloud", BaseURL: srv.URL, Creds: inference.NewKeyPool([]string{"bad", "limited", "good"})})
	var text strings.Builder
	if _, err := c.Chat(context.Background(), &inference.Request{Model: "m"}, func(d inference.Delta) error { s := d.Text; text.WriteString(s); return nil }); err != nil || text.String() != "ok" {
		t.Fatalf("%q %v", text.String(), err)
	}
	if strings.Join(seen, ",") != "Bearer bad,Bearer limited,Bearer good" {
		t.Fatalf("keys tried: %v", seen)
	}
	seen = nil
	c.Chat(context.Background(), &inference.Request{Model: "m"}, func(inference.Delta) error { return nil })
	if strings.Join(seen, ",") != "Bearer good" {
		t.Fatalf("cooling keys were tried again: %v", seen)
	}
}

// memTransport answers every request from memory.
type memTransport struct{ body []byte }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{"Content-Type": []string{"text/event-stream"}}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: h, Body: io.NopCloser(bytes.NewReader(m.body)), Request: r, ContentLength: -1}, nil
}

// BenchmarkChat is one streamed call of 16 tokens (then the finish, usage
// and [DONE]) through the provider from an in-memory transport: the figure
// beside inference/ollama's BenchmarkChat/memory.
func BenchmarkChat(b *testing.B) {
	var body strings.Builder
	for i := 0; i < 16; i++ {
		body.WriteString(sseChunk(fmt.Sprintf(" tok%d", i)))
	}
	body.WriteString(finish + usage + "data: [DONE]\n\n")
	c := New(Config{Name: "cloud", BaseURL: "http://openai/v1", APIKey: "sk-test", HTTP: &http.Client{Transport: memTransport{[]byte(body.String())}}})
	req := &inference.Request{Model: "gpt-4o-mini",
		Messages: []moltbot.Message{
			{Role: moltbot.RoleSystem, Content: "You are a helpful assistant."},
			{Role: moltbot.RoleUser, Content: "Hello! What can you do for me today?"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 64}}
	ctx := context.Background()
	n := 0
	fn := func(inference.Delta) error { n++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		n = 0
		if _, err := c.Chat(ctx, req, fn); err != nil {
			b.Fatal(err)
		}
		if n != 16 {
			b.Fatalf("%d tokens, want 16", n)
		}
	}
}

// A call whose context is canceled with the cause
// context.DeadlineExceeded (a provider's timeout kept by a timer, as
// actors/provider keeps it) is a timeout, not a caller that left: the
// router fails over and the breaker counts a failure.
func TestTimeoutCauseIsATimeout(t *testing.T) {
	arrived := make(chan struct{}, 1)
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server sees the client leave
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer stalled.Close()
	defer stalled.CloseClientConnections()
	c := New(Config{Name: "slow", BaseURL: stalled.URL})
	for _, cause := range []error{context.DeadlineExceeded, nil} {
		ctx, cancel := context.WithCancelCause(context.Background())
		go func() {
			<-arrived // the call waits for its answer: cancel it now
			cancel(cause)
		}()
		_, err := c.Chat(ctx, &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}},
			func(inference.Delta) error { return nil })
		e, ok := inference.AsError(err)
		want := inference.KindTimeout
		if cause == nil {
			want = inference.KindCanceled
		}
		if !ok || e.Kind != want {
			t.Fatalf("cause %v: %v, want %s", cause, err, want)
		}
	}
}
