package conv

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// A turn's input and its reply as messages with parts: the tool results a
// turn brings (answering the last reply's tool calls), its user message
// (text and images), and a reply that calls tools. Free functions, not
// methods: the conversation type is at its bound (TestActorsSize).

// inputMessages are the messages turn m adds, in order: one tool message
// per tool result, then the user message when it has one. The last holds
// the turn's id (so findTurn knows a retry by it); those before it hold
// the id and their index ("<turn>:0", ...).
func inputMessages(m *turnMsg, now int64) []moltbot.Message {
	user := m.content != "" || len(m.parts) > 0
	n := len(m.results)
	if user {
		n++
	}
	out := make([]moltbot.Message, 0, n)
	for i, r := range m.results {
		out = append(out, moltbot.Message{ID: m.turnID + ":" + strconv.Itoa(i), Role: moltbot.RoleTool, Created: now,
			Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: r.CallID, Content: r.Content}}})
	}
	if user {
		out = append(out, moltbot.Message{ID: m.turnID, Role: moltbot.RoleUser, Content: m.content, Parts: m.parts, Created: now})
	}
	out[len(out)-1].ID = m.turnID
	return out
}

// sameInput reports whether stored, the last input message of a turn
// already in the conversation, is what turn m would store last: the same
// external id must not stand for another message.
func sameInput(stored *moltbot.Message, m *turnMsg) bool {
	if m.content != "" || len(m.parts) > 0 {
		return stored.Role == moltbot.RoleUser && stored.Content == m.content && len(stored.Parts) == len(m.parts)
	}
	last := m.results[len(m.results)-1]
	return stored.Role == moltbot.RoleTool && len(stored.Parts) == 1 && stored.Parts[0].CallID == last.CallID && stored.Parts[0].Content == last.Content
}

// pendingCalls are the ids of the tool calls of the history's last
// assistant message that no tool message after it answers.
func pendingCalls(history []moltbot.Message) []string {
	i := len(history) - 1
	for i >= 0 && history[i].Role == moltbot.RoleTool {
		i--
	}
	if i < 0 || history[i].Role != moltbot.RoleAssistant {
		return nil
	}
	var ids []string
	for _, p := range history[i].Parts {
		if p.Type == moltbot.PartToolCall {
			ids = append(ids, p.CallID)
		}
	}
	for _, m := range history[i+1:] {
		for _, p := range m.Parts {
			if p.Type == moltbot.PartToolResult {
				ids = remove(ids, p.CallID)
			}
		}
	}
	return ids
}

// checkResults checks a turn's tool results against the calls of the last
// reply that no result answers yet: each result answers one of them, and
// all of them are answered (a model given a call without its result is
// refused by OpenAI and Anthropic alike).
func checkResults(pending []string, results []moltbot.Part) error {
	if len(pending) == 0 && len(results) > 0 {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "tool_results[0].tool_call_id", Message: fmt.Sprintf(
			"tool_results[0]: the conversation's last reply has no tool call waiting for a result (tool_call_id %q)", results[0].CallID)}
	}
	left := append([]string(nil), pending...)
	for i, r := range results {
		if !contains(left, r.CallID) {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: fmt.Sprintf("tool_results[%d].tool_call_id", i), Message: fmt.Sprintf(
				"tool_results[%d]: tool_call_id %q answers no call of the conversation's last reply that waits for a result (waiting: %s)",
				i, r.CallID, strings.Join(pending, ", "))}
		}
		left = remove(left, r.CallID)
	}
	if len(left) > 0 {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "tool_results", Message: fmt.Sprintf(
			"the conversation's last reply called tools: send a tool result for each call (tool_results) before anything else; not answered: %s",
			strings.Join(left, ", "))}
	}
	return nil
}

// replyParts are the parts of the message that stores reply c: nil for
// text only; else its text (if any) and one tool_call part per call.
func replyParts(c *moltbot.Completion) []moltbot.Part {
	if len(c.ToolCalls) == 0 {
		return nil
	}
	parts := make([]moltbot.Part, 0, len(c.ToolCalls)+1)
	if c.Content != "" {
		parts = append(parts, moltbot.Part{Type: moltbot.PartText, Text: c.Content})
	}
	for _, tc := range c.ToolCalls {
		parts = append(parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
	}
	return parts
}

// callsOf are the tool calls a stored reply made (a replayed turn answers
// them again).
func callsOf(m *moltbot.Message) []moltbot.ToolCall {
	var calls []moltbot.ToolCall
	for _, p := range m.Parts {
		if p.Type == moltbot.PartToolCall {
			calls = append(calls, moltbot.ToolCall{ID: p.CallID, Name: p.Name, Arguments: p.Arguments})
		}
	}
	return calls
}

// imageTokens is what an image counts for in the context budget: about
// what OpenAI charges for a 512x512 image in high detail (765), rounded
// up. Providers count differently (Anthropic about w*h/750); the budget
// only has to keep a conversation within its model's context.
const imageTokens = 800

// tokens estimates what m costs in a model's context: its text
// (inference.MessageTokens) and what its parts add (tool calls, tool
// results and images, which Content does not hold).
func tokens(m *moltbot.Message) int {
	n := inference.MessageTokens(m)
	for i := range m.Parts {
		switch p := &m.Parts[i]; p.Type {
		case moltbot.PartToolCall:
			n += (len(p.CallID)+len(p.Name)+len(p.Arguments)+3)/4 + 4
		case moltbot.PartToolResult:
			n += (len(p.CallID)+len(p.Content)+3)/4 + 4
		case moltbot.PartImage:
			n += imageTokens
		}
	}
	return n
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
