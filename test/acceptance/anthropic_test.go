package acceptance

import (
	"strings"
	"testing"
)

type anthReply struct {
	Type, Role, Model string
	StopReason        string `json:"stop_reason"`
	Usage             *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	}
	Text     string
	ToolUses []struct {
		ID, Name string
		Input    map[string]any
	} `json:"tool_uses"`
}

func (r anthReply) ok() bool {
	return r.Type == "message" && r.Role == "assistant" && r.Model != "" && r.Usage != nil && r.Usage.OutputTokens > 0
}

// checkWeatherUse checks a reply that is one get_weather tool_use block.
func checkWeatherUse(t *testing.T, r anthReply) {
	t.Helper()
	if !r.ok() || r.StopReason != "tool_use" || len(r.ToolUses) != 1 {
		t.Fatalf("want one tool_use, stop_reason tool_use: %+v", r)
	}
	if u := r.ToolUses[0]; u.ID == "" || u.Name != "get_weather" {
		t.Errorf("tool_use %+v", u)
	}
	checkWeatherArgs(t, r.ToolUses[0].Input)
}

// The npm @anthropic-ai/sdk (js/anthropic.mjs) against the node's
// Anthropic Messages API (POST /v1/messages, the key in x-api-key), auth
// on, the chain's first model an Anthropic one (the sim's /v1/messages).
func TestAnthropicSDK(t *testing.T) {
	needNode(t)
	n := startNode(t, chain{primary: "an/claude-sim", fallback: "ol/llama3.2", embed: "ol/nomic-embed-text"})
	cases := runScript(t, n, "anthropic.mjs")

	t.Run("message", func(t *testing.T) {
		r := result[anthReply](t, cases, "message")
		if !r.ok() || r.StopReason != "end_turn" || !strings.HasPrefix(r.Text, simLabel) || len(r.ToolUses) != 0 {
			t.Errorf("message: %+v", r)
		}
	})

	t.Run("message_stream", func(t *testing.T) {
		r := result[struct {
			TextEvents   int    `json:"text_events"`
			StreamedText string `json:"streamed_text"`
			Final        anthReply
		}](t, cases, "message_stream")
		if r.TextEvents < 3 || r.StreamedText != r.Final.Text || !strings.HasPrefix(r.Final.Text, simLabel) ||
			!r.Final.ok() || r.Final.StopReason != "end_turn" {
			t.Errorf("stream: %+v", r)
		}
	})

	var use anthReply
	t.Run("tools", func(t *testing.T) {
		r := result[struct{ First, Second anthReply }](t, cases, "tools")
		checkWeatherUse(t, r.First)
		use = r.First
		if !strings.Contains(r.Second.Text, quotedResult) || r.Second.StopReason != "end_turn" {
			t.Errorf("answer after the tool_result: %+v (want it to quote %s)", r.Second, quotedResult)
		}
	})

	t.Run("tools_stream", func(t *testing.T) {
		r := result[struct {
			InputJSONEvents int `json:"input_json_events"`
			First, Second   anthReply
		}](t, cases, "tools_stream")
		// The SDK's MessageStream put the input together from input_json deltas.
		checkWeatherUse(t, r.First)
		if r.InputJSONEvents < 1 {
			t.Error("no input_json_delta events")
		}
		if len(use.ToolUses) == 1 && len(r.First.ToolUses) == 1 && r.First.ToolUses[0].Input["city"] != use.ToolUses[0].Input["city"] {
			t.Errorf("streamed input %v, unstreamed %v", r.First.ToolUses[0].Input, use.ToolUses[0].Input)
		}
		if !strings.Contains(r.Second.Text, quotedResult) {
			t.Errorf("streamed answer after the tool_result: %q", r.Second.Text)
		}
	})

	t.Run("image", func(t *testing.T) {
		if r := result[anthReply](t, cases, "image"); !strings.Contains(r.Text, sawImage) {
			t.Errorf("reply %q does not mention the image", r.Text)
		}
	})

	for _, c := range []struct {
		name, class, typ string
		status           int
	}{
		{"bad_request", "bad_request", "invalid_request_error", 400},
		{"bad_key", "authentication", "authentication_error", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := result[map[string]any](t, cases, c.name)
			if r["thrown"] != true || r[c.class] != true || r["status"] != float64(c.status) || r["type"] != c.typ {
				t.Errorf("want the SDK's %s error, %d, error.type %s: %v", c.class, c.status, c.typ, r)
			}
		})
	}
}
