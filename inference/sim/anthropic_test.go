package sim

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/anthropic"
)

// Requests here are written as @anthropic-ai/sdk sends them: x-api-key,
// anthropic-version, max_tokens, content as a string or blocks, tools with
// input_schema, tool_result blocks in a user message.

const claudeTools = `[{"name":"get_weather","description":"Get the current weather in a given location","input_schema":{"type":"object","properties":{"location":{"type":"string","description":"The city and state"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}},
{"name":"get_time","input_schema":{"type":"object","properties":{"timezone":{"type":"string"}},"required":["timezone"]}}]`

func anthropicPost(t *testing.T, base, body string) *http.Response {
	t.Helper()
	return post(t, base+"/v1/messages", body, "x-api-key", "sk-ant-test", "anthropic-version", "2023-06-01")
}

type sseEvent struct {
	name string
	data map[string]any
	raw  string
}

// anthropicEvents reads an SSE body: each event's name and data, which
// must be JSON whose "type" is the event's name.
func anthropicEvents(t *testing.T, resp *http.Response) []sseEvent {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var out []sseEvent
	sc := bufio.NewScanner(resp.Body)
	var name string
	for sc.Scan() {
		l := sc.Text()
		if n, ok := strings.CutPrefix(l, "event: "); ok {
			name = n
		} else if d, ok := strings.CutPrefix(l, "data: "); ok {
			ev := sseEvent{name: name, raw: d}
			if err := json.Unmarshal([]byte(d), &ev.data); err != nil || ev.data["type"] != name {
				t.Fatalf("event %s data %s: %v", name, d, err)
			}
			out = append(out, ev)
		}
	}
	return out
}

func names(evs []sseEvent) string {
	var s []string
	for _, e := range evs {
		if len(s) == 0 || s[len(s)-1] != e.name {
			s = append(s, e.name)
		}
	}
	return strings.Join(s, " ")
}

