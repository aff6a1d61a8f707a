package acceptance

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// ollamaChain is the node the Ollama clients use: the sim's Ollama API
// first, its OpenAI API behind it.
var ollamaChain = chain{primary: "ol/llama3.2", fallback: "oa/gpt-4o-mini", embed: "ol/nomic-embed-text"}

type ollamaDone struct {
	Model           string
	Done            bool
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	TotalDuration   int64  `json:"total_duration"`
}

func (d ollamaDone) ok() bool {
	return d.Model == "moltbot" && d.Done && d.DoneReason == "stop" && d.EvalCount > 0 && d.TotalDuration > 0
}

type ollamaCall struct {
	ID       string
	Function struct {
		Index     int
		Name      string
		Arguments map[string]any
	}
}

type ollamaFailure struct {
	Thrown     bool
	Name       string
	StatusCode int `json:"status_code"`
	Message    string
}

// The npm ollama library (js/ollama.mjs) against the node's Ollama API,
// auth on (the key as a bearer token in the library's headers).
func TestOllamaJS(t *testing.T) {
	needNode(t)
	n := startNode(t, ollamaChain)
	cases := runScript(t, n, "ollama.mjs", "MOLTBOT_EMBED_MODEL=nomic-embed-text")

	t.Run("list", func(t *testing.T) {
		r := result[struct{ Names []string }](t, cases, "list")
		if !slices.Contains(r.Names, "moltbot:latest") || !slices.Contains(r.Names, "ol/llama3.2:latest") {
			t.Errorf("list(): %v", r.Names)
		}
	})

	t.Run("show", func(t *testing.T) {
		r := result[struct {
			Capabilities      []string
			ModelInfo         map[string]any `json:"model_info"`
			EmbedCapabilities []string       `json:"embed_capabilities"`
		}](t, cases, "show")
		for _, c := range []string{"completion", "tools", "vision"} {
			if !slices.Contains(r.Capabilities, c) {
				t.Errorf("show(moltbot) capabilities %v: no %s", r.Capabilities, c)
			}
		}
		if r.ModelInfo["general.architecture"] != "moltbot" {
			t.Errorf("model_info %v", r.ModelInfo)
		}
		if !slices.Contains(r.EmbedCapabilities, "embedding") || slices.Contains(r.EmbedCapabilities, "completion") {
			t.Errorf("show(embedding model) capabilities %v", r.EmbedCapabilities)
		}
	})

	var chat struct {
		ollamaDone
		Role, Content string
	}
	t.Run("chat", func(t *testing.T) {
		chat = result[struct {
			ollamaDone
			Role, Content string
		}](t, cases, "chat")
		if !chat.ok() || chat.Role != "assistant" || !strings.HasPrefix(chat.Content, simLabel) {
			t.Errorf("chat: %+v", chat)
		}
	})

	t.Run("chat_stream", func(t *testing.T) {
		r := result[struct {
			Content string
			Parts   int
			Last    *ollamaDone
		}](t, cases, "chat_stream")
		if r.Content != chat.Content || r.Parts < 3 || r.Last == nil || !r.Last.ok() {
			t.Errorf("streamed chat: %+v (unstreamed content %q)", r, chat.Content)
		}
	})

	var calls []ollamaCall
	t.Run("tools", func(t *testing.T) {
		r := result[struct {
			ToolCalls []ollamaCall `json:"tool_calls"`
			First     ollamaDone
			Content   string
		}](t, cases, "tools")
		calls = r.ToolCalls
		if len(r.ToolCalls) != 1 || r.ToolCalls[0].Function.Name != "get_weather" {
			t.Fatalf("tool calls %+v", r.ToolCalls)
		}
		checkWeatherArgs(t, r.ToolCalls[0].Function.Arguments)
		if !strings.Contains(r.Content, quotedResult) {
			t.Errorf("answer after the tool's result %q, want it to quote %s", r.Content, quotedResult)
		}
	})

	t.Run("tools_stream", func(t *testing.T) {
		r := result[struct {
			ToolCalls []ollamaCall `json:"tool_calls"`
		}](t, cases, "tools_stream")
		a, _ := json.Marshal(r.ToolCalls)
		b, _ := json.Marshal(calls)
		if len(r.ToolCalls) != 1 || string(a) != string(b) {
			t.Errorf("streamed tool calls %s, unstreamed %s", a, b)
		}
	})

	t.Run("format_schema", func(t *testing.T) {
		checkPerson(t, result[struct{ Content string }](t, cases, "format_schema").Content)
	})

	t.Run("format_json", func(t *testing.T) {
		r := result[struct{ Response string }](t, cases, "format_json")
		var v map[string]any
		if err := json.Unmarshal([]byte(r.Response), &v); err != nil {
			t.Errorf("format json: %q is no JSON object: %v", r.Response, err)
		}
	})

	t.Run("image", func(t *testing.T) {
		if r := result[struct{ Content string }](t, cases, "image"); !strings.Contains(r.Content, sawImage) {
			t.Errorf("reply %q does not mention the image", r.Content)
		}
	})

	var gen struct {
		ollamaDone
		Response string
	}
	t.Run("generate", func(t *testing.T) {
		gen = result[struct {
			ollamaDone
			Response string
		}](t, cases, "generate")
		if !gen.ok() || !strings.HasPrefix(gen.Response, simLabel) {
			t.Errorf("generate: %+v", gen)
		}
	})

	t.Run("generate_stream", func(t *testing.T) {
		r := result[struct {
			Response string
			Parts    int
			Last     *ollamaDone
		}](t, cases, "generate_stream")
		if r.Response != gen.Response || r.Parts < 3 || r.Last == nil || !r.Last.ok() {
			t.Errorf("streamed generate: %+v (unstreamed %q)", r, gen.Response)
		}
	})

	t.Run("embed", func(t *testing.T) {
		r := result[struct {
			Model      string
			Embeddings [][]float64
		}](t, cases, "embed")
		if r.Model != "nomic-embed-text" {
			t.Errorf("model %q, want the name asked for", r.Model)
		}
		checkVectors(t, r.Embeddings)
	})

	for _, c := range []struct {
		name, contains string
		status         int
	}{
		{"unknown_model", "no-such-model", 404},
		{"refused_option", "top_k", 400},
		{"no_key", "OLLAMA_AUTH=1", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := result[ollamaFailure](t, cases, c.name)
			if !r.Thrown || r.Name != "ResponseError" || r.StatusCode != c.status || !strings.Contains(r.Message, c.contains) {
				t.Errorf("want a ResponseError, %d, naming %q: %+v", c.status, c.contains, r)
			}
		})
	}
}
