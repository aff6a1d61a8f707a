package route

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/moltbot/moltbot"
)

// addDelta adds d to calls, the reply's tool calls so far (moltbot.AddDelta).
// The first piece of a call that has no id gets one, in d too (so the
// caller sees it): a client answers a call by its id, and a conversation
// waits for that answer, so a model that names no call (some servers give
// none) must not leave one nameless.
func addDelta(calls []moltbot.ToolCall, d *moltbot.ToolCallDelta) []moltbot.ToolCall {
	if d.ID == "" && d.Index >= len(calls) {
		d.ID = newCallID()
	}
	return moltbot.AddDelta(calls, d)
}

// newCallID names a tool call: "call_" and 12 random bytes in hex.
func newCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "call_" + hex.EncodeToString(b[:])
}
