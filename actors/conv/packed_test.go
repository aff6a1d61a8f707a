package conv

import (
	"reflect"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
)

// rich is a conversation with every field a snapshot keeps: a bot, a
// user, a summary, the stages' state, tool calls and their results, an
// image, a reply cut off, messages of a channel's several users.
func rich() *moltbot.Conversation {
	return &moltbot.Conversation{Tenant: "acme", ID: "c1", System: "be brief", Model: "p/m", User: "u1", Bot: "support",
		Version: 7, Epoch: 3, Created: 1700000000000, Updated: 1700000009000,
		Summary: &moltbot.Summary{Text: "they talked", Messages: 2, Through: "t0:a", Model: "p/m"},
		State:   moltbot.StageState{"flow": []byte(`{"node":"ask"}`), "intent": {0, 1, 2}},
		Messages: []moltbot.Message{
			{ID: "t0", Role: moltbot.RoleUser, Content: "hi", Created: 1700000001000, Channel: "slack:w", User: "u2"},
			{ID: "t0:a", Role: moltbot.RoleAssistant, Content: "hello", Model: "p/m", Created: 1700000002000},
			{ID: "t1", Role: moltbot.RoleUser, Content: "look", Created: 1700000003000, Parts: []moltbot.Part{
				{Type: moltbot.PartText, Text: "look"}, {Type: moltbot.PartImage, MIME: "image/png", Data: []byte{1, 2, 3}}}},
			{ID: "t1:a", Role: moltbot.RoleAssistant, Model: "p/m", Created: 1700000004000, Parts: []moltbot.Part{
				{Type: moltbot.PartToolCall, CallID: "call1", Name: "calc", Arguments: `{"x":1}`}}},
			{ID: "t2", Role: moltbot.RoleTool, Created: 1700000005000, Parts: []moltbot.Part{
				{Type: moltbot.PartToolResult, CallID: "call1", Content: "1"}}},
			{ID: "t2:a", Role: moltbot.RoleAssistant, Content: "one and", Model: "p/m", Created: 1700000006000, Incomplete: true},
		}}
}

// A conversation packed while idle reads back as it was, field for field;
// one with something in progress (a running or queued turn, a relinquish
// waiting, deliveries in its outbox, a hand-off) stays unpacked.
func TestPackedRoundTrip(t *testing.T) {
	a := &conversation{d: &deps{}, tenant: "acme", id: "c1"}
	a.own.a = a
	a.conv = rich()
	pack(a)
	if a.conv != nil || len(a.packed) == 0 {
		t.Fatalf("idle: not packed (conv %v, %d bytes)", a.conv != nil, len(a.packed))
	}
	unpack(a)
	if a.packed != nil || !reflect.DeepEqual(a.conv, rich()) {
		t.Fatalf("unpacked:\n%+v\nwant\n%+v", a.conv, rich())
	}
	unpack(a) // not packed: nothing happens
	if !reflect.DeepEqual(a.conv, rich()) {
		t.Fatal("a second unpack changed the conversation")
	}

	busy := map[string]func(a *conversation){
		"running":   func(a *conversation) { a.running = &turnMsg{} },
		"queued":    func(a *conversation) { a.queue = []*turnMsg{{}} },
		"yield":     func(a *conversation) { a.yield = []*relinquishMsg{{}} },
		"outbox":    func(a *conversation) { a.conv.Outbox = []moltbot.Delivery{{Message: "t0:a"}} },
		"handoff":   func(a *conversation) { a.own.handingOff = true },
		"due":       func(a *conversation) { a.own.handoffDue = true },
		"unpacked":  func(a *conversation) { a.d.unpacked = true },
		"no conv":   func(a *conversation) { a.conv = nil },
		"load fail": func(a *conversation) { a.conv = nil; a.loadErr = a.notFound() },
	}
	for name, set := range busy {
		a := &conversation{d: &deps{}, tenant: "acme", id: "c1", conv: rich()}
		a.own.a = a
		set(a)
		want := a.conv
		pack(a)
		if a.packed != nil || a.conv != want {
			t.Errorf("%s: packed", name)
		}
	}
}

// unpack reads an unreadable packed form as a bug: it panics (the actor
// restarts from its snapshot in the store) rather than serve nothing.
func TestUnpackCorrupt(t *testing.T) {
	a := &conversation{d: &deps{}, tenant: "acme", id: "c1", packed: []byte{99, 1, 2}}
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	unpack(a)
}

// The stop messages do not unpack a conversation; every other one does.
func TestUnpacks(t *testing.T) {
	for _, m := range []any{&actor.Stopping{}, &actor.Stopped{}, &actor.Restarting{}} {
		if unpacks(m) {
			t.Errorf("%T unpacks", m)
		}
	}
	for _, m := range []any{&actor.Started{}, &turnMsg{}, &getMsg{}, &passivateMsg{}, &turnDone{}, &wakeMsg{}} {
		if !unpacks(m) {
			t.Errorf("%T does not unpack", m)
		}
	}
}
