package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/ollama"
	"github.com/moltbot/moltbot/inference/openai"
	"github.com/ollama/ollama/api"
)

func fast() Options { return Options{Tokens: 8, Seed: 1, Models: []string{"a", "b"}} }

func msgs(s string) []moltbot.Message { return []moltbot.Message{{Role: moltbot.RoleUser, Content: s}} }

func gen(t *testing.T, e *Engine, prompt string, max int) (string, Reply) {
	t.Helper()
	var b strings.Builder
	rep, err := e.Generate(context.Background(), msgs(prompt), max, func(s string) error { b.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), rep
}

func TestEngineDeterministic(t *testing.T) {
	e := NewEngine(fast())
	a1, rep := gen(t, e, "hello", 0)
	a2, _ := gen(t, NewEngine(fast()), "hello", 0)
	b1, _ := gen(t, e, "other prompt", 0)
	if a1 != a2 {
		t.Errorf("same seed and prompt differ: %q vs %q", a1, a2)
	}
	if a1 == b1 {
		t.Errorf("different prompts gave the same text %q", a1)
	}
	if !strings.HasPrefix(a1, Label) || !strings.HasSuffix(a1, ".") {
		t.Errorf("text %q is not labelled or not ended", a1)
	}
	if rep.Usage.CompletionTokens != 8 || rep.FinishReason != "stop" || rep.Usage.PromptTokens == 0 {
		t.Errorf("reply %+v", rep)
	}
	o := fast()
	o.Seed = 2
	if c, _ := gen(t, NewEngine(o), "hello", 0); c == a1 {
		t.Errorf("different seeds gave the same text")
	}
	_, rep = gen(t, e, "hello", 3)
	if rep.Usage.CompletionTokens != 3 || rep.FinishReason != "length" {
		t.Errorf("capped reply %+v", rep)
	}
}

func TestEngineErrorRate(t *testing.T) {
	o := fast()
	o.ErrorRate = 0.3
	e := NewEngine(o)
	fails := 0
	for i := 0; i < 10000; i++ {
		if f, status, _ := e.Fail(); f {
			fails++
			if status != 500 {
				t.Fatalf("status %d", status)
			}
		}
	}
	if fails < 2700 || fails > 3300 {
		t.Errorf("%d failures in 10000 at rate 0.3", fails)
	}
	if f, _, _ := NewEngine(fast()).Fail(); f {
		t.Error("failure at rate 0")
	}
	o = fast()
	o.Status = 429
	if f, status, _ := NewEngine(o).Fail(); !f || status != 429 {
		t.Error("status alone must fail every request")
	}
}

func TestEngineCancel(t *testing.T) {
	o := fast()
	o.TTFT = 1e12 // never
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewEngine(o).Generate(ctx, msgs("x"), 0, func(string) error { return nil }); err == nil {
		t.Fatal("canceled generation succeeded")
	}
}

func server(t *testing.T, o Options) *httptest.Server {
	srv := httptest.NewServer(NewServer(o))
	t.Cleanup(srv.Close)
	return srv
}

// The Ollama API, through Ollama's own client: streaming and not.
func TestOllamaAPI(t *testing.T) {
	srv := server(t, fast())
	u, _ := url.Parse(srv.URL)
	c := api.NewClient(u, http.DefaultClient)
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	for _, stream := range []bool{true, false} {
		var b strings.Builder
		var last api.ChatResponse
		n := 0
		err := c.Chat(context.Background(), &api.ChatRequest{Model: "anything-at-all", Stream: &stream,
			Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(r api.ChatResponse) error {
			b.WriteString(r.Message.Content)
			last = r
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != want || !last.Done || last.DoneReason != "stop" || last.EvalCount != 8 || last.Model != "anything-at-all" {
			t.Errorf("stream=%v: text %q last %+v", stream, b.String(), last)
		}
		if stream && n != 9 || !stream && n != 1 {
			t.Errorf("stream=%v: %d lines", stream, n)
		}
	}
	tags, err := c.List(context.Background())
	if err != nil || len(tags.Models) != 2 || tags.Models[0].Name != "a:latest" {
		t.Errorf("tags %+v %v", tags, err)
	}
	if v, err := c.Version(context.Background()); err != nil || v != ServerVersion {
		t.Errorf("version %q %v", v, err)
	}
	// And through moltbot's own provider.
	p, _ := ollama.New(ollama.Config{Name: "local", BaseURL: srv.URL})
	var b strings.Builder
	res, err := p.Chat(context.Background(), &inference.Request{Model: "x", Messages: msgs("hi")}, func(d inference.Delta) error { s := d.Text; b.WriteString(s); return nil })
	if err != nil || b.String() != want || res.Usage.CompletionTokens != 8 {
		t.Errorf("provider: %q %+v %v", b.String(), res, err)
	}
}

func TestOpenAIAPI(t *testing.T) {
	srv := server(t, fast())
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	p := openai.New(openai.Config{Name: "sim", BaseURL: srv.URL + "/v1"})
	var b strings.Builder
	res, err := p.Chat(context.Background(), &inference.Request{Model: "gpt-x", Messages: msgs("hi")}, func(d inference.Delta) error { s := d.Text; b.WriteString(s); return nil })
	if err != nil || b.String() != want || res.Usage.CompletionTokens != 8 || res.FinishReason != "stop" || res.Model != "gpt-x" {
		t.Fatalf("stream: %q %+v %v", b.String(), res, err)
	}
	models, err := p.Models(context.Background())
	if err != nil || strings.Join(models, ",") != "a,b" {
		t.Errorf("models %v %v", models, err)
	}

	// Raw wire: SSE frames end with [DONE], the usage chunk has empty choices.
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("X-Moltbot-Simulated") != "true" {
		t.Errorf("headers %v", resp.Header)
	}
	var frames []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			frames = append(frames, l)
		}
	}
	if len(frames) != 11 || frames[10] != "data: [DONE]" {
		t.Fatalf("frames %d: %q", len(frames), frames)
	}
	var usage struct {
		Choices []any `json:"choices"`
		Usage   struct {
			Total int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(frames[9], "data: ")), &usage); err != nil || len(usage.Choices) != 0 || usage.Usage.Total == 0 {
		t.Errorf("usage frame %q: %v", frames[9], err)
	}
	for _, f := range frames[:9] {
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(f, "data: ")), &v); err != nil {
			t.Errorf("frame %q: %v", f, err)
		}
	}

	// Non-streaming JSON.
	resp2, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var comp struct {
		Object  string `json:"object"`
		Choices []struct {
			Message      moltbot.Message `json:"message"`
			FinishReason string          `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp2.Body).Decode(&comp); err != nil || comp.Object != "chat.completion" || comp.Choices[0].FinishReason != "length" || !strings.HasPrefix(comp.Choices[0].Message.Content, Label) {
		t.Errorf("completion %+v %v", comp, err)
	}
}

func TestServerErrors(t *testing.T) {
	o := fast()
	o.ErrorRate = 1
	srv := server(t, o)
	p := openai.New(openai.Config{Name: "sim", BaseURL: srv.URL})
	_, err := p.Chat(context.Background(), &inference.Request{Model: "m", Messages: msgs("x")}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Status != 500 || e.Kind != inference.KindUnavailable {
		t.Errorf("openai err %v", err)
	}
	q, _ := ollama.New(ollama.Config{Name: "sim", BaseURL: srv.URL})
	_, err = q.Chat(context.Background(), &inference.Request{Model: "m", Messages: msgs("x")}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Status != 500 {
		t.Errorf("ollama err %v", err)
	}
	for _, body := range []string{`{`, `{"messages":[]}`, `[]`} {
		for _, path := range []string{"/api/chat", "/v1/chat/completions"} {
			resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("%s %s: status %d", path, body, resp.StatusCode)
			}
		}
	}
}

func TestProvider(t *testing.T) {
	p := NewProvider("sim", fast())
	var b strings.Builder
	res, err := p.Chat(context.Background(), &inference.Request{Model: "sim", Messages: msgs("hi")}, func(d inference.Delta) error { s := d.Text; b.WriteString(s); return nil })
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	if err != nil || b.String() != want || res.Usage.CompletionTokens != 8 {
		t.Fatalf("%q %+v %v", b.String(), res, err)
	}
}

func BenchmarkServerOpenAIStream(b *testing.B) {
	s := NewServer(Options{Tokens: 32, Seed: 1})
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hello there"}]}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
	}
}

func TestContinuation(t *testing.T) {
	e := NewEngine(fast())
	whole, _ := gen(t, e, "hello", 0)
	// Cut the reply after a few tokens and ask for the rest with the prefix.
	var parts []string
	e.Generate(context.Background(), msgs("hello"), 0, func(s string) error { parts = append(parts, s); return nil })
	prefix := strings.Join(parts[:3], "")
	var rest strings.Builder
	rep, err := e.Generate(context.Background(), append(msgs("hello"), moltbot.Message{Role: moltbot.RoleAssistant, Content: prefix}), 0,
		func(s string) error { rest.WriteString(s); return nil })
	if err != nil || prefix+rest.String() != whole || rep.Usage.CompletionTokens != 5 {
		t.Fatalf("continuation %q + %q != %q (%+v %v)", prefix, rest.String(), whole, rep, err)
	}
}

func TestFaultsOverHTTP(t *testing.T) {
	srv := server(t, fast())
	p := openai.New(openai.Config{Name: "sim", BaseURL: srv.URL})
	chat := func() (string, error) {
		var b strings.Builder
		_, err := p.Chat(context.Background(), &inference.Request{Model: "m", Messages: msgs("x")}, func(d inference.Delta) error { s := d.Text; b.WriteString(s); return nil })
		return b.String(), err
	}
	post := func(body string) (int, string) {
		resp, err := http.Post(srv.URL+"/sim/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"status":429,"retry_after":"5s"}`); code != 200 || !strings.Contains(body, `"status":429`) {
		t.Fatalf("%d %s", code, body)
	}
	_, err := chat()
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindRateLimited || e.RetryAfter != 5*time.Second {
		t.Fatalf("429: %v", err)
	}
	// Ollama's endpoint fails the same way.
	q, _ := ollama.New(ollama.Config{Name: "sim", BaseURL: srv.URL})
	if _, err := q.Chat(context.Background(), &inference.Request{Model: "m", Messages: msgs("x")}, func(inference.Delta) error { return nil }); err == nil {
		t.Fatal("ollama endpoint ignored the fault")
	}
	// Heal, then drop after 2 tokens: the client sees a broken stream.
	req, _ := http.NewRequest("DELETE", srv.URL+"/sim/faults", nil)
	http.DefaultClient.Do(req)
	if _, err := chat(); err != nil {
		t.Fatalf("healed: %v", err)
	}
	post(`{"drop_after":2}`)
	text, err := chat()
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindStream || strings.Count(text, " ")+1 != 2 {
		t.Fatalf("drop: %q %v", text, err)
	}
	// Stall after 1 token: the client's deadline ends it.
	post(`{"drop_after":0,"stall_after":1}`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = p.Chat(ctx, &inference.Request{Model: "m", Messages: msgs("x")}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindTimeout {
		t.Fatalf("stall: %v", err)
	}
	for _, bad := range []string{`{"error_rate":2}`, `{"status":200}`, `{"latency":"soon"}`, `{"nope":1}`, `{"stall_after":-1}`} {
		if code, _ := post(bad); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
	resp, _ := http.Get(srv.URL + "/sim/faults")
	var v faultsView
	json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if v.StallAfter != 1 || v.Tokens != 8 {
		t.Errorf("faults view %+v", v)
	}
}

// The registered type: no options are DefaultProviderOptions, options of
// another type are refused, the Spec's models are listed.
func TestRegisteredType(t *testing.T) {
	p, err := inference.NewProvider(TypeName, inference.Spec{Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	o, d := p.(*Provider).Engine.Options(), DefaultProviderOptions()
	if o.TTFT != d.TTFT || o.ITL != d.ITL || o.Tokens != d.Tokens || o.Seed != d.Seed || o.Models[0] != "sim" {
		t.Errorf("no options: %+v", o)
	}
	if _, err := inference.NewProvider(TypeName, inference.Spec{Name: "s", Options: 3}); err == nil {
		t.Error("options of another type accepted")
	}
	p, _ = inference.NewProvider(TypeName, inference.Spec{Name: "s", Models: []string{"x"}, Options: Options{Tokens: 2}})
	if ms, _ := p.Models(context.Background()); len(ms) != 1 || ms[0] != "x" {
		t.Errorf("models %v", ms)
	}
}

// The simulator reads OpenAI requests with openaiwire: the text of every
// part counts, an image part must be a data: URL of an image (or a link),
// and a field of the wrong shape is a 400 naming it.
func TestOpenAIRequestShapes(t *testing.T) {
	srv := server(t, fast())
	for body, status := range map[string]int{
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"text","text":"hi"}]}]}`: 200,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"hi"}]}]}`:                                  400,
		`{"model":"m","messages":[{"role":"user","content":5}]}`:                   400,
		`{"model":"m","stop":{"x":1},"messages":[{"role":"user","content":"hi"}]}`: 400,
	} {
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status || status == 400 && !strings.Contains(string(b), `"type":"invalid_request_error"`) {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
}
