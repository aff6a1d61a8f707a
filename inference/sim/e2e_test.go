package sim

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/anthropic"
	"github.com/moltbot/moltbot/inference/ollama"
	"github.com/moltbot/moltbot/inference/openai"
)

// Every provider type, end to end against the simulator over HTTP, with
// no model: a tool call, its result answered, a JSON Schema reply, an
// image. The clients translate moltbot's request to their wire; the
// simulator reads that wire as the real server would.
func TestProvidersEndToEnd(t *testing.T) {
	srv := server(t, fast())
	oll, err := ollama.New(ollama.Config{Name: "ollama", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	providers := map[string]inference.Provider{
		"openai":    openai.New(openai.Config{Name: "openai", BaseURL: srv.URL + "/v1"}),
		"ollama":    oll,
		"anthropic": anthropic.New(anthropic.Config{Name: "anthropic", BaseURL: srv.URL, APIKey: "k"}),
	}
	tools := []moltbot.Tool{weatherTool, timeTool}
	for name, p := range providers {
		t.Run(name, func(t *testing.T) {
			run := func(req *inference.Request) collected {
				t.Helper()
				var c collected
				var b strings.Builder
				res, err := p.Chat(context.Background(), req, func(d inference.Delta) error {
					if d.ToolCall != nil {
						c.calls = moltbot.AddDelta(c.calls, d.ToolCall)
					}
					b.WriteString(d.Text)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				c.text, c.res = b.String(), res
				return c
			}
			// A tool call, then its result.
			req := &inference.Request{Model: "m", Messages: msgs("what is the weather in Oslo?")}
			req.Tools = tools
			c := run(req)
			// Ollama says done_reason "stop" after calls too (the router
			// makes it tool_calls); the others say so themselves.
			want := "tool_calls"
			if name == "ollama" {
				want = "stop"
			}
			if len(c.calls) != 1 || c.res.FinishReason != want || !json.Valid([]byte(c.calls[0].Arguments)) || c.calls[0].ID == "" {
				t.Fatalf("call: %+v", c)
			}
			call := c.calls[0]
			req.Messages = append(req.Messages,
				moltbot.Message{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: call.ID, Name: call.Name, Arguments: call.Arguments}}},
				moltbot.Message{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: call.ID, Content: "rain, 9 degrees"}}})
			if c := run(req); !strings.Contains(c.text, "returned rain, 9 degrees.") || c.res.FinishReason != "stop" {
				t.Errorf("answer: %+v", c)
			}
			// Two calls when asked for both.
			req = &inference.Request{Model: "m", Messages: msgs("weather and time, both")}
			req.Tools = tools
			if c := run(req); len(c.calls) != 2 {
				t.Errorf("parallel: %+v", c.calls)
			}
			// A reply held to a JSON Schema.
			schema := `{"type":"object","properties":{"city":{"type":"string"},"rain":{"type":"boolean"}},"required":["city","rain"],"additionalProperties":false}`
			req = &inference.Request{Model: "m", Messages: msgs("as json")}
			req.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "w", Schema: json.RawMessage(schema)}
			c = run(req)
			root, _ := decodeJSON([]byte(schema))
			if v, err := decodeJSON([]byte(c.text)); err != nil || validate(root, root, v, "$") != nil {
				t.Errorf("json_schema reply %q: %v", c.text, err)
			}
			// An image.
			m := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "what is it?"},
				{Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG\r\n\x1a\n....")}}}
			m.Content = moltbot.TextOf(m.Parts)
			if c := run(&inference.Request{Model: "m", Messages: []moltbot.Message{m}}); !strings.HasPrefix(c.text, Label+" I see 1 image(s) (12 bytes).") {
				t.Errorf("image: %q", c.text)
			}
		})
	}
}

// Capability discovery through the Ollama client: /api/show and /api/ps
// as it reads them.
func TestOllamaDiscoveryEndToEnd(t *testing.T) {
	o := fast()
	o.EmbedModels = []string{"embed-64"}
	o.Capabilities = map[string][]string{"b": {CapCompletion}}
	c, err := ollama.New(ollama.Config{Name: "ollama", BaseURL: server(t, o).URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if caps, err := c.Describe(ctx, "a"); err != nil || caps != (moltbot.Capabilities{Known: true, Tools: true, Vision: true, JSONSchema: true, ContextLength: DefaultContextLength}) {
		t.Errorf("a: %+v %v", caps, err)
	}
	if caps, _ := c.Describe(ctx, "b"); caps.Tools || caps.Vision || !caps.JSONSchema {
		t.Errorf("b: %+v", caps)
	}
	if caps, _ := c.Describe(ctx, "embed-64"); !caps.Embeddings || caps.Tools || caps.JSONSchema {
		t.Errorf("embed-64: %+v", caps)
	}
	if err := c.Load(ctx, "a"); err != nil {
		t.Errorf("load: %v", err)
	}
	if loaded, err := c.Loaded(ctx); err != nil || strings.Join(loaded, ",") != "a:latest,b:latest,embed-64:latest" {
		t.Errorf("loaded %v %v", loaded, err)
	}
}
