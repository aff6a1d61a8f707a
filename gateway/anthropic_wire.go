package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/chat"
)

// Anthropic's Messages API request (POST /v1/messages), read into the
// domain. Each field is honoured (carried into the messages or
// moltbot.ChatOptions), accepted at its neutral value only (thinking
// disabled, output_config.effort "high", speed "standard"), accepted and
// not carried because it changes nothing a client gets back (prompt
// caching's cache_control, service_tier, a text block's citations, a
// tool's eager_input_streaming), or refused with a 400 that names it;
// a member that is no field of the object it is in is refused by name,
// at every level, so that a typo or a field of a newer API is never
// silently dropped. docs/API.md has the table.
//
// Each object is read in two steps: its member names against the names
// it may have (so the error names the field and where it is, as
// messages[2].content[0].foo), then its values with encoding/json. A
// union (a content that is a string or blocks) is kept raw and read at
// the next level. The decoder answers *moltbot.Error (EInvalid) only,
// and never panics: FuzzParseMessages holds it to that.

// messagesRequest is the top-level object.
type messagesRequest struct {
	Model         *string           `json:"model"`
	MaxTokens     *int              `json:"max_tokens"`
	Messages      []json.RawMessage `json:"messages"`
	System        json.RawMessage   `json:"system"`
	Temperature   *float64          `json:"temperature"`
	TopP          *float64          `json:"top_p"`
	TopK          json.RawMessage   `json:"top_k"`
	StopSequences []string          `json:"stop_sequences"`
	Stream        *bool             `json:"stream"`
	Tools         []json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage   `json:"tool_choice"`
	Metadata      json.RawMessage   `json:"metadata"`
	ServiceTier   *string           `json:"service_tier"`
	Thinking      json.RawMessage   `json:"thinking"`
	OutputConfig  json.RawMessage   `json:"output_config"`
	CacheControl  json.RawMessage   `json:"cache_control"`
	Speed         *string           `json:"speed"`
	// Fields of the API that moltbot refuses whatever their value (but
	// null): they ask for things the node does not do.
	Container         json.RawMessage `json:"container"`
	InferenceGeo      json.RawMessage `json:"inference_geo"`
	Diagnostics       json.RawMessage `json:"diagnostics"`
	MCPServers        json.RawMessage `json:"mcp_servers"`
	ContextManagement json.RawMessage `json:"context_management"`
}

// messageParam is one of messages.
type messageParam struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentBlock is a block of a message's content, of any type; which
// fields a type may have is checked after (wireNames.block).
type contentBlock struct {
	Type         string          `json:"type"`
	Text         *string         `json:"text"`
	Source       *imageSource    `json:"source"`
	ID           *string         `json:"id"`
	Name         *string         `json:"name"`
	Input        json.RawMessage `json:"input"`
	ToolUseID    *string         `json:"tool_use_id"`
	Content      json.RawMessage `json:"content"`
	IsError      *bool           `json:"is_error"`
	CacheControl json.RawMessage `json:"cache_control"`
	Citations    json.RawMessage `json:"citations"`
}

// imageSource is an image block's source: base64 data is taken; a URL or
// a file of Anthropic's Files API is refused.
type imageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
	FileID    string `json:"file_id"`
}

// toolParam is one of tools: a custom tool (a server tool, with a type
// such as "web_search_20250305", is refused before its fields are read).
type toolParam struct {
	Type                *string         `json:"type"`
	Name                string          `json:"name"`
	Description         *string         `json:"description"`
	InputSchema         json.RawMessage `json:"input_schema"`
	Strict              *bool           `json:"strict"`
	CacheControl        json.RawMessage `json:"cache_control"`
	EagerInputStreaming *bool           `json:"eager_input_streaming"`
	DeferLoading        *bool           `json:"defer_loading"`
	AllowedCallers      []string        `json:"allowed_callers"`
	InputExamples       json.RawMessage `json:"input_examples"`
}

type toolChoiceParam struct {
	Type                   string  `json:"type"`
	Name                   *string `json:"name"`
	DisableParallelToolUse *bool   `json:"disable_parallel_tool_use"`
}

type metadataParam struct {
	UserID *string `json:"user_id"`
}

type thinkingParam struct {
	Type         string          `json:"type"`
	BudgetTokens json.RawMessage `json:"budget_tokens"`
	Display      json.RawMessage `json:"display"`
}

type outputConfigParam struct {
	Effort *string         `json:"effort"`
	Format json.RawMessage `json:"format"`
}

