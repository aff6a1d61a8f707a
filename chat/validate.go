package chat

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moltbot/moltbot"
)

// Bounds on what one request may carry besides its text (sizes are bounded
// by MaxMessageBytes, MaxImageBytes and the edge's body limit).
const (
	// MaxTools bounds a request's tools (OpenAI's own limit is 128).
	MaxTools = 128
	// MaxToolCalls bounds the tool calls of one message and the tool
	// results of one turn.
	MaxToolCalls = 128
	// MaxImages bounds the images of one request (Anthropic takes 100).
	MaxImages = 100
	// maxIDLen bounds a tool call's id (OpenAI's are about 30 bytes).
	maxIDLen = 256
	// maxUserLen bounds the end user's id of a request.
	maxUserLen = 256
	// maxDescription bounds a tool's description.
	maxDescription = 16 << 10
)

// validMessages checks a stateless completion's messages: roles, the
// parts each role may hold, sizes, and the tool-call history (every tool
// message answers a call made before it, every call is answered before
// the next message that is not a tool result, as OpenAI and Anthropic
// both require).
func (s *Service) validMessages(msgs []moltbot.Message) error {
	if len(msgs) == 0 {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "messages", Message: "messages must hold at least one message"}
	}
	if len(msgs) > s.cfg.MaxMessages {
		return &moltbot.Error{Code: moltbot.ETooLarge, Param: "messages", Message: fmt.Sprintf("messages holds %d messages; at most %d are allowed", len(msgs), s.cfg.MaxMessages)}
	}
	var h history
	for i := range msgs {
		m, at := &msgs[i], where(i)
		if !m.Role.Valid() {
			return invalid(at.field("role"), "%s: must be system, user, assistant or tool, got %q", at.field("role"), m.Role)
		}
		if m.Role != moltbot.RoleTool {
			if err := h.unanswered(at); err != nil {
				return err
			}
		}
		if err := s.validParts(m, at, &h); err != nil {
			return err
		}
		if len(m.Content) > s.cfg.MaxMessageBytes {
			return s.tooLarge(at.field("content"), len(m.Content))
		}
	}
	return h.unanswered(end)
}

// where names a message in errors: messages[i], or (turn) the message of
// a conversation's turn, whose fields are the request's own. The names
// are made only for an error: the plain path makes none.
type where int

// turnMessage is the user message of a turn; end is past the last message.
const (
	turnMessage where = -1
	end         where = -2
)

func (w where) String() string {
	switch w {
	case turnMessage:
		return "the message"
	case end:
		return "the end of messages"
	}
	return fmt.Sprintf("messages[%d]", int(w))
}

// field names a field of the message: messages[i].name, or name.
func (w where) field(name string) string {
	if w < 0 {
		return name
	}
	return w.String() + "." + name
}

// tooLarge is the error of a field of n bytes over MaxMessageBytes.
func (s *Service) tooLarge(param string, n int) error {
	return &moltbot.Error{Code: moltbot.ETooLarge, Param: param,
		Message: fmt.Sprintf("%s is %d bytes; at most %d are allowed (conversations.max_message_bytes)", param, n, s.cfg.MaxMessageBytes)}
}

// history follows the tool calls of a list of messages. Every call is
// answered before the next message that is not a tool result, so a result
// can only answer a call of the last assistant message: pending are those
// not yet answered, answered those that were. Ids need to be unique
// within one message only (some servers number each reply's calls from
// call_0).
type history struct {
	pending  []string
	answered []string
	images   int
}

// calls starts an assistant message: its calls are the ones to answer now.
func (h *history) calls() { h.answered = h.answered[:0] }

// call records a tool call of an assistant message.
func (h *history) call(id, at string) error {
	if contains(h.pending, id) {
		return invalid(at+".id", "%s: tool call id %q is used twice in one message; each call needs its own", at, id)
	}
	h.pending = append(h.pending, id)
	return nil
}

// answer records a tool result for call id.
func (h *history) answer(id, at string) error {
	switch {
	case contains(h.answered, id):
		return invalid(at+".tool_call_id", "%s: tool call %q is answered twice", at, id)
	case !contains(h.pending, id):
		return invalid(at+".tool_call_id", "%s: tool_call_id %q answers no tool call of the assistant message before it", at, id)
	}
	h.pending = remove(h.pending, id)
	h.answered = append(h.answered, id)
	return nil
}

