package ollama

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// toolRequest has all a request can carry beyond text: an image, a
// history of two tool calls and their results, tools (one without
// parameters), a schema and penalties.
func toolRequest() *inference.Request {
	return &inference.Request{Model: "qwen3:0.6b", Messages: []moltbot.Message{
		{Role: moltbot.RoleSystem, Content: "be brief"},
		{Role: moltbot.RoleUser, Content: "what is this? weather there?", Parts: []moltbot.Part{
			{Type: moltbot.PartText, Text: "what is this?"},
			{Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG\r\n\x1a\n")},
			{Type: moltbot.PartText, Text: " weather there?"}}},
		{Role: moltbot.RoleAssistant, Content: "", Parts: []moltbot.Part{
			{Type: moltbot.PartToolCall, CallID: "call_0", Name: "get_weather", Arguments: `{"city":"Paris","days":2}`},
			{Type: moltbot.PartToolCall, CallID: "call_1", Name: "get_time", Arguments: ""}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_0", Content: "18C, clear"}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1", Content: "14:05"}}},
		{Role: moltbot.RoleAssistant, Content: "It is 18C."},
		{Role: moltbot.RoleUser, Content: "and tomorrow?"},
	}, ChatOptions: moltbot.ChatOptions{MaxTokens: 64,
		Tools: []moltbot.Tool{
			{Name: "get_weather", Description: "Weather of a city", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","description":"the city"},"days":{"type":"integer"}},"required":["city"]}`)},
			{Name: "get_time"}},
		ResponseFormat:  &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "answer", Schema: json.RawMessage(`{"type": "object", "properties": {"a": {"type": "string"}}}`)},
		PresencePenalty: ptr(0.5), FrequencyPenalty: ptr(0.25)}}
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

// toolLine is a line of a reply that calls tools, as Ollama writes it:
// whole calls, arguments an object.
func toolLine(calls string) string {
	return `{"model":"qwen3:0.6b","created_at":"2025-06-01T10:00:00.000000000Z","message":{"role":"assistant","content":"","tool_calls":[` + calls + `]},"done":false}` + "\n"
}

// The request says it all in Ollama's words (checked against the body the
// fake server got, and that the body decodes as api.ChatRequest), and the
// reply's whole calls (two at once, then one more) come back as one delta
// each, indexed across the reply, with the server's id or call_<index>.
func TestTools(t *testing.T) {
	srv, got := fake(t, 200,
		line("Checking.", false),
		toolLine(`{"id":"call_x1","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris","days":2}}},{"function":{"index":1,"name":"get_time","arguments":{}}}`),
		toolLine(`{"function":{"index":0,"name":"get_weather","arguments":{"city":"Lyon","nested":{"b":[1,2.5,"x"],"a":null}}}}`),
		line("", true))
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	var text strings.Builder
	var deltas []moltbot.ToolCallDelta
	res, err := c.Chat(context.Background(), toolRequest(), func(d inference.Delta) error {
		if d.ToolCall != nil {
			deltas = append(deltas, *d.ToolCall)
		}
		text.WriteString(d.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []moltbot.ToolCallDelta{
		{Index: 0, ID: "call_x1", Name: "get_weather", Arguments: `{"city":"Paris","days":2}`},
		{Index: 1, ID: "call_1", Name: "get_time", Arguments: `{}`},
		// api keeps the order of the top level's keys only (an object's
		// keys have none in JSON).
		{Index: 2, ID: "call_2", Name: "get_weather", Arguments: `{"city":"Lyon","nested":{"a":null,"b":[1,2.5,"x"]}}`},
	}
	if !reflect.DeepEqual(deltas, want) || text.String() != "Checking." {
		t.Errorf("text %q deltas %+v", text.String(), deltas)
	}
	if res.FinishReason != "stop" {
		t.Errorf("finish %q: Ollama's stop stays (the router makes it tool_calls)", res.FinishReason)
	}

	r, areq, _, _ := got.get()
	if len(areq.Messages) != 7 || len(areq.Messages[1].Images) != 1 || string(areq.Messages[1].Images[0]) != "\x89PNG\r\n\x1a\n" {
		t.Errorf("api.ChatRequest %+v", areq)
	}
	body, _ := json.Marshal(r.Messages)
	sameJSON(t, "messages", body, `[
		{"role":"system","content":"be brief"},
		{"role":"user","content":"what is this? weather there?","images":["iVBORw0KGgo="]},
		{"role":"assistant","content":"","tool_calls":[
			{"id":"call_0","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris","days":2}}},
			{"id":"call_1","function":{"index":1,"name":"get_time","arguments":{}}}]},
		{"role":"tool","content":"18C, clear","tool_name":"get_weather","tool_call_id":"call_0"},
		{"role":"tool","content":"14:05","tool_name":"get_time","tool_call_id":"call_1"},
		{"role":"assistant","content":"It is 18C."},
		{"role":"user","content":"and tomorrow?"}]`)
	if r.Options["presence_penalty"] != 0.5 || r.Options["frequency_penalty"] != 0.25 || r.Options["num_predict"] != 64.0 {
		t.Errorf("options %v", r.Options)
	}
	var rest struct {
		Format json.RawMessage `json:"format"`
		Tools  json.RawMessage `json:"tools"`
	}
	checkRequestBytes(t, toolRequest())
	b, _ := appendRequest(nil, toolRequest(), nil)
	json.Unmarshal(b, &rest)
	sameJSON(t, "format", rest.Format, `{"type":"object","properties":{"a":{"type":"string"}}}`)
	sameJSON(t, "tools", rest.Tools, `[
		{"type":"function","function":{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"the city"},"days":{"type":"integer"}}}}},
		{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}]`)
}

// tool_choice as far as Ollama can say it (it has no such field): "none"
// offers no tools, a named function only that one; json_object is
// format "json".
func TestToolChoiceAndFormat(t *testing.T) {
	tools := []moltbot.Tool{{Name: "a"}, {Name: "b"}}
	for _, tc := range []struct {
		opts moltbot.ChatOptions
		want string // the members between "stream" and "options"
	}{
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "none"}, ResponseFormat: &moltbot.ResponseFormat{Type: "json_object"}}, `"format":"json"`},
		{moltbot.ChatOptions{Tools: tools, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "b"}},
			`"tools":[{"type":"function","function":{"name":"b","parameters":{"type":"object","properties":{}}}}]`},
		{moltbot.ChatOptions{Tools: tools[:1], ToolChoice: &moltbot.ToolChoice{Mode: "required"}, ResponseFormat: &moltbot.ResponseFormat{Type: "text"}},
			`"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object","properties":{}}}}]`},
	} {
		b, err := appendRequest(nil, &inference.Request{Model: "m", ChatOptions: tc.opts}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"model":"m","messages":[],"stream":true,` + tc.want + `,"options":{}}`; string(b) != want {
			t.Errorf("got  %s\nwant %s", b, want)
		}
	}
}

// What api's types cannot hold is refused before anything is sent, with
// the field named.
func TestToolRequestErrors(t *testing.T) {
	srv, _ := fake(t, 200, line("", true))
	c, _ := New(Config{Name: "local", BaseURL: srv.URL})
	for _, tc := range []struct {
		req  *inference.Request
		want string
	}{
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":["object"]}`)}}}}, "tools[0].function.parameters"},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f"}}, ToolChoice: &moltbot.ToolChoice{Mode: "function", Name: "g"}}}, `no tool named "g"`},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: "json_schema", Schema: json.RawMessage(`{`)}}}, "response_format.json_schema.schema"},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "x"}, {Type: moltbot.PartImage, Ref: "abc"}}}}}, "messages[0].parts[1]"},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c", Arguments: "[1]"}}}}}, `messages[0].tool_calls: arguments of call "c"`},
		{&inference.Request{Model: "m", Messages: []moltbot.Message{{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c", Arguments: `{"a":`}}}}}, `messages[0].tool_calls: arguments of call "c"`},
		{&inference.Request{Model: "m", ChatOptions: moltbot.ChatOptions{PresencePenalty: ptr(inf())}}, "presence_penalty"},
	} {
		_, err := c.Chat(context.Background(), tc.req, func(inference.Delta) error { return nil })
		if e, ok := inference.AsError(err); !ok || e.Kind != inference.KindBadRequest || !strings.Contains(e.Message, tc.want) {
			t.Errorf("err %v, want a bad request naming %s", err, tc.want)
		}
	}
}

func inf() float64 { var z float64; return 1 / z }