type jsonOutputParam struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema"`
}

// The member names each object may have, made on the first request of
// the Anthropic API (reflection over seven types and three maps: not at
// every node's start).
type wireNames struct {
	request, message, tool, metadata, thinking, outputConfig, jsonOutput []string
	// A block's names by its type; "type" and cache_control are every
	// block's.
	block, source, toolChoice map[string][]string
}

var wire = sync.OnceValue(func() *wireNames {
	return &wireNames{
		request:      jsonNames[messagesRequest](),
		message:      jsonNames[messageParam](),
		tool:         jsonNames[toolParam](),
		metadata:     jsonNames[metadataParam](),
		thinking:     jsonNames[thinkingParam](),
		outputConfig: jsonNames[outputConfigParam](),
		jsonOutput:   jsonNames[jsonOutputParam](),
		block: map[string][]string{
			"text":        {"type", "text", "cache_control", "citations"},
			"image":       {"type", "source", "cache_control"},
			"tool_use":    {"type", "id", "name", "input", "cache_control"},
			"tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
		},
		source: map[string][]string{
			"base64": {"type", "media_type", "data"},
			"url":    {"type", "url"},
			"file":   {"type", "file_id"},
		},
		toolChoice: map[string][]string{
			"auto": {"type", "disable_parallel_tool_use"},
			"any":  {"type", "disable_parallel_tool_use"},
			"tool": {"type", "name", "disable_parallel_tool_use"},
			"none": {"type"},
		},
	}
})

// jsonNames lists the json names of T's fields.
func jsonNames[T any]() []string {
	t := reflect.TypeFor[T]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// Bounds the Messages API edge keeps itself (the chat service bounds the
// rest: sizes, counts, options).
const (
	maxStopSequences = 4   // what OpenAI-compatible models take
	maxAnthropicID   = 256 // a tool_use id
	maxUserID        = 256 // metadata.user_id, as Anthropic bounds it
)

// imageTypes are the media types an image block may have (Anthropic's).
var imageTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// parseMessages reads a Messages API request body into a stateless
// completion, and names the request's field each of its messages came
// from (for rewire). Its errors are EInvalid and name the field at fault.
func parseMessages(body []byte) (chat.CompletionRequest, []string, error) {
	var out chat.CompletionRequest
	var req messagesRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil, invalid("", "the request body is empty; send a JSON object")
	}
	if err := readObject(body, "", wire().request, &req); err != nil {
		return out, nil, err
	}
	if err := refuseRequestFields(&req); err != nil {
		return out, nil, err
	}
	o := &out.Options
	switch {
	case req.Model == nil || *req.Model == "":
		return out, nil, invalid("model", "model is required: moltbot for the configured chain, or a model this node serves (GET /v1/models)")
	case req.MaxTokens == nil:
		return out, nil, invalid("max_tokens", "max_tokens is required, as the Messages API requires it")
	case *req.MaxTokens < 1:
		return out, nil, invalid("max_tokens", "max_tokens must be at least 1, got %d", *req.MaxTokens)
	case req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 1):
		return out, nil, invalid("temperature", "temperature must be between 0 and 1, got %g", *req.Temperature)
	case req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1):
		return out, nil, invalid("top_p", "top_p must be between 0 and 1, got %g", *req.TopP)
	case len(req.StopSequences) > maxStopSequences:
		return out, nil, invalid("stop_sequences", "stop_sequences holds %d sequences; at most %d are taken (every model behind moltbot must honour them)",
			len(req.StopSequences), maxStopSequences)
	}
	o.Model, o.MaxTokens, o.Temperature, o.TopP = *req.Model, *req.MaxTokens, req.Temperature, req.TopP
	o.Stop = req.StopSequences
	out.Stream = req.Stream != nil && *req.Stream
	if err := readMetadata(req.Metadata, o); err != nil {
		return out, nil, err
	}
	if err := readTools(req.Tools, req.ToolChoice, o); err != nil {
		return out, nil, err
	}
	if err := readOutputConfig(req.OutputConfig, o); err != nil {
		return out, nil, err
	}
	// Room for the messages that follow the system prompt: most requests
	// have a few.
	d := domain{msgs: make([]moltbot.Message, 0, len(req.Messages)+1), at: make([]string, 0, len(req.Messages)+1)}
	if err := readSystem(req.System, &d); err != nil {
		return out, nil, err
	}
	if err := readMessages(req.Messages, &d); err != nil {
		return out, nil, err
	}
	out.Messages = d.msgs
	return out, d.at, nil
}

