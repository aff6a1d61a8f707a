// Package moltbot holds the domain vocabulary shared by every other package:
// messages, model references, conversations and the typed errors that the
// HTTP edge translates to status codes. It imports the standard library only.
package moltbot

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is stamped at build time with -ldflags "-X github.com/moltbot/moltbot.Version=...".
var Version = "dev"

// Role is who wrote a message.
type Role string

// The roles a conversation knows.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	// RoleTool is a tool's result, given back to the model: its Parts hold
	// one PartToolResult naming the call it answers.
	RoleTool Role = "tool"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	return r == RoleSystem || r == RoleUser || r == RoleAssistant || r == RoleTool
}

// Message is one entry of a conversation.
//
// Content is the message's text, always: a message made of parts (an image
// with a caption, a tool call, a tool result) keeps in Content the sum of
// its text parts (TextOf(Parts)), so that every reader of text (the context
// budget, the OpenAI API, the stored JSON, a provider without parts) keeps
// working. A text-only message leaves Parts nil; whoever sets Parts sets
// Content with TextOf. Storage keeps both as given.
type Message struct {
	// ID identifies a message within its conversation. A user message's ID is
	// its turn's ID, so a retried turn is recognised and not added twice; a
	// message that came with an external id has the ID ExternalIDPrefix+id
	// (see ExternalID).
	ID      string `json:"id,omitempty"`
	Role    Role   `json:"role"`
	Content string `json:"content"`
	// Parts are the message's content when it is more than text: text,
	// images, tool calls and results, in order. Nil for text only.
	Parts []Part `json:"parts,omitempty"`
	// Model names who wrote an assistant message ("provider/model"); empty otherwise.
	Model string `json:"model,omitempty"`
	// Created is when the message entered the conversation (Unix milliseconds).
	Created int64 `json:"created,omitempty"`
	// Incomplete marks an assistant reply cut off mid-stream: the text the
	// user saw before the model failed.
	Incomplete bool `json:"incomplete,omitempty"`
	// Channel names the edge the message came through ("slack:<name>",
	// ...; Principal.Channel), when it matters to the conversation (one
	// that spans channels); empty otherwise.
	Channel string `json:"channel,omitempty"`
	// User is the end user who wrote a user message, when the conversation
	// has several (a channel's thread); empty: the conversation's User.
	User string `json:"user,omitempty"`
	// Citations are the sources an assistant reply drew on (the knowledge
	// base's; citation.go), stored with it.
	Citations []Citation `json:"citations,omitempty"`
}

// ExternalIDPrefix starts the ID of a user message that came with an
// external id (TurnInput.ExternalID): its ID is the prefix and that id.
const ExternalIDPrefix = "x:"

// Text is m's text: its text parts when it has parts, else Content.
func (m *Message) Text() string {
	if m.Parts != nil {
		return TextOf(m.Parts)
	}
	return m.Content
}

// LastUserText is the text of the last user message of msgs ("" when
// there is none): what a stage before the model looks at.
func LastUserText(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleUser {
			return msgs[i].Text()
		}
	}
	return ""
}

// ExternalID is the id a user message had where it came from (a channel's
// event id, a client's Idempotency-Key), or "". It is kept in the ID (see
// ExternalIDPrefix): one place, which every stored message already has.
func (m *Message) ExternalID() string {
	if m.Role != RoleUser {
		return ""
	}
	id, _ := strings.CutPrefix(m.ID, ExternalIDPrefix)
	if len(id) == len(m.ID) {
		return ""
	}
	return id
}

// PartType says what a Part holds.
type PartType string

// The kinds of parts.
const (
	PartText       PartType = "text"
	PartImage      PartType = "image"
	PartToolCall   PartType = "tool_call"
	PartToolResult PartType = "tool_result"
)

// Part is one piece of a message's content. Which fields are used depends
// on Type:
//
//   - text: Text.
//   - image: MIME ("image/png", ...) and Data, the bytes; or Ref alone, a
//     reference to bytes stored before.
//   - tool_call: CallID, Name and Arguments (a JSON text), as a model asked.
//   - tool_result: CallID (of the call it answers) and Content.
//
// Ref is the store's name for a large payload (an image's Data, a tool
// result's Content) that it keeps apart from the history. The store sets
// it on the parts it returns, with the payload loaded too; it names the
// payload, so whoever changes Data or Content clears Ref.
type Part struct {
	Type      PartType `json:"type"`
	Text      string   `json:"text,omitempty"`
	MIME      string   `json:"mime,omitempty"`
	Data      []byte   `json:"data,omitempty"`
	Ref       string   `json:"ref,omitempty"`
	CallID    string   `json:"call_id,omitempty"`
	Name      string   `json:"name,omitempty"`
	Arguments string   `json:"arguments,omitempty"`
	Content   string   `json:"content,omitempty"`
}

