package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// ollamaEnv is a node with the simulator (sim/sim, the chain's first) and
// a scripted provider (tool/m, second), served over loopback, and
// ollama/api's own client pointed at it.
type ollamaEnv struct {
	url    string
	srv    *Server
	client *api.Client
	mu     sync.Mutex
	last   *inference.Request // what the scripted provider was asked last
	script func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error)
}

func ollamaSetup(t testing.TB, tweaks ...func(*chat.Config)) *ollamaEnv {
	t.Helper()
	e := &ollamaEnv{}
	tool := &scripted{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		e.mu.Lock()
		cp := *req
		e.last = &cp
		script := e.script
		e.mu.Unlock()
		if script == nil {
			if err := fn(inference.Delta{Text: "ok"}); err != nil {
				return inference.Result{}, err
			}
			return inference.Result{Usage: moltbot.Usage{PromptTokens: 3, CompletionTokens: 1}, FinishReason: "stop"}, nil
		}
		return script(ctx, req, fn)
	}}
	specs := []actors.ProviderSpec{
		{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}), MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
		// The provider lists its chain model as Ollama does, "m:latest":
		// /api/tags still shows it once.
		{Name: "tool", Provider: tool, MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second, Models: []string{"m:latest"}},
		{Name: "emb", Provider: &embedder{dims: 4}, MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second},
	}
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: specs, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}, {Provider: "tool", Model: "m"}},
		Embeddings: actors.EmbedChain{Models: []moltbot.ModelRef{{Provider: "emb", Model: "m"}}},
		Store:      storage.NewMemory(), Metrics: met, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cc := chat.Config{MaxMessageBytes: 1 << 20, Metrics: met, Embedder: actors.EmbeddingsOf(rt)}
	for _, f := range tweaks {
		f(&cc)
	}
	c := chat.New(rt, nil, cc)
	e.srv = New(c, manage.New(manage.Config{Runtime: rt}), Config{MaxBodyBytes: 1 << 20, Metrics: met, Version: "test"})
	hs := httptest.NewServer(e.srv)
	t.Cleanup(func() {
		hs.Close()
		rt.Shutdown(context.Background())
	})
	e.url = hs.URL
	u, _ := url.Parse(hs.URL)
	e.client = api.NewClient(u, hs.Client())
	return e
}

func (e *ollamaEnv) asked() *inference.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

func (e *ollamaEnv) setScript(f func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error)) {
	e.mu.Lock()
	e.script = f
	e.mu.Unlock()
}

func ptr[T any](v T) *T { return &v }

// statusOf is the HTTP status of an ollama/api client's error.
func statusOf(err error) (int, string) {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.StatusCode, se.ErrorMessage
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return ae.StatusCode, ae.Status
	}
	return 0, ""
}