// unanswered refuses the message at (or the end) when calls of the last
// assistant message have no result yet.
func (h *history) unanswered(at where) error {
	if len(h.pending) == 0 {
		return nil
	}
	return invalid("messages", "an assistant message with tool_calls must be followed by tool messages answering each call before %s; not answered: %s",
		at, strings.Join(h.pending, ", "))
}

// validParts checks the parts of message m (at names it) for its role.
func (s *Service) validParts(m *moltbot.Message, at where, h *history) error {
	text := m.Content != ""
	switch m.Role {
	case moltbot.RoleTool:
		if len(m.Parts) != 1 || m.Parts[0].Type != moltbot.PartToolResult || m.Parts[0].CallID == "" {
			return invalid(at.field("tool_call_id"), "%s: a tool message answers one tool call: it needs tool_call_id", at)
		}
		p := &m.Parts[0]
		if len(p.CallID) > maxIDLen {
			return invalid(at.field("tool_call_id"), "%s is %d bytes; at most %d are allowed", at.field("tool_call_id"), len(p.CallID), maxIDLen)
		}
		if len(p.Content) > s.cfg.MaxMessageBytes {
			return s.tooLarge(at.field("content"), len(p.Content))
		}
		return h.answer(p.CallID, at.String())
	case moltbot.RoleAssistant:
		h.calls()
		calls := 0
		for j := range m.Parts {
			p := &m.Parts[j]
			switch p.Type {
			case moltbot.PartText:
			case moltbot.PartToolCall:
				pat := fmt.Sprintf("%s[%d]", at.field("tool_calls"), calls)
				if calls++; calls > MaxToolCalls {
					return invalid(at.field("tool_calls"), "%s holds more than %d tool calls", at, MaxToolCalls)
				}
				if err := s.validCall(p, pat); err != nil {
					return err
				}
				if err := h.call(p.CallID, pat); err != nil {
					return err
				}
			default:
				return invalid(at.field("content"), "%s: an assistant message holds text and tool calls, not %s", at, p.Type)
			}
		}
		if !text && calls == 0 {
			return invalid(at.field("content"), "%s must not be empty (an assistant message holds text, tool calls or both)", at.field("content"))
		}
		return nil
	case moltbot.RoleUser:
		for j := range m.Parts {
			p := &m.Parts[j]
			switch p.Type {
			case moltbot.PartText:
			case moltbot.PartImage:
				if err := s.validImage(p, fmt.Sprintf("%s[%d]", at.field("content"), j)); err != nil {
					return err
				}
				if h.images++; h.images > MaxImages {
					return invalid(at.field("content"), "the request holds more than %d images", MaxImages)
				}
				text = true // an image alone is a message
			default:
				return invalid(at.field("content"), "%s: a user message holds text and images, not %s", at, p.Type)
			}
		}
	default: // system
		for j := range m.Parts {
			if m.Parts[j].Type != moltbot.PartText {
				return invalid(at.field("content"), "%s: a system message holds text only, not %s", at, m.Parts[j].Type)
			}
		}
	}
	if !text {
		return invalid(at.field("content"), "%s must not be empty", at.field("content"))
	}
	return nil
}

// validCall checks a tool call of a message (what a model asked, sent back).
func (s *Service) validCall(p *moltbot.Part, at string) error {
	switch {
	case p.CallID == "":
		return invalid(at+".id", "%s.id: a tool call needs its id (the tool message answers it by that id)", at)
	case len(p.CallID) > maxIDLen:
		return invalid(at+".id", "%s.id is %d bytes; at most %d are allowed", at, len(p.CallID), maxIDLen)
	case !validToolName(p.Name):
		return invalid(at+".function.name", "%s.function.name %q: %s", at, clip(p.Name), toolNameRule)
	case len(p.Arguments) > s.cfg.MaxMessageBytes:
		return s.tooLarge(at+".function.arguments", len(p.Arguments))
	}
	return nil
}

