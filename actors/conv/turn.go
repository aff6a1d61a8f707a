package conv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// A turn of a conversation actor: start checks it fits and persists the
// user message, run asks the model on a goroutine, finish stores the reply
// and answers, then starts the next queued turn.

// start runs turn m: check it fits, persist the user message, then ask the
// model on a goroutine that reports back with turnDone.
func (a *conversation) start(c actor.Context, m *turnMsg) {
	if err := m.ctx.Err(); err != nil {
		m.answer(turnReply{err: moltbot.Errorf(moltbot.EInvalid, "turn canceled by the client")})
		return
	}
	model := m.opts.Model
	if model == "" {
		model = a.conv.Model
	}
	var chain []moltbot.ModelRef
	var err error
	if a.conv.Bot == "" {
		chain, err = a.d.router.Resolve(model)
	} else if m.bot, err = botOf(a.d, a.tenant, a.conv.Bot); err == nil {
		chain, err = BotChain(a.d.router, m.bot, model)
	}
	if err != nil {
		m.answer(turnReply{err: err})
		return
	}
	if m.handoff != nil {
		startHandoff(a, c, m, chain) // handoff.go: no user message
		return
	}
	now := time.Now().UnixMilli()
	// A retry of a turn this conversation already has: replay its reply, or
	// answer its stored user message without adding it again.
	if i := a.findTurn(m.turnID); i >= 0 {
		external := strings.HasPrefix(m.turnID, ExternalTurn)
		if external && !sameInput(&a.conv.Messages[i], m) {
			m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EConflict, Param: "external_id", Message: fmt.Sprintf(
				"external id %q was already used for another message of this conversation", strings.TrimPrefix(m.turnID, ExternalTurn))}})
			return
		}
		if i+1 < len(a.conv.Messages) && a.conv.Messages[i+1].Role == moltbot.RoleAssistant && !a.conv.Messages[i+1].Incomplete {
			r := a.conv.Messages[i+1]
			comp := &moltbot.Completion{Content: r.Content, ToolCalls: callsOf(&r), Served: refOf(r.Model), FinishReason: "stop"}
			if len(comp.ToolCalls) > 0 {
				comp.FinishReason = "tool_calls"
			}
			m.answer(turnReply{res: &TurnResult{Message: r, Version: a.conv.Version, Replayed: true, Completion: comp}})
			return
		}
		if i == len(a.conv.Messages)-1 {
			a.run(c, m, chain)
			return
		}
		if external {
			// Its turn failed and later turns followed: running it now would
			// answer it out of order, adding it again would hold it twice.
			m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EConflict, Param: "external_id", Message: fmt.Sprintf(
				"the message with external id %q was received before and its turn failed; later turns followed, so it is not run again",
				strings.TrimPrefix(m.turnID, ExternalTurn))}})
			return
		}
	}
	// Tool results answer the last reply's calls, all of them, before
	// anything else is said (checked here: the conversation holds the
	// history).
	if err := checkResults(pendingCalls(a.conv.Messages), m.results); err != nil {
		m.answer(turnReply{err: err})
		return
	}
	in := inputMessages(m, now)
	budget := a.d.budget(m.opts.MaxTokens)
	before := len(a.conv.Messages)
	a.conv.Messages = append(a.conv.Messages, in...)
	_, _, ok := buildContext(a.conv.System, a.conv.Messages, budget)
	if !ok {
		a.conv.Messages = a.conv.Messages[:before]
		need := 0
		for i := range in {
			need += tokens(&in[i])
		}
		if a.conv.System != "" {
			need += tokens(&moltbot.Message{Content: a.conv.System})
		}
		m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: fmt.Sprintf(
			"the message is too long for the context: about %d tokens with the system prompt (and the tool calls its results answer), and %d fit (conversations.max_context_tokens less room for the reply)",
			need, budget)}})
		return
	}
	a.conv.Version++
	a.conv.Updated = now
	if err := a.own.persist(a.conv); err != nil {
		a.conv.Messages = a.conv.Messages[:before]
		a.conv.Version--
		m.answer(turnReply{err: err})
		return
	}
	a.own.replicated(a.conv, func(error) {}) // the user message: copied without waiting
	for i := range in {
		a.d.hub.publish(a.tenant, a.id, moltbot.Event{Kind: moltbot.EventMessage, Message: &in[i]})
	}
	a.run(c, m, chain)
}

// maxRedeliveries bounds the deliveries of one external message that wait
// behind its running turn.
const maxRedeliveries = 4

// redelivery reports whether m repeats the external message of the running
// turn or of a queued one, with room to wait for it.
func (a *conversation) redelivery(m *turnMsg) bool {
	if !strings.HasPrefix(m.turnID, ExternalTurn) {
		return false
	}
	n := 0
	if a.running != nil && a.running.turnID == m.turnID {
		n++
	}
	for _, q := range a.queue {
		if q.turnID == m.turnID {
			n++
		}
	}
	return n > 0 && n <= maxRedeliveries
}

