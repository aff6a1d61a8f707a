package chat

import (
	"fmt"

	"github.com/moltbot/moltbot"
)

// validMessages checks a stateless completion's messages.
func (s *Service) validMessages(msgs []moltbot.Message) error {
	if len(msgs) == 0 {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "messages", Message: "messages must hold at least one message"}
	}
	if len(msgs) > s.cfg.MaxMessages {
		return &moltbot.Error{Code: moltbot.ETooLarge, Param: "messages", Message: fmt.Sprintf("messages holds %d messages; at most %d are allowed", len(msgs), s.cfg.MaxMessages)}
	}
	for i, m := range msgs {
		if !m.Role.Valid() {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: fmt.Sprintf("messages[%d].role", i),
				Message: fmt.Sprintf("messages[%d].role: must be system, user, assistant or tool, got %q", i, m.Role)}
		}
		if m.Role == moltbot.RoleTool && (len(m.Parts) != 1 || m.Parts[0].Type != moltbot.PartToolResult || m.Parts[0].CallID == "") {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: fmt.Sprintf("messages[%d].tool_call_id", i),
				Message: fmt.Sprintf("messages[%d]: a tool message answers one tool call: it needs tool_call_id", i)}
		}
		if m.Content == "" {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: fmt.Sprintf("messages[%d].content", i), Message: fmt.Sprintf("messages[%d].content must not be empty", i)}
		}
		if len(m.Content) > s.cfg.MaxMessageBytes {
			return &moltbot.Error{Code: moltbot.ETooLarge, Param: fmt.Sprintf("messages[%d].content", i),
				Message: fmt.Sprintf("messages[%d].content is %d bytes; at most %d are allowed (conversations.max_message_bytes)", i, len(m.Content), s.cfg.MaxMessageBytes)}
		}
	}
	return nil
}

// ValidOptions checks the sampling options both APIs share.
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
	}
	return nil
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
