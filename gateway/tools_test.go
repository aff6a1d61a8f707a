package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/chat"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/openaiwire"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/manage"
	"github.com/moltbot/moltbot/storage"
)

// toolModel is a provider that uses tools as a model does: offered tools
// and not given results, it says a few words and calls the first tool
// (twice when parallel calls are allowed), its calls streamed in pieces as
// OpenAI streams them; given the results (or no tools), it answers in text
// what it got. It keeps every request it was sent.
type toolModel struct {
	mu    sync.Mutex
	reqs  []inference.Request
	calls int
}

func (m *toolModel) Models(context.Context) ([]string, error) { return nil, nil }

func (m *toolModel) last() inference.Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reqs[len(m.reqs)-1]
}

func (m *toolModel) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	m.mu.Lock()
	m.reqs = append(m.reqs, *req)
	m.calls++
	n := m.calls
	m.mu.Unlock()
	last := req.Messages[len(req.Messages)-1]
	if len(req.Tools) > 0 && last.Role != moltbot.RoleTool && (req.ToolChoice == nil || req.ToolChoice.Mode != "none") {
		name := req.Tools[0].Name
		id := fmt.Sprintf("call_%d", n)
		deltas := []inference.Delta{{Text: "Let me check."},
			{ToolCall: &moltbot.ToolCallDelta{Index: 0, ID: id, Name: name}},
			{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `{"city":`}},
			{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `"Paris"}`}}}
		if req.ParallelToolCalls == nil || *req.ParallelToolCalls {
			deltas = append(deltas, inference.Delta{ToolCall: &moltbot.ToolCallDelta{Index: 1, ID: id + "b", Name: name, Arguments: `{"city":"Oslo"}`}})
		}
		for _, d := range deltas {
			if err := fn(d); err != nil {
				return inference.Result{}, err
			}
		}
		return inference.Result{FinishReason: "tool_calls", Usage: moltbot.Usage{PromptTokens: 10, CompletionTokens: 5}}, nil
	}
	var saw []string
	for _, msg := range req.Messages {
		for _, p := range msg.Parts {
			switch p.Type {
			case moltbot.PartToolCall:
				saw = append(saw, "call "+p.CallID+" "+p.Name+p.Arguments)
			case moltbot.PartToolResult:
				saw = append(saw, "result "+p.CallID+" "+fmt.Sprint(len(p.Content)))
			case moltbot.PartImage:
				saw = append(saw, fmt.Sprintf("image %s %d", p.MIME, len(p.Data)))
			}
		}
	}
	if err := fn(inference.Delta{Text: "saw: " + strings.Join(saw, "; ")}); err != nil {
		return inference.Result{}, err
	}
	return inference.Result{FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 10, CompletionTokens: 3}}, nil
}

type toolEnv struct {
	url   string
	model *toolModel
	store *storage.Memory
	rt    *actors.Runtime
	srv   *httptest.Server
}

