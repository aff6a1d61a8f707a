package ollama

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
)

// apiRequest is the api.ChatRequest moltbot sent through api.Client.Chat
// before the request was encoded by hand, and what it sends for parts,
// tools and formats: the reference for appendRequest.
func apiRequest(req *inference.Request) *api.ChatRequest {
	stream := true
	areq := &api.ChatRequest{Model: req.Model, Messages: make([]api.Message, 0, len(req.Messages)), Stream: &stream, Options: map[string]any{}}
	names := map[string]string{}
	for _, m := range req.Messages {
		am := api.Message{Role: string(m.Role), Content: m.Content}
		results := 0
		for _, p := range m.Parts {
			switch {
			case p.Type == moltbot.PartImage:
				am.Images = append(am.Images, p.Data)
			case p.Type == moltbot.PartToolCall:
				args := api.NewToolCallFunctionArguments()
				if p.Arguments != "" {
					json.Unmarshal([]byte(p.Arguments), &args)
				}
				am.ToolCalls = append(am.ToolCalls, api.ToolCall{ID: p.CallID, Function: api.ToolCallFunction{Index: len(am.ToolCalls), Name: p.Name, Arguments: args}})
				names[p.CallID] = p.Name
			case p.Type == moltbot.PartToolResult && m.Role == moltbot.RoleTool:
				results++
				areq.Messages = append(areq.Messages, api.Message{Role: "tool", Content: p.Content, ToolName: names[p.CallID], ToolCallID: p.CallID})
			}
		}
		if results == 0 {
			areq.Messages = append(areq.Messages, am)
		}
	}
	if f := req.ResponseFormat; f != nil && f.Type == moltbot.FormatJSONSchema && f.Schema != nil {
		areq.Format = f.Schema
	} else if f.JSON() {
		areq.Format = json.RawMessage(`"json"`)
	}
	if c := req.ToolChoice; c == nil || c.Mode != moltbot.ToolChoiceNone {
		for _, t := range req.Tools {
			if c != nil && c.Mode == moltbot.ToolChoiceFunction && c.Name != t.Name {
				continue
			}
			at := api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Name, Description: t.Description}}
			if t.Parameters == nil {
				at.Function.Parameters = api.ToolFunctionParameters{Type: "object", Properties: api.NewToolPropertiesMap()}
			} else {
				json.Unmarshal(t.Parameters, &at.Function.Parameters)
			}
			areq.Tools = append(areq.Tools, at)
		}
	}
	if req.PresencePenalty != nil {
		areq.Options["presence_penalty"] = *req.PresencePenalty
	}
	if req.FrequencyPenalty != nil {
		areq.Options["frequency_penalty"] = *req.FrequencyPenalty
	}
	if req.MaxTokens > 0 {
		areq.Options["num_predict"] = req.MaxTokens
	}
	if req.Temperature != nil {
		areq.Options["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		areq.Options["top_p"] = *req.TopP
	}
	if len(req.Stop) > 0 {
		areq.Options["stop"] = req.Stop
	}
	if req.Seed != nil {
		areq.Options["seed"] = *req.Seed
	}
	return areq
}

func checkRequestBytes(t *testing.T, req *inference.Request) {
	t.Helper()
	want, err := json.Marshal(apiRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendRequest(nil, req, nil)
	if err != nil {
		t.Fatalf("appendRequest: %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("appendRequest\n got %s\nwant %s", got, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRequestMatchesAPIChatRequest(t *testing.T) {
	for _, req := range []*inference.Request{
		{Model: "m"},
		{Model: "llama3.2", Messages: []moltbot.Message{{Role: moltbot.RoleSystem, Content: "be <brief> & \"exact\"\n\t\\ é \u2028 \xff"}, {Role: moltbot.RoleUser, Content: "hi"}}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{MaxTokens: 5, Temperature: ptr(0.7), TopP: ptr(0.9), Stop: []string{"\n", "END"}, Seed: ptr(int64(-42))}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{Temperature: ptr(0.0), TopP: ptr(1e-7)}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{Temperature: ptr(1e21), TopP: ptr(-123456789.125)}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{Temperature: ptr(math.SmallestNonzeroFloat64), TopP: ptr(math.MaxFloat64)}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{Stop: []string{""}, Seed: ptr(int64(math.MinInt64))}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{PresencePenalty: ptr(0.5), FrequencyPenalty: ptr(-2.0), MaxTokens: 3, Seed: ptr(int64(1))}},
		toolRequest(),
		{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "x"}}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{ResponseFormat: &moltbot.ResponseFormat{Type: moltbot.FormatText}, Tools: []moltbot.Tool{{Name: "a"}, {Name: "b"}}}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "a"}, {Name: "b"}}, ToolChoice: &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}}},
	} {
		checkRequestBytes(t, req)
	}
}

