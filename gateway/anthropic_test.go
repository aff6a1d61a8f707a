package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/auth"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/anthropic"
	"github.com/moltbot/moltbot/inference/sim"
)

// anthropicHeaders are what Anthropic's SDKs send besides the key: the
// gateway must take them all.
var anthropicHeaders = map[string]string{
	"anthropic-version":           "2023-06-01",
	"anthropic-beta":              "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14",
	"x-stainless-lang":            "js",
	"x-stainless-package-version": "0.60.0",
	"x-stainless-os":              "Linux",
	"x-stainless-arch":            "x64",
	"x-stainless-runtime":         "node",
	"x-stainless-runtime-version": "v22.0.0",
	"x-stainless-retry-count":     "0",
	"x-stainless-timeout":         "600",
	"x-stainless-helper-method":   "stream",
}

// postMessages sends body to /v1/messages as Anthropic's SDKs do, with
// key (when not "") as x-api-key.
func postMessages(t testing.TB, url, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for k, v := range anthropicHeaders {
		req.Header.Set(k, v)
	}
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// anthropicMessage is the Messages API's message object, as a client reads it.
type anthropicMessage struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        struct {
		InputTokens  *int `json:"input_tokens"`
		OutputTokens *int `json:"output_tokens"`
	} `json:"usage"`
}

// anthropicError is the Messages API's error body.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// sseEvent is one server-sent event: its event: name and its data.
type sseEvent struct {
	name string
	data map[string]any
	raw  string
}

// readEvents reads a Messages API stream, checking that each event's
// name is its data's type, as the API always has them.
func readEvents(t testing.TB, r io.Reader) []sseEvent {
	t.Helper()
	var evs []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.raw = strings.TrimPrefix(line, "data: ")
			if err := json.Unmarshal([]byte(cur.raw), &cur.data); err != nil {
				t.Fatalf("data of %s is not JSON: %q", cur.name, cur.raw)
			}
		case line == "":
			if cur.name == "" {
				continue
			}
			if cur.data["type"] != cur.name {
				t.Fatalf("event %s carries type %v", cur.name, cur.data["type"])
			}
			evs = append(evs, cur)
			cur = sseEvent{}
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	if cur.name != "" {
		t.Fatalf("the stream ends inside event %s", cur.name)
	}
	return evs
}

func names(evs []sseEvent) string {
	var b strings.Builder
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(ev.name)
	}
	return b.String()
}

// index is a content_block_* event's index.
func index(ev sseEvent) int {
	f, _ := ev.data["index"].(float64)
	return int(f)
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, _ := v.(map[string]any)
		v = mm[p]
	}
	return v
}

func TestMessagesJSON(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	resp, body := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":64,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
		"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"hello"}]},{"role":"user","content":[{"type":"text","text":"more"}]}],
		"temperature":0.5,"top_p":0.9,"stop_sequences":["\n\nHuman:"],"metadata":{"user_id":"u-1"},"service_tier":"auto","thinking":{"type":"disabled"}}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if rid := resp.Header.Get("Request-Id"); rid == "" || rid != resp.Header.Get("X-Request-Id") {
		t.Errorf("request-id %q, X-Request-Id %q", rid, resp.Header.Get("X-Request-Id"))
	}
	var m anthropicMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != "sim/sim" || len(m.Content) != 1 ||
		m.Content[0].Type != "text" || !strings.HasPrefix(m.Content[0].Text, sim.Label) || m.StopReason == nil || *m.StopReason != "end_turn" ||
		m.StopSequence != nil || m.Usage.OutputTokens == nil || *m.Usage.OutputTokens != 4 || m.Usage.InputTokens == nil || *m.Usage.InputTokens < 1 {
		t.Fatalf("%s", body)
	}
	// A reply cut at max_tokens says so.
	_, body = postMessages(t, e.url, "", `{"model":"sim/sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
	json.Unmarshal(body, &m)
	if *m.StopReason != "max_tokens" || *m.Usage.OutputTokens != 2 {
		t.Fatalf("%s", body)
	}
}

func TestMessagesStream(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	const req = `{"model":"moltbot","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, body := postMessages(t, e.url, "", req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Moltbot-Provider") != "sim/sim" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	evs := readEvents(t, strings.NewReader(string(body)))
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := names(evs); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
	msg := evs[0].data["message"].(map[string]any)
	if !strings.HasPrefix(msg["id"].(string), "msg_") || msg["type"] != "message" || msg["role"] != "assistant" || msg["model"] != "sim/sim" ||
		len(msg["content"].([]any)) != 0 || msg["stop_reason"] != nil || field(msg, "usage", "output_tokens") != 0.0 {
		t.Errorf("message_start %s", evs[0].raw)
	}
	if index(evs[1]) != 0 || field(evs[1].data, "content_block", "type") != "text" || field(evs[1].data, "content_block", "text") != "" {
		t.Errorf("content_block_start %s", evs[1].raw)
	}
	var text strings.Builder
	for _, ev := range evs[3:7] {
		if index(ev) != 0 || field(ev.data, "delta", "type") != "text_delta" {
			t.Errorf("delta %s", ev.raw)
		}
		text.WriteString(field(ev.data, "delta", "text").(string))
	}
	if index(evs[7]) != 0 || field(evs[8].data, "delta", "stop_reason") != "end_turn" || field(evs[8].data, "usage", "output_tokens") != 4.0 ||
		field(evs[8].data, "usage", "input_tokens").(float64) < 1 {
		t.Errorf("end %s %s", evs[7].raw, evs[8].raw)
	}
	if _, ok := evs[8].data["delta"].(map[string]any)["stop_sequence"]; !ok {
		t.Errorf("message_delta without stop_sequence: %s", evs[8].raw)
	}
	// The same reply as a whole message (the simulator is seeded).
	_, body = postMessages(t, e.url, "", strings.Replace(req, `"stream":true`, `"stream":false`, 1))
	var m anthropicMessage
	json.Unmarshal(body, &m)
	if m.Content[0].Text != text.String() {
		t.Errorf("streamed %q, whole %q", text.String(), m.Content[0].Text)
	}
}

