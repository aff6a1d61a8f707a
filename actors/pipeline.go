package actors

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/route"
)

// The turn pipeline: every model turn, of a conversation or stateless,
// runs as ordered stages around the failover router. The interfaces are
// declared here, where they are called; their implementations (skills, a
// response cache, guards) live in their own packages and are wired in cmd
// through Config.Before, Config.Around and Config.After: actors imports
// none of them.

// BeforeModel runs before the model. A stage that answers returns a
// completion (and streams its text to fn itself, when it wants the user to
// see tokens); the later stages before the model and the model are then
// skipped. nil, nil passes the turn on; an error ends it.
type BeforeModel interface {
	BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error)
}

// AfterModel runs after the turn was answered (by the model or by a stage
// before it), in order. It may change c only when !t.Visible (nobody has
// seen the text yet); an error fails the turn.
type AfterModel interface {
	AfterModel(ctx context.Context, t *moltbot.Turn, c *moltbot.Completion) error
}

// AroundModel wraps the model call, after the stages before the model:
// it calls next for the model (or the next AroundModel stage), or answers
// without it. fn is the caller's stream (never nil); a stage that must see
// the reply's pieces as they come (the output cache records them, to
// replay a stored reply in the same pieces) passes its own fn to next and
// gives each piece on. next asks the model for t's reply (its chain,
// messages and options), streaming the pieces to the fn it is given when
// t.Visible; it may be called on another goroutine, never after
// AroundModel returned. (next's type is spelled out, not named, so that
// an implementation need not import actors.)
type AroundModel interface {
	AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
		next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error)
}

// WholeTurn is an AroundModel stage that wraps the whole turn, the stages
// before the model included, where the others wrap the model alone: an
// output guard masks whatever reaches the user, a flow's reply and a
// skill's as much as the model's. Such stages run outermost, in the order
// listed, whatever their place among Config.Around.
type WholeTurn interface {
	AroundModel
	WholeTurn()
}

// pipeline is the model chain as conversations and completions see it:
// the stages around the router. With no stages it is the router.
type pipeline struct {
	router *route.Router
	before []BeforeModel
	wrap   []AroundModel
	outer  []AroundModel // the WholeTurn stages, outermost first
	after  []AfterModel
	log    *slog.Logger
	// embed is the embedding chain a stage may call (Turn.Embed); nil
	// without one.
	embed moltbot.EmbedFunc
	// allowed is the tenants' model allow-lists (Config.ModelAllowed).
	allowed func(tenant, model string) bool
}

// Resolve turns a requested model name into the chain to try.
func (p *pipeline) Resolve(model string) ([]moltbot.ModelRef, error) { return p.router.Resolve(model) }

// model is the router as a stage may call it.
func (p *pipeline) model(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	chain, err := p.router.Resolve(opts.Model)
	if err != nil {
		return nil, err
	}
	return p.chat(ctx, chain, msgs, opts, fn)
}

// botModel is the router as a stage of bot b's turn may call it: the
// chain ("" or moltbot) is the bot's.
func (p *pipeline) botModel(b *moltbot.Bot) moltbot.ModelFunc {
	return func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		chain, err := conv.BotChain(p.router, b, opts.Model)
		if err != nil {
			return nil, err
		}
		return p.chat(ctx, chain, msgs, opts, fn)
	}
}

// tenantModel is model held to tenant's allow-list: a stage's call that
// names a model (a skill's callModel alias resolved by a models: map, a
// flow's llm node, a preset's model) may use it only when the tenant may,
// as its requests may ("" is the turn's chain, admitted with the turn).
// A name the router does not know goes on (a skill's unknown alias falls
// back to the chain); a model of the chain it names must each be allowed.
func (p *pipeline) tenantModel(tenant string, bot *moltbot.Bot, model moltbot.ModelFunc) moltbot.ModelFunc {
	return func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		if opts.Model != "" && !p.allowed(tenant, opts.Model) {
			// The chain the call would use: a bot's turn asks its bot's
			// ("" and moltbot are the bot's chain, admitted with the turn).
			chain, err := p.router.Resolve(opts.Model)
			if bot != nil && len(bot.Chain) > 0 {
				chain, err = conv.BotChain(p.router, bot, opts.Model)
			}
			if err != nil {
				return nil, err
			}
			for _, r := range chain {
				if !p.allowed(tenant, r.String()) {
					return nil, &moltbot.Error{Code: moltbot.EForbidden, Param: "model", Message: fmt.Sprintf(
						"model %q is not allowed for tenant %q (a stage's model call: a skill's callModel, a flow's llm node or a preset)", opts.Model, tenant)}
				}
			}
		}
		return model(ctx, msgs, opts, fn)
	}
}

func (p *pipeline) chat(ctx context.Context, chain []moltbot.ModelRef, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	return p.router.Chat(ctx, chain, msgs, opts, fn, visible)
}

// Idler is a stage that may have nothing to do for now (the skills stage
// of a workspace without skills, until a reload brings some): while it
// says so, the turn passes it by, and a pipeline whose stages all idle
// is the router alone (no Turn, no closures: the floor's path).
type Idler interface {
	Idle() bool
}

// Stateful is a stage that keeps state with conversations under a name
// (moltbot.Turn.SetState): idle or not, it runs on a turn whose
// conversation holds its state (a flow begun before a reload took the
// flows away finishes on the version it began).
type Stateful interface {
	StateName() string
}