func TestOllamaChatThroughAPIClient(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	for _, name := range []string{"moltbot", "moltbot:latest", "sim/sim", "sim/sim:latest", "sim"} {
		var parts []api.ChatResponse
		err := e.client.Chat(ctx, &api.ChatRequest{Model: name, Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(r api.ChatResponse) error {
			parts = append(parts, r)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var text strings.Builder
		for _, p := range parts[:len(parts)-1] {
			if p.Done || p.Model != name || p.Message.Role != "assistant" || p.CreatedAt.IsZero() {
				t.Errorf("%s: chunk %+v", name, p)
			}
			text.WriteString(p.Message.Content)
		}
		last := parts[len(parts)-1]
		if !strings.HasPrefix(text.String(), sim.Label) || len(parts) < 3 {
			t.Errorf("%s: text %q in %d lines", name, text.String(), len(parts))
		}
		if !last.Done || last.DoneReason != "stop" && last.DoneReason != "length" || last.Message.Content != "" || last.Model != name ||
			last.EvalCount != 4 || last.PromptEvalCount == 0 || last.TotalDuration <= 0 || last.LoadDuration <= 0 ||
			last.EvalDuration <= 0 || last.TotalDuration < last.LoadDuration+last.PromptEvalDuration {
			t.Errorf("%s: last line %+v", name, last)
		}
	}
	// "stream": false is one object with the whole reply.
	var n int
	var res api.ChatResponse
	err := e.client.Chat(ctx, &api.ChatRequest{Model: "sim/sim", Stream: ptr(false), Messages: []api.Message{{Role: "system", Content: "be brief"},
		{Role: "user", Content: "hi"}}, Options: map[string]any{"num_predict": 2}}, func(r api.ChatResponse) error {
		n++
		res = r
		return nil
	})
	if err != nil || n != 1 || !res.Done || res.DoneReason != "length" || !strings.HasPrefix(res.Message.Content, sim.Label) || res.EvalCount != 2 {
		t.Fatalf("%v: %d objects, %+v", err, n, res)
	}
}

func TestOllamaGenerateThroughAPIClient(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	var parts []api.GenerateResponse
	err := e.client.Generate(ctx, &api.GenerateRequest{Model: "tool/m", Prompt: "hi", System: "sys"}, func(r api.GenerateResponse) error {
		parts = append(parts, r)
		return nil
	})
	if err != nil || len(parts) != 2 || parts[0].Response != "ok" || parts[0].Done || !parts[1].Done || parts[1].DoneReason != "stop" ||
		parts[1].PromptEvalCount != 3 || parts[1].EvalCount != 1 || parts[1].Model != "tool/m" {
		t.Fatalf("%v %+v", err, parts)
	}
	// A one-message chat, the system prompt before it.
	req := e.asked()
	if len(req.Messages) != 2 || req.Messages[0].Role != moltbot.RoleSystem || req.Messages[0].Content != "sys" || req.Messages[1].Content != "hi" {
		t.Errorf("asked %+v", req.Messages)
	}
	parts = nil
	err = e.client.Generate(ctx, &api.GenerateRequest{Model: "sim", Prompt: "hi", Stream: ptr(false)}, func(r api.GenerateResponse) error {
		parts = append(parts, r)
		return nil
	})
	if err != nil || len(parts) != 1 || !strings.HasPrefix(parts[0].Response, sim.Label) || !parts[0].Done || parts[0].EvalCount != 4 {
		t.Fatalf("%v %+v", err, parts)
	}
}

// The raw lines: NDJSON with Ollama's content types, every line decoding
// into api's types with nothing left over.
func TestOllamaWireShape(t *testing.T) {
	e := ollamaSetup(t)
	resp, err := http.Post(e.url+"/api/chat", "application/json", strings.NewReader(`{"model":"sim/sim","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	sc := bufio.NewScanner(resp.Body)
	lines := 0
	for sc.Scan() {
		lines++
		var generic map[string]any
		if err := json.Unmarshal(sc.Bytes(), &generic); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		var typed api.ChatResponse
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&typed); err != nil {
			t.Errorf("line %q has a field api.ChatResponse lacks: %v", sc.Text(), err)
		}
		// created_at is RFC 3339 with nanoseconds, in UTC.
		if ts, _ := generic["created_at"].(string); !strings.HasSuffix(ts, "Z") {
			t.Errorf("created_at %q", ts)
		}
		if generic["done"] == true {
			for _, k := range []string{"done_reason", "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"} {
				if _, ok := generic[k]; !ok {
					t.Errorf("the done line lacks %s: %s", k, sc.Text())
				}
			}
		}
	}
	if lines < 3 {
		t.Fatalf("%d lines", lines)
	}
	// Not streamed: one JSON object.
	resp2, body := do(t, "POST", e.url+"/api/generate", `{"model":"sim/sim","prompt":"hi","stream":false}`)
	if ct := resp2.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" || bytes.Count(body, []byte("\n")) != 1 {
		t.Fatalf("%s %q", ct, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var g api.GenerateResponse
	if err := dec.Decode(&g); err != nil || !g.Done {
		t.Fatalf("%v %s", err, body)
	}
}

func TestOllamaModels(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	list, err := e.client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Models {
		names = append(names, m.Name)
		if m.Model != m.Name || len(m.Digest) != 64 || m.ModifiedAt.IsZero() {
			t.Errorf("%+v", m)
		}
	}
	if strings.Join(names, ",") != "moltbot:latest,sim/sim:latest,tool/m:latest,emb/m:latest" {
		t.Errorf("tags %v", names)
	}
	// Show: capabilities as the router presumes them when none are known.
	for _, req := range []api.ShowRequest{{Model: "moltbot"}, {Name: "sim/sim:latest"}, {Model: "m"}} {
		show, err := e.client.Show(ctx, &req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		if !slices.Equal(show.Capabilities, []model.Capability{model.CapabilityCompletion, model.CapabilityTools, model.CapabilityVision}) ||
			show.ModelInfo["general.architecture"] != "moltbot" || show.ModifiedAt.IsZero() || !strings.Contains(show.Modelfile, "FROM ") ||
			show.RemoteHost != "" {
			t.Errorf("%+v: %+v", req, show)
		}
	}
	if _, err := e.client.Show(ctx, &api.ShowRequest{Model: "nope"}); !isStatus(err, 404, "model 'nope' not found") {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := e.client.Show(ctx, &api.ShowRequest{}); !isStatus(err, 400, "model is required") {
		t.Errorf("no model: %v", err)
	}
	// ps: nothing before a call, the model that served after.
	ps, err := e.client.ListRunning(ctx)
	if err != nil || len(ps.Models) != 0 {
		t.Fatalf("%v %+v", err, ps)
	}
	e.client.Generate(ctx, &api.GenerateRequest{Model: "moltbot", Prompt: "hi"}, func(api.GenerateResponse) error { return nil })
	ps, err = e.client.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != "sim/sim:latest" || !ps.Models[0].ExpiresAt.After(time.Now()) {
		t.Fatalf("%v %+v", err, ps)
	}
	// The probes.
	if err := e.client.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := e.client.Version(ctx); err != nil || v != ollamaAPIVersion {
		t.Fatalf("%q %v", v, err)
	}
	resp, body := do(t, "GET", e.url+"/", "")
	if resp.StatusCode != 200 || string(body) != "Ollama is running" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// isStatus reports whether err is an ollama/api error with status code and
// a message that contains msg.
func isStatus(err error, code int, msg string) bool {
	c, m := statusOf(err)
	return c == code && strings.Contains(m, msg)
}

func TestOllamaLoadAndUnload(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	var got []string
	fn := func(r api.ChatResponse) error {
		if !r.Done || r.Message.Role != "assistant" {
			t.Errorf("%+v", r)
		}
		got = append(got, r.DoneReason)
		return nil
	}
	e.client.Chat(ctx, &api.ChatRequest{Model: "sim/sim"}, fn)
	e.client.Chat(ctx, &api.ChatRequest{Model: "sim/sim", KeepAlive: &api.Duration{}}, fn)
	e.client.Generate(ctx, &api.GenerateRequest{Model: "moltbot", KeepAlive: &api.Duration{Duration: time.Hour}}, func(r api.GenerateResponse) error {
		got = append(got, r.DoneReason)
		return nil
	})
	if strings.Join(got, ",") != "load,unload,load" || e.asked() != nil {
		t.Fatalf("%v (the model was asked: %v)", got, e.asked() != nil)
	}
	err := e.client.Generate(ctx, &api.GenerateRequest{Model: "nope"}, func(api.GenerateResponse) error { return nil })
	if !isStatus(err, 404, "model 'nope' not found") {
		t.Fatal(err)
	}
}

func TestOllamaErrors(t *testing.T) {
	e := ollamaSetup(t)
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/api/chat", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model is required"},
		{"POST", "/api/chat", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, `model "nope" not found`},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"options":{"top_k":40}}`, 400, "options.top_k is not supported"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"options":{"temperature":"hot"}}`, 400, "options.temperature must be a number"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"options":{"temperature":3}}`, 400, "temperature must be between 0 and 2"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"think":true}`, 400, `"moltbot" does not support thinking`},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi"}],"format":"xml"}`, 400, "invalid format"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"robot","content":"hi"}]}`, 400, "messages[0].role"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi","images":["%%%"]}]}`, 400, "messages[0].images[0]: not base64"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"user","content":"hi","images":["aGVsbG8="]}]}`, 400, "not a PNG, JPEG, GIF or WebP"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":[{"role":"tool","content":"42"}]}`, 400, "messages[0]: a tool message answers a tool call"},
		{"POST", "/api/chat", `{"model":"moltbot","messages":"hi"}`, 400, "messages"},
		{"POST", "/api/chat", `{"model":"moltbot","keep_alive":"soon","messages":[]}`, 400, "keep_alive"},
		{"POST", "/api/chat", `{"model":"moltbot",`, 400, "malformed JSON"},
		{"POST", "/api/chat", ``, 400, "empty"},
		{"POST", "/api/generate", `{"model":"moltbot","prompt":"hi","raw":true}`, 400, "raw is not supported"},
		{"POST", "/api/generate", `{"model":"moltbot","prompt":"hi","suffix":"x"}`, 400, "suffix is not supported"},
		{"POST", "/api/generate", `{"model":"moltbot","prompt":"hi","context":[1,2]}`, 400, "context is not supported"},
		{"POST", "/api/generate", `{"model":"moltbot","prompt":"hi","truncate":true}`, 400, "truncate"},
		{"GET", "/api/chat", ``, 405, "use POST"},
		{"POST", "/api/tags", `{}`, 405, "use GET"},
		{"POST", "/api/pull", `{"model":"llama3.2"}`, 404, "does not manage model files"},
		{"POST", "/api/nothing", `{}`, 404, "no route"},
		{"POST", "/api/embed", `{"model":"nope","input":"hi"}`, 404, "nope"},
		{"POST", "/api/embed", `{"model":"moltbot","input":["a",""]}`, 400, "input[1]"},
		{"POST", "/api/embed", `{"model":"moltbot","input":"a","truncate":true}`, 400, "truncate"},
	} {
		resp, body := do(t, tc.method, e.url+tc.path, tc.body)
		var eb struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &eb); err != nil || resp.StatusCode != tc.code || !strings.Contains(eb.Error, tc.msg) ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s %s: %d %s, want %d %q", tc.method, tc.path, tc.body, resp.StatusCode, body, tc.code, tc.msg)
		}
	}
	// Options Ollama itself does not know are ignored, as Ollama ignores
	// them; those of how it loads a model are the providers' business.
	resp, body := do(t, "POST", e.url+"/api/chat", `{"model":"tool/m","stream":false,"keep_alive":-1,"think":false,"truncate":false,
		"messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":8192,"use_mmap":true,"mirostat":1,"seed":null}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestOllamaOptionsReachTheModel(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	fn := func(api.ChatResponse) error { return nil }
	err := e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "hi"}}, Format: json.RawMessage(`"json"`),
		Options: map[string]any{"temperature": 0.5, "top_p": 0.9, "seed": 7, "num_predict": 12, "stop": []string{"\n\n", "END"},
			"presence_penalty": 0.1, "frequency_penalty": -0.2}}, fn)
	if err != nil {
		t.Fatal(err)
	}
	o := e.asked().ChatOptions
	if *o.Temperature != 0.5 || *o.TopP != 0.9 || *o.Seed != 7 || o.MaxTokens != 12 || strings.Join(o.Stop, "|") != "\n\n|END" ||
		*o.PresencePenalty != 0.1 || *o.FrequencyPenalty != -0.2 || o.ResponseFormat.Type != moltbot.FormatJSONObject {
		t.Errorf("%+v", o)
	}
	// Ollama's defaults: seed -1 (random) and num_predict -1 (no limit)
	// are none; a schema is a json_schema format, kept as it was sent.
	schema := `{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"],"additionalProperties":false}`
	err = e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "hi"}}, Format: json.RawMessage(schema),
		Options: map[string]any{"seed": -1, "num_predict": -1}}, fn)
	if err != nil {
		t.Fatal(err)
	}
	o = e.asked().ChatOptions
	if o.Seed != nil || o.MaxTokens != 0 || o.ResponseFormat.Type != moltbot.FormatJSONSchema || string(o.ResponseFormat.Schema) != schema {
		t.Errorf("%+v %s", o, o.ResponseFormat.Schema)
	}
}