// refuseRequestFields answers the top-level fields moltbot takes at their
// neutral value only, or not at all.
func refuseRequestFields(req *messagesRequest) error {
	switch {
	case !isNull(req.TopK):
		return invalid("top_k", "top_k is not supported: not every model behind moltbot samples from the top k tokens; leave it out (temperature and top_p are taken)")
	case req.Speed != nil && *req.Speed != "standard":
		return invalid("speed", `speed %q is not supported; leave it out (or "standard")`, clipped(*req.Speed))
	case req.ServiceTier != nil && *req.ServiceTier != "auto" && *req.ServiceTier != "standard_only":
		return invalid("service_tier", `service_tier must be "auto" or "standard_only", got %q`, clipped(*req.ServiceTier))
	case !isNull(req.Container):
		return invalid("container", "container is not supported: the node runs no code execution containers")
	case !isNull(req.InferenceGeo):
		return invalid("inference_geo", "inference_geo is not supported: the node does not choose where a model runs by geography; leave it out")
	case !isNull(req.Diagnostics):
		return invalid("diagnostics", "diagnostics is not supported; leave it out")
	case !isNull(req.MCPServers):
		return invalid("mcp_servers", "mcp_servers is not supported: the node connects to no MCP servers; offer their tools in tools")
	case !isNull(req.ContextManagement):
		return invalid("context_management", "context_management is not supported: the node edits no context; leave it out")
	}
	if !isNull(req.Thinking) {
		var th thinkingParam
		if err := readObject(req.Thinking, "thinking", wire().thinking, &th); err != nil {
			return err
		}
		if th.Type != "disabled" {
			return invalid("thinking", `extended thinking is not supported: moltbot returns no thinking blocks; leave thinking out (or {"type":"disabled"})`)
		}
	}
	return nil
}

// readMetadata takes metadata.user_id as the end user's id.
func readMetadata(raw json.RawMessage, o *moltbot.ChatOptions) error {
	if isNull(raw) {
		return nil
	}
	var md metadataParam
	if err := readObject(raw, "metadata", wire().metadata, &md); err != nil {
		return err
	}
	if md.UserID != nil {
		if len(*md.UserID) > maxUserID {
			return invalid("metadata.user_id", "metadata.user_id is %d bytes; at most %d are allowed", len(*md.UserID), maxUserID)
		}
		o.User = *md.UserID
	}
	return nil
}

// readTools reads tools and tool_choice into o: custom tools only;
// disable_parallel_tool_use is parallel_tool_calls false.
func readTools(raws []json.RawMessage, choiceRaw json.RawMessage, o *moltbot.ChatOptions) error {
	names := make(map[string]bool, len(raws))
	for i, raw := range raws {
		at := "tools[" + strconv.Itoa(i) + "]"
		var peek struct {
			Type *string `json:"type"`
		}
		if !isObject(raw) {
			return invalid(at, "%s must be an object", at)
		}
		if err := json.Unmarshal(raw, &peek); err != nil {
			return wireError(err, at)
		}
		if peek.Type != nil && *peek.Type != "custom" {
			return invalid(at+".type", "%s.type %q: server tools are not supported, only custom tools (name, description, input_schema) that the client runs",
				at, clipped(*peek.Type))
		}
		var t toolParam
		if err := readObject(raw, at, wire().tool, &t); err != nil {
			return err
		}
		switch {
		case !validToolName(t.Name):
			return invalid(at+".name", "%s.name %q: a tool's name is 1 to 64 letters, digits, '_' or '-'", at, clipped(t.Name))
		case names[t.Name]:
			return invalid(at+".name", "%s.name: tool %q is offered twice", at, t.Name)
		case isNull(t.InputSchema):
			return invalid(at+".input_schema", "%s.input_schema is required: the JSON Schema of the tool's input", at)
		case !isObject(t.InputSchema):
			return invalid(at+".input_schema", "%s.input_schema must be a JSON Schema object", at)
		case t.DeferLoading != nil && *t.DeferLoading:
			return invalid(at+".defer_loading", "%s.defer_loading is not supported: the node has no tool search; leave it out", at)
		case len(t.AllowedCallers) > 0:
			return invalid(at+".allowed_callers", "%s.allowed_callers is not supported: the node runs no code that calls tools; leave it out", at)
		case !isNull(t.InputExamples):
			return invalid(at+".input_examples", "%s.input_examples is not carried to models; leave it out (or put examples in the description)", at)
		}
		names[t.Name] = true
		tool := moltbot.Tool{Name: t.Name, Parameters: t.InputSchema, Strict: t.Strict != nil && *t.Strict}
		if t.Description != nil {
			tool.Description = *t.Description
		}
		o.Tools = append(o.Tools, tool)
	}
	if isNull(choiceRaw) {
		return nil
	}
	if !isObject(choiceRaw) {
		return invalid("tool_choice", `tool_choice must be an object such as {"type":"auto"}`)
	}
	var peek struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(choiceRaw, &peek); err != nil {
		return wireError(err, "tool_choice")
	}
	known, ok := wire().toolChoice[peek.Type]
	if !ok {
		return invalid("tool_choice.type", `tool_choice.type must be "auto", "any", "tool" or "none", got %q`, clipped(peek.Type))
	}
	var c toolChoiceParam
	if err := readObject(choiceRaw, "tool_choice", known, &c); err != nil {
		return err
	}
	if len(o.Tools) == 0 {
		if c.Type == "auto" || c.Type == "none" {
			return nil // nothing to choose from: the same reply either way
		}
		return invalid("tool_choice", "tool_choice %q needs tools: offer at least one in tools", c.Type)
	}
	switch c.Type {
	case "auto":
		o.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceAuto}
	case "any":
		o.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceRequired}
	case "none":
		o.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}
	case "tool":
		if c.Name == nil || !names[*c.Name] {
			name := ""
			if c.Name != nil {
				name = *c.Name
			}
			return invalid("tool_choice.name", "tool_choice.name %q names no tool of tools", clipped(name))
		}
		o.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceFunction, Name: *c.Name}
	}
	if c.DisableParallelToolUse != nil && *c.DisableParallelToolUse {
		no := false
		o.ParallelToolCalls = &no
	}
	return nil
}