// callingModel is a provider that streams text and two tool calls in
// pieces, then, when the last message is a tool result, answers with
// text. It records the requests it got.
type callingModel struct {
	mu   sync.Mutex
	reqs []*inference.Request
}

func (p *callingModel) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	answered := slices.ContainsFunc(req.Messages, func(m moltbot.Message) bool { return m.Role == moltbot.RoleTool })
	if answered || len(req.Tools) == 0 {
		fn(inference.Delta{Text: "It is "})
		fn(inference.Delta{Text: "sunny."})
		return inference.Result{Usage: moltbot.Usage{PromptTokens: 30, CompletionTokens: 3}, FinishReason: "stop"}, nil
	}
	for _, d := range []inference.Delta{
		{Text: "Let me look."},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, ID: "toolu_01", Name: "get_weather"}},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `{"city":`}},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `"Paris"}`}},
		{ToolCall: &moltbot.ToolCallDelta{Index: 1, ID: "toolu_02", Name: "get_time", Arguments: `{"tz":"CET"}`}},
	} {
		if err := fn(d); err != nil {
			return inference.Result{}, err
		}
	}
	return inference.Result{Usage: moltbot.Usage{PromptTokens: 20, CompletionTokens: 9}, FinishReason: "tool_calls"}, nil
}

func (p *callingModel) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

func (p *callingModel) last() *inference.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reqs[len(p.reqs)-1]
}

func setupTools(t testing.TB) (*testEnv, *callingModel) {
	p := &callingModel{}
	e := setup(t, []string{"tools/m"}, actors.ProviderSpec{Name: "tools", Provider: p, MaxInFlight: 4, Timeout: 5 * time.Second})
	return e, p
}

const weatherTools = `"tools":[{"name":"get_weather","description":"The weather in a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"cache_control":{"type":"ephemeral"}},
	{"name":"get_time","input_schema":{"type":"object","properties":{"tz":{"type":"string"}}},"strict":true,"eager_input_streaming":true}]`

func TestMessagesToolUse(t *testing.T) {
	e, p := setupTools(t)
	body := `{"model":"moltbot","max_tokens":100,` + weatherTools + `,"tool_choice":{"type":"any","disable_parallel_tool_use":true},
		"metadata":{"user_id":"user-7"},"messages":[{"role":"user","content":"Weather in Paris?"}]}`
	resp, b := postMessages(t, e.url, "", body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	req := p.last()
	if len(req.Tools) != 2 || req.Tools[0].Name != "get_weather" || req.Tools[0].Description != "The weather in a city" ||
		!strings.Contains(string(req.Tools[0].Parameters), `"required":["city"]`) || req.Tools[0].Strict || !req.Tools[1].Strict ||
		req.ToolChoice == nil || req.ToolChoice.Mode != moltbot.ToolChoiceRequired || req.ParallelToolCalls == nil || *req.ParallelToolCalls ||
		req.User != "user-7" || req.MaxTokens != 100 {
		t.Fatalf("the model got %+v", req.ChatOptions)
	}
	var m anthropicMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Content) != 3 || m.Content[0].Type != "text" || m.Content[0].Text != "Let me look." ||
		m.Content[1].Type != "tool_use" || m.Content[1].ID != "toolu_01" || m.Content[1].Name != "get_weather" || string(m.Content[1].Input) != `{"city":"Paris"}` ||
		m.Content[2].ID != "toolu_02" || m.Content[2].Name != "get_time" || string(m.Content[2].Input) != `{"tz":"CET"}` ||
		*m.StopReason != "tool_use" || *m.Usage.InputTokens != 20 || *m.Usage.OutputTokens != 9 {
		t.Fatalf("%s", b)
	}

	// Streamed: a text block, then a tool_use block a call, each stopped
	// before the next starts; the input in pieces.
	resp, b = postMessages(t, e.url, "", strings.Replace(body, `"max_tokens":100,`, `"max_tokens":100,"stream":true,`, 1))
	evs := readEvents(t, strings.NewReader(string(b)))
	want := "message_start content_block_start ping content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_stop message_delta message_stop"
	if got := names(evs); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
	wantIndex := []int{-1, 0, -1, 0, 0, 1, 1, 1, 1, 2, 2, 2, -1, -1}
	for i, ev := range evs {
		if wantIndex[i] >= 0 && index(ev) != wantIndex[i] {
			t.Errorf("event %d %s: index %d, want %d", i, ev.raw, index(ev), wantIndex[i])
		}
	}
	if cb := evs[5].data["content_block"].(map[string]any); cb["type"] != "tool_use" || cb["id"] != "toolu_01" || cb["name"] != "get_weather" ||
		len(cb["input"].(map[string]any)) != 0 {
		t.Errorf("tool_use start %s", evs[5].raw)
	}
	input := field(evs[6].data, "delta", "partial_json").(string) + field(evs[7].data, "delta", "partial_json").(string)
	if field(evs[6].data, "delta", "type") != "input_json_delta" || input != `{"city":"Paris"}` {
		t.Errorf("input %q from %s %s", input, evs[6].raw, evs[7].raw)
	}
	if field(evs[9].data, "content_block", "id") != "toolu_02" || field(evs[10].data, "delta", "partial_json") != `{"tz":"CET"}` {
		t.Errorf("second call %s %s", evs[9].raw, evs[10].raw)
	}
	if field(evs[12].data, "delta", "stop_reason") != "tool_use" || field(evs[12].data, "usage", "output_tokens") != 9.0 {
		t.Errorf("message_delta %s", evs[12].raw)
	}
}

