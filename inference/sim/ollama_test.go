package sim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
)

// Ollama's side is tested through Ollama's own Go client (api.Client),
// which sends what the ollama CLI and libraries send: tools in OpenAI's
// shape, arguments as objects, images as base64, format as "json" or a
// schema.

func ollamaClient(t *testing.T, o Options) (*api.Client, string) {
	srv := server(t, o)
	u, _ := url.Parse(srv.URL)
	return api.NewClient(u, http.DefaultClient), srv.URL
}

func ollamaTools(t *testing.T) api.Tools {
	var tools api.Tools
	if err := json.Unmarshal([]byte(openaiTools), &tools); err != nil {
		t.Fatal(err)
	}
	return tools
}

func ollamaChat(t *testing.T, c *api.Client, req *api.ChatRequest) ([]api.ChatResponse, error) {
	t.Helper()
	var out []api.ChatResponse
	err := c.Chat(context.Background(), req, func(r api.ChatResponse) error { out = append(out, r); return nil })
	return out, err
}

func TestOllamaToolCalls(t *testing.T) {
	c, _ := ollamaClient(t, fast())
	tools := ollamaTools(t)
	for _, stream := range []bool{true, false} {
		rs, err := ollamaChat(t, c, &api.ChatRequest{Model: "llama3.2", Stream: &stream, Tools: tools,
			Messages: []api.Message{{Role: "user", Content: "What is the weather in Toronto?"}}})
		if err != nil {
			t.Fatal(err)
		}
		// The calls arrive whole, in one message; the last line is done
		// with done_reason stop.
		var calls []api.ToolCall
		for _, r := range rs {
			if len(r.Message.ToolCalls) > 0 {
				if calls != nil {
					t.Errorf("stream=%v: tool calls in two chunks", stream)
				}
				calls = r.Message.ToolCalls
			}
		}
		last := rs[len(rs)-1]
		if len(calls) != 1 || !last.Done || last.DoneReason != "stop" || last.Message.Content != "" {
			t.Fatalf("stream=%v: %+v", stream, rs)
		}
		if stream && len(rs) != 2 || !stream && len(rs) != 1 {
			t.Errorf("stream=%v: %d lines", stream, len(rs))
		}
		fn := calls[0].Function
		if !strings.HasPrefix(calls[0].ID, "call_") || fn.Index != 0 || (fn.Name != "get_weather" && fn.Name != "get_time") || fn.Arguments.Len() == 0 {
			t.Errorf("call %+v", calls[0])
		}
		if fn.Name == "get_weather" {
			if u, _ := fn.Arguments.Get("unit"); u != "celsius" && u != "fahrenheit" {
				t.Errorf("unit %v", u)
			}
		}
		// The result goes back as a tool message (tool_name, Ollama's way).
		rs, err = ollamaChat(t, c, &api.ChatRequest{Model: "llama3.2", Stream: &stream, Tools: tools, Messages: []api.Message{
			{Role: "user", Content: "What is the weather in Toronto?"},
			{Role: "assistant", ToolCalls: calls},
			{Role: "tool", ToolName: fn.Name, Content: "11 degrees"},
		}})
		var text strings.Builder
		for _, r := range rs {
			text.WriteString(r.Message.Content)
		}
		if err != nil || text.String() != Label+" "+fn.Name+" returned 11 degrees." {
			t.Errorf("stream=%v: answer %q %v", stream, text.String(), err)
		}
	}
}

func TestOllamaFormatAndImages(t *testing.T) {
	c, base := ollamaClient(t, fast())
	no := false
	schema := `{"type":"object","properties":{"capital":{"type":"string"},"population":{"type":"integer","minimum":0}},"required":["capital","population"]}`
	for _, format := range []string{`"json"`, schema} {
		rs, err := ollamaChat(t, c, &api.ChatRequest{Model: "llama3.2", Stream: &no, Format: json.RawMessage(format),
			Messages: []api.Message{{Role: "user", Content: "Tell me about Canada."}}})
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(rs[0].Message.Content), &v); err != nil {
			t.Fatalf("format %s: %q", format, rs[0].Message.Content)
		}
		if format == schema && (v["capital"] == nil || v["population"] == nil) {
			t.Errorf("schema reply %v", v)
		}
	}
	img := []byte("GIF89a-some-image")
	rs, err := ollamaChat(t, c, &api.ChatRequest{Model: "llava", Stream: &no,
		Messages: []api.Message{{Role: "user", Content: "What is in this picture?", Images: []api.ImageData{img, img}}}})
	if err != nil || !strings.HasPrefix(rs[0].Message.Content, Label+" I see 2 image(s) (34 bytes).") || rs[0].PromptEvalCount < 2*ImageTokens {
		t.Errorf("images: %+v %v", rs, err)
	}
	for body, want := range map[string]string{
		`{"model":"llava","messages":[{"role":"user","content":"x","images":["not base64!"]}]}`:                        "messages[0].images[0]",
		`{"model":"m","format":"xml","messages":[{"role":"user","content":"x"}]}`:                                      "invalid format",
		`{"model":"m","format":{"type":"integer","minimum":2,"maximum":1},"messages":[{"role":"user","content":"x"}]}`: "response_format",
		`{"model":"all-minilm-embed","messages":[{"role":"user","content":"x"}]}`:                                      "does not support chat",
		`{"model":"m","tools":[{"type":"function","function":{}}],"messages":[{"role":"user","content":"x"}]}`:         "tools[0].function.name",
	} {
		resp := post(t, base+"/api/chat", body)
		b, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if json.Unmarshal(b, &e); resp.StatusCode != 400 || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
	// Through the client, a refused request is a StatusError.
	_, err = ollamaChat(t, c, &api.ChatRequest{Model: "nomic-embed-text", Messages: []api.Message{{Role: "user", Content: "x"}}})
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("embedding model chat: %v", err)
	}
}