// jsonOutputName names the JSON value a response format asks for: the
// Messages API's format has no name, the domain's wants one.
const jsonOutputName = "response"

// readOutputConfig takes output_config.format (structured outputs) as a
// JSON Schema response format; effort only at its default.
func readOutputConfig(raw json.RawMessage, o *moltbot.ChatOptions) error {
	if isNull(raw) {
		return nil
	}
	var oc outputConfigParam
	if err := readObject(raw, "output_config", wire().outputConfig, &oc); err != nil {
		return err
	}
	if oc.Effort != nil && *oc.Effort != "high" {
		return invalid("output_config.effort", `output_config.effort %q is not carried to models; leave it out (or "high", its default)`, clipped(*oc.Effort))
	}
	if isNull(oc.Format) {
		return nil
	}
	var f jsonOutputParam
	if err := readObject(oc.Format, "output_config.format", wire().jsonOutput, &f); err != nil {
		return err
	}
	if f.Type != "json_schema" {
		return invalid("output_config.format.type", `output_config.format.type must be "json_schema", got %q`, clipped(f.Type))
	}
	if !isObject(f.Schema) {
		return invalid("output_config.format.schema", "output_config.format.schema must be a JSON Schema object")
	}
	o.ResponseFormat = &moltbot.ResponseFormat{Type: moltbot.FormatJSONSchema, Name: jsonOutputName, Schema: f.Schema, Strict: true}
	return nil
}

// domain is the messages a request becomes, with the request's field
// each came from ("system", messages[i], messages[i].content[j] for a
// tool result): the chat service names the domain's messages in its
// errors, which rewire turns back into the request's fields.
type domain struct {
	msgs []moltbot.Message
	at   []string
}

func (d *domain) add(m moltbot.Message, at string) {
	d.msgs = append(d.msgs, m)
	d.at = append(d.at, at)
}

// readSystem reads the system prompt (a string or text blocks, their
// texts joined as the domain joins text parts) as the first message;
// none when it is absent or empty.
func readSystem(raw json.RawMessage, d *domain) error {
	if isNull(raw) {
		return nil
	}
	var text string
	if isString(raw) {
		if err := json.Unmarshal(raw, &text); err != nil {
			return wireError(err, "system")
		}
	} else {
		blocks, err := readBlocks(raw, "system")
		if err != nil {
			return err
		}
		for j := range blocks {
			if b := &blocks[j]; b.Type != "text" {
				at := "system[" + strconv.Itoa(j) + "]"
				return invalid(at+".type", "%s: the system prompt holds text blocks only, not %q", at, b.Type)
			}
			text += *blocks[j].Text
		}
	}
	if text != "" {
		d.add(moltbot.Message{Role: moltbot.RoleSystem, Content: text}, "system")
	}
	return nil
}