// The tool loop against the in-process simulator, as an Anthropic SDK
// client runs it: the streamed message put together, its tool_use blocks
// answered with tool_result blocks, then the answer that quotes them; an
// image, and a JSON Schema reply.
func TestMessagesSimulator(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	first := `{"role":"user","content":"What is the weather in Paris? Use both tools."}`
	resp, b := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":200,"stream":true,`+weatherTools+`,"messages":[`+first+`]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// Put the message together as the SDKs do: blocks by index, inputs
	// from their pieces.
	type block struct {
		Type  string          `json:"type"`
		ID    string          `json:"id,omitempty"`
		Name  string          `json:"name,omitempty"`
		Text  string          `json:"text,omitempty"`
		Input json.RawMessage `json:"input,omitempty"`
	}
	var blocks []block
	var partial []string
	stop := ""
	for _, ev := range readEvents(t, strings.NewReader(string(b))) {
		switch ev.name {
		case "content_block_start":
			if index(ev) != len(blocks) {
				t.Fatalf("block %d started after %d", index(ev), len(blocks))
			}
			var bl block
			raw, _ := json.Marshal(ev.data["content_block"])
			json.Unmarshal(raw, &bl)
			bl.Input = nil
			blocks, partial = append(blocks, bl), append(partial, "")
		case "content_block_delta":
			i := index(ev)
			switch field(ev.data, "delta", "type") {
			case "text_delta":
				blocks[i].Text += field(ev.data, "delta", "text").(string)
			case "input_json_delta":
				partial[i] += field(ev.data, "delta", "partial_json").(string)
			}
		case "message_delta":
			stop = field(ev.data, "delta", "stop_reason").(string)
		}
	}
	var results []string
	for i := range blocks {
		if blocks[i].Type != "tool_use" {
			continue
		}
		if !json.Valid([]byte(partial[i])) {
			t.Fatalf("input of %s: %q", blocks[i].Name, partial[i])
		}
		blocks[i].Input = json.RawMessage(partial[i])
		results = append(results, `{"type":"tool_result","tool_use_id":"`+blocks[i].ID+`","content":"`+blocks[i].Name+` says 21C"}`)
	}
	if stop != "tool_use" || len(results) != 2 {
		t.Fatalf("stop %q, blocks %+v", stop, blocks)
	}
	assistant, _ := json.Marshal(map[string]any{"role": "assistant", "content": blocks})
	resp, b = postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":200,`+weatherTools+`,"messages":[`+first+`,`+string(assistant)+
		`,{"role":"user","content":[`+strings.Join(results, ",")+`]}]}`)
	var m anthropicMessage
	json.Unmarshal(b, &m)
	if resp.StatusCode != 200 || len(m.Content) != 1 || !strings.Contains(m.Content[0].Text, "get_weather says 21C") || *m.StopReason != "end_turn" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}

	// An image: the simulator says how many it saw.
	png := base64.StdEncoding.EncodeToString(pngBytes)
	resp, b = postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":50,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"`+png+`"}},{"type":"text","text":"what is it?"}]}]}`)
	json.Unmarshal(b, &m)
	if resp.StatusCode != 200 || !strings.Contains(m.Content[0].Text, "1 image") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}

	// A JSON Schema reply (output_config.format) is the reply's text.
	resp, b = postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":200,"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},"messages":[{"role":"user","content":"city?"}]}`)
	json.Unmarshal(b, &m)
	var v map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(m.Content[0].Text), &v) != nil || v["city"] == nil {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// moltbot's own Anthropic client (a provider of the node) reads the
// node's Messages API: events, text, tool calls and usage as it reads
// Anthropic's.
func TestMessagesThroughAnthropicClient(t *testing.T) {
	e, _ := setupTools(t)
	c := anthropic.New(anthropic.Config{Name: "node", BaseURL: e.url})
	var text strings.Builder
	var calls []moltbot.ToolCall
	res, err := c.Chat(context.Background(), &inference.Request{Model: "moltbot", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "Weather?"}},
		ChatOptions: moltbot.ChatOptions{MaxTokens: 50, Tools: []moltbot.Tool{{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object"}`)},
			{Name: "get_time"}}}}, func(d inference.Delta) error {
		text.WriteString(d.Text)
		if d.ToolCall != nil {
			calls = moltbot.AddDelta(calls, d.ToolCall)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != "Let me look." || len(calls) != 2 || calls[0] != (moltbot.ToolCall{ID: "toolu_01", Name: "get_weather", Arguments: `{"city":"Paris"}`}) ||
		calls[1].Arguments != `{"tz":"CET"}` || res.FinishReason != "tool_calls" || res.Usage != (moltbot.Usage{PromptTokens: 20, CompletionTokens: 9}) || res.Model != "tools/m" {
		t.Fatalf("text %q calls %+v res %+v", text.String(), calls, res)
	}
	// Text only, through the simulator behind the node.
	e = setup(t, []string{"sim/sim"})
	c = anthropic.New(anthropic.Config{Name: "node", BaseURL: e.url + "/v1"})
	text.Reset()
	res, err = c.Chat(context.Background(), &inference.Request{Model: "sim/sim", Messages: []moltbot.Message{{Role: moltbot.RoleSystem, Content: "sys"},
		{Role: moltbot.RoleUser, Content: "hi"}}}, func(d inference.Delta) error { text.WriteString(d.Text); return nil })
	if err != nil || !strings.HasPrefix(text.String(), sim.Label) || res.FinishReason != "stop" || res.Usage.CompletionTokens != 4 {
		t.Fatalf("%q %+v %v", text.String(), res, err)
	}
}

// The tool loop: tool_use in the assistant's turn, tool_result in the
// user's, then the answer.
func TestMessagesToolRoundTrip(t *testing.T) {
	e, p := setupTools(t)
	resp, b := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":100,`+weatherTools+`,"messages":[
		{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Paris"}},
			{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[{"type":"text","text":"22C, "},{"type":"text","text":"sun"}]},
			{"type":"tool_result","tool_use_id":"toolu_02","content":"no clock","is_error":true},{"type":"text","text":"Thanks"}]},
		{"role":"assistant","content":"Anything else?"},
		{"role":"user","content":[{"type":"text","text":"So?"}]}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	want := []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "Weather in Paris?"},
		{Role: moltbot.RoleAssistant, Content: "Let me look.", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "Let me look."},
			{Type: moltbot.PartToolCall, CallID: "toolu_01", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "toolu_02", Name: "get_time", Arguments: `{}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "toolu_01", Content: "22C, sun"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "toolu_02", Content: "Error: no clock"}}},
		{Role: moltbot.RoleUser, Content: "Thanks"},
		{Role: moltbot.RoleAssistant, Content: "Anything else?"},
		{Role: moltbot.RoleUser, Content: "So?"},
	}
	got := p.last().Messages
	if gj, wj := mustJSON(got), mustJSON(want); gj != wj {
		t.Fatalf("the model got\n%s\nwant\n%s", gj, wj)
	}
	var m anthropicMessage
	json.Unmarshal(b, &m)
	if len(m.Content) != 1 || m.Content[0].Text != "It is sunny." || *m.StopReason != "end_turn" {
		t.Fatalf("%s", b)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMessagesImages(t *testing.T) {
	e, p := setupTools(t)
	data := base64.StdEncoding.EncodeToString(pngBytes)
	resp, b := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":10,"messages":[{"role":"user","content":[
		{"type":"text","text":"What is "},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"`+data+`"},"cache_control":{"type":"ephemeral"}},
		{"type":"text","text":"this?"}]}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	want := moltbot.Message{Role: moltbot.RoleUser, Content: "What is this?", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "What is "},
		{Type: moltbot.PartImage, MIME: "image/png", Data: pngBytes}, {Type: moltbot.PartText, Text: "this?"}}}
	if got := p.last().Messages; len(got) != 1 || mustJSON(got[0]) != mustJSON(want) {
		t.Fatalf("the model got %s", mustJSON(got))
	}
	for _, tc := range []struct{ source, contains string }{
		{`{"type":"url","url":"http://169.254.169.254/latest"}`, "messages[0].content[0].source: image URLs are not accepted"},
		{`{"type":"file","file_id":"file_1"}`, "Files API"},
		{`{"type":"base64","media_type":"image/tiff","data":"` + data + `"}`, "media_type \"image/tiff\""},
		{`{"type":"base64","media_type":"image/jpeg","data":"` + data + `"}`, "not a image/jpeg image"},
		{`{"type":"base64","media_type":"image/png","data":"%%%"}`, "source.data is not valid base64"},
		{`{"type":"base64","media_type":"image/png","data":""}`, "source.data is empty"},
		{`{"type":"base64","media_type":"image/png","data":"` + data + `","url":"x"}`, `messages[0].content[0].source.url: unknown field`},
	} {
		resp, b := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":`+tc.source+`}]}]}`)
		var eb anthropicError
		json.Unmarshal(b, &eb)
		if resp.StatusCode != 400 || eb.Error.Type != "invalid_request_error" || !strings.Contains(eb.Error.Message, tc.contains) {
			t.Errorf("%s: %d %s, want %q", tc.source, resp.StatusCode, b, tc.contains)
		}
	}
}

