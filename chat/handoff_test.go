package chat

import (
	"context"
	"testing"

	"github.com/moltbot/moltbot"
)

// handoffRuntime answers every turn as the hand-off stage does at
// transfer: the notice, finish reason handoff, served by handoff/queue.
type handoffRuntime struct{ *fakeRuntime }

func (h handoffRuntime) Turn(ctx context.Context, space, id string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
	if _, err := h.Get(ctx, space, id); err != nil {
		return nil, err
	}
	served := moltbot.ModelRef{Provider: "handoff", Model: "queue"}
	if fn != nil {
		fn(moltbot.Chunk{Content: "A person will answer here shortly.", Served: served})
	}
	c := &moltbot.Completion{Content: "A person will answer here shortly.", FinishReason: moltbot.FinishHandoff, Served: served}
	return &moltbot.TurnResult{Message: moltbot.Message{Role: moltbot.RoleAssistant, Content: c.Content}, Completion: c}, nil
}

// A turn the hand-off answered ends with EventHandoff (the new owner)
// before EventDone, streamed or not; any other turn has none.
func TestHandoffEvent(t *testing.T) {
	for _, stream := range []bool{true, false} {
		rt := handoffRuntime{newFake()}
		s := New(rt, &fakePolicy{calls: -1}, Config{})
		ctx := context.Background()
		rt.Create(ctx, "a", moltbot.NewConversation{ID: "c"})
		st, err := s.Turn(ctx, tenantA(), TurnRequest{Conversation: "c", Stream: stream, Input: moltbot.TurnInput{Content: "转人工"}})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []moltbot.EventKind
		var ho moltbot.Event
		for ev := range st.Events() {
			kinds = append(kinds, ev.Kind)
			if ev.Kind == moltbot.EventHandoff {
				ho = ev
			}
		}
		st.Close()
		n := len(kinds)
		if n < 2 || kinds[n-2] != moltbot.EventHandoff || kinds[n-1] != moltbot.EventDone || ho.Text != "queue" || ho.Result == nil {
			t.Fatalf("stream %v: events %v, handoff %+v", stream, kinds, ho)
		}
	}
	// A turn the model answered: no EventHandoff.
	rt := newFake()
	s := New(rt, &fakePolicy{calls: -1}, Config{})
	rt.Create(context.Background(), "a", moltbot.NewConversation{ID: "c"})
	st, _ := s.Turn(context.Background(), tenantA(), TurnRequest{Conversation: "c", Stream: true, Input: moltbot.TurnInput{Content: "hi"}})
	for ev := range st.Events() {
		if ev.Kind == moltbot.EventHandoff {
			t.Fatal("EventHandoff for a model's answer")
		}
	}
	st.Close()
}

// A credential of scope agent is refused by every call of the chat
// service: it works the hand-off queue only.
func TestAgentScopeRefused(t *testing.T) {
	rt := newFake()
	s := New(rt, &fakePolicy{calls: -1}, Config{})
	ctx := context.Background()
	rt.Create(ctx, "a", moltbot.NewConversation{ID: "c"})
	p := tenantA()
	p.Scope = moltbot.ScopeAgent
	check := func(what string, err error) {
		t.Helper()
		if moltbot.ErrorCode(err) != moltbot.EForbidden {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err := s.Turn(ctx, p, TurnRequest{Conversation: "c", Input: moltbot.TurnInput{Content: "hi"}})
	check("turn", err)
	_, err = s.Complete(ctx, p, CompletionRequest{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hi"}}})
	check("complete", err)
	_, err = s.Create(ctx, p, moltbot.NewConversation{})
	check("create", err)
	_, err = s.Get(ctx, p, "c")
	check("get", err)
	check("delete", s.Delete(ctx, p, "c"))
	_, err = s.Subscribe(ctx, p, "c")
	check("subscribe", err)
	if rt.turns != 0 {
		t.Fatal("the runtime ran a turn")
	}
}