// readMessages adds the messages to d: a user message's tool_result
// blocks become one tool message each (before the rest of it, as the API
// wants them first), its text and images a user message; an assistant
// message's text and tool_use blocks an assistant message with its calls.
// Every tool_use must be answered by a tool_result in the next message,
// and every tool_result must answer a tool_use of the message before, as
// the API requires.
func readMessages(raws []json.RawMessage, d *domain) error {
	if len(raws) == 0 {
		return invalid("messages", "messages must hold at least one message")
	}
	var pending []string // ids of the previous assistant message's tool_use blocks
	for i, raw := range raws {
		at := "messages[" + strconv.Itoa(i) + "]"
		var m messageParam
		if err := readObject(raw, at, wire().message, &m); err != nil {
			return err
		}
		if isNull(m.Content) {
			return invalid(at+".content", "%s.content is required: a string or content blocks", at)
		}
		var err error
		switch m.Role {
		case "user":
			pending, err = readUser(m.Content, at, d, pending)
		case "assistant":
			if len(pending) > 0 {
				return unanswered(at, pending)
			}
			pending, err = readAssistant(m.Content, at, d)
		case "system":
			return invalid(at+".role", `%s.role: the Messages API has no "system" role; send the system prompt in the top-level system field`, at)
		default:
			return invalid(at+".role", `%s.role must be "user" or "assistant", got %q`, at, clipped(m.Role))
		}
		if err != nil {
			return err
		}
	}
	if d.msgs[len(d.msgs)-1].Role == moltbot.RoleAssistant {
		return invalid("messages", "the last message must be the user's: moltbot does not continue a partial assistant reply (prefill)")
	}
	return nil
}

// unanswered is the error of tool_use blocks left without their results.
func unanswered(at string, ids []string) error {
	return invalid(at, "%s: tool_use ids were found without tool_result blocks immediately after: %s; each tool_use block needs a tool_result block in the next message",
		at, strings.Join(ids, ", "))
}

// readUser reads a user message: its tool results answer pending, the
// previous message's calls, all of them.
func readUser(raw json.RawMessage, at string, d *domain, pending []string) ([]string, error) {
	cat := at + ".content"
	if isString(raw) {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, wireError(err, cat)
		}
		if text == "" {
			return nil, invalid(cat, "%s must not be empty", cat)
		}
		if len(pending) > 0 {
			return nil, unanswered(at, pending)
		}
		d.add(moltbot.Message{Role: moltbot.RoleUser, Content: text}, at)
		return nil, nil
	}
	blocks, err := readContent(raw, cat)
	if err != nil {
		return nil, err
	}
	var parts []moltbot.Part
	images := false
	for j := range blocks {
		b := &blocks[j]
		bat := cat + "[" + strconv.Itoa(j) + "]"
		switch b.Type {
		case "tool_result":
			if parts != nil {
				return nil, invalid(bat, "%s: tool_result blocks come first in a user message, before any text or image", bat)
			}
			id := *b.ToolUseID
			k := slices.Index(pending, id)
			if k < 0 {
				return nil, invalid(bat+".tool_use_id", "%s.tool_use_id %q answers no tool_use block of the message before (or answers it twice)", bat, clipped(id))
			}
			pending = slices.Delete(pending, k, k+1)
			content, err := toolResultText(b, bat)
			if err != nil {
				return nil, err
			}
			d.add(moltbot.Message{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: id, Content: content}}}, bat)
		case "text":
			parts = append(parts, moltbot.Part{Type: moltbot.PartText, Text: *b.Text})
		case "image":
			p, err := imageBlock(b.Source, bat)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
			images = true
		case "tool_use":
			return nil, invalid(bat+".type", "%s: a tool_use block belongs to an assistant message", bat)
		}
	}
	if len(pending) > 0 {
		return nil, unanswered(at, pending)
	}
	switch {
	case parts == nil:
	case images:
		d.add(moltbot.Message{Role: moltbot.RoleUser, Parts: parts, Content: moltbot.TextOf(parts)}, cat)
	default:
		d.add(moltbot.Message{Role: moltbot.RoleUser, Content: moltbot.TextOf(parts)}, cat)
	}
	return nil, nil
}