func TestMessagesStructuredOutput(t *testing.T) {
	e, p := setupTools(t)
	resp, b := postMessages(t, e.url, "", `{"model":"moltbot","max_tokens":10,"output_config":{"effort":"high","format":{"type":"json_schema","schema":{"type":"object"}}},
		"messages":[{"role":"user","content":"json please"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if f := p.last().ResponseFormat; f == nil || f.Type != moltbot.FormatJSONSchema || string(f.Schema) != `{"type":"object"}` || f.Name == "" || !f.Strict {
		t.Fatalf("the model got %+v", f)
	}
}

// Every field moltbot does not carry is refused by name, in Anthropic's
// error shape; what it takes at a neutral value passes.
func TestMessagesRefused(t *testing.T) {
	e, _ := setupTools(t)
	const user = `"messages":[{"role":"user","content":"hi"}]`
	const base = `"model":"moltbot","max_tokens":10,`
	cases := []struct{ name, body, contains string }{
		{"malformed", `{"model":`, "malformed JSON"},
		{"empty body", ``, "body is empty"},
		{"not an object", `[1]`, "JSON object"},
		{"trailing data", `{"model":"moltbot","max_tokens":1,` + user + `} {}`, "malformed JSON"},
		{"unknown field", `{` + base + user + `,"modle":"x"}`, `modle: unknown field`},
		{"case of a field", `{` + base + user + `,"Stream":true}`, `Stream: unknown field`},
		{"model", `{"max_tokens":10,` + user + `}`, "model is required"},
		{"max_tokens", `{"model":"moltbot",` + user + `}`, "max_tokens is required"},
		{"max_tokens 0", `{"model":"moltbot","max_tokens":0,` + user + `}`, "max_tokens must be at least 1"},
		{"max_tokens type", `{"model":"moltbot","max_tokens":"ten",` + user + `}`, "max_tokens: expected an integer"},
		{"max_tokens float", `{"model":"moltbot","max_tokens":1.5,` + user + `}`, "max_tokens: expected an integer"},
		{"temperature", `{` + base + `"temperature":1.5,` + user + `}`, "temperature must be between 0 and 1"},
		{"top_p", `{` + base + `"top_p":2,` + user + `}`, "top_p"},
		{"top_k", `{` + base + `"top_k":40,` + user + `}`, "top_k is not supported"},
		{"stop_sequences", `{` + base + `"stop_sequences":["a","b","c","d","e"],` + user + `}`, "stop_sequences"},
		{"stream type", `{` + base + `"stream":"yes",` + user + `}`, "stream: expected true or false"},
		{"thinking", `{` + base + `"thinking":{"type":"enabled","budget_tokens":1024},` + user + `}`, "thinking"},
		{"thinking field", `{` + base + `"thinking":{"type":"disabled","x":1},` + user + `}`, "thinking.x: unknown field"},
		{"speed", `{` + base + `"speed":"fast",` + user + `}`, "speed"},
		{"service_tier", `{` + base + `"service_tier":"priority",` + user + `}`, "service_tier"},
		{"container", `{` + base + `"container":"c_1",` + user + `}`, "container is not supported"},
		{"mcp_servers", `{` + base + `"mcp_servers":[{"type":"url","url":"http://x","name":"x"}],` + user + `}`, "mcp_servers"},
		{"inference_geo", `{` + base + `"inference_geo":"us",` + user + `}`, "inference_geo"},
		{"effort", `{` + base + `"output_config":{"effort":"low"},` + user + `}`, "output_config.effort"},
		{"format type", `{` + base + `"output_config":{"format":{"type":"json_object"}},` + user + `}`, "output_config.format.type"},
		{"format field", `{` + base + `"output_config":{"format":{"type":"json_schema","schema":{},"name":"x"}},` + user + `}`, "output_config.format.name: unknown field"},
		{"metadata", `{` + base + `"metadata":{"user_id":"u","tenant":"x"},` + user + `}`, "metadata.tenant: unknown field"},
		{"user_id", `{` + base + `"metadata":{"user_id":"` + strings.Repeat("u", 300) + `"},` + user + `}`, "metadata.user_id is 300 bytes"},
		{"no messages", `{` + base + `"messages":[]}`, "at least one message"},
		{"system role", `{` + base + `"messages":[{"role":"system","content":"x"},{"role":"user","content":"hi"}]}`, "top-level system"},
		{"bad role", `{` + base + `"messages":[{"role":"tool","content":"x"}]}`, `messages[0].role must be "user" or "assistant"`},
		{"message field", `{` + base + `"messages":[{"role":"user","content":"x","name":"bob"}]}`, "messages[0].name: unknown field"},
		{"no content", `{` + base + `"messages":[{"role":"user"}]}`, "messages[0].content is required"},
		{"empty content", `{` + base + `"messages":[{"role":"user","content":""}]}`, "messages[0].content must not be empty"},
		{"no blocks", `{` + base + `"messages":[{"role":"user","content":[]}]}`, "messages[0].content must hold at least one content block"},
		{"empty text", `{` + base + `"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, "messages[0].content[0].text is required"},
		{"block field", `{` + base + `"messages":[{"role":"user","content":[{"type":"text","text":"x","source":{}}]}]}`, "messages[0].content[0].source: unknown field"},
		{"block type", `{` + base + `"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, `content blocks of type "document" are not supported`},
		{"thinking block", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":"s"}]},{"role":"user","content":"b"}]}`, `"thinking" are not supported`},
		{"prefill", `{` + base + `"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"{"}]}`, "prefill"},
		{"system block", `{` + base + `"system":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}],` + user + `}`, "system[0]: the system prompt holds text blocks only"},
		{"system type", `{` + base + `"system":5,` + user + `}`, "system"},
		{"tool_use in user", `{` + base + `"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"n","input":{}}]}]}`, "belongs to an assistant message"},
		{"image in assistant", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}]},{"role":"user","content":"b"}]}`, `not "image"`},
		{"unanswered", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"n","input":{}}]},{"role":"user","content":"b"}]}`, "tool_use ids were found without tool_result blocks immediately after: t1"},
		{"partly answered", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"n","input":{}},{"type":"tool_use","id":"t2","name":"n","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1"}]}]}`, "immediately after: t2"},
		{"unexpected result", `{` + base + `"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t9","content":"x"}]}]}`, `messages[0].content[0].tool_use_id "t9" answers no tool_use block`},
		{"result after text", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"n","input":{}}]},{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","tool_use_id":"t1"}]}]}`, "tool_result blocks come first"},
		{"result image", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"n","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}]}]}]}`, "a tool result carries text only"},
		{"tool_use input", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"n","input":[1]}]},{"role":"user","content":"b"}]}`, "messages[1].content[0].input must be an object"},
		{"tool_use id", `{` + base + `"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","name":"n","input":{}}]},{"role":"user","content":"b"}]}`, "messages[1].content[0].id is required"},
		{"server tool", `{` + base + `"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}],` + user + `}`, `tools[0].type "web_search_20250305": server tools are not supported`},
		{"tool name", `{` + base + `"tools":[{"name":"get weather","input_schema":{"type":"object"}}],` + user + `}`, "tools[0].name"},
		{"tool twice", `{` + base + `"tools":[{"name":"a","input_schema":{}},{"name":"a","input_schema":{}}],` + user + `}`, "tools[1].name: tool \"a\" is offered twice"},
		{"tool schema", `{` + base + `"tools":[{"name":"a"}],` + user + `}`, "tools[0].input_schema is required"},
		{"tool schema type", `{` + base + `"tools":[{"name":"a","input_schema":"x"}],` + user + `}`, "tools[0].input_schema must be a JSON Schema object"},
		{"tool field", `{` + base + `"tools":[{"name":"a","input_schema":{},"parameters":{}}],` + user + `}`, "tools[0].parameters: unknown field"},
		{"defer_loading", `{` + base + `"tools":[{"name":"a","input_schema":{},"defer_loading":true}],` + user + `}`, "tools[0].defer_loading"},
		{"input_examples", `{` + base + `"tools":[{"name":"a","input_schema":{},"input_examples":[{}]}],` + user + `}`, "tools[0].input_examples"},
		{"tool_choice type", `{` + base + `"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"required"},` + user + `}`, `tool_choice.type must be`},
		{"tool_choice name", `{` + base + `"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"tool","name":"b"},` + user + `}`, `tool_choice.name "b" names no tool`},
		{"tool_choice field", `{` + base + `"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"none","disable_parallel_tool_use":true},` + user + `}`, "tool_choice.disable_parallel_tool_use: unknown field"},
		{"tool_choice without tools", `{` + base + `"tool_choice":{"type":"any"},` + user + `}`, "needs tools"},
		{"tool_choice string", `{` + base + `"tool_choice":"auto",` + user + `}`, "tool_choice must be an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := postMessages(t, e.url, "", tc.body)
			var eb anthropicError
			if err := json.Unmarshal(b, &eb); err != nil {
				t.Fatalf("body is not JSON: %s", b)
			}
			if resp.StatusCode != 400 || eb.Type != "error" || eb.Error.Type != "invalid_request_error" || !strings.Contains(eb.Error.Message, tc.contains) ||
				eb.RequestID == "" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("got %d %s, want 400 containing %q", resp.StatusCode, b, tc.contains)
			}
		})
	}
	// What Anthropic takes and a gateway can do without passes.
	for _, body := range []string{
		`{` + base + `"service_tier":"standard_only","speed":"standard","thinking":{"type":"disabled"},"cache_control":{"type":"ephemeral"},` + user + `}`,
		`{` + base + `"output_config":{"effort":"high"},"top_k":null,"container":null,` + user + `}`,
		`{` + base + `"tools":[],"tool_choice":{"type":"auto"},` + user + `}`,
		`{` + base + `"tools":[{"type":"custom","name":"a","input_schema":{}}],"tool_choice":{"type":"tool","name":"a"},` + user + `}`,
		`{` + base + `"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral","ttl":"5m"},"citations":null}]}]}`,
	} {
		if resp, b := postMessages(t, e.url, "", body); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
}

