package actors

import (
	"context"

	"github.com/moltbot/moltbot"
)

// ChatRuntime is the runtime as the chat service sees it: the calls that
// cost a model turn or touch a conversation, in domain types.
type ChatRuntime struct{ rt *Runtime }

// Chat returns rt's chat-facing side.
func (rt *Runtime) Chat() ChatRuntime { return ChatRuntime{rt} }

// Complete runs a stateless completion through the chain.
func (c ChatRuntime) Complete(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	return c.rt.Complete(ctx, msgs, opts, fn)
}

// Create starts a conversation in space.
func (c ChatRuntime) Create(ctx context.Context, space string, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	return c.rt.Create(ctx, space, CreateOptions{ID: o.ID, System: o.System, Model: o.Model})
}

// Get returns a conversation of space.
func (c ChatRuntime) Get(ctx context.Context, space, id string) (*moltbot.Conversation, error) {
	return c.rt.Get(ctx, space, id)
}

// Delete deletes a conversation of space.
func (c ChatRuntime) Delete(ctx context.Context, space, id string) error {
	return c.rt.Delete(ctx, space, id)
}

// Turn runs one turn of a conversation of space.
func (c ChatRuntime) Turn(ctx context.Context, space, id string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
	if in.ExternalID != "" {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "external_id", Message: "external message ids are not supported yet"}
	}
	r, err := c.rt.Turn(ctx, space, id, in.Content, in.Options, fn)
	if r == nil {
		return nil, err
	}
	return &moltbot.TurnResult{Message: r.Message, Completion: r.Completion, Version: r.Version}, err
}

// ResolveModel checks that model names something this node can serve.
func (c ChatRuntime) ResolveModel(model string) error { return c.rt.ResolveModel(model) }

// Models lists what a client may ask for.
func (c ChatRuntime) Models() []moltbot.ModelInfo {
	ms := c.rt.Models()
	out := make([]moltbot.ModelInfo, len(ms))
	for i, m := range ms {
		out[i] = moltbot.ModelInfo{ID: m.ID, Provider: m.Provider}
	}
	return out
}