// validImage checks an image part: an accepted type, bytes within
// MaxImageBytes (a stored image may come as a ref alone).
func (s *Service) validImage(p *moltbot.Part, at string) error {
	if len(p.Data) == 0 && p.Ref == "" {
		return invalid(at, "%s: the image is empty", at)
	}
	if len(p.Data) > s.cfg.MaxImageBytes {
		return &moltbot.Error{Code: moltbot.ETooLarge, Param: at,
			Message: fmt.Sprintf("%s: the image is %d bytes; at most %d are allowed (conversations.max_image_bytes)", at, len(p.Data), s.cfg.MaxImageBytes)}
	}
	switch p.MIME {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return nil
	}
	return invalid(at, "%s: image type %q is not accepted; use image/png, image/jpeg, image/gif or image/webp", at, clip(p.MIME))
}

// validTurn checks what a turn adds to a conversation: the user message
// (text, or parts: text and images) and tool results. Whether the results
// answer the conversation's last reply is the conversation's to check (it
// holds the history).
func (s *Service) validTurn(in *moltbot.TurnInput) error {
	if len(in.ToolResults) > MaxToolCalls {
		return invalid("tool_results", "a turn carries at most %d tool results, got %d", MaxToolCalls, len(in.ToolResults))
	}
	seen := make(map[string]bool, len(in.ToolResults))
	for i := range in.ToolResults {
		p := &in.ToolResults[i]
		at := fmt.Sprintf("tool_results[%d]", i)
		switch {
		case p.Type != moltbot.PartToolResult || p.CallID == "":
			return invalid(at+".tool_call_id", "%s: a tool result needs the tool_call_id of the call it answers", at)
		case len(p.CallID) > maxIDLen:
			return invalid(at+".tool_call_id", "%s.tool_call_id is %d bytes; at most %d are allowed", at, len(p.CallID), maxIDLen)
		case seen[p.CallID]:
			return invalid(at+".tool_call_id", "%s: tool call %q is answered twice", at, p.CallID)
		case len(p.Content) > s.cfg.MaxMessageBytes:
			return s.tooLarge(at+".content", len(p.Content))
		}
		seen[p.CallID] = true
	}
	if in.Parts != nil {
		if in.Content != moltbot.TextOf(in.Parts) {
			return invalid("content", "content must be the text of the message's parts")
		}
		m := moltbot.Message{Role: moltbot.RoleUser, Content: in.Content, Parts: in.Parts}
		if err := s.validParts(&m, turnMessage, &history{}); err != nil {
			return err
		}
	} else if in.Content == "" && len(in.ToolResults) == 0 {
		return invalid("content", "content must be a non-empty string (or tool_results answer the last reply's tool calls)")
	}
	if len(in.Content) > s.cfg.MaxMessageBytes {
		return s.tooLarge("content", len(in.Content))
	}
	return nil
}

// ValidOptions checks the options both APIs share.
func ValidOptions(o moltbot.ChatOptions) error { return validOptions(o) }

func validOptions(o moltbot.ChatOptions) error {
	switch {
	case o.MaxTokens < 0:
		return invalid("max_tokens", "max_tokens must be at least 1, got %d", o.MaxTokens)
	case o.Temperature != nil && (*o.Temperature < 0 || *o.Temperature > 2):
		return invalid("temperature", "temperature must be between 0 and 2, got %g", *o.Temperature)
	case o.TopP != nil && (*o.TopP < 0 || *o.TopP > 1):
		return invalid("top_p", "top_p must be between 0 and 1, got %g", *o.TopP)
	case len(o.Stop) > 4:
		return invalid("stop", "at most 4 stop sequences, got %d", len(o.Stop))
	case o.PresencePenalty != nil && (*o.PresencePenalty < -2 || *o.PresencePenalty > 2):
		return invalid("presence_penalty", "presence_penalty must be between -2 and 2, got %g", *o.PresencePenalty)
	case o.FrequencyPenalty != nil && (*o.FrequencyPenalty < -2 || *o.FrequencyPenalty > 2):
		return invalid("frequency_penalty", "frequency_penalty must be between -2 and 2, got %g", *o.FrequencyPenalty)
	case len(o.User) > maxUserLen:
		return invalid("user", "user is %d bytes; at most %d are allowed", len(o.User), maxUserLen)
	}
	if err := validTools(o); err != nil {
		return err
	}
	return validFormat(o.ResponseFormat)
}

