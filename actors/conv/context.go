package conv

import (
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// buildContext returns the messages to send to a model for a conversation:
// the system prompt, then as many of the most recent messages as fit in
// budget tokens. Whole turns are dropped from the oldest end, and the context
// never starts with an assistant message (some APIs require a user message
// first). The last message is always kept; ok is false when even the system
// prompt and that message exceed the budget. dropped counts left-out messages.
func buildContext(system string, history []moltbot.Message, budget int) (out []moltbot.Message, dropped int, ok bool) {
	used := 0
	var sys moltbot.Message
	if system != "" {
		sys = moltbot.Message{Role: moltbot.RoleSystem, Content: system}
		used = inference.MessageTokens(&sys)
	}
	if len(history) == 0 {
		if system != "" {
			return []moltbot.Message{sys}, 0, used <= budget
		}
		return nil, 0, true
	}
	last := len(history) - 1
	used += inference.MessageTokens(&history[last])
	if used > budget {
		return nil, last, false
	}
	start := last
	for start > 0 {
		t := inference.MessageTokens(&history[start-1])
		if used+t > budget {
			break
		}
		used += t
		start--
	}
	for start < last && history[start].Role == moltbot.RoleAssistant {
		start++
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
		out = append(out, moltbot.Message{Role: m.Role, Content: m.Content})
	}
	return out, start, true
}
