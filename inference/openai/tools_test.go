package openai

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

// toolStream is OpenAI's stream of a reply that calls two tools at once,
// each call's arguments in several pieces, as the API sends it: the first
// piece of a call has its index, id, type and name, the later ones only
// the index and more arguments.
var toolStream = []string{
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"CET\"}"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}` + "\n\n",
	`data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":40,"total_tokens":120}}` + "\n\n",
	"data: [DONE]\n\n",
}

// rawFake answers /v1/chat/completions with the body given (SSE, or JSON
// when ct says so) and keeps the request body it got.
func rawFake(t *testing.T, ct string, body ...string) (*httptest.Server, *[]byte) {
	t.Helper()
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", ct)
		for _, f := range body {
			fmt.Fprint(w, f)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// collect runs req and returns the text and the tool calls its deltas make
// up (put together as the router does), and every tool-call delta.
func collect(t *testing.T, srv *httptest.Server, req *inference.Request) (string, []moltbot.ToolCall, []moltbot.ToolCallDelta, inference.Result, error) {
	t.Helper()
	c := New(Config{Name: "cloud", BaseURL: srv.URL + "/v1", APIKey: "sk-test"})
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

// toolRequest is a request with all of it: tools, a forced tool_choice,
// parallel calls off, a schema, penalties, a user, an image, and a
// history of two tool calls and their results.
func toolRequest() *inference.Request {
	pp, fp, par := 0.5, -0.25, false
	return &inference.Request{Model: "gpt-4o-mini", Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "be brief"},
		{Role: moltbot.RoleUser, Content: "what is this? weather there?", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "what is this?"},
			{Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG\r\n\x1a\n")},
			{Type: moltbot.PartText, Text: " weather there?"}}},
		{Role: moltbot.RoleAssistant, Content: "", Parts: []moltbot.Part{
			{Type: moltbot.PartToolCall, CallID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Type: moltbot.PartToolCall, CallID: "call_b", Name: "get_time", Arguments: `{"tz":"CET"}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_a", Content: "18C, clear"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_b", Content: "14:05"}}},
		{Role: moltbot.RoleAssistant, Content: "Let me check.", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "Let me check."},
			{Type: moltbot.PartToolCall, CallID: "call_c", Name: "get_weather"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_c", Content: ""}}},
	}, ChatOptions: moltbot.ChatOptions{MaxTokens: 64,
		Tools: []moltbot.Tool{
			{Name: "get_weather", Description: "Weather of a city", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`), Strict: true},
			{Name: "get_time"}},
		ToolChoice:        &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: "get_weather"},
		ParallelToolCalls: &par,
		ResponseFormat:    &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "answer", Schema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`), Strict: true},
		PresencePenalty:   &pp, FrequencyPenalty: &fp, User: "user-42"}}
}

// The request carries every field as OpenAI's API reference names it, and
// the streamed reply's two calls (in pieces) come back as deltas that put
// together make both calls, with finish reason tool_calls.
func TestToolsStreamed(t *testing.T) {
	srv, body := rawFake(t, "text/event-stream", toolStream...)
	text, calls, deltas, res, err := collect(t, srv, toolRequest())
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "request", *body, `{"model":"gpt-4o-mini","messages":[
		{"role":"system","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"text","text":" weather there?"}]},
		{"role":"assistant","content":null,"tool_calls":[
			{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]},
		{"role":"tool","tool_call_id":"call_a","content":"18C, clear"},
		{"role":"tool","tool_call_id":"call_b","content":"14:05"},
		{"role":"assistant","content":"Let me check.","tool_calls":[{"id":"call_c","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"call_c","content":""}],
		"stream":true,"stream_options":{"include_usage":true},"max_tokens":64,
		"presence_penalty":0.5,"frequency_penalty":-0.25,"user":"user-42",
		"tools":[
			{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true}},
			{"type":"function","function":{"name":"get_time"}}],
		"tool_choice":{"type":"function","function":{"name":"get_weather"}},
		"parallel_tool_calls":false,
		"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object","properties":{"a":{"type":"string"}}},"strict":true}}}`)
	if text != "" {
		t.Errorf("text %q", text)
	}
	want := []moltbot.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Paris"}`}, {ID: "call_b", Name: "get_time", Arguments: `{"tz": "CET"}`}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %+v", calls)
	}
	if len(deltas) != 6 || deltas[0] != (moltbot.ToolCallDelta{Index: 0, ID: "call_a", Name: "get_weather"}) || deltas[4] != (moltbot.ToolCallDelta{Index: 1, Arguments: `{"tz":`}) {
		t.Errorf("deltas %+v", deltas)
	}
	if res.FinishReason != "tool_calls" || res.Usage != (moltbot.Usage{PromptTokens: 80, CompletionTokens: 40}) || res.Model != "gpt-4o-mini" {
		t.Errorf("result %+v", res)
	}
}

// Modes of tool_choice and the other response formats, as OpenAI spells
// them.
func TestToolChoiceAndFormats(t *testing.T) {
	for _, tc := range []struct {
		opts moltbot.ChatOptions
		want string // the members after stream_options
	}{
		{moltbot.ChatOptions{ToolChoice: &moltbot.ToolChoice{Mode: "auto"}, ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}},
			`"tool_choice":"auto","response_format":{"type":"json_object"}`},
		{moltbot.ChatOptions{ToolChoice: &moltbot.ToolChoice{Mode: "none"}, ResponseFormat: &moltbot.ResponseFormat{Type: "text"}},
			`"tool_choice":"none","response_format":{"type":"text"}`},
		{moltbot.ChatOptions{ToolChoice: &moltbot.ToolChoice{Mode: "required"}, ParallelToolCalls: ptrTo(true)},
			`"tool_choice":"required","parallel_tool_calls":true`},
	} {
		b := AppendRequest(nil, &inference.Request{Model: "m", ChatOptions: tc.opts})
		sameJSON(t, "request", b, `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true},`+tc.want+`}`)
	}
}

