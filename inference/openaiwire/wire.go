// Package openaiwire is the wire of OpenAI's chat completions API, for
// every side of moltbot that speaks it: the simulator serves it, the
// gateway serves it, the openai client calls it. Requests decode into the
// structs here with encoding/json; responses are appended by hand to a
// reused buffer (no allocation per chunk), and the structs here read them
// back (tests, clients).
//
// The types say what the wire carries, not what a side accepts: a
// message's content decodes into all its parts, and the gateway (text and
// images as data URLs, DecodeImageURL) or the simulator decides what to do
// with them; every field of OpenAI's request decodes, so that a server can
// take or refuse each by name (UnknownField names a member that is none).
package openaiwire

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/jsonw"
)

// ChatRequest is the body of POST /v1/chat/completions. Optional numbers
// are pointers, so that an absent field and a zero differ.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stop                Stop            `json:"stop"`
	Seed                *int64          `json:"seed"`
	N                   *int            `json:"n"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	User                *string         `json:"user"`
	Tools               []Tool          `json:"tools"`
	ToolChoice          *ToolChoice     `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	ResponseFormat      *ResponseFormat `json:"response_format"`

	// Extras are the fields moltbot does not carry to a model, apart:
	// a plain request leaves the pointer nil, and the struct small.
	*Extras
}

// Extras are OpenAI's request fields that moltbot does not carry to a
// model. They are decoded so that the gateway can accept one at its
// neutral value (logprobs false, store false, ...) and refuse any other
// with a 400 naming it, rather than ignore it (docs/API.md). They are left
// out when empty, so that a request written from this type does not send
// them. (Exported: encoding/json fills an embedded pointer only then.)
type Extras struct {
	Logprobs             *bool              `json:"logprobs,omitempty"`
	TopLogprobs          *int               `json:"top_logprobs,omitempty"`
	LogitBias            map[string]float64 `json:"logit_bias,omitempty"`
	Store                *bool              `json:"store,omitempty"`
	Metadata             map[string]string  `json:"metadata,omitempty"`
	ServiceTier          *string            `json:"service_tier,omitempty"`
	Modalities           []string           `json:"modalities,omitempty"`
	Audio                json.RawMessage    `json:"audio,omitempty"`
	Prediction           json.RawMessage    `json:"prediction,omitempty"`
	ReasoningEffort      *string            `json:"reasoning_effort,omitempty"`
	Verbosity            *string            `json:"verbosity,omitempty"`
	WebSearchOptions     json.RawMessage    `json:"web_search_options,omitempty"`
	Functions            json.RawMessage    `json:"functions,omitempty"`
	FunctionCall         json.RawMessage    `json:"function_call,omitempty"`
	SafetyIdentifier     *string            `json:"safety_identifier,omitempty"`
	PromptCacheKey       *string            `json:"prompt_cache_key,omitempty"`
	PromptCacheRetention *string            `json:"prompt_cache_retention,omitempty"`
}

// IsNull reports whether raw, a field decoded as a json.RawMessage, is
// absent or null.
func IsNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// Tool is an entry of a request's tools: {"type":"function","function":{...}}.
type Tool struct {
	Type     string   `json:"type"`
	Function Function `json:"function"`
}

// Function describes a tool the model may call; Parameters is a JSON Schema.
type Function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolChoice is "none", "auto", "required", or {"type":"function",
// "function":{"name":...}} (Mode "function" then, and Name).
type ToolChoice struct {
	Mode string
	Name string
}

// UnmarshalJSON reads a mode string or a named function.
func (c *ToolChoice) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &c.Mode)
	}
	var v struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Type != "function" || v.Function.Name == "" {
		return &FieldError{Param: "tool_choice", Msg: `tool_choice: expected "none", "auto", "required" or {"type":"function","function":{"name":...}}`}
	}
	c.Mode, c.Name = "function", v.Function.Name
	return nil
}

// MarshalJSON writes the mode string, or the named function.
func (c ToolChoice) MarshalJSON() ([]byte, error) {
	if c.Mode == "function" {
		b := append([]byte(`{"type":"function","function":{"name":`), jsonw.String(nil, c.Name)...)
		return append(b, "}}"...), nil
	}
	return jsonw.String(nil, c.Mode), nil
}

// ResponseFormat is a request's response_format: {"type":"text"},
// {"type":"json_object"} or {"type":"json_schema","json_schema":{...}}.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is response_format's json_schema: the schema a reply holds to.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is a tool call of an assistant message, or a piece of one in a
// chunk's delta (Index says which; the first piece has ID, Type and Name).
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"` // "function"
	Function FunctionCall `json:"function"`
}

// FunctionCall is a tool call's function and its arguments (a JSON text).
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// IncludeUsage reports whether a streamed reply ends with a usage chunk.
func (r *ChatRequest) IncludeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage
}