// newToolEnv serves a node whose chain is the tool model, over store (nil:
// a new one), with room for images.
func newToolEnv(t *testing.T, store *storage.Memory, model *toolModel) *toolEnv {
	t.Helper()
	if store == nil {
		store = storage.NewMemory()
	}
	if model == nil {
		model = &toolModel{}
	}
	met := metrics.New("test")
	rt, err := actors.New(actors.Config{Providers: []actors.ProviderSpec{{Name: "tm", Provider: model, MaxInFlight: 8, MaxQueue: 8, Timeout: 5 * time.Second}},
		Chain: []moltbot.ModelRef{{Provider: "tm", Model: "m"}}, Store: store, Metrics: met, HealthInterval: time.Hour, MaxContextTokens: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServerImages(rt, 16<<10, 8<<10, Config{MaxBodyBytes: 64 << 10, Metrics: met, Version: "test"}))
	e := &toolEnv{url: srv.URL, model: model, store: store, rt: rt, srv: srv}
	t.Cleanup(e.stop)
	return e
}

func (e *toolEnv) stop() {
	e.srv.Close()
	e.rt.Shutdown(context.Background())
}

const weatherTool = `{"type":"function","function":{"name":"get_weather","description":"The weather in a city.","strict":true,
	"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}`

type completionJSON struct {
	Choices []struct {
		Message struct {
			Role      string                `json:"role"`
			Content   *string               `json:"content"`
			ToolCalls []openaiwire.ToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// A model's tool calls reach the client whole (non-streaming) with content
// null when there is no text... here there is text too; the client sends
// the results back and the model gets calls and results as parts.
func TestChatToolsRoundTrip(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	resp, body := do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"weather in Paris and Oslo?"}],
		"tools":[`+weatherTool+`],"tool_choice":"auto","parallel_tool_calls":true,"user":"u-7"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var out completionJSON
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	c := out.Choices[0]
	if c.FinishReason != "tool_calls" || c.Message.Content == nil || *c.Message.Content != "Let me check." || len(c.Message.ToolCalls) != 2 {
		t.Fatalf("%s", body)
	}
	tc := c.Message.ToolCalls[0]
	if tc.ID != "call_1" || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Paris"}` || tc.Index != nil {
		t.Errorf("call %+v", tc)
	}
	got := e.model.last()
	if len(got.Tools) != 1 || got.Tools[0].Name != "get_weather" || !got.Tools[0].Strict || got.Tools[0].Description == "" ||
		!strings.Contains(string(got.Tools[0].Parameters), `"required":["city"]`) || got.ToolChoice.Mode != "auto" || !*got.ParallelToolCalls || got.User != "u-7" {
		t.Errorf("the model got %+v", got.ChatOptions)
	}
	// Only tool calls: content is null.
	_, body = do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"tools":[`+weatherTool+`],"parallel_tool_calls":false}`)
	if !strings.Contains(string(body), `"tool_calls":[{"id":"call_2"`) || strings.Contains(string(body), "call_2b") {
		t.Errorf("%s", body)
	}
	// The history goes back: the assistant's calls (content null) and
	// one tool message per call.
	history := `{"messages":[{"role":"user","content":"weather?"},
		{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"call_1b","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"call_1b","content":[{"type":"text","text":"snow"}]},
		{"role":"tool","tool_call_id":"call_1","content":"sunny, 21C"}],
		"tools":[` + weatherTool + `]}`
	resp, body = do(t, "POST", e.url+"/v1/chat/completions", history)
	out = completionJSON{}
	if err := json.Unmarshal(body, &out); resp.StatusCode != 200 || err != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	want := `saw: call call_1 get_weather{"city":"Paris"}; call call_1b get_weather{}; result call_1b 4; result call_1 10`
	if c := out.Choices[0]; c.FinishReason != "stop" || *c.Message.Content != want || c.Message.ToolCalls != nil {
		t.Errorf("%s", body)
	}
	msgs := e.model.last().Messages
	if len(msgs) != 4 || msgs[1].Content != "" || msgs[2].Role != moltbot.RoleTool || msgs[2].Content != "" {
		t.Errorf("messages %+v", msgs)
	}
}

// A streamed reply's tool calls come as delta.tool_calls pieces: the first
// piece of a call has its index, id, type and name, the next ones more
// arguments; a client putting them together gets the calls.
func TestChatToolsStream(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	resp, err := http.Post(e.url+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"weather?"}],"tools":[`+weatherTool+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	// text, 4 pieces of calls, finish, usage, [DONE]
	if len(frames) != 8 || frames[7] != "[DONE]" {
		t.Fatalf("frames %q", frames)
	}
	var text string
	var calls []moltbot.ToolCall
	for i, f := range frames[:5] {
		var c openaiwire.Completion
		if err := json.Unmarshal([]byte(f), &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d := c.Choices[0].Delta
		if (i == 0) != (d.Role == "assistant") {
			t.Errorf("the role on the first chunk only: %s", f)
		}
		text += d.Content
		for _, tc := range d.ToolCalls {
			head := tc.ID != ""
			if head != (tc.Type == "function") || head != (tc.Function.Name != "") || tc.Index == nil {
				t.Errorf("a call's first piece has id, type and name, the others none: %s", f)
			}
			calls = moltbot.AddDelta(calls, &moltbot.ToolCallDelta{Index: *tc.Index, ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
	}
	if text != "Let me check." || len(calls) != 2 || calls[0] != (moltbot.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}) ||
		calls[1] != (moltbot.ToolCall{ID: "call_1b", Name: "get_weather", Arguments: `{"city":"Oslo"}`}) {
		t.Errorf("text %q calls %+v", text, calls)
	}
	if !strings.Contains(frames[5], `"finish_reason":"tool_calls"`) || !strings.Contains(frames[6], `"completion_tokens":5`) {
		t.Errorf("finish %s usage %s", frames[5], frames[6])
	}
}

var png = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"

func dataURL(mime, data string) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString([]byte(data))
}

// An image given as a data URL reaches the model decoded; a link, a type
// that is not an image, an image over max_image_bytes are refused.
func TestChatImages(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	img := png + strings.Repeat("\x00", 5000)
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"` + dataURL("image/png", img) + `","detail":"low"}}]}]}`
	resp, b := do(t, "POST", e.url+"/v1/chat/completions", body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "saw: image image/png 5033") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	m := e.model.last().Messages[0]
	if m.Content != "what is this?" || len(m.Parts) != 2 || m.Parts[1].Type != moltbot.PartImage || string(m.Parts[1].Data) != img {
		t.Errorf("the model got %+v", m.Content)
	}
	for _, c := range []struct {
		url, param, msg string
		status          int
	}{
		{"https://example.com/cat.png", "messages[0].content[1].image_url", "only data: URLs are accepted", 400},
		{"http://169.254.169.254/latest/meta-data", "messages[0].content[1].image_url", "fetches no links", 400},
		{dataURL("image/svg+xml", "<svg/>"), "messages[0].content[1].image_url", "not accepted", 400},
		{dataURL("image/png", "GIF89a"), "messages[0].content[1].image_url", "not a image/png image", 400},
		{dataURL("image/png", png+strings.Repeat("\x00", 9000)), "messages[0].content[1].image_url", "max_image_bytes", 413},
	} {
		body := `{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"` + c.url + `"}}]}]}`
		resp, b := do(t, "POST", e.url+"/v1/chat/completions", body)
		var eb errBody
		json.Unmarshal(b, &eb)
		if resp.StatusCode != c.status || eb.Error.Param == nil || *eb.Error.Param != c.param || !strings.Contains(eb.Error.Message, c.msg) {
			t.Errorf("%.40s: %d %s", c.url, resp.StatusCode, b)
		}
	}
}

// Every field of OpenAI's request moltbot does not carry is refused with a
// 400 naming it, but at its neutral value; so is a field OpenAI has not.
func TestChatRefusedFields(t *testing.T) {
	e := newToolEnv(t, nil, nil)
	const msgs = `"messages":[{"role":"user","content":"x"}]`
	tools := `"tools":[` + weatherTool + `]`
	refused := []struct{ field, param, msg string }{
		{`"n":2`, "n", "n=1"},
		{`"logprobs":true`, "logprobs", "not returned"},
		{`"top_logprobs":3`, "top_logprobs", "not supported"},
		{`"logit_bias":{"50256":-100}`, "logit_bias", "tokenizer"},
		{`"store":true`, "store", "conversations API"},
		{`"metadata":{"k":"v"}`, "metadata", "stored completions"},
		{`"service_tier":"flex"`, "service_tier", "flex"},
		{`"modalities":["text","audio"]`, "modalities[1]", "only text"},
		{`"audio":{"voice":"alloy","format":"mp3"}`, "audio", "text"},
		{`"prediction":{"type":"content","content":"x"}`, "prediction", "predicted outputs"},
		{`"reasoning_effort":"low"`, "reasoning_effort", "not carried"},
		{`"verbosity":"low"`, "verbosity", "not carried"},
		{`"web_search_options":{}`, "web_search_options", "search tool"},
		{`"functions":[{"name":"f"}]`, "functions", "send tools"},
		{`"function_call":"auto"`, "function_call", "send tool_choice"},
		{`"user":"a","safety_identifier":"b"`, "safety_identifier", "differ"},
		{`"frobnicate":true`, "frobnicate", "unknown field"},
		{`"Temperture":1`, "Temperture", "unknown field"},
		{`"presence_penalty":2.5`, "presence_penalty", "between -2 and 2"},
		{`"frequency_penalty":-3`, "frequency_penalty", "between -2 and 2"},
		{`"tool_choice":"auto"`, "tool_choice", "only allowed when tools"},
		{`"parallel_tool_calls":false`, "parallel_tool_calls", "only allowed when tools"},
		{`"tools":[]`, "tools", "tools is empty"},
		{`"tools":[{"type":"custom","custom":{"name":"x"}}]`, "tools[0].type", "function"},
		{`"tools":[{"type":"function","function":{"name":"get weather"}}]`, "tools[0].function.name", "1 to 64"},
		{tools[:len(tools)-1] + `,` + weatherTool + `]`, "tools[1].function.name", "offered twice"},
		{`"tools":[{"type":"function","function":{"name":"f","parameters":"none"}}]`, "tools[0].function.parameters", "JSON Schema object"},
		{tools + `,"tool_choice":{"type":"function","function":{"name":"other"}}`, "tool_choice", "does not offer"},
		{tools + `,"tool_choice":"sometimes"`, "tool_choice", "must be"},
		{tools + `,"tool_choice":{"type":"custom"}`, "tool_choice", "expected"},
		{`"response_format":{"type":"yaml"}`, "response_format.type", "json_schema"},
		{`"response_format":{"type":"json_schema"}`, "response_format.json_schema", "needs json_schema"},
		{`"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}`, "response_format.json_schema.name", "1 to 64"},
		{`"response_format":{"type":"json_schema","json_schema":{"name":"a"}}`, "response_format.json_schema.schema", "object"},
		{`"prompt_cache_key":"` + strings.Repeat("k", 1025) + `"`, "prompt_cache_key", "1024"},
	}
	for _, c := range refused {
		body := `{` + msgs + `,` + c.field + `}`
		resp, b := do(t, "POST", e.url+"/v1/chat/completions", body)
		var eb errBody
		json.Unmarshal(b, &eb)
		if resp.StatusCode != 400 || eb.Error.Type != "invalid_request_error" || eb.Error.Param == nil || *eb.Error.Param != c.param || !strings.Contains(eb.Error.Message, c.msg) {
			t.Errorf("%s: %d %s (want param %s saying %q)", c.field, resp.StatusCode, b, c.param, c.msg)
		}
	}
	// Messages: what a client may send back that moltbot cannot take, and
	// a tool history that does not hold together.
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`
	for _, c := range []struct{ messages, param, msg string }{
		{`{"role":"function","name":"f","content":"x"}`, "messages[0].role", "deprecated"},
		{`{"role":"assistant","content":"x","function_call":{"name":"f","arguments":"{}"}}`, "messages[0].function_call", "send tool_calls"},
		{`{"role":"assistant","content":null,"audio":{"id":"audio_1"}}`, "messages[0].audio", "not supported"},
		{`{"role":"user","content":"x","tool_calls":[]}`, "", ""}, // an empty list is none
		{`{"role":"user","content":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]}`, "messages[0].tool_calls", "only an assistant"},
		{`{"role":"user","content":"x","tool_call_id":"c"}`, "messages[0].tool_call_id", "only a tool message"},
		{`{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]}`, "messages[0].content[0].type", "only \"text\" and \"image_url\""},
		{`{"role":"user","content":[{"type":"text"}]}`, "messages[0].content[0].text", "needs text"},
		{`{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"x"}}]}`, "messages[0].content[0]", "only a user message"},
		{`{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + dataURL("image/png", png) + `","detail":"ultra"}}]}`, "messages[0].content[0].image_url.detail", "auto"},
		{`{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c1","content":"r"}`, "messages[1].tool_call_id", "answers no tool call"},
		{`{"role":"user","content":"x"},{"role":"tool","content":"r"}`, "messages[1].tool_call_id", "needs tool_call_id"},
		{`{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c1","content":[{"type":"image_url","image_url":{"url":"x"}}]}`, "messages[1].content[0]", "only text"},
		{`{"role":"user","content":"x"},` + call + `,{"role":"user","content":"y"}`, "messages", "not answered: c1"},
		{`{"role":"user","content":"x"},` + call, "messages", "the end of messages"},
		{`{"role":"user","content":"x"},` + strings.Replace(call, `"function",`, `"custom",`, 1), "messages[1].tool_calls[0].type", "function"},
	} {
		resp, b := do(t, "POST", e.url+"/v1/chat/completions", `{"messages":[`+c.messages+`]}`)
		var eb errBody
		json.Unmarshal(b, &eb)
		if c.param == "" {
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", c.messages, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != 400 || eb.Error.Param == nil || *eb.Error.Param != c.param || !strings.Contains(eb.Error.Message, c.msg) {
			t.Errorf("%s: %d %s (want param %s saying %q)", c.messages, resp.StatusCode, b, c.param, c.msg)
		}
	}
	// At their neutral values the same fields are taken, and so are the
	// hints moltbot does not carry.
	neutral := `"n":1,"logprobs":false,"top_logprobs":0,"logit_bias":{},"store":false,"metadata":{},"service_tier":"auto",
		"modalities":["text"],"audio":null,"prediction":null,"reasoning_effort":null,"verbosity":"medium","web_search_options":null,
		"functions":null,"function_call":null,"prompt_cache_key":"k1","stream_options":{"include_usage":true,"include_obfuscation":false},
		"user":"u","safety_identifier":"u","presence_penalty":0.5,"frequency_penalty":-0.5,"response_format":{"type":"text"}`
	body := `{"messages":[{"role":"system","name":"rules","content":"be brief"},{"role":"user","name":"ann","content":"x"},
		{"role":"assistant","content":"y","refusal":null,"annotations":[]},{"role":"user","content":"z"}],` + neutral + `}`
	if resp, b := do(t, "POST", e.url+"/v1/chat/completions", body); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if got := e.model.last(); *got.PresencePenalty != 0.5 || *got.FrequencyPenalty != -0.5 || got.User != "u" || got.ResponseFormat.Type != "text" {
		t.Errorf("the model got %+v", got.ChatOptions)
	}
	schema := `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,
		"schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}`
	if resp, b := do(t, "POST", e.url+"/v1/chat/completions", schema); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if f := e.model.last().ResponseFormat; f == nil || f.Type != "json_schema" || f.Name != "answer" || !f.Strict || !strings.Contains(string(f.Schema), `"properties"`) {
		t.Errorf("the model got %+v", f)
	}
}

// newServerImages wires a gateway as newServer does (no auth), with the
// chat service's bounds on a message and an image.
func newServerImages(rt *actors.Runtime, maxMessage, maxImage int, cfg Config) *Server {
	c := chat.New(rt, nil, chat.Config{MaxMessageBytes: maxMessage, MaxImageBytes: maxImage, Metrics: cfg.Metrics, Logger: cfg.Logger})
	return New(c, manage.New(manage.Config{Runtime: rt}), cfg)
}
