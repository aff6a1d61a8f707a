package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openai"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// scripted is a provider whose behaviour a test sets.
type scripted struct {
	chat func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error)
}

func (s *scripted) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	return s.chat(ctx, req, fn)
}
func (s *scripted) Models(context.Context) ([]string, error) { return nil, nil }

type testEnv struct {
	url   string
	rt    *actors.Runtime
	store *storage.Memory
	met   *metrics.Registry
}

func setup(t testing.TB, chain []string, extra ...actors.ProviderSpec) *testEnv {
	t.Helper()
	specs := append([]actors.ProviderSpec{{Name: "sim", Type: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 4, Seed: 1}),
		MaxInFlight: 16, MaxQueue: 16, Timeout: 5 * time.Second}}, extra...)
	var refs []moltbot.ModelRef
	for _, c := range chain {
		r, _ := moltbot.ParseModelRef(c)
		refs = append(refs, r)
	}
	store := storage.NewMemory()
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: specs, Chain: refs, Store: store, Metrics: met, HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServer(rt, nil, 2048, Config{MaxBodyBytes: 4096, Metrics: met, Version: "test"}))
	t.Cleanup(func() {
		srv.Close()
		rt.Shutdown(context.Background())
	})
	return &testEnv{url: srv.URL, rt: rt, store: store, met: met}
}

func do(t testing.TB, method, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type errBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func TestChatCompletionsThroughOpenAIClient(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	// moltbot's own OpenAI client against moltbot: the API is compatible.
	c := openai.New(openai.Config{Name: "moltbot", BaseURL: e.url + "/v1"})
	var text strings.Builder
	res, err := c.Chat(context.Background(), &inference.Request{Model: "moltbot", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}},
		func(d inference.Delta) error { s := d.Text; text.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text.String(), sim.Label) || res.Usage.CompletionTokens != 4 || res.Model != "sim/sim" || res.FinishReason != "stop" {
		t.Errorf("text %q res %+v", text.String(), res)
	}
	models, err := c.Models(context.Background())
	if err != nil || strings.Join(models, ",") != "moltbot,sim/sim" {
		t.Errorf("models %v %v", models, err)
	}
}

func TestChatCompletionsJSON(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	resp, body := do(t, "POST", e.url+"/v1/chat/completions", `{"model":"sim/sim","messages":[{"role":"developer","content":"sys"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":2}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" || resp.Header.Get("X-Moltbot-Failovers") != "0" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	var out struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message      moltbot.Message `json:"message"`
			FinishReason string          `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			Completion int `json:"completion_tokens"`
			Total      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.ID, "chatcmpl-") || out.Object != "chat.completion" || out.Model != "sim/sim" || out.Choices[0].FinishReason != "length" ||
		out.Choices[0].Message.Role != "assistant" || out.Usage.Completion != 2 || out.Usage.Total <= 2 {
		t.Errorf("%s", body)
	}
}

func sseFrames(t testing.TB, r io.Reader) []string {
	var frames []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			frames = append(frames, strings.TrimPrefix(l, "data: "))
		}
	}
	return frames
}