// StreamOptions are a streamed request's options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
	// IncludeObfuscation asks OpenAI to pad each chunk with random
	// characters (a side-channel defence); moltbot adds no padding.
	IncludeObfuscation *bool `json:"include_obfuscation,omitempty"`
}

// Message is one message of a request.
type Message struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
	// Name is the author's name (an optional field of every role).
	Name string `json:"name,omitempty"`
	// ToolCalls are an assistant message's tool calls.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID names the call a tool message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// MessageExtras are the rarer fields, apart (nil when none is sent).
	*MessageExtras
}

// MessageExtras are the fields of a message that clients send back with a
// reply they got: Refusal (an assistant's refusal), FunctionCall (the
// deprecated form of tool_calls) and Audio (a reference to an audio
// reply), decoded so that a server can take or refuse them by name.
type MessageExtras struct {
	Refusal      *string         `json:"refusal,omitempty"`
	FunctionCall json.RawMessage `json:"function_call,omitempty"`
	Audio        json.RawMessage `json:"audio,omitempty"`
}

// Content is a message's content: a string (decoded as one text part) or
// a list of parts; null is none.
type Content []Part

// Part is one part of a message's content. Text is nil when the part has
// no "text" (an image part, say).
type Part struct {
	Type     string    `json:"type"`
	Text     *string   `json:"text"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image part's image: a data: URL (data:image/png;base64,...)
// or a link; Detail is "auto", "low" or "high".
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// FieldError is a request field of the wrong shape; Param names it.
type FieldError struct {
	Param, Msg string
}

func (e *FieldError) Error() string { return e.Msg }

// UnmarshalJSON reads a string, a list of parts or null.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*c = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = Content{{Type: "text", Text: &s}}
		return nil
	}
	var parts []Part
	if err := json.Unmarshal(b, &parts); err != nil {
		return &FieldError{Param: "content", Msg: "content: expected a string or an array of parts"}
	}
	*c = parts
	return nil
}

// Text joins the text of every part that carries one.
func (c Content) Text() string {
	if len(c) == 1 && c[0].Text != nil {
		return *c[0].Text
	}
	var b []byte
	for _, p := range c {
		if p.Text != nil {
			b = append(b, *p.Text...)
		}
	}
	return string(b)
}

// NotText returns the index of the first part that is not text, or -1.
func (c Content) NotText() int {
	for i, p := range c {
		if p.Type != "text" || p.Text == nil {
			return i
		}
	}
	return -1
}

// Stop is a request's stop: a string or a list of strings.
type Stop []string

// UnmarshalJSON reads a string, a list of strings or null.
func (s *Stop) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Stop{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &FieldError{Param: "stop", Msg: "stop: expected a string or an array of strings"}
	}
	*s = many
	return nil
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// Objects of the responses.
const (
	ObjectCompletion = "chat.completion"
	ObjectChunk      = "chat.completion.chunk"
)

// Completion is a chat.completion or a chat.completion.chunk, as read
// back. Servers write it with the Append functions.
type Completion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint string   `json:"system_fingerprint"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage"`
	Error             *Error   `json:"error"`
}