// readAssistant reads an assistant message: its text, then its calls (the
// domain keeps a reply's text before its calls); it returns the calls'
// ids, which the next message must answer.
func readAssistant(raw json.RawMessage, at string, d *domain) ([]string, error) {
	cat := at + ".content"
	if isString(raw) {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, wireError(err, cat)
		}
		if text == "" {
			return nil, invalid(cat, "%s must not be empty", cat)
		}
		d.add(moltbot.Message{Role: moltbot.RoleAssistant, Content: text}, at)
		return nil, nil
	}
	blocks, err := readContent(raw, cat)
	if err != nil {
		return nil, err
	}
	var text strings.Builder
	var calls []moltbot.Part
	var ids []string
	for j := range blocks {
		b := &blocks[j]
		bat := cat + "[" + strconv.Itoa(j) + "]"
		switch b.Type {
		case "text":
			text.WriteString(*b.Text)
		case "tool_use":
			switch id := *b.ID; {
			case id == "" || len(id) > maxAnthropicID:
				return nil, invalid(bat+".id", "%s.id must be 1 to %d bytes", bat, maxAnthropicID)
			case slices.Contains(ids, id):
				return nil, invalid(bat+".id", "%s.id %q is used twice in the message", bat, clipped(id))
			}
			if !validToolName(*b.Name) {
				return nil, invalid(bat+".name", "%s.name %q: a tool's name is 1 to 64 letters, digits, '_' or '-'", bat, clipped(*b.Name))
			}
			if !isObject(b.Input) {
				return nil, invalid(bat+".input", "%s.input must be an object (the tool's input)", bat)
			}
			ids = append(ids, *b.ID)
			calls = append(calls, moltbot.Part{Type: moltbot.PartToolCall, CallID: *b.ID, Name: *b.Name, Arguments: string(bytes.TrimSpace(b.Input))})
		default:
			return nil, invalid(bat+".type", "%s: an assistant message holds text and tool_use blocks, not %q", bat, b.Type)
		}
	}
	m := moltbot.Message{Role: moltbot.RoleAssistant, Content: text.String()}
	if calls != nil {
		m.Parts = make([]moltbot.Part, 0, len(calls)+1)
		if m.Content != "" {
			m.Parts = append(m.Parts, moltbot.Part{Type: moltbot.PartText, Text: m.Content})
		}
		m.Parts = append(m.Parts, calls...)
	}
	d.add(m, at)
	return ids, nil
}

// readBlocks reads an array of content blocks at at, each checked for the
// fields its type has, and those it needs. A message needs a block at
// least (readContent); a system prompt or a tool result may have none.
func readBlocks(raw json.RawMessage, at string) ([]contentBlock, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(raw, &raws); err != nil {
		return nil, wireError(err, at)
	}
	blocks := make([]contentBlock, len(raws))
	for j, r := range raws {
		bat := at + "[" + strconv.Itoa(j) + "]"
		if !isObject(r) {
			return nil, invalid(bat, "%s must be a content block object", bat)
		}
		var peek struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(r, &peek); err != nil {
			return nil, wireError(err, bat)
		}
		known, ok := wire().block[peek.Type]
		if !ok {
			return nil, invalid(bat+".type", "%s: content blocks of type %q are not supported (text, image, tool_use and tool_result are)", bat, clipped(peek.Type))
		}
		b := &blocks[j]
		if err := readObject(r, bat, known, b); err != nil {
			return nil, err
		}
		if err := needs(b, bat); err != nil {
			return nil, err
		}
		if b.Type == "image" {
			if err := checkSource(r, b.Source.Type, bat); err != nil {
				return nil, err
			}
		}
	}
	return blocks, nil
}

// readContent reads a message's content blocks: one at least.
func readContent(raw json.RawMessage, at string) ([]contentBlock, error) {
	blocks, err := readBlocks(raw, at)
	if err == nil && len(blocks) == 0 {
		return nil, invalid(at, "%s must hold at least one content block", at)
	}
	return blocks, err
}