// pngBytes is the start of a PNG: what its type is told by.
var pngBytes = append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 32)...)

func TestOllamaImages(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	err := e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "what is this?", Images: []api.ImageData{pngBytes}}}},
		func(api.ChatResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	m := e.asked().Messages[0]
	if m.Content != "what is this?" || len(m.Parts) != 2 || m.Parts[0].Text != "what is this?" || m.Parts[1].Type != moltbot.PartImage ||
		m.Parts[1].MIME != "image/png" || !bytes.Equal(m.Parts[1].Data, pngBytes) {
		t.Errorf("%+v", m)
	}
	err = e.client.Generate(ctx, &api.GenerateRequest{Model: "tool/m", Prompt: "and this?", Images: []api.ImageData{pngBytes}},
		func(api.GenerateResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if m := e.asked().Messages[0]; len(m.Parts) != 2 || m.Parts[1].MIME != "image/png" || m.Content != "and this?" {
		t.Errorf("%+v", m)
	}
}

// An image is held to conversations.max_image_bytes, as on /v1.
func TestOllamaImageTooLarge(t *testing.T) {
	e := ollamaSetup(t, func(c *chat.Config) { c.MaxImageBytes = 16 })
	err := e.client.Chat(context.Background(), &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "what is this?", Images: []api.ImageData{pngBytes}}}},
		func(api.ChatResponse) error { return nil })
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(se.ErrorMessage, "conversations.max_image_bytes") {
		t.Fatalf("%#v", err)
	}
}