func TestAnthropicText(t *testing.T) {
	srv := server(t, fast())
	want, _ := gen(t, NewEngine(fast()), "Hello, Claude", 0)
	// Not streamed: a message with one text block.
	resp := anthropicPost(t, srv.URL, `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`)
	var m struct {
		ID, Type, Role, Model string
		Content               []struct{ Type, Text string }
		StopReason            string  `json:"stop_reason"`
		StopSequence          *string `json:"stop_sequence"`
		Usage                 struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != "claude-sonnet-4-5" ||
		len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text != want || m.StopReason != "end_turn" ||
		m.Usage.InputTokens == 0 || m.Usage.OutputTokens != 8 || resp.Header.Get("request-id") == "" {
		t.Errorf("message %+v", m)
	}
	// Streamed: the API's events in the API's order.
	evs := anthropicEvents(t, anthropicPost(t, srv.URL, `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"Hello, Claude"}]}]}`))
	if got := names(evs); got != "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop" {
		t.Fatalf("events %s", got)
	}
	var text strings.Builder
	for _, e := range evs {
		if e.name == "content_block_delta" {
			d := e.data["delta"].(map[string]any)
			if d["type"] != "text_delta" || e.data["index"] != float64(0) {
				t.Errorf("delta %s", e.raw)
			}
			text.WriteString(d["text"].(string))
		}
	}
	md := evs[len(evs)-2].data
	if text.String() != want || md["delta"].(map[string]any)["stop_reason"] != "end_turn" || md["usage"].(map[string]any)["output_tokens"] != float64(8) {
		t.Errorf("text %q, message_delta %v", text.String(), md)
	}
	// max_tokens cuts: stop_reason max_tokens.
	resp = anthropicPost(t, srv.URL, `{"model":"c","max_tokens":3,"messages":[{"role":"user","content":"Hello, Claude"}]}`)
	json.NewDecoder(resp.Body).Decode(&m)
	if m.StopReason != "max_tokens" || m.Usage.OutputTokens != 3 {
		t.Errorf("cut: %+v", m)
	}
}

// The Anthropic client moltbot ships reads the endpoint: text and models.
func TestAnthropicThroughClient(t *testing.T) {
	srv := server(t, fast())
	c := anthropic.New(anthropic.Config{Name: "claude", BaseURL: srv.URL, APIKey: "k"})
	var b strings.Builder
	res, err := c.Chat(context.Background(), &inference.Request{Model: "claude-x", Messages: msgs("hi")}, func(d inference.Delta) error { b.WriteString(d.Text); return nil })
	want, _ := gen(t, NewEngine(fast()), "hi", 0)
	if err != nil || b.String() != want || res.FinishReason != "stop" || res.Usage.CompletionTokens != 8 || res.Model != "claude-x" {
		t.Errorf("%q %+v %v", b.String(), res, err)
	}
	if ms, err := c.Models(context.Background()); err != nil || strings.Join(ms, ",") != "a,b" {
		t.Errorf("models %v %v", ms, err)
	}
}

func TestAnthropicToolUse(t *testing.T) {
	srv := server(t, fast())
	evs := anthropicEvents(t, anthropicPost(t, srv.URL, `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"tools":`+claudeTools+`,
		"tool_choice":{"type":"tool","name":"get_weather"},"messages":[{"role":"user","content":"What's the weather like in San Francisco?"}]}`))
	if got := names(evs); got != "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop" {
		t.Fatalf("events %s", got)
	}
	cb := evs[1].data["content_block"].(map[string]any)
	id, _ := cb["id"].(string)
	if cb["type"] != "tool_use" || !strings.HasPrefix(id, "toolu_") || cb["name"] != "get_weather" || len(cb["input"].(map[string]any)) != 0 {
		t.Fatalf("content_block_start %s", evs[1].raw)
	}
	var input strings.Builder
	pieces := 0
	for _, e := range evs {
		if e.name == "content_block_delta" {
			d := e.data["delta"].(map[string]any)
			if d["type"] != "input_json_delta" {
				t.Errorf("delta %s", e.raw)
			}
			input.WriteString(d["partial_json"].(string))
			pieces++
		}
	}
	var in struct{ Location, Unit string }
	if err := json.Unmarshal([]byte(input.String()), &in); err != nil || in.Location == "" || pieces < 2 {
		t.Errorf("input %q in %d pieces: %v", input.String(), pieces, err)
	}
	if sr := evs[len(evs)-2].data["delta"].(map[string]any)["stop_reason"]; sr != "tool_use" {
		t.Errorf("stop_reason %v", sr)
	}

	// Not streamed, "any" with parallel use: two tool_use blocks.
	resp := anthropicPost(t, srv.URL, `{"model":"c","max_tokens":100,"tools":`+claudeTools+`,"tool_choice":{"type":"any"},
		"messages":[{"role":"user","content":"weather and time for all of them"}]}`)
	var m struct {
		Content []struct {
			Type, ID, Name string
			Input          map[string]any
		}
		StopReason string `json:"stop_reason"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if len(m.Content) != 2 || m.Content[0].Type != "tool_use" || m.Content[0].Input == nil || m.StopReason != "tool_use" {
		t.Fatalf("two tool_use blocks: %+v", m)
	}
	resp = anthropicPost(t, srv.URL, `{"model":"c","max_tokens":100,"tools":`+claudeTools+`,"tool_choice":{"type":"any","disable_parallel_tool_use":true},
		"messages":[{"role":"user","content":"weather and time for all of them"}]}`)
	json.NewDecoder(resp.Body).Decode(&m)
	if len(m.Content) != 1 {
		t.Errorf("parallel disabled: %+v", m)
	}

	// The results go back in a user message; the reply quotes them.
	hist := `[{"role":"user","content":"What's the weather like in San Francisco?"},
		{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"` + id + `","name":"get_weather","input":` + input.String() + `}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + id + `","content":[{"type":"text","text":"15 degrees"}]}]}]`
	resp = anthropicPost(t, srv.URL, `{"model":"c","max_tokens":100,"tools":`+claudeTools+`,"messages":`+hist+`}`)
	var r struct {
		Content    []struct{ Type, Text string }
		StopReason string `json:"stop_reason"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	if len(r.Content) != 1 || r.Content[0].Text != Label+" get_weather returned 15 degrees." || r.StopReason != "end_turn" {
		t.Errorf("answer %+v", r)
	}
}

func TestAnthropicImages(t *testing.T) {
	srv := server(t, fast())
	img := base64.StdEncoding.EncodeToString([]byte("\xff\xd8\xff\xe0jpeg"))
	resp := anthropicPost(t, srv.URL, `{"model":"c","max_tokens":100,"messages":[{"role":"user","content":[
		{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"`+img+`"}},
		{"type":"image","source":{"type":"url","url":"https://example.com/cat.png"}},
		{"type":"text","text":"Describe these images."}]}]}`)
	var m struct {
		Content []struct{ Text string }
		Usage   struct {
			InputTokens int `json:"input_tokens"`
		}
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if len(m.Content) != 1 || !strings.HasPrefix(m.Content[0].Text, Label+" I see 2 image(s) (8 bytes).") || m.Usage.InputTokens < 2*ImageTokens {
		t.Errorf("%+v", m)
	}
}

func TestAnthropicErrors(t *testing.T) {
	srv := server(t, fast())
	use := `{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]}`
	for body, want := range map[string]string{
		`{"model":"c","messages":[{"role":"user","content":"x"}]}`:                  "max_tokens: Field required",
		`{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`:               "model: Field required",
		`{"model":"c","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`:   "max_tokens: Input should be greater than or equal to 1",
		`{"model":"c","max_tokens":5,"messages":[]}`:                                "messages: at least one message",
		`{"model":"c","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`: "messages.0.role",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"aGk="}}]}]}`: "messages.0.content.0.source.media_type",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"%%%"}}]}]}`:  "messages.0.content.0.source.data",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`:                                                    "messages.0.content.0.type",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"},` + use + `,{"role":"user","content":"y"}]}`:                                        "messages.1: `tool_use` ids were found without `tool_result` blocks",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":"r"}]}]}`:                       "unexpected `tool_use_id`",
		`{"model":"c","max_tokens":5,"tool_choice":{"type":"auto"},"messages":[{"role":"user","content":"x"}]}`:                                                    "tool_choice may only be specified while providing tools",
		`{"model":"c","max_tokens":5,"tools":[{"name":"x"}],"messages":[{"role":"user","content":"x"}]}`:                                                           "tools.0.input_schema: Field required",
		`{"model":"c","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]}`:                     "tools.0.type",
		`{"model":"c","max_tokens":5,"tools":` + claudeTools + `,"tool_choice":{"type":"tool"},"messages":[{"role":"user","content":"x"}]}`:                        "tool_choice.name: Field required",
		`{"model":"c","max_tokens":5,"tools":[{"name":"t","input_schema":{"type":"string"}}],"messages":[{"role":"user","content":"x"}]}`:                          "tools[0] (t): parameters",
		`{"model":"voyage-embed","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`:                                                                       "does not support chat",
		`{"model":"c","max_tokens":5,"messages":[{"role":"user","content":""}]}`:                                                                                   "non-empty content",
		`not json`: "invalid request body",
	} {
		resp := anthropicPost(t, srv.URL, body)
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, want) {
			t.Errorf("%s: %d %+v, want %q", body, resp.StatusCode, e, want)
		}
	}
}

