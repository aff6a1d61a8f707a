package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/openaiwire"
)

// The Ollama API's requests, as ollama's api.ChatRequest, GenerateRequest,
// EmbedRequest and EmbeddingRequest name their fields, decoded by the
// gateway's decoder (unknown fields ignored, as Ollama's server ignores
// them). They are moltbot's own types, not ollama/api's: a tool's schema
// and a call's arguments stay the bytes the client sent (api re-encodes
// them through its own structs and drops what they lack), and every
// field's errors name it. What each field becomes is docs/API.md's
// "Ollama API" table; the mapping is here, apart from HTTP, so that it is
// fuzzed alone (FuzzOllamaChatRequest, FuzzOllamaGenerateRequest).

// ollamaChatRequest is the body of POST /api/chat.
type ollamaChatRequest struct {
	Model           string                     `json:"model"`
	Messages        []ollamaMessage            `json:"messages"`
	Stream          *bool                      `json:"stream"`
	Format          json.RawMessage            `json:"format"`
	KeepAlive       *ollamaDuration            `json:"keep_alive"`
	Tools           []ollamaTool               `json:"tools"`
	Options         map[string]json.RawMessage `json:"options"`
	Think           json.RawMessage            `json:"think"`
	Truncate        *bool                      `json:"truncate"`
	Shift           *bool                      `json:"shift"`
	DebugRenderOnly bool                       `json:"_debug_render_only"`
	Logprobs        bool                       `json:"logprobs"`
	TopLogprobs     int                        `json:"top_logprobs"`
}

// ollamaGenerateRequest is the body of POST /api/generate.
type ollamaGenerateRequest struct {
	Model           string                     `json:"model"`
	Prompt          string                     `json:"prompt"`
	Suffix          string                     `json:"suffix"`
	System          string                     `json:"system"`
	Template        string                     `json:"template"`
	Context         []int                      `json:"context"`
	Stream          *bool                      `json:"stream"`
	Raw             bool                       `json:"raw"`
	Format          json.RawMessage            `json:"format"`
	KeepAlive       *ollamaDuration            `json:"keep_alive"`
	Images          []string                   `json:"images"`
	Options         map[string]json.RawMessage `json:"options"`
	Think           json.RawMessage            `json:"think"`
	Truncate        *bool                      `json:"truncate"`
	Shift           *bool                      `json:"shift"`
	DebugRenderOnly bool                       `json:"_debug_render_only"`
	Logprobs        bool                       `json:"logprobs"`
	TopLogprobs     int                        `json:"top_logprobs"`
	Width           int32                      `json:"width"`
	Height          int32                      `json:"height"`
	Steps           int32                      `json:"steps"`
}

// ollamaMessage is a message of /api/chat (api.Message).
type ollamaMessage struct {
	Role       string           `json:"role"`
	Content    string           `json:"content"`
	Thinking   string           `json:"thinking"`
	Images     []string         `json:"images"`
	ToolCalls  []ollamaToolCall `json:"tool_calls"`
	ToolName   string           `json:"tool_name"`
	ToolCallID string           `json:"tool_call_id"`
}

