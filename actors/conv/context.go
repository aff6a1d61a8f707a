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
	start, ok := window(history, budget-used)
	if !ok {
		return nil, start, false
	}
	return assemble(system, nil, history[start:]), start, true
}

// window is where the most recent messages of history that fit in room
// tokens start: whole turns, from the oldest end, never an assistant or a
// tool message first (see buildContext). The last message is always in
// it; ok is false when it does not fit (or, a tool result, the call it
// answers does not fit with it). Then start is the count of messages left
// out.
func window(history []moltbot.Message, room int) (start int, ok bool) {
	last := len(history) - 1
	used := tokens(&history[last])
	if used > room {
		return last, false
	}
	start = last
	for start > 0 {
		t := tokens(&history[start-1])
		if used+t > room {
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
		return start, false
	}
	return start, true
}

// assemble is a model's context: the system prompt (if any), the
// summary's note (if any), then recent, copied without what only the
// store needs (ids, times, metadata).
func assemble(system string, note *moltbot.Message, recent []moltbot.Message) []moltbot.Message {
	n := len(recent)
	if system != "" {
		n++
	}
	if note != nil {
		n++
	}
	out := make([]moltbot.Message, 0, n)
	if system != "" {
		out = append(out, moltbot.Message{Role: moltbot.RoleSystem, Content: system})
	}
	if note != nil {
		out = append(out, *note)
	}
	for _, m := range recent {
		out = append(out, moltbot.Message{Role: m.Role, Content: m.Content, Parts: m.Parts})
	}
	return out
}
