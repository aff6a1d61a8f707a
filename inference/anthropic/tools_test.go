package anthropic

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// toolStream is a reply that says a few words, then calls two tools at
// once, each call's input in several pieces, as the Messages API streams
// it: a tool_use content_block_start with the id and name (and an empty
// input), input_json_delta pieces (the first one empty), stop_reason
// tool_use.
var toolStream = []string{
	ev("message_start", `{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}`),
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
	ev("ping", `{"type": "ping"}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}`),
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`),
	ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{}}}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}`),
	ev("content_block_stop", `{"type":"content_block_stop","index":1}`),
	ev("content_block_start", `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01B","name":"get_time","input":{}}}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":"}}`),
	ev("content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"CET\"}"}}`),
	ev("content_block_stop", `{"type":"content_block_stop","index":2}`),
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}`),
	ev("message_stop", `{"type":"message_stop"}`),
}

// rawFake answers /v1/messages with the SSE frames given and keeps the
// request body it got.
func rawFake(t *testing.T, frames ...string) (*httptest.Server, *[]byte) {
	t.Helper()
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != "ak" || r.Header.Get("anthropic-version") != APIVersion {
			http.NotFound(w, r)
			return
		}
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for _, f := range frames {
			fmt.Fprint(w, f)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// collect runs req and returns the text, the tool calls its deltas make up
// (put together as the router does) and every tool-call delta.
func collect(t *testing.T, srv *httptest.Server, req *inference.Request) (string, []moltbot.ToolCall, []moltbot.ToolCallDelta, inference.Result, error) {
	t.Helper()
	c := New(Config{Name: "claude", BaseURL: srv.URL, APIKey: "ak"})
	var text strings.Builder
	var calls []moltbot.ToolCall
	var deltas []moltbot.ToolCallDelta
	res, err := c.Chat(context.Background(), req, func(d inference.Delta) error {
		if d.ToolCall != nil {
			deltas = append(deltas, *d.ToolCall)
			calls = moltbot.AddDelta(calls, d.ToolCall)
			return nil
		}
		text.WriteString(d.Text)
		return nil
	})
	return text.String(), calls, deltas, res, err
}

// sameJSON fails unless got and want are the same JSON value.
func sameJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: the test's want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s\n got %s\nwant %s", what, got, want)
	}
}

// The request in Anthropic's words: the image as a base64 block, the
// assistant's calls as tool_use blocks, the two results in one user turn
// (with the user's next words after them), tools with input_schema,
// tool_choice with parallel use off, the user in metadata, no penalties.
// The reply's two calls come back in pieces, finish reason tool_calls.
func TestTools(t *testing.T) {
	srv, body := rawFake(t, toolStream...)
	par := false
	req := &inference.Request{Model: "claude-sonnet-4-5", Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "be brief"},
		{Role: moltbot.RoleUser, Content: "what is this? weather there?", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "what is this?"},
			{Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG\r\n\x1a\n")},
			{Type: moltbot.PartText, Text: " weather there?"}}},
		{Role: moltbot.RoleAssistant, Content: "Checking.", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "Checking."},
			{Type: moltbot.PartToolCall, CallID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "toolu_2", Name: "get_time"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "toolu_1", Content: "18C, clear"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "toolu_2", Content: "14:05"}}},
		{Role: moltbot.RoleUser, Content: "and Lyon?"},
	}, ChatOptions: moltbot.ChatOptions{MaxTokens: 256,
		Tools: []moltbot.Tool{
			{Name: "get_weather", Description: "Weather of a city", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)},
			{Name: "get_time"}},
		ToolChoice:        &moltbot.ToolChoice{Mode: moltbot.ToolChoiceRequired},
		ParallelToolCalls: &par,
		PresencePenalty:   ptr(0.5), FrequencyPenalty: ptr(0.5), User: "user-42"}}
	text, calls, deltas, res, err := collect(t, srv, req)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "request", *body, `{"model":"claude-sonnet-4-5","max_tokens":256,"system":"be brief","stream":true,
		"messages":[
			{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":" weather there?"}]},
			{"role":"assistant","content":[{"type":"text","text":"Checking."},
				{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},
				{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C, clear"},{"type":"tool_result","tool_use_id":"toolu_2","content":"14:05"},{"type":"text","text":"and Lyon?"}]}],
		"tools":[
			{"name":"get_weather","description":"Weather of a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
			{"name":"get_time","input_schema":{"type":"object","properties":{}}}],
		"tool_choice":{"type":"any","disable_parallel_tool_use":true},
		"metadata":{"user_id":"user-42"}}`)
	if text != "Let me check." {
		t.Errorf("text %q", text)
	}
	want := []moltbot.ToolCall{{ID: "toolu_01A", Name: "get_weather", Arguments: `{"city": "Paris"}`}, {ID: "toolu_01B", Name: "get_time", Arguments: `{"tz": "CET"}`}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %+v", calls)
	}
	if len(deltas) != 6 || deltas[0] != (moltbot.ToolCallDelta{Index: 0, ID: "toolu_01A", Name: "get_weather"}) || deltas[3] != (moltbot.ToolCallDelta{Index: 1, ID: "toolu_01B", Name: "get_time"}) {
		t.Errorf("deltas %+v", deltas)
	}
	if res.FinishReason != "tool_calls" || res.Usage != (moltbot.Usage{PromptTokens: 472, CompletionTokens: 89}) {
		t.Errorf("result %+v", res)
	}
}