// TextOf is the text of parts: the sum of the text parts, in order (a
// Message's Content).
func TextOf(parts []Part) string {
	var b strings.Builder
	for i := range parts {
		if parts[i].Type == PartText {
			b.WriteString(parts[i].Text)
		}
	}
	return b.String()
}

// ModelRef names a model on a configured provider: "provider/model".
type ModelRef struct {
	Provider string
	Model    string
}

// ParseModelRef splits "provider/model". The model part may itself hold
// slashes ("hf/org/name"); the provider part may not be empty.
func ParseModelRef(s string) (ModelRef, error) {
	i := strings.IndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return ModelRef{}, fmt.Errorf("model %q: want provider/model", s)
	}
	return ModelRef{Provider: s[:i], Model: s[i+1:]}, nil
}

// String returns "provider/model".
func (m ModelRef) String() string {
	if m.Provider == "" {
		return m.Model
	}
	return m.Provider + "/" + m.Model
}

// IsZero reports whether m names nothing.
func (m ModelRef) IsZero() bool { return m.Provider == "" && m.Model == "" }

// Usage counts tokens of one model call, as reported by the server (zero when it gives none).
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// ChatOptions are the per-request knobs passed through to a model.
type ChatOptions struct {
	// Model is "" or "moltbot" for the configured chain, or "provider/model" to pick one.
	Model       string
	MaxTokens   int
	Temperature *float64
	TopP        *float64
	Stop        []string
	Seed        *int64
	// PresencePenalty and FrequencyPenalty (-2 to 2) discourage repeating
	// topics and words, where the provider has them.
	PresencePenalty  *float64
	FrequencyPenalty *float64
	// User is the caller's id for its end user (OpenAI's "user"), passed
	// to providers that take one.
	User string
	// Tools are the functions the model may call (nil: none offered).
	Tools []Tool
	// ToolChoice says whether and which tool the model must call; nil is
	// the provider's default ("auto" when tools are offered).
	ToolChoice *ToolChoice
	// ParallelToolCalls, when set, allows (true) or forbids (false) more
	// than one tool call in one reply.
	ParallelToolCalls *bool
	// ResponseFormat asks for JSON (an object, or one that a schema
	// describes); nil or type "text" is free text.
	ResponseFormat *ResponseFormat
}

// Tool is a function a model may call. Parameters is the JSON Schema of
// its arguments (an object schema; nil: no parameters).
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
	// Strict asks the provider to hold the arguments to the schema exactly
	// (OpenAI's strict function calling), where it can.
	Strict bool
}

// The modes of a ToolChoice.
const (
	ToolChoiceAuto     = "auto"     // the model decides
	ToolChoiceNone     = "none"     // no tool call
	ToolChoiceRequired = "required" // at least one tool call
	ToolChoiceFunction = "function" // a call of the tool Name
)

// ToolChoice constrains the model's tool calls: Mode is one of the
// ToolChoice constants; Name is the tool when Mode is "function".
type ToolChoice struct {
	Mode string
	Name string
}

// The types of a ResponseFormat.
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// ResponseFormat asks for a reply in a format: Type is one of the Format
// constants; for json_schema, Name and Schema (a JSON Schema) describe the
// value and Strict asks the provider to hold to it exactly.
type ResponseFormat struct {
	Type   string
	Name   string
	Schema json.RawMessage
	Strict bool
}

// JSON reports whether f asks for JSON.
func (f *ResponseFormat) JSON() bool {
	return f != nil && (f.Type == FormatJSONObject || f.Type == FormatJSONSchema)
}

// ToolCall is a call a model asked for: ID names it (a tool result
// answers it by that id), Arguments is a JSON text.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// ToolCallDelta is a piece of a streamed tool call. Index says which call
// of the reply it belongs to (0, 1, ...); the first piece of a call carries
// its ID and Name, later ones only more of Arguments, which are appended.
// A provider that gets whole calls sends each as one delta.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// AddDelta appends d to calls, the reply's tool calls so far, and returns
// the result: a new call at d.Index, or more of its arguments.
func AddDelta(calls []ToolCall, d *ToolCallDelta) []ToolCall {
	for len(calls) <= d.Index {
		calls = append(calls, ToolCall{})
	}
	c := &calls[d.Index]
	if d.ID != "" {
		c.ID = d.ID
	}
	if d.Name != "" {
		c.Name = d.Name
	}
	c.Arguments += d.Arguments
	return calls
}