// The fault options apply to /v1/messages as to the other endpoints, with
// the API's error types.
func TestAnthropicFaults(t *testing.T) {
	srv := server(t, fast())
	body := `{"model":"c","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"x"}]}`
	for status, typ := range map[int]string{429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"} {
		post(t, srv.URL+"/sim/faults", `{"status":`+jsonInt(int64(status))+`,"retry_after":"3s"}`)
		resp := anthropicPost(t, srv.URL, body)
		var e struct{ Error struct{ Type string } }
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != status || e.Error.Type != typ || resp.Header.Get("Retry-After") != "3" {
			t.Errorf("%d: %d %+v", status, resp.StatusCode, e)
		}
	}
	req, _ := http.NewRequest("DELETE", srv.URL+"/sim/faults", nil)
	http.DefaultClient.Do(req)
	// Dropped after two pieces: the stream ends with no message_stop.
	post(t, srv.URL+"/sim/faults", `{"drop_after":2}`)
	resp := anthropicPost(t, srv.URL, body)
	raw, _ := io.ReadAll(resp.Body)
	if strings.Count(string(raw), "event: content_block_delta") != 2 || strings.Contains(string(raw), "message_stop") {
		t.Errorf("dropped: %s", raw)
	}
	// Stalled after one: the client's deadline ends it.
	post(t, srv.URL+"/sim/faults", `{"drop_after":0,"stall_after":1}`)
	c := anthropic.New(anthropic.Config{Name: "claude", BaseURL: srv.URL, APIKey: "k"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Chat(ctx, &inference.Request{Model: "c", Messages: msgs("x")}, func(inference.Delta) error { return nil })
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindTimeout {
		t.Errorf("stall: %v", err)
	}
}