// Choice is a completion's only choice (n=1): Message in a completion,
// Delta in a chunk.
type Choice struct {
	Index        int     `json:"index"`
	Message      *Delta  `json:"message"`
	Delta        *Delta  `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is a message or a piece of one.
type Delta struct {
	Role      string     `json:"role,omitempty"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// EmbeddingRequest is the body of POST /v1/embeddings. Input is a string
// or a list of strings (token arrays are not taken).
type EmbeddingRequest struct {
	Model          string `json:"model"`
	Input          Stop   `json:"input"`
	EncodingFormat string `json:"encoding_format,omitempty"` // "float" or "base64"
	Dimensions     *int   `json:"dimensions,omitempty"`
	User           string `json:"user,omitempty"`
}

// EmbeddingList is the answer to POST /v1/embeddings.
type EmbeddingList struct {
	Object string      `json:"object"` // "list"
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  Usage       `json:"usage"`
}

// Embedding is one vector of an EmbeddingList, for Input[Index].
type Embedding struct {
	Object    string    `json:"object"` // "embedding"
	Index     int       `json:"index"`
	Embedding []float32 `json:"embedding"`
}

// Usage counts a reply's tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Error is the error of a response body ({"error": ...}) or of a stream
// event. Code is a string, or null.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// AppendHead appends the start of a completion or chunk object, up to its
// open list of choices: {"id":...,"object":...,"created":...,"model":...,
// "system_fingerprint":...,"choices":[
func AppendHead(b []byte, id, object string, created int64, model, fingerprint string) []byte {
	b = append(b, `{"id":`...)
	b = jsonw.String(b, id)
	b = append(b, `,"object":`...)
	b = jsonw.String(b, object)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = jsonw.String(b, model)
	b = append(b, `,"system_fingerprint":`...)
	b = jsonw.String(b, fingerprint)
	return append(b, `,"choices":[`...)
}

// AppendDelta appends a chunk's choice with a piece of content (with the
// assistant role when first) and closes the chunk.
func AppendDelta(b []byte, content string, first bool) []byte {
	b = append(b, `{"index":0,"delta":{`...)
	if first {
		b = append(b, `"role":"assistant",`...)
	}
	b = append(b, `"content":`...)
	b = jsonw.String(b, content)
	return append(b, `},"logprobs":null,"finish_reason":null}]}`...)
}

// AppendFinish appends the last chunk's choice, its finish reason, and
// closes the chunk.
func AppendFinish(b []byte, reason string) []byte {
	b = append(b, `{"index":0,"delta":{},"logprobs":null,"finish_reason":`...)
	b = jsonw.String(b, reason)
	return append(b, `}]}`...)
}

// AppendMessage appends a completion's choice (the whole reply) and its
// usage, and closes the completion.
func AppendMessage(b []byte, content, reason string, u moltbot.Usage) []byte {
	return AppendReply(b, content, nil, reason, u)
}

// AppendReply appends a completion's choice, a reply that may call tools,
// and its usage, and closes the completion. As OpenAI writes it, the
// content of a reply made only of tool calls is null.
func AppendReply(b []byte, content string, calls []moltbot.ToolCall, reason string, u moltbot.Usage) []byte {
	b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
	if content == "" && len(calls) > 0 {
		b = append(b, "null"...)
	} else {
		b = jsonw.String(b, content)
	}
	if len(calls) > 0 {
		b = append(b, `,"tool_calls":[`...)
		for i := range calls {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCall(b, -1, calls[i].ID, calls[i].Name, calls[i].Arguments, true)
		}
		b = append(b, ']')
	}
	b = append(b, `},"logprobs":null,"finish_reason":`...)
	b = jsonw.String(b, reason)
	b = append(b, `}],`...)
	b = AppendUsage(b, u)
	return append(b, '}')
}

// appendCall appends one tool call: {"index":..,"id":..,"type":"function",
// "function":{"name":..,"arguments":..}}. index < 0 leaves index out (a
// message's call); head false leaves out id, type and name (a later piece
// of a streamed call).
func appendCall(b []byte, index int, id, name, args string, head bool) []byte {
	b = append(b, '{')
	if index >= 0 {
		b = append(b, `"index":`...)
		b = jsonw.Int(b, int64(index))
		b = append(b, ',')
	}
	if head {
		b = append(b, `"id":`...)
		b = jsonw.String(b, id)
		b = append(b, `,"type":"function","function":{"name":`...)
		b = jsonw.String(b, name)
		b = append(b, `,"arguments":`...)
	} else {
		b = append(b, `"function":{"arguments":`...)
	}
	b = jsonw.String(b, args)
	return append(b, `}}`...)
}

// AppendToolCallDelta appends a chunk's choice with a piece of a tool call
// (with the assistant role when first) and closes the chunk. The first
// piece of a call (d.ID set) carries its id, type and name, later ones
// only more arguments, as OpenAI streams them.
func AppendToolCallDelta(b []byte, d *moltbot.ToolCallDelta, first bool) []byte {
	b = append(b, `{"index":0,"delta":{`...)
	if first {
		b = append(b, `"role":"assistant","content":null,`...)
	}
	b = append(b, `"tool_calls":[`...)
	b = appendCall(b, d.Index, d.ID, d.Name, d.Arguments, d.ID != "" || d.Name != "")
	return append(b, `]},"logprobs":null,"finish_reason":null}]}`...)
}

// AppendUsageChunk appends the end of the usage chunk that follows a head:
// no choices, then the usage, and closes the chunk.
func AppendUsageChunk(b []byte, u moltbot.Usage) []byte {
	b = append(b, `],`...)
	b = AppendUsage(b, u)
	return append(b, '}')
}

// AppendUsage appends "usage":{...}.
func AppendUsage(b []byte, u moltbot.Usage) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = jsonw.Int(b, int64(u.PromptTokens))
	b = append(b, `,"completion_tokens":`...)
	b = jsonw.Int(b, int64(u.CompletionTokens))
	b = append(b, `,"total_tokens":`...)
	b = jsonw.Int(b, int64(u.Total()))
	return append(b, '}')
}

// AppendError appends an error body, {"error":{"message","type","param",
// "code"}}; an empty param or code is null.
func AppendError(b []byte, message, typ, param, code string) []byte {
	b = append(b, `{"error":{"message":`...)
	b = jsonw.String(b, message)
	b = append(b, `,"type":`...)
	b = jsonw.String(b, typ)
	for _, f := range [2]struct{ key, v string }{{`,"param":`, param}, {`,"code":`, code}} {
		b = append(b, f.key...)
		if f.v == "" {
			b = append(b, "null"...)
		} else {
			b = jsonw.String(b, f.v)
		}
	}
	return append(b, `}}`...)
}