// findTurn returns the index of the last input message of turn id (its
// user message, or its last tool result: inputMessages), or -1. For
// the runtime's own turn ids only the last few messages are searched (a
// retry follows its first attempt); an external id is looked for in the
// whole conversation, as a channel may deliver a message again much later.
func (a *conversation) findTurn(id string) int {
	if id == "" {
		return -1
	}
	last := len(a.conv.Messages) - 4
	if strings.HasPrefix(id, ExternalTurn) {
		last = 0
	}
	for i := len(a.conv.Messages) - 1; i >= 0 && i >= last; i-- {
		if m := &a.conv.Messages[i]; (m.Role == moltbot.RoleUser || m.Role == moltbot.RoleTool) && m.ID == id {
			return i
		}
	}
	return -1
}

func refOf(s string) moltbot.ModelRef {
	r, err := moltbot.ParseModelRef(s)
	if err != nil {
		return moltbot.ModelRef{Model: s}
	}
	return r
}

// run asks the model for the stored last user message on a goroutine.
func (a *conversation) run(c actor.Context, m *turnMsg, chain []moltbot.ModelRef) {
	plan := planContext(a.d, a.conv, a.d.budget(m.opts.MaxTokens))
	ctx, cancel := context.WithTimeout(m.ctx, a.d.requestTimeout)
	a.running, a.cancelRun = m, cancel
	self, root, router, d := c.Self(), a.d.root, a.d.router, a.d
	// Only a turn that needs a summary takes the plan along (a copy on
	// the heap); the others keep it on this stack.
	dropped := plan.dropped
	var fold *contextPlan
	var key string
	if len(plan.fold) > 0 && !personTurn(a, m) {
		fold, key = new(contextPlan), a.tenant+"/"+a.id
		*fold = plan
	}
	// The stages' state is shared, not copied: a stage that changes it
	// gets a map of its own (Turn.SetState), and the actor replaces its
	// own in finish, never changes it in place.
	t := &moltbot.Turn{Space: a.tenant, Tenant: a.tenant, Conversation: a.id, User: a.conv.User, Messages: plan.msgs, Options: m.opts, Chain: chain, Visible: m.visible,
		State: a.conv.State, Bot: m.bot, Handoff: m.handoff}
	fn := m.fn
	if a.d.hub.Following(a.tenant, a.id) {
		// Followers see the tokens too (those who came before the turn did).
		hub, tenant, id, inner := a.d.hub, a.tenant, a.id, m.fn
		fn = func(ch moltbot.Chunk) error {
			ev := moltbot.Event{Kind: moltbot.EventToken, Text: ch.Content, Served: ch.Served, Failovers: ch.Failovers}
			if ch.ToolCall != nil {
				ev.Kind, ev.ToolCall = moltbot.EventToolCall, ch.ToolCall
			}
			hub.publish(tenant, id, ev)
			return inner(ch)
		}
	}
	go func() {
		var sum *moltbot.Summary
		dropped := dropped
		if fold != nil {
			t.Messages, sum, dropped = fold.summarize(ctx, d, chain, key)
		}
		if dropped > 0 {
			d.met.Counter(metrics.ContextTrimmed).Add(dropped)
		}
		comp, err := router.Chat(ctx, t, fn)
		if comp != nil && fold != nil {
			// The summary made for this turn is part of its cost.
			comp.Usage.PromptTokens += fold.used.PromptTokens
			comp.Usage.CompletionTokens += fold.used.CompletionTokens
		}
		done := &turnDone{turnID: m.turnID, comp: comp, err: err, summary: sum}
		if t.StateChanged() {
			done.state, done.stateSet = t.State, true
		}
		done.noReply, done.ticket = t.Notes[moltbot.NoteNoReply] == "true", t.Notes[moltbot.NoteTicket]
		root.Send(self, done)
	}()
}