// Capabilities are what a model can do, from configuration or learned
// from its server (Ollama's /api/show). Known is false when nothing was
// learned: such a model is presumed able to serve anything.
type Capabilities struct {
	Known      bool
	Tools      bool // calls tools
	Vision     bool // reads images
	JSONSchema bool // holds a reply to a JSON Schema
	Embeddings bool // embeds text (an embedding model)
	// ContextLength is the model's context in tokens (0: unknown).
	ContextLength int
}

// Needs is what a request needs of the model that serves it.
type Needs struct {
	Tools, Vision, JSONSchema bool
}

// Any reports whether n needs anything.
func (n Needs) Any() bool { return n.Tools || n.Vision || n.JSONSchema }

// NeedsOf is what a request of msgs with o needs: tools when tools are
// offered (and not turned off by tool_choice none) or the history holds
// tool calls or results; vision when a message holds an image; a JSON
// Schema when the response format gives one.
func NeedsOf(msgs []Message, o ChatOptions) Needs {
	var n Needs
	n.Tools = len(o.Tools) > 0 && (o.ToolChoice == nil || o.ToolChoice.Mode != ToolChoiceNone)
	n.JSONSchema = o.ResponseFormat != nil && o.ResponseFormat.Type == FormatJSONSchema
	for i := range msgs {
		for j := range msgs[i].Parts {
			switch msgs[i].Parts[j].Type {
			case PartImage:
				n.Vision = true
			case PartToolCall, PartToolResult:
				n.Tools = true
			}
		}
	}
	return n
}

// Lacks names the first thing n needs that c lacks ("tools", "vision",
// "json_schema"), or "" when c serves n. Unknown capabilities lack nothing.
func (c Capabilities) Lacks(n Needs) string {
	switch {
	case !c.Known:
		return ""
	case n.Tools && !c.Tools:
		return "tools"
	case n.Vision && !c.Vision:
		return "vision"
	case n.JSONSchema && !c.JSONSchema:
		return "json_schema"
	}
	return ""
}

// Chunk is one piece of a streamed reply: text, or a piece of a tool call.
type Chunk struct {
	Content string
	// ToolCall, when not nil, is a piece of a tool call (Content is then empty).
	ToolCall *ToolCallDelta
	// Served names the model producing this chunk.
	Served ModelRef
	// Failovers counts the models tried before Served.
	Failovers int
}

// StreamFunc receives chunks as they arrive. Returning an error cancels the call.
type StreamFunc func(Chunk) error

// Completion is a finished model reply.
type Completion struct {
	Content string
	// ToolCalls are the tool calls the model asked for, in order
	// (FinishReason "tool_calls" when it stopped for them).
	ToolCalls    []ToolCall
	Served       ModelRef
	Usage        Usage
	FinishReason string
	// Failovers counts the models tried before the one that served.
	Failovers int
	// TTFT is the time from the request to the first token.
	TTFT time.Duration
	// Cache says what the output cache did: CacheHit (the reply was
	// stored, or shared with an identical request in flight), CacheMiss
	// (the model answered and the reply may be stored), or "" (the cache
	// had no part: off, bypassed, a request that varies).
	Cache string
	// Citations are the sources the reply drew on (the knowledge-base
	// stage's; citation.go), nil for none.
	Citations []Citation
}

// Conversation is a stored dialogue with its context.
type Conversation struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	System string `json:"system,omitempty"`
	Model  string `json:"model,omitempty"`
	// Outbox holds replies waiting to reach a destination outside the
	// request that asked for them (a channel's chat): kept with the
	// conversation, so it survives restarts and moves with it.
	Outbox []Delivery `json:"outbox,omitempty"`
	// User is the end user the conversation belongs to (empty: none).
	User string `json:"user,omitempty"`
	// Bot is the bot the conversation is of (empty: none): set when it is
	// created, never changed; stored and replicated with it.
	Bot      string    `json:"bot,omitempty"`
	Messages []Message `json:"messages"`
	// Summary, when set, stands for the conversation's oldest messages in
	// the context a model gets, once they no longer fit its budget. It is
	// stored and replicated with the conversation; the messages stay.
	Summary *Summary `json:"summary,omitempty"`
	// State is what the turn pipeline's stages keep with the conversation
	// (a flow's cursor and variables), by stage name: stored with the
	// turn that changed it, replicated and handed over with the
	// conversation. It is never changed in place (a turn that changes it
	// gives the conversation a new map), so copies may share it. Not part
	// of the API's view of a conversation.
	State   StageState `json:"-"`
	Version uint64     `json:"version"`
	// Epoch fences writers: a snapshot from an older epoch never replaces a newer one.
	Epoch uint64 `json:"-"`
	// Deleted marks a tombstone: replicas keep it so that a stale copy cannot
	// bring a deleted conversation back.
	Deleted bool `json:"-"`
	// Owner is the node that serves the conversation (cluster mode; not stored).
	Owner   string `json:"owner,omitempty"`
	Created int64  `json:"created"`
	Updated int64  `json:"updated"`
}