// validTools checks tools, tool_choice and parallel_tool_calls together.
func validTools(o moltbot.ChatOptions) error {
	if len(o.Tools) == 0 {
		switch {
		case o.Tools != nil:
			return invalid("tools", "tools is empty: leave it out, or offer at least one tool")
		case o.ToolChoice != nil:
			return invalid("tool_choice", "tool_choice is only allowed when tools are offered")
		case o.ParallelToolCalls != nil:
			return invalid("parallel_tool_calls", "parallel_tool_calls is only allowed when tools are offered")
		}
		return nil
	}
	if len(o.Tools) > MaxTools {
		return invalid("tools", "at most %d tools may be offered, got %d", MaxTools, len(o.Tools))
	}
	names := make(map[string]bool, len(o.Tools))
	for i := range o.Tools {
		t := &o.Tools[i]
		at := fmt.Sprintf("tools[%d].function", i)
		switch {
		case !validToolName(t.Name):
			return invalid(at+".name", "%s.name %q: %s", at, clip(t.Name), toolNameRule)
		case names[t.Name]:
			return invalid(at+".name", "%s.name: tool %q is offered twice", at, t.Name)
		case len(t.Description) > maxDescription:
			return invalid(at+".description", "%s.description is %d bytes; at most %d are allowed", at, len(t.Description), maxDescription)
		case t.Parameters != nil && !isObject(t.Parameters):
			return invalid(at+".parameters", "%s.parameters must be a JSON Schema object", at)
		}
		names[t.Name] = true
	}
	if c := o.ToolChoice; c != nil {
		switch c.Mode {
		case moltbot.ToolChoiceAuto, moltbot.ToolChoiceNone, moltbot.ToolChoiceRequired:
		case moltbot.ToolChoiceFunction:
			if !names[c.Name] {
				return invalid("tool_choice", "tool_choice names tool %q, which tools does not offer", clip(c.Name))
			}
		default:
			return invalid("tool_choice", `tool_choice must be "none", "auto", "required" or {"type":"function","function":{"name":...}}, got %q`, clip(c.Mode))
		}
	}
	return nil
}

// validFormat checks a response_format.
func validFormat(f *moltbot.ResponseFormat) error {
	if f == nil {
		return nil
	}
	switch f.Type {
	case moltbot.FormatText, moltbot.FormatJSONObject:
		return nil
	case moltbot.FormatJSONSchema:
		if !validToolName(f.Name) {
			return invalid("response_format.json_schema.name", "response_format.json_schema.name %q: %s", clip(f.Name), toolNameRule)
		}
		if !isObject(f.Schema) {
			return invalid("response_format.json_schema.schema", "response_format.json_schema.schema must be a JSON Schema object")
		}
		return nil
	}
	return invalid("response_format.type", `response_format.type must be "text", "json_object" or "json_schema", got %q`, clip(f.Type))
}

const toolNameRule = "a name is 1 to 64 letters, digits, '_' or '-'"

// validToolName reports whether s matches ^[a-zA-Z0-9_-]{1,64}$, the
// names OpenAI and Anthropic both take for tools and schemas.
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

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	s := strings.TrimLeft(string(raw), " \t\r\n")
	return strings.HasPrefix(s, "{") && json.Valid(raw)
}

// clip shortens what a client sent for an error message.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "..."
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func remove(ids []string, id string) []string {
	for i, x := range ids {
		if x == id {
			return append(ids[:i], ids[i+1:]...)
		}
	}
	return ids
}

// validExternalID bounds a message's outside id: printable ASCII, at most
// moltbot.MaxExternalIDLen bytes.
func validExternalID(id string) error {
	if len(id) > moltbot.MaxExternalIDLen {
		return invalid("external_id", "an external message id is at most %d bytes, got %d", moltbot.MaxExternalIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return invalid("external_id", "an external message id is printable ASCII without spaces; byte %d is 0x%02x", i, id[i])
		}
	}
	return nil
}

func invalid(param, format string, args ...any) error {
	e := moltbot.Errorf(moltbot.EInvalid, format, args...)
	e.Param = param
	return e
}