// FuzzRequest compares appendRequest with json.Marshal of api.ChatRequest.
func FuzzRequest(f *testing.F) {
	f.Add("llama3.2", "user", "hello <there> \xff", "END", 16, 0.7, 0.9, int64(42), uint8(31))
	f.Add("", "", "", "", 0, 0.0, 1e-9, int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, model, role, content, stop string, maxTokens int, temp, topP float64, seed int64, set uint8) {
		req := &inference.Request{Model: model, Messages: []moltbot.Message{{Role: moltbot.Role(role), Content: content}, {Role: moltbot.RoleUser, Content: stop}}}
		if set&1 != 0 {
			req.MaxTokens = maxTokens
		}
		if set&2 != 0 {
			req.Temperature = &temp
		}
		if set&4 != 0 {
			req.TopP = &topP
		}
		if set&8 != 0 {
			req.Stop = []string{stop, content}
		}
		if set&16 != 0 {
			req.Seed = &seed
		}
		if checkRequest("f", req) != nil {
			if _, err := json.Marshal(apiRequest(req)); err == nil {
				t.Fatalf("refused a request json.Marshal encodes: %+v", req)
			}
			return
		}
		checkRequestBytes(t, req)
	})
}

func TestRequestRefusesNonFinite(t *testing.T) {
	for _, req := range []*inference.Request{
		{Model: "m", ChatOptions: moltbot.ChatOptions{Temperature: ptr(math.NaN())}},
		{Model: "m", ChatOptions: moltbot.ChatOptions{TopP: ptr(math.Inf(1))}},
	} {
		if e, ok := inference.AsError(checkRequest("local", req)); !ok || e.Kind != inference.KindBadRequest {
			t.Errorf("%+v: %v", req.ChatOptions, e)
		}
	}
}

// FuzzRequestParts compares appendRequest with json.Marshal of
// api.ChatRequest for requests with parts, tools and a format: a call's
// arguments, a tool's parameters and a schema as given (JSON or not), an
// image's bytes. What api's types cannot hold is refused, and only that.
func FuzzRequestParts(f *testing.F) {
	f.Add(`{"city":"Paris","n":[1,2.5e3,{"x":null}]}`, `{"type":"object","properties":{"city":{"type":"string","enum":["a",1]}},"required":["city"]}`, `{"type":"object"}`, []byte("\x89PNG"), uint8(7))
	f.Add(` {"a":"\u00e9<>"} `, `{"type":["object"]}`, `{`, []byte{}, uint8(3))
	f.Add(`[1]`, `null`, `"json"`, []byte("x"), uint8(0))
	f.Add(``, `{"properties":{"a":{"anyOf":[{"type":"string"}],"items":{"type":"number"}}}}`, `{"$defs":{}}`, []byte("x"), uint8(1))
	f.Fuzz(func(t *testing.T, args, params, schema string, image []byte, set uint8) {
		req := &inference.Request{Model: "m", Messages: []moltbot.Message{
			{Role: moltbot.RoleUser, Content: "look", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "look"}, {Type: moltbot.PartImage, MIME: "image/png", Data: image}}},
			{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c1", Name: "f", Arguments: args}}},
			{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "c1", Content: args}}},
		}, ChatOptions: moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f", Description: args}}}}
		if set&1 != 0 {
			req.Tools[0].Parameters = json.RawMessage(params)
		}
		if set&2 != 0 {
			req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Schema: json.RawMessage(schema)}
		}
		if set&4 != 0 {
			req.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: "f"}
		}
		got, err := appendRequest(nil, req, nil)
		// What api's types refuse, found with them.
		var refused []string
		if a := strings.TrimLeft(args, " \t\r\n"); a != "" {
			var v api.ToolCallFunctionArguments
			if a[0] != '{' || json.Unmarshal([]byte(a), &v) != nil {
				refused = append(refused, "arguments")
			}
		}
		if set&1 != 0 {
			var p api.ToolFunctionParameters
			if json.Unmarshal([]byte(params), &p) != nil {
				refused = append(refused, "parameters")
			}
		}
		if set&2 != 0 && !json.Valid([]byte(schema)) {
			refused = append(refused, "schema")
		}
		if len(image) == 0 {
			refused = append(refused, "image")
		}
		if (err != nil) != (len(refused) > 0) {
			t.Fatalf("err %v; api's types refuse %v", err, refused)
		}
		if err != nil {
			return
		}
		want, err := json.Marshal(apiRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("appendRequest\n got %s\nwant %s", got, want)
		}
	})
}