// Summary is a model's summary of a conversation's first messages: what a
// model reads in their place once they fall out of the context budget
// (conversations.max_context_tokens). A conversation holds one at most; a
// later summary folds the earlier one in and covers more. It is never
// changed in place: a new one replaces it (copies of a conversation share
// it).
type Summary struct {
	Text string `json:"text"`
	// Messages is how many of the conversation's first messages it covers,
	// and Through the ID of the last of them: a summary whose Through is
	// not that message's ID was made of another history, and is not used.
	Messages int    `json:"messages"`
	Through  string `json:"through,omitempty"`
	// Model wrote it ("provider/model").
	Model string `json:"model,omitempty"`
	// Created is when it was made (Unix milliseconds).
	Created int64 `json:"created"`
}

// Key returns "<tenant>/<id>", the conversation's identity across the system.
func (c *Conversation) Key() string { return c.Tenant + "/" + c.ID }

// DefaultTenant owns every conversation until tenants are configured.
const DefaultTenant = "default"

// IDRule describes ValidID, for error messages.
const IDRule = "use 1-128 letters, digits, '-', '_', '.' or ':', not starting with '.'"

// ValidID reports whether s can be a conversation id or the space a
// tenant's conversations are stored in (storage keys them conv/<space>/<id>):
// 1 to 128 letters, digits, '-', '_', '.' or ':', not starting with '.'.
// It is the one rule for ids the store accepts; ValidTenantID narrows it.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' {
			continue
		}
		return false
	}
	return true
}

// TenantIDRule describes ValidTenantID, for error messages.
const TenantIDRule = "use 1-64 letters, digits, '-', '_' or '.'"

// ValidTenantID reports whether s can be a tenant id: a ValidID of at most
// 64 bytes without ':', which is kept for the incarnation of a tenant made
// through the API (its space is "<tenant>:<incarnation>").
func ValidTenantID(s string) bool {
	return len(s) <= 64 && strings.IndexByte(s, ':') < 0 && ValidID(s)
}

// Error codes. The gateway maps each to one HTTP status in one place.
const (
	EInvalid     = "invalid"       // 400: the request is wrong
	ENotFound    = "not_found"     // 404
	EForbidden   = "forbidden"     // 403: authenticated, not allowed
	ETooLarge    = "too_large"     // 413
	EConflict    = "conflict"      // 409
	EBusy        = "busy"          // 503 with Retry-After: admission refused
	EUnavailable = "unavailable"   // 502: upstream down or broke the stream
	ETimeout     = "timeout"       // 504
	ERateLimited = "rate_limited"  // 429
	EInternal    = "internal"      // 500
	EShutdown    = "shutting_down" // 503: the node is stopping
	EMoved       = "moved"         // 503 with Retry-After: the conversation's owner is changing (cluster)
	// EUnauthorized: no valid credential (401 with a challenge). Reason
	// carries the protocol's own word when there is one: RFC 6750's
	// invalid_request or invalid_token for a bearer credential, RFC 6749's
	// invalid_client, invalid_scope, unsupported_grant_type for the token
	// endpoint.
	EUnauthorized = "unauthorized"
	// ESlowClient: the edge did not take a turn's events as fast as they
	// came and its buffer filled; the turn was canceled (counted in
	// moltbot_chat_slow_clients_total).
	ESlowClient = "slow_client"
	// EQuota: the tenant is at a quota (its conversations or stored bytes,
	// limits.max_conversations, limits.max_stored_bytes): 429 as OpenAI's
	// insufficient_quota, without Retry-After (waiting does not help;
	// deleting conversations or a higher limit does).
	EQuota = "quota_exceeded"
)

// Error is an error with a code that says what went wrong in terms a client can act on.
type Error struct {
	Code    string
	Message string
	// Param names the request field at fault, when there is one.
	Param string
	// RetryAfter, when set, tells the client how long to wait.
	RetryAfter time.Duration
	// Reason refines Code in the words of the protocol that failed (see
	// EUnauthorized); empty for most errors.
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Message
	}
	inner := e.Err.Error()
	switch {
	case e.Message == "":
		return inner
	case strings.Contains(e.Message, inner):
		return e.Message // the message already says it
	}
	return e.Message + ": " + inner
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal otherwise.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-facing message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return "internal error"
}
