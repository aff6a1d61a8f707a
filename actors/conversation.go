package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

type convReply struct {
	conv *moltbot.Conversation
	err  error
}

// TurnResult is a finished turn: the stored assistant message and how it was made.
type TurnResult struct {
	Message    moltbot.Message
	Completion *moltbot.Completion
	// Version is the conversation's version after the reply was stored.
	Version uint64
}

type turnReply struct {
	res *TurnResult
	err error
}

type createMsg struct {
	tenant, id, system, model string
	reply                     chan convReply
}

type getMsg struct {
	tenant, id string
	reply      chan convReply
}

type deleteMsg struct {
	tenant, id string
	reply      chan error
}

type turnMsg struct {
	tenant, id string
	turnID     uint64
	ctx        context.Context
	content    string
	opts       moltbot.ChatOptions
	fn         moltbot.StreamFunc
	visible    bool // the caller streams: it sees tokens as they come
	reply      chan turnReply
}

type cancelMsg struct {
	tenant, id string
	turnID     uint64
}

func (m *createMsg) route() (string, string) { return m.tenant, m.id }
func (m *getMsg) route() (string, string)    { return m.tenant, m.id }
func (m *deleteMsg) route() (string, string) { return m.tenant, m.id }
func (m *turnMsg) route() (string, string)   { return m.tenant, m.id }
func (m *cancelMsg) route() (string, string) { return m.tenant, m.id }

// turnDone comes from a turn's goroutine when the model call has ended.
type turnDone struct {
	turnID uint64
	comp   *moltbot.Completion
	err    error
}

// conversation is the actor of one conversation. Its state is the
// conversation itself; every change is persisted (synced) before the caller
// hears of it, so a restart or passivation loses nothing acknowledged.
type conversation struct {
	rt         *Runtime
	tenant, id string
	conv       *moltbot.Conversation // nil: no such conversation (yet, or deleted)
	loadErr    error
	processed  uint64
	running    *turnMsg
	cancelRun  context.CancelFunc
	queue      []*turnMsg
	lastActive time.Time
}

func (a *conversation) notFound() error {
	return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", a.id)
}

func (a *conversation) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		a.lastActive = time.Now()
		conv, err := a.rt.store.Get(a.tenant, a.id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			a.loadErr = &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not load the conversation", Err: err}
		default:
			a.conv = conv
			a.rt.met.Inc(metrics.Activations, "snapshot")
		}
	case *actor.Restarting:
		// A panic: fail what waits here rather than leave callers hanging.
		err := moltbot.Errorf(moltbot.EInternal, "conversation %q crashed; retry the request", a.id)
		if a.running != nil {
			a.cancelRun()
			a.running.reply <- turnReply{err: err}
			a.running = nil
		}
		for _, q := range a.queue {
			q.reply <- turnReply{err: err}
		}
		a.queue = nil
	case *actor.Stopping:
		if a.running != nil {
			a.cancelRun()
		}
	case *createMsg:
		a.processed++
		a.create(c, m)
	case *getMsg:
		a.processed++
		switch {
		case a.loadErr != nil:
			m.reply <- convReply{err: a.loadErr}
		case a.conv == nil:
			m.reply <- convReply{err: a.notFound()}
			a.release(c)
		default:
			m.reply <- convReply{conv: copyConv(a.conv)}
		}
	case *deleteMsg:
		a.processed++
		a.delete(c, m)
	case *turnMsg:
		a.processed++
		a.lastActive = time.Now()
		switch {
		case a.loadErr != nil:
			m.reply <- turnReply{err: a.loadErr}
		case a.conv == nil:
			m.reply <- turnReply{err: a.notFound()}
			a.release(c)
		case a.running != nil:
			if len(a.queue) >= a.rt.maxQueued {
				a.rt.met.Inc(metrics.ConversationsBusy)
				m.reply <- turnReply{err: &moltbot.Error{Code: moltbot.EBusy, RetryAfter: time.Second,
					Message: fmt.Sprintf("conversation %q is busy: a turn is running and %d wait", a.id, len(a.queue))}}
				return
			}
			a.queue = append(a.queue, m)
		default:
			a.start(c, m)
		}
	case *cancelMsg:
		a.processed++
		if a.running != nil && a.running.turnID == m.turnID {
			a.cancelRun()
			return
		}
		for i, q := range a.queue {
			if q.turnID == m.turnID {
				a.queue = append(a.queue[:i], a.queue[i+1:]...)
				q.reply <- turnReply{err: moltbot.Errorf(moltbot.EInvalid, "turn canceled by the client")}
				break
			}
		}
	case *turnDone:
		a.finish(c, m)
	case *passivateMsg:
		a.processed++
		if a.conv == nil || time.Since(a.lastActive) >= a.rt.idle {
			a.release(c)
		}
	}
}