func TestChatCompletionsStream(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	resp, err := http.Post(e.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" {
		t.Fatalf("headers %v", resp.Header)
	}
	frames := sseFrames(t, resp.Body)
	// 4 content chunks, finish, usage, [DONE]
	if len(frames) != 7 || frames[6] != "[DONE]" {
		t.Fatalf("frames %q", frames)
	}
	var first, fin, usage map[string]any
	json.Unmarshal([]byte(frames[0]), &first)
	json.Unmarshal([]byte(frames[4]), &fin)
	json.Unmarshal([]byte(frames[5]), &usage)
	delta := first["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
	if delta["role"] != "assistant" || delta["content"] != sim.Label || first["object"] != "chat.completion.chunk" {
		t.Errorf("first %v", first)
	}
	if fin["choices"].([]any)[0].(map[string]any)["finish_reason"] != "stop" {
		t.Errorf("finish %v", fin)
	}
	if len(usage["choices"].([]any)) != 0 || usage["usage"].(map[string]any)["completion_tokens"] != 4.0 {
		t.Errorf("usage %v", usage)
	}
}

func TestBadRequests(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	longMsg := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 3000) + `"}]}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code, contains           string
	}{
		{"malformed", "POST", "/v1/chat/completions", `{"messages":`, 400, "invalid", "malformed JSON"},
		{"syntax", "POST", "/v1/chat/completions", `{"messages":[}`, 400, "invalid", "malformed JSON"},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "invalid", "empty"},
		{"not an object", "POST", "/v1/chat/completions", `[1,2]`, 400, "invalid", "JSON object"},
		{"wrong type", "POST", "/v1/chat/completions", `{"messages":"hi"}`, 400, "invalid", "messages"},
		{"wrong type deep", "POST", "/v1/chat/completions", `{"messages":[{"role":1,"content":"x"}]}`, 400, "invalid", "messages.role"},
		{"bad content", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":5}]}`, 400, "invalid", "content"},
		{"image part", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "invalid", "an image part needs image_url"},
		{"no messages", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "invalid", "at least one message"},
		{"empty content", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":""}]}`, 400, "invalid", "messages[0].content must not be empty"},
		{"bad role", "POST", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"x"}]}`, 400, "invalid", "wizard"},
		{"two values", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]} {}`, 400, "invalid", "more than one"},
		{"n", "POST", "/v1/chat/completions", `{"n":2,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid", "n=1"},
		{"temperature", "POST", "/v1/chat/completions", `{"temperature":3,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid", "temperature"},
		{"max_tokens", "POST", "/v1/chat/completions", `{"max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid", "max_tokens"},
		{"too large", "POST", "/v1/chat/completions", big, 413, "too_large", "max_body_bytes"},
		{"message too large", "POST", "/v1/chat/completions", longMsg, 413, "too_large", "max_message_bytes"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "not_found", "gpt-9"},
		{"unknown provider", "POST", "/v1/chat/completions", `{"model":"nope/x","messages":[{"role":"user","content":"x"}]}`, 404, "not_found", "no provider named"},
		{"method", "GET", "/v1/chat/completions", ``, 405, "invalid", "use POST"},
		{"route", "GET", "/v2/nothing", ``, 404, "not_found", "no route"},
		{"unknown conversation", "GET", "/v1/conversations/nope", ``, 404, "not_found", "nope"},
		{"turn on unknown", "POST", "/v1/conversations/nope/messages", `{"content":"x"}`, 404, "not_found", "nope"},
		{"turn without content", "POST", "/v1/conversations/nope/messages", `{}`, 400, "invalid", "content"},
		{"turn wrong role", "POST", "/v1/conversations/nope/messages", `{"content":"x","role":"system"}`, 400, "invalid", "role"},
		{"create bad id", "POST", "/v1/conversations", `{"id":"a b"}`, 400, "invalid", "invalid conversation id"},
		{"create bad model", "POST", "/v1/conversations", `{"model":"zz/top"}`, 404, "not_found", "zz/top"},
		{"delete unknown", "DELETE", "/v1/conversations/nope", ``, 404, "not_found", "nope"},
		{"conversation method", "PUT", "/v1/conversations/x", ``, 405, "invalid", "GET or DELETE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, e.url+tc.path, tc.body)
			var eb errBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.contains) || eb.Error.Type == "" {
				t.Errorf("got %d %s, want %d %s containing %q", resp.StatusCode, body, tc.status, tc.code, tc.contains)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestProviderDown(t *testing.T) {
	down := &scripted{chat: func(context.Context, *inference.Request, inference.DeltaFunc) (inference.Result, error) {
		return inference.Result{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "down", Message: "connection refused"}
	}}
	e := setup(t, []string{"down/m"}, actors.ProviderSpec{Name: "down", Provider: down, MaxInFlight: 1, Timeout: time.Second})
	resp, body := do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 502 || !strings.Contains(string(body), "connection refused") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", e.url+"/v1/conversations", ``)
	var c conversationJSON
	json.Unmarshal(body, &c)
	resp, body = do(t, "POST", e.url+"/v1/conversations/"+c.ID+"/messages", `{"content":"hello"}`)
	if resp.StatusCode != 502 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, body = do(t, "GET", e.url+"/v1/conversations/"+c.ID, ``)
	json.Unmarshal(body, &c)
	if len(c.Messages) != 1 || c.Messages[0].Content != "hello" {
		t.Fatalf("conversation after failure: %s", body)
	}
	// The node is not ready while no provider is reachable... the sim is, so it is.
}

func TestStreamBreaksAfterTokens(t *testing.T) {
	broken := &scripted{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		fn(inference.Delta{Text: "half "})
		return inference.Result{}, inference.StreamEnded("broken")
	}}
	e := setup(t, []string{"broken/m"}, actors.ProviderSpec{Name: "broken", Provider: broken, MaxInFlight: 1, Timeout: time.Second})
	resp, err := http.Post(e.url+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(frames) != 3 || !strings.Contains(frames[1], `"error"`) || !strings.Contains(frames[1], "ended before") || frames[2] != "[DONE]" {
		t.Fatalf("%d %q", resp.StatusCode, frames)
	}
}

func TestConversationsAPI(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	resp, body := do(t, "POST", e.url+"/v1/conversations", `{"system":"be brief","id":"my-chat"}`)
	if resp.StatusCode != 201 || resp.Header.Get("Location") != "/v1/conversations/my-chat" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", e.url+"/v1/conversations", `{"id":"my-chat"}`)
	if resp.StatusCode != 409 {
		t.Fatalf("duplicate: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", e.url+"/v1/conversations/my-chat/messages", `{"content":"hello"}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var tr turnResponse
	json.Unmarshal(body, &tr)
	if tr.Message.Role != "assistant" || !strings.HasPrefix(tr.Message.Content, sim.Label) || tr.Model != "sim/sim" || tr.Version != 3 || tr.Usage.CompletionTokens != 4 {
		t.Fatalf("%s", body)
	}
	// Streaming turn: chunks, finish, usage, [DONE].
	sresp, err := http.Post(e.url+"/v1/conversations/my-chat/messages", "application/json", strings.NewReader(`{"content":"more","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	frames := sseFrames(t, sresp.Body)
	sresp.Body.Close()
	if len(frames) != 7 || frames[6] != "[DONE]" || sresp.Header.Get("X-Moltbot-Provider") != "sim/sim" {
		t.Fatalf("frames %q", frames)
	}
	_, body = do(t, "GET", e.url+"/v1/conversations/my-chat", ``)
	var c conversationJSON
	json.Unmarshal(body, &c)
	if c.ID != "my-chat" || len(c.Messages) != 5 || c.Messages[0].Role != "system" || c.Messages[1].Content != "hello" ||
		c.Messages[2].Model != "sim/sim" || c.Messages[3].Content != "more" || c.Version != 5 {
		t.Fatalf("%s", body)
	}
	resp, body = do(t, "DELETE", e.url+"/v1/conversations/my-chat", ``)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"deleted":true`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", e.url+"/v1/conversations/my-chat", ``); resp.StatusCode != 404 {
		t.Fatalf("after delete: %d", resp.StatusCode)
	}
	// A generated id.
	_, body = do(t, "POST", e.url+"/v1/conversations", ``)
	json.Unmarshal(body, &c)
	if !strings.HasPrefix(c.ID, "c_") || len(c.Messages) != 0 {
		t.Fatalf("%s", body)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	if resp, _ := do(t, "GET", e.url+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	testutil.Eventually(t, 5*time.Second, "ready", func() bool {
		resp, _ := do(t, "GET", e.url+"/readyz", "")
		return resp.StatusCode == 200
	})
	do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	_, body := do(t, "GET", e.url+"/metrics", "")
	for _, want := range []string{
		`moltbot_http_requests_total{route="/v1/chat/completions",code="200"} 1`,
		`moltbot_inference_requests_total{provider="sim",model="sim",outcome="ok"} 1`,
		`moltbot_inference_duration_seconds_bucket{provider="sim",model="sim",le="+Inf"} 1`,
		`moltbot_inference_ttft_seconds_count{provider="sim",model="sim"} 1`,
		`moltbot_conversations_active 0`,
		`moltbot_http_requests_total{route="/readyz",code="200"}`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	_, body = do(t, "GET", e.url+"/v1/admin/status", "")
	var st StatusResponse
	if err := json.Unmarshal(body, &st); err != nil || st.Status != "ready" || len(st.Providers) != 1 || st.Providers[0].Name != "sim" || st.Requests.Inference != 1 {
		t.Fatalf("%s %v", body, err)
	}
}

// FuzzChatCompletions sends arbitrary bodies: the gateway must answer every
// one with a JSON body and never a 5xx of its own making.
func FuzzChatCompletions(f *testing.F) {
	f.Add(`{"messages":[{"role":"user","content":"hi"}]}`)
	f.Add(`{"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":"x","max_tokens":3}`)
	f.Add(`{"messages":[{"role":"user","content":null}],"temperature":-1}`)
	f.Add(`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`)
	f.Add(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/gif;base64,R0lGODlhAQABAAAAACw="}}]}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{}}}}`)
	f.Add(`{"messages":[{"role":"user","content":"x"}],"logprobs":true,"n":1,"frobnicate":{}}`)
	f.Add(`{"content":[{"type":"text","text":"x"}],"tool_results":[{"tool_call_id":"c","content":"r"}],"tools":[]}`)
	f.Add(`{"model":"sim/sim","messages":[{"role":"assistant","content":"x"}],"n":1,"seed":4}`)
	e := setup(f, []string{"sim/sim"})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v1/chat/completions", "/v1/conversations", "/v1/conversations/fz/messages"} {
			resp, b := do(t, "POST", e.url+path, body)
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %q: %d %s", path, body, resp.StatusCode, b)
			}
			if resp.Header.Get("Content-Type") == "application/json" && !json.Valid(b) {
				t.Fatalf("%s %q: invalid JSON %s", path, body, b)
			}
		}
	})
}

func BenchmarkChatCompletionsStream(b *testing.B) {
	e := setup(b, []string{"sim/sim"})
	body := `{"stream":true,"messages":[{"role":"user","content":"hello"}]}`
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Post(e.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// deadlineRecorder supports write deadlines like a real connection does.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetWriteDeadline(time.Time) error { return nil }

func BenchmarkChunkWriter(b *testing.B) {
	w := deadlineRecorder{httptest.NewRecorder()}
	cw := newChunkWriter(w, "chatcmpl-x", 1700000000)
	ch := moltbot.Chunk{Content: " token", Served: moltbot.ModelRef{Provider: "sim", Model: "sim"}}
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		cw.add(ch)
		cw.flush()
	}
}
