package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/moltbot/moltbot"
)

// Seeds: what ollama/api's client sends (json.Marshal of its requests),
// and bodies as the npm and Python libraries and Open WebUI write them.
func ollamaSeeds(f *testing.F, generate bool) {
	png := base64.StdEncoding.EncodeToString(pngBytes)
	props := api.NewToolPropertiesMap()
	props.Set("city", api.ToolProperty{Type: api.PropertyType{"string"}})
	args := api.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	var reqs []any
	if generate {
		reqs = []any{
			api.GenerateRequest{Model: "moltbot", Prompt: "hi"},
			api.GenerateRequest{Model: "llama3.2:latest", Prompt: "hi", System: "sys", Images: []api.ImageData{pngBytes}, Format: json.RawMessage(`"json"`),
				Options: map[string]any{"temperature": 0.2, "num_predict": 5}, KeepAlive: &api.Duration{}},
			api.GenerateRequest{Model: "moltbot", Think: &api.ThinkValue{Value: "high"}, Raw: true, Context: []int{1}},
		}
	} else {
		reqs = []any{
			api.ChatRequest{Model: "moltbot", Messages: []api.Message{{Role: "user", Content: "hi"}}},
			api.ChatRequest{Model: "sim/sim:latest", Stream: new(bool), Format: json.RawMessage(`{"type":"object"}`),
				Tools: api.Tools{{Type: "function", Function: api.ToolFunction{Name: "get_weather", Parameters: api.ToolFunctionParameters{Type: "object", Properties: props}}}},
				Messages: []api.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "look", Images: []api.ImageData{pngBytes}},
					{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "get_weather", Arguments: args}}}},
					{Role: "tool", ToolName: "get_weather", Content: "sunny"}},
				Options: map[string]any{"stop": []string{"x"}, "seed": 3, "top_k": 1}},
		}
	}
	for _, r := range reqs {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	for _, s := range []string{
		`{"model":"moltbot","messages":[{"role":"user","content":"hi","images":["` + png + `"]}],"stream":true,"options":{"num_ctx":4096}}`,
		`{"model":"m","prompt":"p","images":["` + png[:len(png)-2] + `"],"keep_alive":"10m","think":false}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"call_0","function":{"index":0,"name":"f","arguments":{}}}]},{"role":"tool","tool_call_id":"call_0","content":"1"}]}`,
		`{"model":"m","messages":[],"keep_alive":0}`, `{"model":"m","options":{"temperature":null,"use_mmap":1}}`, `{"model":"m","format":""}`,
		`{"model":"m","messages":[{"role":"tool","content":"x"}]}`, `{"model":"m","prompt":"","truncate":true,"shift":false}`,
	} {
		f.Add([]byte(s))
	}
}

// checkTurn holds what a mapped request must be: errors name a field;
// messages are of the domain's roles, their parts as the domain keeps them.
func checkTurn(t *testing.T, tr *ollamaTurn, err error) {
	if err != nil {
		var e *moltbot.Error
		if !errors.As(err, &e) || e.Code != moltbot.EInvalid || e.Param == "" || e.Message == "" {
			t.Fatalf("an error that names no field: %#v", err)
		}
		return
	}
	if tr.opts.Model == "" {
		t.Fatal("no model")
	}
	if tr.load != (len(tr.msgs) == 0) {
		t.Fatalf("load %v with %d messages", tr.load, len(tr.msgs))
	}
	for i, m := range tr.msgs {
		if !m.Role.Valid() {
			t.Fatalf("message %d: role %q", i, m.Role)
		}
		if m.Parts != nil && m.Content != moltbot.TextOf(m.Parts) {
			t.Fatalf("message %d: content %q is not its parts' text", i, m.Content)
		}
		if m.Role == moltbot.RoleTool && (len(m.Parts) != 1 || m.Parts[0].Type != moltbot.PartToolResult || m.Parts[0].CallID == "" || m.Content != "") {
			t.Fatalf("message %d: a tool message %+v", i, m)
		}
		for _, p := range m.Parts {
			switch p.Type {
			case moltbot.PartImage:
				if m.Role != moltbot.RoleUser || len(p.Data) == 0 || p.MIME == "" {
					t.Fatalf("message %d: image %+v", i, p)
				}
			case moltbot.PartToolCall:
				if m.Role != moltbot.RoleAssistant || p.CallID == "" || !json.Valid([]byte(p.Arguments)) {
					t.Fatalf("message %d: call %+v", i, p)
				}
			}
		}
	}
	if f := tr.opts.ResponseFormat; f != nil && f.Type == moltbot.FormatJSONSchema && !json.Valid(f.Schema) {
		t.Fatalf("schema %q", f.Schema)
	}
}

func FuzzOllamaChatRequest(f *testing.F) {
	ollamaSeeds(f, false)
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ollamaChatRequest
		if json.Unmarshal(body, &r) != nil {
			return
		}
		tr, err := r.turn()
		checkTurn(t, tr, err)
	})
}

func FuzzOllamaGenerateRequest(f *testing.F) {
	ollamaSeeds(f, true)
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ollamaGenerateRequest
		if json.Unmarshal(body, &r) != nil {
			return
		}
		tr, err := r.turn()
		checkTurn(t, tr, err)
		if err == nil && !tr.load && tr.msgs[len(tr.msgs)-1].Role != moltbot.RoleUser {
			t.Fatalf("the prompt is not the last message: %+v", tr.msgs)
		}
	})
}

func FuzzOllamaEmbedRequest(f *testing.F) {
	for _, r := range []any{api.EmbedRequest{Model: "m", Input: "hi"}, api.EmbedRequest{Model: "m", Input: []string{"a", "b"}, Dimensions: 3},
		api.EmbedRequest{Model: "m", Input: []any{"a", 1}}, api.EmbedRequest{Input: ""}} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"model":"m","input":null,"truncate":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ollamaEmbedRequest
		if json.Unmarshal(body, &r) != nil {
			return
		}
		texts, err := r.texts()
		if err != nil {
			var e *moltbot.Error
			if !errors.As(err, &e) || e.Code != moltbot.EInvalid || e.Param == "" {
				t.Fatalf("%#v", err)
			}
			return
		}
		if r.Model == "" {
			t.Fatal("no model")
		}
		for _, s := range texts {
			if len(texts) == 1 && s == "" {
				t.Fatal("an empty text alone is no text")
			}
		}
	})
}