// release asks the manager to stop this actor if nothing is in progress.
func (a *conversation) release(c actor.Context) {
	if a.running != nil || len(a.queue) > 0 {
		return
	}
	c.Send(c.Parent(), &releaseMsg{key: a.tenant + "/" + a.id, pid: c.Self().Id, processed: a.processed})
}

func (a *conversation) persist() error {
	t0 := time.Now()
	err := a.rt.store.Put(a.conv, true)
	a.rt.met.Observe(metrics.SnapshotDuration, time.Since(t0))
	if err != nil {
		a.rt.met.Inc(metrics.SnapshotWrites, "error")
		a.rt.log.Error("snapshot write failed", "conversation", a.tenant+"/"+a.id, "err", err)
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not save the conversation", Err: err}
	}
	a.rt.met.Inc(metrics.SnapshotWrites, "ok")
	return nil
}

func (a *conversation) create(c actor.Context, m *createMsg) {
	switch {
	case a.loadErr != nil:
		m.reply <- convReply{err: a.loadErr}
		return
	case a.conv != nil:
		m.reply <- convReply{err: moltbot.Errorf(moltbot.EConflict, "conversation %q already exists", a.id)}
		return
	}
	now := time.Now().UnixMilli()
	a.conv = &moltbot.Conversation{Tenant: a.tenant, ID: a.id, System: m.system, Model: m.model, Version: 1, Created: now, Updated: now}
	if err := a.persist(); err != nil {
		a.conv = nil
		m.reply <- convReply{err: err}
		a.release(c)
		return
	}
	a.rt.met.Inc(metrics.Activations, "new")
	m.reply <- convReply{conv: copyConv(a.conv)}
}

func (a *conversation) delete(c actor.Context, m *deleteMsg) {
	if a.loadErr != nil {
		m.reply <- a.loadErr
		return
	}
	if a.conv == nil {
		m.reply <- a.notFound()
		a.release(c)
		return
	}
	if err := a.rt.store.Delete(a.tenant, a.id, true); err != nil {
		m.reply <- &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not delete the conversation", Err: err}
		return
	}
	a.conv = nil
	if a.running != nil {
		a.cancelRun() // its turnDone answers the caller
	}
	for _, q := range a.queue {
		q.reply <- turnReply{err: a.notFound()}
	}
	a.queue = nil
	m.reply <- nil
	a.release(c)
}