func TestOllamaEmbed(t *testing.T) {
	o := fast()
	o.EmbedModels = []string{"nomic-embed-text-768"}
	c, base := ollamaClient(t, o)
	res, err := c.Embed(context.Background(), &api.EmbedRequest{Model: "nomic-embed-text-768", Input: []string{"why is the sky blue?", "why is the grass green?"}})
	if err != nil || len(res.Embeddings) != 2 || len(res.Embeddings[0]) != 768 || res.PromptEvalCount == 0 || res.Model != "nomic-embed-text-768" {
		t.Fatalf("%+v %v", res, err)
	}
	var n float64
	for _, v := range res.Embeddings[1] {
		n += float64(v) * float64(v)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %g", n)
	}
	one, _ := c.Embed(context.Background(), &api.EmbedRequest{Model: "nomic-embed-text-768", Input: "why is the sky blue?", Dimensions: 4})
	if len(one.Embeddings) != 1 || len(one.Embeddings[0]) != 4 {
		t.Errorf("one input, 4 dimensions: %+v", one)
	}
	legacy, err := c.Embeddings(context.Background(), &api.EmbeddingRequest{Model: "nomic-embed-text-768", Prompt: "why is the sky blue?"})
	if err != nil || len(legacy.Embedding) != 768 || float32(legacy.Embedding[3]) != res.Embeddings[0][3] {
		t.Errorf("legacy %d %v", len(legacy.Embedding), err)
	}
	for body, status := range map[string]int{
		`{"model":"e","input":[1]}`: 400,
		`{"model":"e","input":{}}`:  400,
		`{"input":"x"}`:             400,
		``:                          400,
		`{"model":"e"}`:             200,
	} {
		if resp := post(t, base+"/api/embed", body); resp.StatusCode != status {
			t.Errorf("%q: %d", body, resp.StatusCode)
		}
	}
}

// Capability discovery: /api/show and /api/ps as Ollama answers them, and
// /api/tags with the embedding models.
func TestOllamaShowAndPs(t *testing.T) {
	o := fast()
	o.EmbedModels = []string{"embed-256"}
	o.ContextLength = 32768
	o.Capabilities = map[string][]string{"b": {"completion"}}
	c, _ := ollamaClient(t, o)
	show, err := c.Show(context.Background(), &api.ShowRequest{Model: "a"})
	if err != nil {
		t.Fatal(err)
	}
	caps := make([]string, len(show.Capabilities))
	for i, cp := range show.Capabilities {
		caps[i] = string(cp)
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	if strings.Join(caps, ",") != "completion,tools,vision" || show.ModelInfo[arch+".context_length"] != float64(32768) || show.Details.Family != arch {
		t.Errorf("show a: %v %v %+v", caps, show.ModelInfo, show.Details)
	}
	show, _ = c.Show(context.Background(), &api.ShowRequest{Model: "embed-256"})
	if len(show.Capabilities) != 1 || show.Capabilities[0] != "embedding" || show.ModelInfo[arch+".embedding_length"] != float64(256) {
		t.Errorf("show embed: %v %v", show.Capabilities, show.ModelInfo)
	}
	if show, _ = c.Show(context.Background(), &api.ShowRequest{Model: "b"}); len(show.Capabilities) != 1 {
		t.Errorf("show b: %v", show.Capabilities)
	}
	if _, err := c.Show(context.Background(), &api.ShowRequest{}); err == nil {
		t.Error("show without a model")
	}
	ps, err := c.ListRunning(context.Background())
	if err != nil || len(ps.Models) != 3 || ps.Models[0].Name != "a:latest" || ps.Models[0].ContextLength != 32768 || ps.Models[2].Name != "embed-256:latest" {
		t.Errorf("ps %+v %v", ps, err)
	}
	// A chat without messages loads the model, as Ollama does.
	no := false
	rs, err := ollamaChat(t, c, &api.ChatRequest{Model: "a", Stream: &no, Messages: []api.Message{}})
	if err != nil || len(rs) != 1 || rs[0].DoneReason != "load" || !rs[0].Done || rs[0].Message.Content != "" {
		t.Errorf("load: %+v %v", rs, err)
	}
	tags, err := c.List(context.Background())
	if err != nil || len(tags.Models) != 3 || tags.Models[2].Name != "embed-256:latest" {
		t.Errorf("tags %+v %v", tags, err)
	}
}