func (a *conversation) finish(c actor.Context, d *turnDone) {
	m := a.running
	if m == nil || m.turnID != d.turnID {
		return // from before a restart
	}
	a.cancelRun()
	a.running, a.cancelRun = nil, nil
	a.current = m // in hand until answered: a panic below answers it
	a.lastActive = a.d.since()
	var prevSummary *moltbot.Summary
	if a.conv != nil {
		prevSummary = a.conv.Summary
	}
	summarized := keepSummary(a.conv, d.summary)
	switch {
	case a.conv == nil:
		a.d.met.Inc(metrics.ConversationTurns, "deleted")
		m.answer(turnReply{err: moltbot.Errorf(moltbot.ENotFound, "conversation %q was deleted during the turn", a.id)})
	case d.err != nil:
		// The user message stays. If the client saw part of a reply, that
		// part is stored, marked incomplete: the conversation holds what the
		// user saw, nothing more. Its text only: a tool call cut off is no
		// call a client can answer (its arguments may be half written), and
		// a stored call would wait for a result.
		a.d.met.Inc(metrics.ConversationTurns, "error")
		partial := d.comp != nil && d.comp.Content != "" && m.visible
		if partial {
			part := moltbot.Message{ID: m.turnID + ":a", Role: moltbot.RoleAssistant, Content: d.comp.Content, Model: d.comp.Served.String(),
				Created: time.Now().UnixMilli(), Incomplete: true}
			a.conv.Messages = append(a.conv.Messages, part)
			a.conv.Updated = part.Created
		}
		// A summary made for the failed turn is kept too: it was paid for.
		if partial || summarized {
			a.conv.Version++
			if err := a.own.persist(a.conv); err != nil {
				if partial {
					a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
				}
				a.conv.Summary = prevSummary
				a.conv.Version--
			}
		}
		m.answer(turnReply{err: d.err})
	case d.noReply:
		finishSilent(a, m, d) // handoff.go
	default:
		asst := moltbot.Message{ID: m.turnID + ":a", Role: moltbot.RoleAssistant, Content: d.comp.Content, Parts: replyParts(d.comp),
			Model: d.comp.Served.String(), Created: time.Now().UnixMilli(), Citations: d.comp.Citations}
		a.conv.Messages = append(a.conv.Messages, asst)
		a.conv.Version++
		a.conv.Updated = asst.Created
		prevState := a.conv.State
		if d.stateSet {
			// In the same write as the reply: the flow's cursor moves
			// with the answer that asked for it, or neither is kept.
			a.conv.State = d.state
			if len(d.state) == 0 {
				a.conv.State = nil
			}
		}
		outboxLen := len(a.conv.Outbox)
		if m.replyTo != nil {
			// In the same write as the reply: both are kept, or neither.
			enqueue(a.conv, asst.ID, *m.replyTo)
		}
		a.conv.State = rememberReplyTo(a.conv.State, m)
		if d.ticket != "" {
			enqueue(a.conv, asst.ID, moltbot.Destination{Channel: moltbot.TicketChannel, Address: d.ticket})
		}
		if err := a.own.persist(a.conv); err != nil {
			a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
			a.conv.Summary = prevSummary
			a.conv.State = prevState
			a.conv.Outbox = a.conv.Outbox[:outboxLen]
			if outboxLen == 0 {
				a.conv.Outbox = nil
			}
			a.conv.Version--
			a.d.met.Inc(metrics.ConversationTurns, "error")
			m.answer(turnReply{err: err})
			break
		}
		a.d.met.Inc(metrics.ConversationTurns, "ok")
		a.d.hub.publish(a.tenant, a.id, moltbot.Event{Kind: moltbot.EventMessage, Message: &asst})
		if len(a.conv.Outbox) > outboxLen {
			a.out.pump(a, c)
		}
		res := &TurnResult{Message: asst, Completion: d.comp, Version: a.conv.Version}
		// Acknowledged only once the replicas hold the reply too.
		a.own.replicated(a.conv, func(err error) {
			if errors.Is(err, ErrStale) {
				m.answer(turnReply{err: Moved()})
				return
			}
			m.answer(turnReply{res: res})
		})
	}
	a.current = nil // answered, or handed to the replication's goroutine
	for len(a.queue) > 0 && a.running == nil {
		next := a.queue[0]
		a.queue = a.queue[1:]
		if a.conv == nil {
			next.answer(turnReply{err: a.notFound()})
			continue
		}
		a.current = next
		a.start(c, next)
		a.current = nil
	}
	if a.conv == nil {
		a.release(c)
	}
}

// botOf is the bot named name of the conversation's space as the config
// says now.
func botOf(d *deps, space, name string) (*moltbot.Bot, error) {
	var b *moltbot.Bot
	if d.bots != nil {
		b = d.bots.Bot(moltbot.TenantOfSpace(space), name)
	}
	if b == nil {
		return nil, &moltbot.Error{Code: moltbot.EForbidden, Message: fmt.Sprintf(
			"the conversation's bot %q is not configured (bots:) for its tenant: its turns are refused until it is again", name)}
	}
	return b, nil
}

// BotChain is the chain a turn of bot b tries when model is asked ("" or
// moltbot.ChainModel: the bot's chain, each of its models as the router
// knows it; a bot without a chain of its own has the node's). Whether b
// may ask for model is the chat service's to check (Bot.Allows).
func BotChain(r interface {
	Resolve(model string) ([]moltbot.ModelRef, error)
}, b *moltbot.Bot, model string) ([]moltbot.ModelRef, error) {
	if model != "" && model != moltbot.ChainModel || len(b.Chain) == 0 {
		return r.Resolve(model)
	}
	chain := make([]moltbot.ModelRef, 0, len(b.Chain))
	for _, ref := range b.Chain {
		refs, err := r.Resolve(ref.String())
		if err != nil {
			return nil, fmt.Errorf("bot %q: %w", b.Name, err)
		}
		chain = append(chain, refs...)
	}
	return chain, nil
}