func ptrTo[T any](v T) *T { return &v }

// A server that ignored "stream" answers one completion whose message has
// the tool calls whole: one delta each.
func TestToolsJSONFallback(t *testing.T) {
	srv, _ := rawFake(t, "application/json", `{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
		{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
		{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}`)
	_, calls, deltas, res, err := collect(t, srv, &inference.Request{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	want := []moltbot.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "call_b", Name: "get_time", Arguments: "{}"}}
	if !reflect.DeepEqual(calls, want) || len(deltas) != 2 || res.FinishReason != "tool_calls" {
		t.Errorf("calls %+v deltas %+v res %+v", calls, deltas, res)
	}
}

// A piece whose index skips ahead ends the call with a stream error,
// before the receiver grows its list of calls; so does a bad request field
// before anything is sent.
func TestToolErrors(t *testing.T) {
	srv, _ := rawFake(t, "text/event-stream",
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1000000000,"id":"x","function":{"name":"f","arguments":""}}]}}]}`+"\n\n", "data: [DONE]\n\n")
	_, _, deltas, _, err := collect(t, srv, &inference.Request{Model: "m"})
	if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindStream || !strings.Contains(e.Message, "index 1000000000") || len(deltas) != 0 {
		t.Fatalf("err %v, deltas %v", err, deltas)
	}
	for _, tc := range []struct {
		req  *inference.Request
		want string
	}{
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":`)}}}}, "tools[0].function.parameters"},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Schema: json.RawMessage(`nope`)}}}, "response_format.json_schema.schema"},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartImage, Ref: "abc"}}}}}, "messages[0].parts[0]"},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c", Arguments: "{"}}}}}, "messages[0].tool_calls"},
	} {
		_, _, _, _, err := collect(t, srv, tc.req)
		if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindBadRequest || !strings.Contains(e.Message, tc.want) {
			t.Errorf("err %v, want a bad request naming %s", err, tc.want)
		}
	}
}