func ptr[T any](v T) *T { return &v }

// tool_choice and parallel_tool_calls in Anthropic's words; a choice
// without tools is not sent.
func TestToolChoice(t *testing.T) {
	tools := []moltbot.Tool{{Name: "f"}}
	for _, tc := range []struct {
		opts moltbot.ChatOptions
		want string
	}{
		{moltbot.ChatOptions{Tools: tools}, `null`},
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "auto"}}, `{"type":"auto"}`},
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "none"}, ParallelToolCalls: ptr(false)}, `{"type":"none"}`},
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "required"}}, `{"type":"any"}`},
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "f"}, ParallelToolCalls: ptr(true)}, `{"type":"tool","name":"f"}`},
		{moltbot.ChatOptions{Tools: tools, ParallelToolCalls: ptr(false)}, `{"type":"auto","disable_parallel_tool_use":true}`},
		{moltbot.ChatOptions{ToolChoice: &moltbot.ToolChoice{Mode: "auto"}, ParallelToolCalls: ptr(false)}, `null`},
	} {
		body, _, err := buildRequest(&inference.Request{Model: "m", ChatOptions: tc.opts})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(body.ToolChoice)
		sameJSON(t, fmt.Sprintf("%+v", tc.opts), b, tc.want)
	}
}

// jsonStream is a reply through the JSON reply's tool: its input pieces
// are the reply's text.
func jsonStream(name string) []string {
	return []string{
		ev("message_start", `{"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}`),
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01J","name":"`+name+`","input":{}}}`),
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}`),
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"answer\": "}}`),
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"42\"}"}}`),
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`),
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}`),
		ev("message_stop", `{"type":"message_stop"}`),
	}
}

// A JSON response format is a tool the model must call, whose input is
// the reply: text, finish reason stop, no tool call.
func TestJSONFormat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   moltbot.ChatOptions
		tools  string // the request's tools
		choice string
	}{
		{"answer", moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Name: "answer", Schema: json.RawMessage(`{"type":"object","properties":{"answer":{"type":"string"}}}`), Strict: true}},
			`[{"name":"answer","description":"` + jsonToolDescription + `","input_schema":{"type":"object","properties":{"answer":{"type":"string"}}}}]`,
			`{"type":"tool","name":"answer","disable_parallel_tool_use":true}`},
		{DefaultJSONTool, moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}},
			`[{"name":"json_response","description":"` + jsonToolDescription + `","input_schema":{"type":"object"}}]`,
			`{"type":"tool","name":"json_response","disable_parallel_tool_use":true}`},
		// Beside the request's tools, the model calls one of them or answers.
		{DefaultJSONTool, moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}, Tools: []moltbot.Tool{{Name: "f"}}},
			`[{"name":"f","input_schema":{"type":"object","properties":{}}},{"name":"json_response","description":"` + jsonToolDescription + `","input_schema":{"type":"object"}}]`,
			`{"type":"any"}`},
		{DefaultJSONTool, moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}, Tools: []moltbot.Tool{{Name: "f"}}, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "f"}},
			`[{"name":"f","input_schema":{"type":"object","properties":{}}},{"name":"json_response","description":"` + jsonToolDescription + `","input_schema":{"type":"object"}}]`,
			`{"type":"tool","name":"f"}`},
		{DefaultJSONTool, moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}, Tools: []moltbot.Tool{{Name: "f"}}, ToolChoice: &moltbot.ToolChoice{Mode: "none"}},
			`[{"name":"f","input_schema":{"type":"object","properties":{}}},{"name":"json_response","description":"` + jsonToolDescription + `","input_schema":{"type":"object"}}]`,
			`{"type":"tool","name":"json_response","disable_parallel_tool_use":true}`},
	} {
		srv, body := rawFake(t, jsonStream(tc.name)...)
		text, calls, _, res, err := collect(t, srv, &inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "6*7?"}}, ChatOptions: tc.opts})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Tools      json.RawMessage `json:"tools"`
			ToolChoice json.RawMessage `json:"tool_choice"`
		}
		json.Unmarshal(*body, &got)
		sameJSON(t, "tools", got.Tools, tc.tools)
		sameJSON(t, "tool_choice", got.ToolChoice, tc.choice)
		if text != `{"answer": "42"}` || len(calls) != 0 || res.FinishReason != "stop" {
			t.Errorf("text %q calls %+v result %+v", text, calls, res)
		}
	}
}

// A call (or JSON reply) whose input never streams gets "{}": arguments
// are always a JSON text.
func TestEmptyInput(t *testing.T) {
	srv, _ := rawFake(t,
		okStream[0],
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}`),
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`),
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":5}}`),
		ev("message_stop", `{"type":"message_stop"}`))
	_, calls, _, res, err := collect(t, srv, &inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "now"}}}})
	if err != nil || len(calls) != 1 || calls[0] != (moltbot.ToolCall{ID: "toolu_1", Name: "now", Arguments: "{}"}) || res.FinishReason != "tool_calls" {
		t.Fatalf("calls %+v res %+v err %v", calls, res, err)
	}
}

