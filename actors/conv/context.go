package conv

import (
	"github.com/moltbot/moltbot"
)

// buildContext returns the messages to send to a model for a conversation:
// the system prompt, then as many of the most recent messages as fit in
// budget tokens. Whole turns are dropped from the oldest end, and the context
// never starts with an assistant or a tool message (some APIs require a user
// message first, and a tool result without the call it answers is refused). The last message is always kept; ok is false when even the system
// prompt and that message exceed the budget. dropped counts left-out messages.
func buildContext(system string, history []moltbot.Message, budget int) (out []moltbot.Message, dropped int, ok bool) {
	used := 0
	var sys moltbot.Message
	if system != "" {
		sys = moltbot.Message{Role: moltbot.RoleSystem, Content: system}
		used = tokens(&sys)
	}
	if len(history) == 0 {
		if system != "" {
			return []moltbot.Message{sys}, 0, used <= budget
		}
		return nil, 0, true
	}
	last := len(history) - 1
	used += tokens(&history[last])
	if used > budget {
		return nil, last, false
	}
	start := last
	for start > 0 {
		t := tokens(&history[start-1])
		if used+t > budget {
			break
		}
		used += t
		start--
	}
	for start < last && (history[start].Role == moltbot.RoleAssistant || history[start].Role == moltbot.RoleTool) {
		start++
	}
	if history[start].Role == moltbot.RoleTool {
		// The last message is a tool result and the call it answers does
		// not fit: no model takes a result without its call.
		return nil, start, false
	}
	n := len(history) - start
	if system != "" {
		n++
	}
	out = make([]moltbot.Message, 0, n)
	if system != "" {
		out = append(out, sys)
	}
	for _, m := range history[start:] {
		out = append(out, moltbot.Message{Role: m.Role, Content: m.Content, Parts: m.Parts})
	}
	return out, start, true
}