// start runs turn m: check it fits, persist the user message, then ask the
// model on a goroutine that reports back with turnDone.
func (a *conversation) start(c actor.Context, m *turnMsg) {
	if err := m.ctx.Err(); err != nil {
		m.reply <- turnReply{err: moltbot.Errorf(moltbot.EInvalid, "turn canceled by the client")}
		return
	}
	model := m.opts.Model
	if model == "" {
		model = a.conv.Model
	}
	chain, err := a.rt.router.resolve(model)
	if err != nil {
		m.reply <- turnReply{err: err}
		return
	}
	now := time.Now().UnixMilli()
	user := moltbot.Message{Role: moltbot.RoleUser, Content: m.content, Created: now}
	budget := a.rt.budget(m.opts.MaxTokens)
	a.conv.Messages = append(a.conv.Messages, user)
	msgs, dropped, ok := buildContext(a.conv.System, a.conv.Messages, budget)
	if !ok {
		a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
		need := inference.MessageTokens(&user)
		if a.conv.System != "" {
			need += inference.MessageTokens(&moltbot.Message{Content: a.conv.System})
		}
		m.reply <- turnReply{err: &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: fmt.Sprintf(
			"the message is too long for the context: about %d tokens with the system prompt, and %d fit (conversations.max_context_tokens less room for the reply)",
			need, budget)}}
		return
	}
	if dropped > 0 {
		a.rt.met.Counter(metrics.ContextTrimmed).Add(dropped)
	}
	a.conv.Version++
	a.conv.Updated = now
	if err := a.persist(); err != nil {
		a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
		a.conv.Version--
		m.reply <- turnReply{err: err}
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, a.rt.requestTimeout)
	a.running, a.cancelRun = m, cancel
	self, root, rt := c.Self(), a.rt.system.Root, a.rt
	go func() {
		comp, err := rt.router.chat(ctx, chain, msgs, m.opts, m.fn, m.visible)
		root.Send(self, &turnDone{turnID: m.turnID, comp: comp, err: err})
	}()
}

func (a *conversation) finish(c actor.Context, d *turnDone) {
	m := a.running
	if m == nil || m.turnID != d.turnID {
		return // from before a restart
	}
	a.cancelRun()
	a.running, a.cancelRun = nil, nil
	a.lastActive = time.Now()
	switch {
	case a.conv == nil:
		a.rt.met.Inc(metrics.ConversationTurns, "deleted")
		m.reply <- turnReply{err: moltbot.Errorf(moltbot.ENotFound, "conversation %q was deleted during the turn", a.id)}
	case d.err != nil:
		// The user message stays. If the client saw part of a reply, that
		// part is stored, marked incomplete: the conversation holds what the
		// user saw, nothing more.
		a.rt.met.Inc(metrics.ConversationTurns, "error")
		if d.comp != nil && d.comp.Content != "" && m.visible {
			part := moltbot.Message{Role: moltbot.RoleAssistant, Content: d.comp.Content, Model: d.comp.Served.String(),
				Created: time.Now().UnixMilli(), Incomplete: true}
			a.conv.Messages = append(a.conv.Messages, part)
			a.conv.Version++
			a.conv.Updated = part.Created
			if err := a.persist(); err != nil {
				a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
				a.conv.Version--
			}
		}
		m.reply <- turnReply{err: d.err}
	default:
		asst := moltbot.Message{Role: moltbot.RoleAssistant, Content: d.comp.Content, Model: d.comp.Served.String(), Created: time.Now().UnixMilli()}
		a.conv.Messages = append(a.conv.Messages, asst)
		a.conv.Version++
		a.conv.Updated = asst.Created
		if err := a.persist(); err != nil {
			a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
			a.conv.Version--
			a.rt.met.Inc(metrics.ConversationTurns, "error")
			m.reply <- turnReply{err: err}
			break
		}
		a.rt.met.Inc(metrics.ConversationTurns, "ok")
		m.reply <- turnReply{res: &TurnResult{Message: asst, Completion: d.comp, Version: a.conv.Version}}
	}
	for len(a.queue) > 0 && a.running == nil {
		next := a.queue[0]
		a.queue = a.queue[1:]
		if a.conv == nil {
			next.reply <- turnReply{err: a.notFound()}
			continue
		}
		a.start(c, next)
	}
	if a.conv == nil {
		a.release(c)
	}
}

func copyConv(c *moltbot.Conversation) *moltbot.Conversation {
	out := *c
	out.Messages = append([]moltbot.Message(nil), c.Messages...)
	return &out
}