func TestOllamaToolCalls(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	// The model calls two tools, its arguments in pieces (as OpenAI
	// streams them): Ollama's client gets each call whole.
	e.setScript(func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		for _, d := range []moltbot.ToolCallDelta{{Index: 0, ID: "call_a", Name: "get_weather", Arguments: `{"city":`}, {Index: 0, Arguments: `"Paris"}`},
			{Index: 1, ID: "call_b", Name: "get_time", Arguments: `{}`}} {
			if err := fn(inference.Delta{ToolCall: &d}); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{FinishReason: "tool_calls", Usage: moltbot.Usage{PromptTokens: 9, CompletionTokens: 5}}, nil
	})
	props := api.NewToolPropertiesMap()
	props.Set("city", api.ToolProperty{Type: api.PropertyType{"string"}, Description: "the city"})
	tools := api.Tools{{Type: "function", Function: api.ToolFunction{Name: "get_weather", Description: "weather now",
		Parameters: api.ToolFunctionParameters{Type: "object", Required: []string{"city"}, Properties: props}}},
		{Type: "function", Function: api.ToolFunction{Name: "get_time"}}}
	for _, stream := range []bool{true, false} {
		var calls []api.ToolCall
		var last api.ChatResponse
		err := e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Stream: &stream, Tools: tools, Messages: []api.Message{{Role: "user", Content: "weather?"}}},
			func(r api.ChatResponse) error {
				calls = append(calls, r.Message.ToolCalls...)
				last = r
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 2 || calls[0].ID != "call_a" || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments.String() != `{"city":"Paris"}` ||
			calls[1].Function.Index != 1 || calls[1].Function.Name != "get_time" || !last.Done || last.DoneReason != "stop" {
			t.Fatalf("stream %v: %+v, last %+v", stream, calls, last)
		}
	}
	// The tools reached the model with their schemas.
	o := e.asked().ChatOptions
	if len(o.Tools) != 2 || o.Tools[0].Name != "get_weather" || o.Tools[0].Description != "weather now" ||
		!strings.Contains(string(o.Tools[0].Parameters), `"required":["city"]`) || o.ToolChoice != nil {
		t.Fatalf("%+v", o.Tools)
	}
}