// checkSource refuses a member of an image block's source (in the block
// raw) that a source of its type does not have. The source is read
// again from the block rather than kept raw: its data is most of the
// request, and a raw copy would copy it once more.
func checkSource(raw json.RawMessage, typ, at string) error {
	known, ok := wire().source[typ]
	if !ok {
		return nil // imageBlock names the type
	}
	var b struct {
		Source map[string]ignored `json:"source"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return wireError(err, at)
	}
	if name := firstUnknown(b.Source, known); name != "" {
		field := at + ".source." + name
		return invalid(field, "%s: unknown field %q (docs/API.md lists the fields moltbot takes)", field, clipped(name))
	}
	return nil
}

// needs checks that block b has the fields its type requires.
func needs(b *contentBlock, at string) error {
	switch b.Type {
	case "text":
		return textBlock(b, at)
	case "image":
		if b.Source == nil {
			return invalid(at+".source", "%s.source is required", at)
		}
	case "tool_use":
		switch {
		case b.ID == nil:
			return invalid(at+".id", "%s.id is required", at)
		case b.Name == nil:
			return invalid(at+".name", "%s.name is required", at)
		case isNull(b.Input):
			return invalid(at+".input", "%s.input is required (an object; {} for none)", at)
		}
	case "tool_result":
		if b.ToolUseID == nil || *b.ToolUseID == "" {
			return invalid(at+".tool_use_id", "%s.tool_use_id is required", at)
		}
	}
	return nil
}

// textBlock checks a text block's text: present and not empty, as the API
// requires.
func textBlock(b *contentBlock, at string) error {
	if b.Text == nil || *b.Text == "" {
		return invalid(at+".text", "%s.text is required and must not be empty", at)
	}
	return nil
}

// toolResultText is a tool result's content as text: a string, or text
// blocks. An error result (is_error) says so in front of its text: the
// domain's results have no flag, and a model of another API must know
// too.
func toolResultText(b *contentBlock, at string) (string, error) {
	var text string
	cat := at + ".content"
	switch {
	case isNull(b.Content):
	case isString(b.Content):
		if err := json.Unmarshal(b.Content, &text); err != nil {
			return "", wireError(err, cat)
		}
	default:
		blocks, err := readBlocks(b.Content, cat)
		if err != nil {
			return "", err
		}
		for j := range blocks {
			if blocks[j].Type != "text" {
				return "", invalid(cat+"["+strconv.Itoa(j)+"].type", "%s[%d]: a tool result carries text only, not %q (the domain's tool results are text)", cat, j, blocks[j].Type)
			}
			text += *blocks[j].Text
		}
	}
	if b.IsError != nil && *b.IsError {
		if text == "" {
			return "Error", nil
		}
		return "Error: " + text, nil
	}
	return text, nil
}

// imageBlock reads an image block's source: base64 data of one of
// imageTypes, whose bytes begin as their type says. A URL is refused:
// a node that fetched it would make requests on the caller's behalf
// (SSRF) and wait on them.
func imageBlock(src *imageSource, at string) (moltbot.Part, error) {
	sat := at + ".source"
	switch src.Type {
	case "base64":
	case "url":
		return moltbot.Part{}, invalid(sat+".type", "%s: image URLs are not accepted (the node fetches nothing); send the image as base64 data", sat)
	case "file":
		return moltbot.Part{}, invalid(sat+".type", "%s: files of the Files API are not supported; send the image as base64 data", sat)
	default:
		return moltbot.Part{}, invalid(sat+".type", `%s.type must be "base64", got %q`, sat, clipped(src.Type))
	}
	if !slices.Contains(imageTypes, src.MediaType) {
		return moltbot.Part{}, invalid(sat+".media_type", "%s.media_type %q is not accepted; use %s", sat, clipped(src.MediaType), strings.Join(imageTypes, ", "))
	}
	enc := base64.StdEncoding
	if len(src.Data)%4 != 0 {
		enc = base64.RawStdEncoding // unpadded, as some encoders write it
	}
	data, err := enc.DecodeString(src.Data)
	if err != nil {
		return moltbot.Part{}, invalid(sat+".data", "%s.data is not valid base64: %v", sat, err)
	}
	if len(data) == 0 {
		return moltbot.Part{}, invalid(sat+".data", "%s.data is empty", sat)
	}
	if !imageLooksLike(src.MediaType, data) {
		return moltbot.Part{}, invalid(sat+".data", "%s.data is not a %s image (its first bytes say otherwise)", sat, src.MediaType)
	}
	return moltbot.Part{Type: moltbot.PartImage, MIME: src.MediaType, Data: data}, nil
}

// imageLooksLike reports whether data begins with the signature of type
// mime, so that a mislabelled file is refused here, not by a provider
// mid-failover.
func imageLooksLike(mime string, data []byte) bool {
	switch mime {
	case "image/png":
		return bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n"))
	case "image/jpeg":
		return bytes.HasPrefix(data, []byte("\xff\xd8\xff"))
	case "image/gif":
		return bytes.HasPrefix(data, []byte("GIF87a")) || bytes.HasPrefix(data, []byte("GIF89a"))
	case "image/webp":
		return len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP"
	}
	return false
}

// readObject reads the JSON object raw (at names it; "" the body) into v:
// its member names must be among known, its values of v's types.
func readObject(raw []byte, at string, known []string, v any) error {
	if err := checkFields(raw, at, known); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return wireError(err, at)
	}
	return nil
}

// ignored takes any JSON value without keeping it: checkFields reads only
// the member names of an object.
type ignored struct{}

func (*ignored) UnmarshalJSON([]byte) error { return nil }

// checkFields refuses an object with a member not among known, or a
// value that is not an object.
func checkFields(raw []byte, at string, known []string) error {
	if !isObject(raw) {
		var probe any
		if err := json.Unmarshal(raw, &probe); err != nil {
			return wireError(err, at)
		}
		if at == "" {
			return invalid("", "the body must be a JSON object")
		}
		return invalid(at, "%s must be an object", at)
	}
	var members map[string]ignored
	if err := json.Unmarshal(raw, &members); err != nil {
		return wireError(err, at)
	}
	if unknown := firstUnknown(members, known); unknown != "" {
		field := join(at, unknown)
		return invalid(field, "%s: unknown field %q (docs/API.md lists the fields moltbot takes)", field, clipped(unknown))
	}
	return nil
}

// firstUnknown is the first member of members, in byte order, that is not
// among known ("" when there is none): the same every time.
func firstUnknown(members map[string]ignored, known []string) string {
	unknown := ""
	for name := range members {
		if !slices.Contains(known, name) && (unknown == "" || name < unknown) {
			unknown = name
		}
	}
	return unknown
}

// wireError turns encoding/json's error reading the value at at into an
// EInvalid naming the field.
func wireError(err error, at string) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return invalid("", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := join(at, te.Field)
		want := jsonKind(te.Type.Kind().String())
		switch te.Type.Kind() {
		case reflect.Int, reflect.Int64:
			want = "an integer"
		case reflect.Float64:
			want = "a number"
		}
		if field == "" {
			return invalid("", "the body must be a JSON object, not %s", te.Value)
		}
		return invalid(field, "%s: expected %s, got %s", field, want, te.Value)
	}
	if at == "" {
		return invalid("", "malformed JSON: %v", err)
	}
	return invalid(at, "%s: %v", at, err)
}

// join names field f of the object at at.
func join(at, f string) string {
	switch {
	case at == "":
		return f
	case f == "":
		return at
	}
	return at + "." + f
}

// isNull reports whether raw is absent or null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// isObject reports whether raw is a JSON object (it is valid JSON: it was
// read by encoding/json).
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// isString reports whether raw is a JSON string.
func isString(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '"'
}

// validToolName reports whether s matches ^[a-zA-Z0-9_-]{1,64}$, the
// names OpenAI and Anthropic both take for tools.
func validToolName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// clipped shortens what a client sent for an error message.
func clipped(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "..."
}

// rewire renames the fields a chat service error names (the domain's,
// which are OpenAI's words) to the request's own, so that a Messages API
// client is told where its mistake is: messages[k] of the domain's list
// (the system prompt first, one message per tool result) is at[k], the
// request's field it came from; a tool's function.parameters is its
// input_schema; the response format is output_config.format.
func rewire(err error, at []string) error {
	var e *moltbot.Error
	if !errors.As(err, &e) {
		return err
	}
	var old, now string
	switch p := e.Param; {
	case strings.HasPrefix(p, "messages["):
		end := strings.IndexByte(p, ']')
		if end < 0 {
			return err
		}
		k, perr := strconv.Atoi(p[len("messages["):end])
		if perr != nil || k < 0 || k >= len(at) {
			return err
		}
		old, now = p[:end+1], at[k]
	case strings.HasPrefix(p, "tools[") && strings.HasSuffix(p, ".function.parameters"):
		old, now = ".function.parameters", ".input_schema"
	case strings.HasPrefix(p, "tools["):
		old, now = ".function.", "."
	case strings.HasPrefix(p, "response_format.json_schema."):
		old, now = "response_format.json_schema.", "output_config.format."
	default:
		return err
	}
	c := *e
	c.Param = strings.Replace(e.Param, old, now, 1)
	c.Message = strings.ReplaceAll(e.Message, old, now)
	return &c
}
