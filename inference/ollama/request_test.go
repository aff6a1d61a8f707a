package ollama

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/ollama/ollama/api"
)

// apiRequest is the api.ChatRequest moltbot sent through api.Client.Chat
// before the request was encoded by hand: the reference for appendRequest.
func apiRequest(req *inference.Request) *api.ChatRequest {
	stream := true
	areq := &api.ChatRequest{Model: req.Model, Messages: make([]api.Message, len(req.Messages)), Stream: &stream, Options: map[string]any{}}
	for i, m := range req.Messages {
		areq.Messages[i] = api.Message{Role: string(m.Role), Content: m.Content}
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
	if got := appendRequest(nil, req); string(got) != string(want) {
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