// The simulator, through the real gateway and ollama/api's client: a
// tool call when tools are offered, a value of the schema when a format
// asks for one, an image seen.
func TestOllamaThroughSimulator(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	props := api.NewToolPropertiesMap()
	props.Set("city", api.ToolProperty{Type: api.PropertyType{"string"}})
	var calls []api.ToolCall
	err := e.client.Chat(ctx, &api.ChatRequest{Model: "sim/sim", Messages: []api.Message{{Role: "user", Content: "weather in Paris?"}},
		Tools: api.Tools{{Type: "function", Function: api.ToolFunction{Name: "get_weather",
			Parameters: api.ToolFunctionParameters{Type: "object", Required: []string{"city"}, Properties: props}}}}},
		func(r api.ChatResponse) error {
			calls = append(calls, r.Message.ToolCalls...)
			return nil
		})
	if err != nil || len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].ID == "" {
		t.Fatalf("%v %+v", err, calls)
	}
	if city, ok := calls[0].Function.Arguments.Get("city"); !ok {
		t.Fatalf("arguments %v lack city (%v)", calls[0].Function.Arguments.String(), city)
	}
	var res api.ChatResponse
	err = e.client.Chat(ctx, &api.ChatRequest{Model: "sim/sim", Stream: ptr(false), Messages: []api.Message{{Role: "user", Content: "age?"}},
		Format: json.RawMessage(`{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]}`)}, func(r api.ChatResponse) error {
		res = r
		return nil
	})
	var v struct {
		Age *int `json:"age"`
	}
	if err != nil || json.Unmarshal([]byte(res.Message.Content), &v) != nil || v.Age == nil {
		t.Fatalf("%v %q", err, res.Message.Content)
	}
	var text strings.Builder
	err = e.client.Generate(ctx, &api.GenerateRequest{Model: "sim/sim", Prompt: "what is this?", Images: []api.ImageData{pngBytes}},
		func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			return nil
		})
	if err != nil || !strings.Contains(text.String(), "1 image") {
		t.Fatalf("%v %q", err, text.String())
	}
}

