package acceptance

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

type oaiToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaiReply struct {
	Model        string        `json:"model"`
	Object       string        `json:"object"`
	Content      *string       `json:"content"`
	ToolCalls    []oaiToolCall `json:"tool_calls"`
	FinishReason string        `json:"finish_reason"`
	Usage        *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func (r oaiReply) text() string {
	if r.Content == nil {
		return ""
	}
	return *r.Content
}

// checkWeatherCall checks a reply that is one get_weather call.
func checkWeatherCall(t *testing.T, r oaiReply) {
	t.Helper()
	if r.FinishReason != "tool_calls" || r.Content != nil || len(r.ToolCalls) != 1 {
		t.Fatalf("want one tool call and no content, finish tool_calls: %+v", r)
	}
	c := r.ToolCalls[0]
	if c.ID == "" || c.Type != "function" || c.Function.Name != "get_weather" {
		t.Errorf("tool call %+v", c)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil {
		t.Fatalf("arguments %q: %v", c.Function.Arguments, err)
	}
	checkWeatherArgs(t, args)
}

// The npm openai SDK (js/openai.mjs) against the node's OpenAI API, auth
// on, the chain's first model an OpenAI-compatible one (the sim's /v1, so
// streamed tool calls come in pieces).
func TestOpenAISDK(t *testing.T) {
	needNode(t)
	n := startNode(t, chain{primary: "oa/gpt-4o-mini", fallback: "ol/llama3.2", embed: "oa/nomic-embed-text"})
	cases := runScript(t, n, "openai.mjs", "MOLTBOT_EMBED_MODEL=oa/nomic-embed-text")
	const served = "oa/gpt-4o-mini"

	t.Run("models", func(t *testing.T) {
		r := result[struct{ IDs []string }](t, cases, "models")
		for _, id := range []string{"moltbot", served} {
			if !slices.Contains(r.IDs, id) {
				t.Errorf("models.list() has no %q: %v", id, r.IDs)
			}
		}
	})

	var plain oaiReply
	t.Run("chat", func(t *testing.T) {
		plain = result[oaiReply](t, cases, "chat")
		if plain.Object != "chat.completion" || plain.Model != served || plain.FinishReason != "stop" ||
			!strings.HasPrefix(plain.text(), simLabel) || plain.Usage == nil || plain.Usage.CompletionTokens == 0 {
			t.Errorf("chat: %+v", plain)
		}
	})

	t.Run("chat_stream", func(t *testing.T) {
		r := result[struct {
			Content      string
			Chunks       int
			FinishReason string `json:"finish_reason"`
			Usage        *struct {
				TotalTokens int `json:"total_tokens"`
			}
			Role, Model string
		}](t, cases, "chat_stream")
		if r.Content != plain.text() {
			t.Errorf("streamed %q, not what the same request answered unstreamed: %q", r.Content, plain.text())
		}
		if r.Chunks < 3 || r.Role != "assistant" || r.FinishReason != "stop" || r.Model != served {
			t.Errorf("stream: %+v", r)
		}
		if r.Usage == nil || r.Usage.TotalTokens == 0 {
			t.Error("no usage chunk, though stream_options.include_usage asked")
		}
	})

	var call oaiToolCall
	t.Run("tools", func(t *testing.T) {
		r := result[struct{ First, Second oaiReply }](t, cases, "tools")
		checkWeatherCall(t, r.First)
		if len(r.First.ToolCalls) > 0 {
			call = r.First.ToolCalls[0]
		}
		if !strings.Contains(r.Second.text(), quotedResult) || r.Second.FinishReason != "stop" {
			t.Errorf("answer after the tool's result: %+v (want it to quote %s)", r.Second, quotedResult)
		}
	})

	t.Run("tools_stream", func(t *testing.T) {
		r := result[struct {
			First          oaiReply
			ToolCallChunks int `json:"tool_call_chunks"`
			ArgumentsDone  []struct {
				Name      string
				Index     int
				Arguments string
			} `json:"arguments_done"`
			Second struct{ Content string }
		}](t, cases, "tools_stream")
		// The SDK's ChatCompletionStream put the call together from its pieces.
		checkWeatherCall(t, r.First)
		if r.ToolCallChunks < 2 {
			t.Errorf("the call came in %d chunk(s): want pieces for the SDK to assemble", r.ToolCallChunks)
		}
		if len(r.First.ToolCalls) == 1 && (r.First.ToolCalls[0].Function != call.Function) {
			t.Errorf("streamed call %+v, unstreamed %+v", r.First.ToolCalls[0].Function, call.Function)
		}
		if len(r.ArgumentsDone) != 1 || r.ArgumentsDone[0].Name != "get_weather" || r.ArgumentsDone[0].Arguments != call.Function.Arguments {
			t.Errorf("tool_calls.function.arguments.done events: %+v", r.ArgumentsDone)
		}
		if !strings.Contains(r.Second.Content, quotedResult) {
			t.Errorf("streamed answer after the tool's result: %q", r.Second.Content)
		}
	})

	t.Run("json_schema", func(t *testing.T) {
		r := result[struct {
			oaiReply
			Parsed map[string]any
		}](t, cases, "json_schema")
		checkPerson(t, r.text())
		if r.Parsed == nil {
			t.Error("chat.completions.parse() gave no parsed message")
		}
	})

	t.Run("image", func(t *testing.T) {
		r := result[oaiReply](t, cases, "image")
		if !strings.Contains(r.text(), sawImage) {
			t.Errorf("reply %q does not mention the image", r.text())
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		type vec struct {
			Index     int
			Embedding []float64
		}
		r := result[struct {
			Model         string
			Float, Base64 []vec
		}](t, cases, "embeddings")
		if r.Model != "oa/nomic-embed-text" {
			t.Errorf("served by %q", r.Model)
		}
		if len(r.Float) != 2 || len(r.Base64) != 2 {
			t.Fatalf("%d float and %d base64 vectors, want 2 each", len(r.Float), len(r.Base64))
		}
		checkVectors(t, [][]float64{r.Float[0].Embedding, r.Float[1].Embedding})
		// The SDK's default asks for base64 and decodes it: the same float32s.
		for i := range r.Float {
			f, b := r.Float[i], r.Base64[i]
			if f.Index != i || b.Index != i || len(f.Embedding) != len(b.Embedding) {
				t.Fatalf("vector %d: index %d/%d, %d/%d dimensions", i, f.Index, b.Index, len(f.Embedding), len(b.Embedding))
			}
			for j := range f.Embedding {
				if float32(f.Embedding[j]) != float32(b.Embedding[j]) || math.IsNaN(b.Embedding[j]) {
					t.Fatalf("vector %d[%d]: float %v, base64 decoded %v", i, j, f.Embedding[j], b.Embedding[j])
				}
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		r := result[struct {
			Thrown     bool
			BadRequest bool `json:"bad_request"`
			Status     int
			Param      string
			Type       string
		}](t, cases, "refused")
		if !r.Thrown || !r.BadRequest || r.Status != 400 || r.Param != "reasoning_effort" || r.Type != "invalid_request_error" {
			t.Errorf("reasoning_effort: want the SDK's BadRequestError, 400, param reasoning_effort: %+v", r)
		}
	})

	t.Run("bad_key", func(t *testing.T) {
		r := result[struct {
			Thrown, Authentication bool
			Status                 int
		}](t, cases, "bad_key")
		if !r.Thrown || !r.Authentication || r.Status != 401 {
			t.Errorf("unknown key: want the SDK's AuthenticationError, 401: %+v", r)
		}
	})
}