// idle reports whether the turn passes stage by.
func idle(stage any, t *moltbot.Turn) bool {
	i, ok := stage.(Idler)
	if !ok || !i.Idle() {
		return false
	}
	if t.Handoff != nil {
		if s, ok := stage.(Stateful); ok && s.StateName() == moltbot.HandoffStateName {
			return false // a hand-off operation is the hand-off stage's, idle or not
		}
	}
	if len(t.State) > 0 {
		if s, ok := stage.(Stateful); ok && t.State[s.StateName()] != nil {
			return false
		}
	}
	return true
}

// Chat runs the turn's stages and the model.
func (p *pipeline) Chat(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (comp *moltbot.Completion, err error) {
	if t.Handoff == nil && p.idle(t) {
		return p.router.Chat(ctx, t.Chain, t.Messages, t.Options, fn, t.Visible)
	}
	t.Model, t.Embed = p.model, p.embed
	if t.Bot != nil && len(t.Bot.Chain) > 0 {
		t.Model = p.botModel(t.Bot)
	}
	if p.allowed != nil && t.Tenant != "" {
		t.Model = p.tenantModel(moltbot.TenantOfSpace(t.Tenant), t.Bot, t.Model)
	}
	comp, err = p.whole(ctx, t, fn, 0)
	// The sources a stage put into the context (the knowledge base's)
	// go with the reply, unless a stage set its own.
	if comp != nil && len(t.Citations) > 0 && comp.Citations == nil {
		comp.Citations = t.Citations
	}
	// On an error the completion goes back too, as the router's does: the
	// text the client saw is stored, marked incomplete.
	if err != nil {
		return comp, err
	}
	for _, a := range p.after {
		if idle(a, t) {
			continue // read again: a stage before may have set its state (a flow's hand-off mark)
		}
		if _, err := p.run(ctx, a, func() (*moltbot.Completion, error) { return nil, a.AfterModel(ctx, t, comp) }); err != nil {
			return comp, err
		}
	}
	return comp, nil
}

// idle reports whether every stage before, around and after the model
// idles for t.
func (p *pipeline) idle(t *moltbot.Turn) bool {
	for _, a := range p.after {
		if !idle(a, t) {
			return false
		}
	}
	for _, b := range p.before {
		if !idle(b, t) {
			return false
		}
	}
	for _, w := range p.wrap {
		if !idle(w, t) {
			return false
		}
	}
	for _, w := range p.outer {
		if !idle(w, t) {
			return false
		}
	}
	return true
}

// idleStateless reports whether every stage passes a stateless turn by
// (idle, for a turn with no hand-off and no state: what p.idle says of
// the Turn Runtime.Complete would build).
func (p *pipeline) idleStateless() bool {
	return allIdle(p.after) && allIdle(p.before) && allIdle(p.wrap) && allIdle(p.outer)
}

func allIdle[S any](stages []S) bool {
	for _, st := range stages {
		if i, ok := any(st).(Idler); !ok || !i.Idle() {
			return false
		}
	}
	return true
}

// whole runs the WholeTurn stages from i in, then the stages before the
// model (the first that answers ends them), then around it and the model.
func (p *pipeline) whole(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc, i int) (comp *moltbot.Completion, err error) {
	for i < len(p.outer) && idle(p.outer[i], t) {
		i++
	}
	if i < len(p.outer) {
		w := p.outer[i]
		next := func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
			return p.whole(ctx, t, fn, i+1)
		}
		return p.run(ctx, w, func() (*moltbot.Completion, error) { return w.AroundModel(ctx, t, fn, next) })
	}
	for _, b := range p.before {
		if idle(b, t) {
			continue
		}
		if comp, err = p.run(ctx, b, func() (*moltbot.Completion, error) { return b.BeforeModel(ctx, t, fn) }); err != nil || comp != nil {
			return comp, err
		}
	}
	if t.Handoff != nil {
		// An agent's operation never reaches a model.
		return nil, moltbot.Errorf(moltbot.EInvalid, "hand-off operation %q: no hand-off stage answered it", t.Handoff.Op)
	}
	return p.around(ctx, t, fn, 0)
}

// newPipeline sorts the Around stages: the WholeTurn ones outermost.
func newPipeline(router *route.Router, before []BeforeModel, around []AroundModel, after []AfterModel) *pipeline {
	p := &pipeline{router: router, before: before, after: after}
	for _, w := range around {
		if _, ok := w.(WholeTurn); ok {
			p.outer = append(p.outer, w)
		} else {
			p.wrap = append(p.wrap, w)
		}
	}
	return p
}

// around runs the AroundModel stages from i in, then the router.
func (p *pipeline) around(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc, i int) (*moltbot.Completion, error) {
	for i < len(p.wrap) && idle(p.wrap[i], t) {
		i++ // the tool loop of a node without server-side tools
	}
	if i == len(p.wrap) {
		return p.router.Chat(ctx, t.Chain, t.Messages, t.Options, fn, t.Visible)
	}
	w := p.wrap[i]
	next := func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		return p.around(ctx, t, fn, i+1)
	}
	return p.run(ctx, w, func() (*moltbot.Completion, error) { return w.AroundModel(ctx, t, fn, next) })
}

// run calls a stage; a panic in it fails the turn (EInternal), not the
// conversation.
func (p *pipeline) run(ctx context.Context, stage any, f func() (*moltbot.Completion, error)) (c *moltbot.Completion, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.ErrorContext(ctx, "a turn stage panicked", "stage", fmt.Sprintf("%T", stage), "panic", fmt.Sprint(r))
			c, err = nil, moltbot.Errorf(moltbot.EInternal, "a turn stage (%T) failed; the turn was not answered", stage)
		}
	}()
	return f()
}