// The history a tool-using client sends back: ids given where Ollama gave
// none or gave the same twice, results matched to their calls by id, by
// tool name, or in order.
func TestOllamaToolHistory(t *testing.T) {
	args := json.RawMessage(`{"city": "Paris"}`)
	in := []ollamaMessage{
		{Role: "user", Content: "weather and time?"},
		{Role: "assistant", ToolCalls: []ollamaToolCall{mkCall("call_0", "get_weather", args), mkCall("", "get_time", nil)}},
		{Role: "tool", ToolName: "get_time", Content: "noon"},
		{Role: "tool", ToolCallID: "call_0", Content: "sunny"},
		{Role: "assistant", Content: "Sunny at noon. Again?", ToolCalls: []ollamaToolCall{mkCall("call_0", "get_weather", args)}},
		{Role: "TOOL", Content: "rain"},
		{Role: "user", Content: "thanks"},
	}
	out, err := chatMessages(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "weather and time?"},
		{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "call_0", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "call_1_1", Name: "get_time", Arguments: `{}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1_1", Content: "noon"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_0", Content: "sunny"}}},
		{Role: moltbot.RoleAssistant, Content: "Sunny at noon. Again?", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "Sunny at noon. Again?"},
			{Type: moltbot.PartToolCall, CallID: "call_4_0", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_4_0", Content: "rain"}}},
		{Role: moltbot.RoleUser, Content: "thanks"},
	}
	got, _ := json.Marshal(out)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Fatalf("got  %s\nwant %s", got, exp)
	}
	for i := range out {
		if out[i].Content != moltbot.TextOf(out[i].Parts) && out[i].Parts != nil {
			t.Errorf("message %d: content %q is not the text of its parts", i, out[i].Content)
		}
	}
	// Arguments that are not an object are refused, naming them.
	_, err = chatMessages([]ollamaMessage{{Role: "assistant", ToolCalls: []ollamaToolCall{mkCall("x", "f", json.RawMessage(`[1]`))}}})
	if e := (*moltbot.Error)(nil); !errors.As(err, &e) || e.Param != "messages[0].tool_calls[0].function.arguments" {
		t.Fatalf("%v", err)
	}
}

func mkCall(id, name string, args json.RawMessage) ollamaToolCall {
	var c ollamaToolCall
	c.ID, c.Function.Name, c.Function.Arguments = id, name, args
	return c
}

func TestOllamaStreamErrors(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	// Before the first token: a plain HTTP error with its status.
	e.setScript(func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "tool", Message: "down"}
	})
	err := e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(api.ChatResponse) error { return nil })
	if c, _ := statusOf(err); c < 500 {
		t.Fatalf("%v", err)
	}
	// After it: an error line, which the client reads as the stream's error.
	e.setScript(func(_ context.Context, _ *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		fn(inference.Delta{Text: "half"})
		return inference.Result{}, &inference.Error{Kind: inference.KindStream, Provider: "tool", Message: "connection closed mid-reply"}
	})
	var got string
	err = e.client.Chat(ctx, &api.ChatRequest{Model: "tool/m", Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(r api.ChatResponse) error {
		got += r.Message.Content
		return nil
	})
	if err == nil || got != "half" || !strings.Contains(err.Error(), "mid-reply") {
		t.Fatalf("%q %v", got, err)
	}
}

// Embeddings through the node's embedding chain (emb/m, 4 dimensions).
func TestOllamaEmbed(t *testing.T) {
	e := ollamaSetup(t)
	ctx := context.Background()
	res, err := e.client.Embed(ctx, &api.EmbedRequest{Model: "moltbot:latest", Input: []string{"a", "bb"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "moltbot:latest" || len(res.Embeddings) != 2 || res.PromptEvalCount != 6 || res.TotalDuration <= 0 {
		t.Fatalf("%+v", res)
	}
	// Unit vectors, as Ollama gives them, in the direction the model gave.
	for i, text := range []string{"a", "bb"} {
		var norm, raw float64
		for k, f := range res.Embeddings[i] {
			norm += float64(f) * float64(f)
			raw += float64(vectorValue(text, i, k)) * float64(vectorValue(text, i, k))
		}
		if math.Abs(norm-1) > 1e-5 || math.Abs(float64(res.Embeddings[i][0])-float64(vectorValue(text, i, 0))/math.Sqrt(raw)) > 1e-5 {
			t.Errorf("%q: %v", text, res.Embeddings[i])
		}
	}
	res, err = e.client.Embed(ctx, &api.EmbedRequest{Model: "emb/m", Input: "one"})
	if err != nil || len(res.Embeddings) != 1 || len(res.Embeddings[0]) != 4 {
		t.Fatalf("%v %+v", err, res)
	}
	res, err = e.client.Embed(ctx, &api.EmbedRequest{Model: "moltbot", Input: ""})
	if err != nil || res.Embeddings == nil || len(res.Embeddings) != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	if _, err := e.client.Embed(ctx, &api.EmbedRequest{Model: "moltbot", Input: 3}); !isStatus(err, 400, "invalid input type") {
		t.Fatal(err)
	}
	// The older endpoint: the model's vector as it is.
	old, err := e.client.Embeddings(ctx, &api.EmbeddingRequest{Model: "moltbot", Prompt: "hi"})
	if err != nil || len(old.Embedding) != 4 || old.Embedding[3] != float64(vectorValue("hi", 0, 3)) {
		t.Fatalf("%v %+v", err, old)
	}
	if _, err := e.client.Embeddings(ctx, &api.EmbeddingRequest{Prompt: "hi"}); !isStatus(err, 400, "model is required") {
		t.Fatal(err)
	}
}

// A token's line is appended without allocating.
func TestOllamaWriterAllocs(t *testing.T) {
	rec := httptest.NewRecorder()
	ow := newOllamaWriter(rec, "moltbot", false, time.Now(), time.Now())
	defer ow.release()
	ow.add("warm", moltbot.ModelRef{Provider: "p", Model: "m"}, 0)
	ref := moltbot.ModelRef{Provider: "p", Model: "m"}
	n := testing.AllocsPerRun(100, func() {
		ow.buf = ow.buf[:0]
		ow.add("a token \"quoted\"", ref, 0)
	})
	if n != 0 {
		t.Fatalf("%v allocations a token", n)
	}
	var r api.ChatResponse
	if err := json.Unmarshal(ow.buf, &r); err != nil || r.Message.Content != `a token "quoted"` || r.Done {
		t.Fatalf("%v %s", err, ow.buf)
	}
}

func BenchmarkOllamaChatStream(b *testing.B) {
	e := ollamaSetup(b)
	body := `{"model":"tool/m","messages":[{"role":"user","content":"hi"}]}`
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Post(e.url+"/api/chat", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