// What does not fit is refused before anything is sent, the field named;
// a stream whose blocks are out of order ends with a stream error.
func TestToolErrors(t *testing.T) {
	srv, _ := rawFake(t, okStream...)
	for _, tc := range []struct {
		req  *inference.Request
		want string
	}{
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":`)}}}}, "tools[0].function.parameters"},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Name: "x", Schema: json.RawMessage(`nope`)}}}, "response_format.json_schema.schema"},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "x"}}, ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Name: "x"}}}, `"x" is also the name of a tool`},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartImage, Ref: "abc"}}}}}, "messages[0].parts[0]"},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c", Arguments: `"x"`}}}}}, `messages[0].tool_calls: arguments of call "c"`},
	} {
		_, _, _, _, err := collect(t, srv, tc.req)
		if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindBadRequest || !strings.Contains(e.Message, tc.want) {
			t.Errorf("err %v, want a bad request naming %s", err, tc.want)
		}
	}
	for _, frames := range [][]string{
		{okStream[0], ev("content_block_start", `{"type":"content_block_start","index":1000000000,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}`)},
		{okStream[0], ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}`)},
	} {
		srv, _ := rawFake(t, frames...)
		_, _, deltas, _, err := collect(t, srv, &inference.Request{Model: "m"})
		if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindStream || len(deltas) != 0 {
			t.Errorf("err %v deltas %v", err, deltas)
		}
	}
}