func TestMessagesErrors(t *testing.T) {
	e := setup(t, []string{"sim/sim"})
	for _, tc := range []struct {
		name, method, body string
		status             int
		typ, contains      string
	}{
		{"unknown model", "POST", `{"model":"claude-opus-4-1","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, 404, "not_found_error", "claude-opus-4-1"},
		{"too large", "POST", `{"model":"moltbot","max_tokens":10,"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, 413, "request_too_large", "max_body_bytes"},
		{"message too large", "POST", `{"model":"moltbot","max_tokens":10,"system":"s","messages":[{"role":"user","content":"` + strings.Repeat("x", 3000) + `"}]}`, 413, "request_too_large", "messages[0].content is 3000 bytes"},
		{"method", "GET", ``, 405, "invalid_request_error", "use POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.url+"/v1/messages", strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var eb anthropicError
			json.Unmarshal(b, &eb)
			if resp.StatusCode != tc.status || eb.Type != "error" || eb.Error.Type != tc.typ || !strings.Contains(eb.Error.Message, tc.contains) {
				t.Errorf("got %d %s, want %d %s containing %q", resp.StatusCode, b, tc.status, tc.typ, tc.contains)
			}
		})
	}
}

func TestMessagesProviderFailures(t *testing.T) {
	var mu sync.Mutex
	tokens := 0
	flaky := &scripted{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		mu.Lock()
		n := tokens
		mu.Unlock()
		for range n {
			fn(inference.Delta{Text: "half "})
		}
		if n == 0 {
			return inference.Result{}, &inference.Error{Kind: inference.KindUnavailable, Provider: "flaky", Message: "connection refused"}
		}
		return inference.Result{}, inference.StreamEnded("flaky")
	}}
	e := setup(t, []string{"flaky/m"}, actors.ProviderSpec{Name: "flaky", Provider: flaky, MaxInFlight: 1, Timeout: time.Second})
	const body = `{"model":"moltbot","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}`
	// Before any token: a plain HTTP error.
	resp, b := postMessages(t, e.url, "", body)
	var eb anthropicError
	json.Unmarshal(b, &eb)
	if resp.StatusCode != 502 || eb.Error.Type != "api_error" || !strings.Contains(eb.Error.Message, "connection refused") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// After some: an error event ends the stream.
	mu.Lock()
	tokens = 2
	mu.Unlock()
	resp, b = postMessages(t, e.url, "", body)
	evs := readEvents(t, strings.NewReader(string(b)))
	if resp.StatusCode != 200 || names(evs) != "message_start content_block_start ping content_block_delta content_block_delta error" ||
		field(evs[5].data, "error", "type") != "api_error" || !strings.Contains(field(evs[5].data, "error", "message").(string), "ended before") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestMessagesAuth(t *testing.T) {
	e := setupAuth(t, []auth.Tenant{{ID: "a"}, {ID: "b"}})
	const body = `{"model":"moltbot","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	// x-api-key, as Anthropic's clients send the key.
	if resp, b := postMessages(t, e.url, e.keys["chatA"], body); resp.StatusCode != 200 {
		t.Fatalf("x-api-key: %d %s", resp.StatusCode, b)
	}
	// No credential: 401 in Anthropic's shape, saying what to send.
	resp, b := postMessages(t, e.url, "", body)
	var eb anthropicError
	json.Unmarshal(b, &eb)
	if resp.StatusCode != 401 || eb.Type != "error" || eb.Error.Type != "authentication_error" || !strings.Contains(eb.Error.Message, "x-api-key") ||
		eb.RequestID == "" || resp.Header.Get("Request-Id") != eb.RequestID {
		t.Fatalf("no key: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	// A wrong key, as a wrong bearer credential is.
	resp, b = postMessages(t, e.url, "mb_zzzzzzzz_"+strings.Repeat("x", 26), body)
	json.Unmarshal(b, &eb)
	if resp.StatusCode != 401 || eb.Error.Type != "authentication_error" {
		t.Fatalf("bad key: %d %s", resp.StatusCode, b)
	}
	// Authorization works too, and wins over x-api-key.
	for _, tc := range []struct {
		bearer, apiKey string
		status         int
	}{
		{e.keys["chatB"], "", 200},
		{e.keys["chatB"], "mb_zzzzzzzz_" + strings.Repeat("x", 26), 200},
		{"mb_zzzzzzzz_" + strings.Repeat("x", 26), e.keys["chatB"], 401},
	} {
		req, _ := http.NewRequest("POST", e.url+"/v1/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tc.bearer)
		if tc.apiKey != "" {
			req.Header.Set("x-api-key", tc.apiKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("Authorization and x-api-key: %d, want %d", resp.StatusCode, tc.status)
		}
	}
	// x-api-key is the Messages API's: elsewhere it is no credential.
	req, _ := http.NewRequest("GET", e.url+"/v1/models", nil)
	req.Header.Set("x-api-key", e.keys["chatA"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("x-api-key on /v1/models: %d", resp.StatusCode)
	}
	// Tenant b's allow-list and rate limits apply as on any route: a
	// tenant's model list is checked (chatA may use the chain).
	_, metricsText, _ := e.do(t, "op", "GET", "/metrics", "")
	if !strings.Contains(metricsText, `moltbot_http_requests_total{route="/v1/messages",code="200"}`) {
		t.Errorf("metrics lack the route")
	}
}

// The chat service's errors name the domain's fields; the Messages API's
// client is told its own.
func TestMessagesRewire(t *testing.T) {
	at := []string{"system", "messages[0]", "messages[1].content[0]", "messages[1].content[1]"}
	for _, tc := range []struct{ param, msg, wantParam, wantMsg string }{
		{"messages[2].content", "messages[2].content is 9 bytes", "messages[1].content[0].content", "messages[1].content[0].content is 9 bytes"},
		{"messages[0]", "messages[0] x", "system", "system x"},
		{"messages[9].content", "messages[9] x", "messages[9].content", "messages[9] x"},
		{"tools[1].function.description", "tools[1].function.description is long", "tools[1].description", "tools[1].description is long"},
		{"tools[0].function.parameters", "tools[0].function.parameters must be", "tools[0].input_schema", "tools[0].input_schema must be"},
		{"response_format.json_schema.schema", "response_format.json_schema.schema x", "output_config.format.schema", "output_config.format.schema x"},
		{"temperature", "temperature x", "temperature", "temperature x"},
	} {
		err := rewire(&moltbot.Error{Code: moltbot.EInvalid, Param: tc.param, Message: tc.msg}, at)
		var e *moltbot.Error
		if !errors.As(err, &e) || e.Param != tc.wantParam || e.Message != tc.wantMsg || e.Code != moltbot.EInvalid {
			t.Errorf("%s: %+v", tc.param, err)
		}
	}
}

func TestAnthropicErrorTypes(t *testing.T) {
	for code, want := range map[string]struct {
		status int
		typ    string
	}{
		moltbot.EInvalid:      {400, "invalid_request_error"},
		moltbot.EUnauthorized: {401, "authentication_error"},
		moltbot.EForbidden:    {403, "permission_error"},
		moltbot.ENotFound:     {404, "not_found_error"},
		moltbot.EConflict:     {409, "invalid_request_error"},
		moltbot.ETooLarge:     {413, "request_too_large"},
		moltbot.ERateLimited:  {429, "rate_limit_error"},
		moltbot.EQuota:        {429, "rate_limit_error"},
		moltbot.EInternal:     {500, "api_error"},
		moltbot.EUnavailable:  {502, "api_error"},
		moltbot.EBusy:         {503, "overloaded_error"},
		moltbot.EShutdown:     {503, "overloaded_error"},
		moltbot.ETimeout:      {504, "timeout_error"},
		codeRequestTimeout:    {408, "invalid_request_error"},
	} {
		if got := status(code); got != want.status || anthropicErrorType(code) != want.typ {
			t.Errorf("%s: %d %s, want %d %s", code, got, anthropicErrorType(code), want.status, want.typ)
		}
	}
}

// The per-token path appends to a reused buffer: no allocation.
func TestMessageStreamTokensAllocateNothing(t *testing.T) {
	w := deadlineRecorder{httptest.NewRecorder()}
	e := &Server{}
	m := newMessageStream(e, w, "msg_x")
	m.start("sim/sim", 0)
	m.addText("first")
	m.flush()
	call := &moltbot.ToolCallDelta{Index: 0, ID: "toolu_1", Name: "f"}
	m.addCall(call)
	m.flush()
	piece := &moltbot.ToolCallDelta{Index: 0, Arguments: `{"a":1}`}
	if n := testing.AllocsPerRun(100, func() {
		w.Body.Reset()
		m.addCall(piece)
		m.flush()
	}); n != 0 {
		t.Errorf("an input_json_delta allocates %v times", n)
	}
	m.addText("x")
	if n := testing.AllocsPerRun(100, func() {
		w.Body.Reset()
		m.addText(" token")
		m.flush()
	}); n != 0 {
		t.Errorf("a text_delta allocates %v times", n)
	}
}

func BenchmarkMessagesStream(b *testing.B) {
	e := setup(b, []string{"sim/sim"})
	body := `{"model":"moltbot","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello"}]}`
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", e.url+"/v1/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkMessageStreamText(b *testing.B) {
	w := deadlineRecorder{httptest.NewRecorder()}
	m := newMessageStream(&Server{}, w, "msg_x")
	m.start("sim/sim", 0)
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		m.addText(" token")
		m.flush()
	}
}

// FuzzParseMessages feeds the Messages API decoder arbitrary bodies: it
// must answer an EInvalid naming the problem or a well-formed stateless
// completion, and never panic.
func FuzzParseMessages(f *testing.F) {
	png := base64.StdEncoding.EncodeToString(pngBytes)
	for _, seed := range []string{
		`{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`,
		`{"model":"moltbot","max_tokens":1024,"stream":true,"system":"You are terse.","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"More"}],"temperature":0.2,"top_p":0.9,"stop_sequences":["END"],"metadata":{"user_id":"u1"}}`,
		`{"model":"moltbot","max_tokens":64,"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"` + png + `"}}]}]}`,
		`{"model":"moltbot","max_tokens":64,` + weatherTools + `,"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":[{"type":"text","text":"Looking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"}],"is_error":false},{"type":"text","text":"thanks"}]}]}`,
		`{"model":"moltbot","max_tokens":8,"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"a":{"type":"string"}}}}},"thinking":{"type":"disabled"},"service_tier":"auto","messages":[{"role":"user","content":"json"}]}`,
		`{"model":"moltbot","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}`,
		`{"model":"moltbot","max_tokens":8,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"moltbot","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x"}]}],"top_k":5}`,
		`{"model":"moltbot","max_tokens":8,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":{}}]}]}`,
		`{"model":1,"max_tokens":-1,"messages":{}}`,
		`[]`, `null`, ``, `{"messages":[null,{"role":null,"content":null}]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, at, err := parseMessages([]byte(body))
		if err != nil {
			var e *moltbot.Error
			if !errors.As(err, &e) || e.Code != moltbot.EInvalid || e.Message == "" {
				t.Fatalf("%q: error %#v", body, err)
			}
			return
		}
		o := req.Options
		if o.Model == "" || o.MaxTokens < 1 || len(req.Messages) == 0 || len(at) != len(req.Messages) {
			t.Fatalf("%q: %+v %v", body, req, at)
		}
		if req.Messages[len(req.Messages)-1].Role == moltbot.RoleAssistant {
			t.Fatalf("%q: ends with the assistant's message", body)
		}
		for i, m := range req.Messages {
			switch m.Role {
			case moltbot.RoleTool:
				if len(m.Parts) != 1 || m.Parts[0].Type != moltbot.PartToolResult || m.Parts[0].CallID == "" || m.Content != "" {
					t.Fatalf("%q: tool message %d %+v", body, i, m)
				}
			case moltbot.RoleSystem:
				if i != 0 || m.Parts != nil || m.Content == "" {
					t.Fatalf("%q: system message %d %+v", body, i, m)
				}
			case moltbot.RoleUser, moltbot.RoleAssistant:
				if m.Parts != nil && m.Content != moltbot.TextOf(m.Parts) || m.Parts == nil && m.Content == "" {
					t.Fatalf("%q: message %d %+v", body, i, m)
				}
				for _, p := range m.Parts {
					if p.Type == moltbot.PartToolCall && (m.Role != moltbot.RoleAssistant || !json.Valid([]byte(p.Arguments))) ||
						p.Type == moltbot.PartImage && (m.Role != moltbot.RoleUser || len(p.Data) == 0) {
						t.Fatalf("%q: message %d part %+v", body, i, p)
					}
				}
			default:
				t.Fatalf("%q: role %q", body, m.Role)
			}
		}
		for _, tool := range o.Tools {
			if !validToolName(tool.Name) || !json.Valid(tool.Parameters) {
				t.Fatalf("%q: tool %+v", body, tool)
			}
		}
	})
}

// FuzzMessages sends arbitrary bodies through the gateway: every answer is
// a JSON body or an event stream, never a 5xx of the gateway's making.
func FuzzMessages(f *testing.F) {
	f.Add(`{"model":"moltbot","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`)
	f.Add(`{"model":"sim/sim","max_tokens":16,"stream":true,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`)
	f.Add(`{"model":"moltbot","max_tokens":0,"messages":[{"role":"user","content":"hi"}],"top_k":1}`)
	e := setup(f, []string{"sim/sim"})
	f.Fuzz(func(t *testing.T, body string) {
		resp, b := postMessages(t, e.url, "", body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%q: %d %s", body, resp.StatusCode, b)
		}
		switch ct := resp.Header.Get("Content-Type"); ct {
		case "application/json":
			if !json.Valid(b) {
				t.Fatalf("%q: invalid JSON %s", body, b)
			}
		case "text/event-stream":
			readEvents(t, strings.NewReader(string(b)))
		default:
			t.Fatalf("%q: content type %q", body, ct)
		}
	})
}