// ollamaToolCall is a call of an assistant message: arguments an object.
type ollamaToolCall struct {
	ID       string `json:"id"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// ollamaTool is a tool offered (api.Tool).
type ollamaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// ollamaDuration is keep_alive as api.Duration reads it: seconds as a
// number or a Go duration string; negative is forever.
type ollamaDuration struct{ time.Duration }

func (d *ollamaDuration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case float64:
		if t < 0 || t > math.MaxInt64/float64(time.Second) {
			d.Duration = math.MaxInt64
		} else {
			d.Duration = time.Duration(t * float64(time.Second))
		}
	case string:
		x, err := time.ParseDuration(t)
		if err != nil {
			return &openaiwire.FieldError{Param: "keep_alive", Msg: fmt.Sprintf("keep_alive: want seconds or a duration such as \"5m\", got %q", clip(t))}
		}
		if x < 0 {
			x = math.MaxInt64
		}
		d.Duration = x
	default:
		return &openaiwire.FieldError{Param: "keep_alive", Msg: "keep_alive: want seconds or a duration such as \"5m\""}
	}
	return nil
}

// ollamaTurn is what a chat or generate request asks of the chat service.
type ollamaTurn struct {
	msgs   []moltbot.Message
	opts   moltbot.ChatOptions
	stream bool
	// load is set for a request with nothing to say (no messages, an empty
	// prompt): Ollama loads the model and answers done_reason "load", or
	// "unload" when keep_alive is 0.
	load, unload bool
}

// Options moltbot passes on, and those it refuses: sampling that its
// providers cannot all do. The options of how Ollama loads a model on its
// own machine (num_ctx and the rest of api.Runner) are the providers'
// business, as keep_alive is: taken and not used. Keys that are none of
// api.Options' Ollama itself ignores, and so does moltbot.
var (
	ollamaRefused = []string{"num_keep", "top_k", "min_p", "typical_p", "repeat_last_n", "repeat_penalty"}
	ollamaRunner  = []string{"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"}
)

const ollamaTaken = "temperature, top_p, seed, num_predict, stop, presence_penalty and frequency_penalty"

// chatTurn maps a /api/chat request onto the domain.
func (r *ollamaChatRequest) turn() (*ollamaTurn, error) {
	t := &ollamaTurn{stream: r.Stream == nil || *r.Stream}
	if err := commonFields(r.Model, &t.opts, r.Format, r.Options, r.Think, r.Truncate, r.Shift, r.DebugRenderOnly, r.Logprobs, r.TopLogprobs); err != nil {
		return nil, err
	}
	if len(r.Messages) == 0 {
		t.load = true
		t.unload = r.KeepAlive != nil && r.KeepAlive.Duration == 0
		return t, nil
	}
	if len(r.Tools) > 0 {
		t.opts.Tools = make([]moltbot.Tool, len(r.Tools))
		for i := range r.Tools {
			tl := &r.Tools[i]
			if tl.Type != "" && tl.Type != "function" {
				return nil, invalid(fmt.Sprintf("tools[%d].type", i), "tools[%d].type must be \"function\", got %q", i, clip(tl.Type))
			}
			params := bytes.TrimSpace(tl.Function.Parameters)
			if string(params) == "null" {
				params = nil
			}
			t.opts.Tools[i] = moltbot.Tool{Name: tl.Function.Name, Description: tl.Function.Description, Parameters: json.RawMessage(params)}
		}
	}
	msgs, err := chatMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	t.msgs = msgs
	return t, nil
}

// call is a tool call of the history: the id the client gave it, the id
// moltbot gives it (unique in the request), its tool, and whether a tool
// message answered it.
type call struct {
	sent, id, name string
	answered       bool
}

// chatMessages maps /api/chat's messages. Tool calls get ids where they
// have none (older clients, and Ollama servers, send none) or where an
// earlier message used the same one (Ollama's own "call_0" of each reply);
// a tool message answers by tool_call_id, else by tool_name, else the
// first call of the assistant message before it not yet answered.
func chatMessages(in []ollamaMessage) ([]moltbot.Message, error) {
	out := make([]moltbot.Message, 0, len(in))
	used := map[string]bool{}
	var pending []call // the calls of the last assistant message
	for i := range in {
		m := &in[i]
		at := fmt.Sprintf("messages[%d]", i)
		role := moltbot.Role(strings.ToLower(m.Role))
		if role != moltbot.RoleAssistant && len(m.ToolCalls) > 0 {
			return nil, invalid(at+".tool_calls", "%s.tool_calls: only assistant messages hold tool calls", at)
		}
		if role != moltbot.RoleUser && len(m.Images) > 0 {
			return nil, invalid(at+".images", "%s.images: only user messages carry images", at)
		}
		switch role {
		case moltbot.RoleSystem:
			out = append(out, moltbot.Message{Role: role, Content: m.Content})
		case moltbot.RoleUser:
			msg := moltbot.Message{Role: role, Content: m.Content}
			if len(m.Images) > 0 {
				if m.Content != "" {
					msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartText, Text: m.Content})
				}
				for j, img := range m.Images {
					p, err := ollamaImage(img, fmt.Sprintf("%s.images[%d]", at, j))
					if err != nil {
						return nil, err
					}
					msg.Parts = append(msg.Parts, p)
				}
			}
			out = append(out, msg)
		case moltbot.RoleAssistant:
			// What the model thought aloud is not sent back: moltbot's
			// models are not asked to think (think is refused).
			msg := moltbot.Message{Role: role, Content: m.Content}
			pending = pending[:0]
			if len(m.ToolCalls) > 0 {
				if m.Content != "" {
					msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartText, Text: m.Content})
				}
				for j := range m.ToolCalls {
					tc := &m.ToolCalls[j]
					cat := fmt.Sprintf("%s.tool_calls[%d]", at, j)
					args, err := callArguments(tc.Function.Arguments, cat+".function.arguments")
					if err != nil {
						return nil, err
					}
					id := tc.ID
					if id == "" || used[id] {
						id = fmt.Sprintf("call_%d_%d", i, j)
						for used[id] {
							id += "_"
						}
					}
					used[id] = true
					pending = append(pending, call{sent: tc.ID, id: id, name: tc.Function.Name})
					msg.Parts = append(msg.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: id, Name: tc.Function.Name, Arguments: args})
				}
			}
			out = append(out, msg)
		case moltbot.RoleTool:
			c := answer(pending, m.ToolCallID, m.ToolName)
			if c == nil {
				if m.ToolCallID == "" {
					return nil, invalid(at, "%s: a tool message answers a tool call of the assistant message before it; none is left to answer (give tool_call_id or tool_name)", at)
				}
				// An id of no call here: the chat service says why.
				c = &call{id: m.ToolCallID}
			}
			c.answered = true
			out = append(out, moltbot.Message{Role: role, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: c.id, Content: m.Content}}})
		default:
			return nil, invalid(at+".role", "%s.role: must be system, user, assistant or tool, got %q", at, clip(m.Role))
		}
	}
	return out, nil
}

// answer finds the pending call a tool message answers: by the id the
// client gave the call, else by its tool's name, else the first not yet
// answered.
func answer(pending []call, id, name string) *call {
	if id != "" {
		for i := len(pending) - 1; i >= 0; i-- {
			if pending[i].sent == id || pending[i].id == id {
				return &pending[i]
			}
		}
		return nil
	}
	if name != "" {
		for i := range pending {
			if !pending[i].answered && pending[i].name == name {
				return &pending[i]
			}
		}
	}
	for i := range pending {
		if !pending[i].answered {
			return &pending[i]
		}
	}
	return nil
}

// callArguments is a call's arguments as moltbot keeps them: a JSON text
// of the object the client sent (none: "{}").
func callArguments(raw json.RawMessage, at string) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", nil
	}
	if raw[0] != '{' {
		return "", invalid(at, "%s must be a JSON object", at)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", invalid(at, "%s: %v", at, err)
	}
	return b.String(), nil
}

// ollamaImage decodes an image as Ollama sends it (base64 of the bytes) and
// names its type from its first bytes.
func ollamaImage(s, at string) (moltbot.Part, error) {
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// Some clients leave the padding out.
		if data, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return moltbot.Part{}, invalid(at, "%s: not base64: %v", at, err)
		}
	}
	if len(data) == 0 {
		return moltbot.Part{}, invalid(at, "%s: the image is empty", at)
	}
	mime := http.DetectContentType(data)
	switch mime {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
	default:
		return moltbot.Part{}, invalid(at, "%s: not a PNG, JPEG, GIF or WebP image (its bytes look like %s)", at, mime)
	}
	return moltbot.Part{Type: moltbot.PartImage, MIME: mime, Data: data}, nil
}

// turn maps a /api/generate request onto the domain: a one-message chat
// (the system prompt before it when given).
func (r *ollamaGenerateRequest) turn() (*ollamaTurn, error) {
	t := &ollamaTurn{stream: r.Stream == nil || *r.Stream}
	if err := commonFields(r.Model, &t.opts, r.Format, r.Options, r.Think, r.Truncate, r.Shift, r.DebugRenderOnly, r.Logprobs, r.TopLogprobs); err != nil {
		return nil, err
	}
	switch {
	case r.Raw:
		return nil, invalid("raw", "raw is not supported: moltbot's models take messages, not a prompt in their own template; leave raw out")
	case r.Suffix != "":
		return nil, invalid("suffix", "suffix is not supported: moltbot does not fill in the middle; leave suffix out")
	case r.Template != "":
		return nil, invalid("template", "template is not supported: moltbot's providers apply their models' templates; leave template out")
	case len(r.Context) > 0:
		return nil, invalid("context", "context is not supported: moltbot keeps no token context between calls; send the conversation to /api/chat instead")
	case r.Width != 0 || r.Height != 0 || r.Steps != 0:
		return nil, invalid("width", "width, height and steps are for image generation, which moltbot does not serve")
	}
	if r.Prompt == "" && len(r.Images) == 0 {
		t.load = true
		t.unload = r.KeepAlive != nil && r.KeepAlive.Duration == 0
		return t, nil
	}
	if r.System != "" {
		t.msgs = append(t.msgs, moltbot.Message{Role: moltbot.RoleSystem, Content: r.System})
	}
	u := moltbot.Message{Role: moltbot.RoleUser, Content: r.Prompt}
	if len(r.Images) > 0 {
		if r.Prompt != "" {
			u.Parts = append(u.Parts, moltbot.Part{Type: moltbot.PartText, Text: r.Prompt})
		}
		for j, img := range r.Images {
			p, err := ollamaImage(img, fmt.Sprintf("images[%d]", j))
			if err != nil {
				return nil, err
			}
			u.Parts = append(u.Parts, p)
		}
	}
	t.msgs = append(t.msgs, u)
	return t, nil
}

// commonFields reads what chat and generate share: the model (required,
// as Ollama requires it), format, options, think, and the fields moltbot
// cannot honour.
func commonFields(model string, o *moltbot.ChatOptions, format json.RawMessage, opts map[string]json.RawMessage, think json.RawMessage,
	truncate, shift *bool, debug, logprobs bool, topLogprobs int) error {
	if model == "" {
		return invalid("model", "model is required")
	}
	o.Model = model
	switch {
	case debug:
		return invalid("_debug_render_only", "_debug_render_only is not supported: moltbot renders no template")
	case logprobs || topLogprobs != 0:
		return invalid("logprobs", "logprobs and top_logprobs are not supported")
	case truncate != nil && *truncate:
		return invalid("truncate", "truncate: true is not supported: moltbot does not cut a request's messages to fit (a request too long for its model fails); leave truncate out or false")
	case shift != nil && *shift:
		return invalid("shift", "shift: true is not supported: a reply ends at its model's context length; leave shift out or false")
	}
	if err := thinkValue(think, model); err != nil {
		return err
	}
	f, err := formatOf(format)
	if err != nil {
		return err
	}
	o.ResponseFormat = f
	return ollamaOptions(opts, o)
}

// thinkValue refuses thinking, as Ollama refuses it for a model without
// the capability: moltbot's models are not asked to think aloud.
func thinkValue(raw json.RawMessage, model string) error {
	switch s := string(bytes.TrimSpace(raw)); s {
	case "", "null", "false":
		return nil
	case "true", `"high"`, `"medium"`, `"low"`:
		return invalid("think", "%q does not support thinking", model)
	}
	return invalid("think", `think must be true, false, "high", "medium" or "low"`)
}

// formatOf reads format: "json" for any JSON object, or a JSON Schema the
// reply must hold to.
func formatOf(raw json.RawMessage) (*moltbot.ResponseFormat, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0, string(raw) == "null", string(raw) == `""`:
		return nil, nil
	case string(raw) == `"json"`:
		return &moltbot.ResponseFormat{Type: moltbot.FormatJSONObject}, nil
	case raw[0] == '{':
		return &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: "response", Schema: json.RawMessage(raw)}, nil
	}
	return nil, invalid("format", "invalid format %s: expected \"json\" or a JSON Schema object", clip(string(raw)))
}

// ollamaOptions maps options onto o (see ollamaRefused). A null value is
// no value, as Ollama reads it.
func ollamaOptions(opts map[string]json.RawMessage, o *moltbot.ChatOptions) error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad option is always the same one
	for _, k := range keys {
		raw := bytes.TrimSpace(opts[k])
		if string(raw) == "null" {
			continue
		}
		param := "options." + k
		switch {
		case slices.Contains(ollamaRefused, k):
			return invalid(param, "%s is not supported: moltbot's providers cannot all honour it; moltbot takes %s", param, ollamaTaken)
		case k == "use_mmap":
			if string(raw) != "true" && string(raw) != "false" {
				return invalid(param, "%s must be true or false", param)
			}
		case slices.Contains(ollamaRunner, k):
			if _, err := number(raw, param); err != nil {
				return err
			}
		case k == "temperature", k == "top_p", k == "presence_penalty", k == "frequency_penalty":
			f, err := number(raw, param)
			if err != nil {
				return err
			}
			switch k {
			case "temperature":
				o.Temperature = &f
			case "top_p":
				o.TopP = &f
			case "presence_penalty":
				o.PresencePenalty = &f
			default:
				o.FrequencyPenalty = &f
			}
		case k == "seed":
			f, err := number(raw, param)
			if err != nil {
				return err
			}
			// Ollama's seed -1 (its default) is a random seed: none.
			if f >= 0 {
				v := int64(math.MaxInt64)
				if f < math.MaxInt64 {
					v = int64(f)
				}
				o.Seed = &v
			}
		case k == "num_predict":
			f, err := number(raw, param)
			if err != nil {
				return err
			}
			// -1 (Ollama's default) and -2 are no limit; so is 0, as
			// Ollama's runner reads it.
			if f >= 1 {
				o.MaxTokens = int(min(f, math.MaxInt32))
			}
		case k == "stop":
			var stop []string
			if err := json.Unmarshal(raw, &stop); err != nil {
				return invalid(param, "%s must be an array of strings", param)
			}
			o.Stop = stop
		}
	}
	return nil
}

// number reads an option's number, as Ollama reads it (a JSON number;
// integer options take a fraction's integer part).
func number(raw json.RawMessage, param string) (float64, error) {
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || !json.Valid(raw) || raw[0] == '"' {
		return 0, invalid(param, "%s must be a number", param)
	}
	return f, nil
}

// clip shortens what a client sent for an error message.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "..."
}
