package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cluster"
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

// The request messages (create, get, delete, turn; relinquish) are
// answered exactly once, whatever happens: through answer, whose first
// call wins. Some are answered from a goroutine (after replication), and a
// crash of the actor answers what it held with an error (see crashed).

type createMsg struct {
	tenant, id, system, model string
	reply                     chan convReply // buffered (1)
	answered                  atomic.Bool
}

type getMsg struct {
	tenant, id string
	reply      chan convReply // buffered (1)
	answered   atomic.Bool
}

type deleteMsg struct {
	tenant, id string
	reply      chan error // buffered (1)
	answered   atomic.Bool
}

type turnMsg struct {
	tenant, id string
	// turnID identifies the turn across retries: the user message carries it,
	// so a retried turn never adds it twice and an answered one is replayed.
	turnID   string
	ctx      context.Context
	content  string
	opts     moltbot.ChatOptions
	fn       moltbot.StreamFunc
	visible  bool           // the caller streams: it sees tokens as they come
	reply    chan turnReply // buffered (1)
	answered atomic.Bool
}

type cancelMsg struct {
	tenant, id string
	turnID     string
}

func (m *createMsg) route() (string, string) { return m.tenant, m.id }
func (m *getMsg) route() (string, string)    { return m.tenant, m.id }
func (m *deleteMsg) route() (string, string) { return m.tenant, m.id }
func (m *turnMsg) route() (string, string)   { return m.tenant, m.id }
func (m *cancelMsg) route() (string, string) { return m.tenant, m.id }

func (m *createMsg) answer(r convReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

func (m *getMsg) answer(r convReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

func (m *deleteMsg) answer(err error) {
	if !m.answered.Swap(true) {
		m.reply <- err
	}
}

func (m *turnMsg) answer(r turnReply) {
	if !m.answered.Swap(true) {
		m.reply <- r
	}
}

// request is a message whose sender waits for its answer.
type request interface{ fail(err error) }

func (m *createMsg) fail(err error) { m.answer(convReply{err: err}) }
func (m *getMsg) fail(err error)    { m.answer(convReply{err: err}) }
func (m *deleteMsg) fail(err error) { m.answer(err) }
func (m *turnMsg) fail(err error)   { m.answer(turnReply{err: err}) }
func (m *relinquishMsg) fail(error) { m.release() }

// turnDone comes from a turn's goroutine when the model call has ended.
type turnDone struct {
	turnID string
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
	tomb       *moltbot.Conversation // the tombstone, when deleted (cluster mode)
	handingOff bool                  // the ring moved it away: handing it to the new owner
	handoffDue bool                  // hand off once the running turn ends
	yield      []*relinquishMsg      // relinquish requests waiting for the running turn
	loadErr    error
	kept       *convKept // survives restarts
	// current is the request in hand: being handled, not yet answered nor
	// handed to a goroutine that answers it. A panic answers it.
	current    request
	running    *turnMsg
	cancelRun  context.CancelFunc
	queue      []*turnMsg
	lastActive time.Time
}

// convKept is what a conversation actor keeps across a restart after a
// panic: processed counts the manager's messages it has handled, which the
// passivation protocol compares with the manager's count of what it sent.
// (A count starting again at 0 would never match, and the actor would never
// be passivated.) Only the actor touches it, one incarnation at a time.
type convKept struct {
	processed uint64
}

func (a *conversation) notFound() error {
	return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", a.id)
}

// Receive handles one message. A panic answers every request the actor
// holds (the one in hand, the running turn, the queue) with an error at
// once, then goes on to the supervisor, which restarts the actor with
// backoff: no caller waits for the backoff, or forever.
func (a *conversation) Receive(c actor.Context) {
	a.current, _ = c.Message().(request)
	defer func() {
		if p := recover(); p != nil {
			a.crashed(p)
			panic(p)
		}
	}()
	a.receive(c)
	a.current = nil
}

// crashed answers what the actor holds when it panics.
func (a *conversation) crashed(p any) {
	a.rt.log.Error("conversation crashed", "conversation", a.tenant+"/"+a.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	err := a.crashError()
	if a.current != nil {
		a.current.fail(err)
		a.current = nil
	}
	a.failWaiting(err)
}

func (a *conversation) crashError() error {
	return moltbot.Errorf(moltbot.EInternal, "conversation %q crashed; retry the request", a.id)
}

// failWaiting answers the running turn, the queued ones and the relinquish
// requests waiting for them with err.
func (a *conversation) failWaiting(err error) {
	if a.running != nil {
		a.cancelRun()
		a.running.fail(err)
		a.running = nil
	}
	for _, q := range a.queue {
		q.fail(err)
	}
	a.queue = nil
	for _, y := range a.yield {
		y.release()
	}
	a.yield = nil
}

func (a *conversation) receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		a.lastActive = time.Now()
		conv, err := a.rt.store.Get(a.tenant, a.id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			conv = nil
		case err != nil:
			a.loadErr = &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not load the conversation", Err: err}
			return
		}
		if a.rt.clustered() {
			conv = a.activate(conv)
		}
		if conv != nil && conv.Deleted {
			a.tomb, conv = conv, nil
		}
		if conv != nil {
			a.conv = conv
			a.rt.met.Inc(metrics.Activations, "snapshot")
		}
	case *actor.Restarting:
		// crashed answered everything already; this is the backstop.
		a.failWaiting(a.crashError())
	case *actor.Stopping:
		if a.running != nil {
			a.cancelRun()
		}
	case *createMsg:
		a.kept.processed++
		if a.moved() {
			m.answer(convReply{err: movedError()})
			a.release(c)
			return
		}
		a.create(c, m)
	case *getMsg:
		a.kept.processed++
		switch {
		case a.moved():
			m.answer(convReply{err: movedError()})
			a.release(c)
		case a.loadErr != nil:
			m.answer(convReply{err: a.loadErr})
		case a.conv == nil:
			m.answer(convReply{err: a.notFound()})
			a.release(c)
		default:
			m.answer(convReply{conv: copyConv(a.conv)})
		}
	case *deleteMsg:
		a.kept.processed++
		if a.moved() {
			m.answer(movedError())
			a.release(c)
			return
		}
		a.delete(c, m)
	case *turnMsg:
		a.kept.processed++
		a.lastActive = time.Now()
		switch {
		case a.moved():
			m.answer(turnReply{err: movedError()})
			a.release(c)
		case a.loadErr != nil:
			m.answer(turnReply{err: a.loadErr})
		case a.conv == nil:
			m.answer(turnReply{err: a.notFound()})
			a.release(c)
		case a.running != nil:
			if len(a.queue) >= a.rt.maxQueued {
				a.rt.met.Inc(metrics.ConversationsBusy)
				m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EBusy, RetryAfter: time.Second,
					Message: fmt.Sprintf("conversation %q is busy: a turn is running and %d wait", a.id, len(a.queue))}})
				return
			}
			a.queue = append(a.queue, m)
		default:
			a.start(c, m)
		}
	case *cancelMsg:
		a.kept.processed++
		if a.running != nil && a.running.turnID == m.turnID {
			a.cancelRun()
			return
		}
		for i, q := range a.queue {
			if q.turnID == m.turnID {
				a.queue = append(a.queue[:i], a.queue[i+1:]...)
				q.answer(turnReply{err: moltbot.Errorf(moltbot.EInvalid, "turn canceled by the client")})
				break
			}
		}
	case *turnDone:
		a.finish(c, m)
		if len(a.yield) > 0 && a.running == nil {
			a.stepDown(c)
			for _, y := range a.yield {
				y.release()
			}
			a.yield = nil
		}
		if a.handoffDue && a.running == nil && !a.handingOff {
			a.handoff(c)
		}
	case *relinquishMsg:
		a.kept.processed++
		if a.running != nil {
			a.yield = append(a.yield, m)
			return
		}
		a.stepDown(c)
		m.release()
	case *handoffCheck:
		a.kept.processed++
		if a.rt.clustered() && a.conv != nil && !a.handingOff && !a.rt.isOwner(a.tenant, a.id) {
			if a.running != nil {
				a.handoffDue = true
			} else {
				a.handoff(c)
			}
		}
	case *handedOff:
		a.conv = nil
		for _, q := range a.queue {
			q.answer(turnReply{err: movedError()})
		}
		a.queue = nil
		a.release(c)
	case *passivateMsg:
		a.kept.processed++
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
	c.Send(c.Parent(), &releaseMsg{key: a.tenant + "/" + a.id, pid: c.Self().Id, processed: a.kept.processed})
}

func (a *conversation) persist() error {
	t0 := time.Now()
	var err error
	if a.rt.clustered() {
		// Fenced: if a newer owner's epoch reached this node's store, this
		// node is no longer the owner and must not write.
		var stored bool
		if stored, _, _, err = a.rt.store.PutIfNewer(a.conv, true); err == nil && !stored {
			a.handingOff = true
			a.rt.met.Inc(metrics.SnapshotWrites, "fenced")
			return movedError()
		}
	} else {
		err = a.rt.store.Put(a.conv, true)
	}
	a.rt.met.Observe(metrics.SnapshotDuration, time.Since(t0))
	if err != nil {
		a.rt.met.Inc(metrics.SnapshotWrites, "error")
		a.rt.log.Error("snapshot write failed", "conversation", a.tenant+"/"+a.id, "err", err)
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not save the conversation", Err: err}
	}
	a.rt.met.Inc(metrics.SnapshotWrites, "ok")
	return nil
}

// stepDown stops serving: another node owns the conversation now (it
// acquired it, or fenced this node's write). Everything acknowledged is in
// the store; waiting turns are told to retry; the actor asks to stop.
func (a *conversation) stepDown(c actor.Context) {
	a.handingOff = true
	for _, q := range a.queue {
		q.answer(turnReply{err: movedError()})
	}
	a.queue = nil
	a.release(c)
}

// moved reports whether requests must go elsewhere: the ring gives the
// conversation to another node, or it is being handed over.
func (a *conversation) moved() bool {
	return a.rt.clustered() && (a.handingOff || !a.rt.isOwner(a.tenant, a.id))
}

// activate, as the owner, makes sure this node serves the newest copy: it
// asks the other holders for theirs, keeps the newest, and starts a new
// epoch so that a former owner's late writes are fenced off at the replicas.
func (a *conversation) activate(local *moltbot.Conversation) *moltbot.Conversation {
	if !a.rt.isOwner(a.tenant, a.id) {
		return local
	}
	if f := a.rt.acquire(a.tenant, a.id); f != nil && (local == nil || storage.Newer(f.Epoch, f.Version, local.Epoch, local.Version)) {
		local = f
	}
	if local == nil {
		return nil
	}
	local.Epoch++
	a.rt.log.Debug("conversation activated as its owner", "conversation", local.Key(), "epoch", local.Epoch, "version", local.Version)
	if err := a.rt.store.Put(local, true); err != nil {
		a.rt.log.Error("snapshot write failed", "conversation", local.Key(), "err", err)
	}
	snap, targets := copyConv(local), a.rt.replicaTargets(a.tenant, a.id)
	go a.rt.replicate(snap, targets, false)
	return local
}

// replicated runs done after the current snapshot reached the replicas (at
// once when alone). done gets errStale when a newer owner fenced us off.
func (a *conversation) replicated(done func(error)) {
	if !a.rt.clustered() {
		done(nil)
		return
	}
	snap, targets := copyConv(a.conv), a.rt.replicaTargets(a.tenant, a.id)
	go func() { done(a.rt.replicate(snap, targets, false)) }()
}

// handoff sends the conversation to its new owner (and replicas), then
// stops this actor; requests meanwhile are told it moved.
func (a *conversation) handoff(c actor.Context) {
	a.handingOff, a.handoffDue = true, false
	snap := copyConv(a.conv)
	var targets []cluster.Node
	for _, n := range a.rt.currentRing().Ranked(a.tenant+"/"+a.id, a.rt.replicas) {
		if n.ID != a.rt.place().ID() {
			targets = append(targets, n)
		}
	}
	self, root, rt := c.Self(), a.rt.system.Root, a.rt
	go func() {
		if err := rt.replicate(snap, targets, true); err == nil && len(targets) > 0 {
			rt.met.Inc(metrics.Handoffs, "sent")
		}
		root.Send(self, &handedOff{})
	}()
}

func (a *conversation) create(c actor.Context, m *createMsg) {
	switch {
	case a.loadErr != nil:
		m.answer(convReply{err: a.loadErr})
		return
	case a.conv != nil:
		m.answer(convReply{err: moltbot.Errorf(moltbot.EConflict, "conversation %q already exists", a.id)})
		return
	}
	now := time.Now().UnixMilli()
	a.conv = &moltbot.Conversation{Tenant: a.tenant, ID: a.id, System: m.system, Model: m.model, Version: 1, Epoch: 1, Created: now, Updated: now}
	if a.tomb != nil { // recreated after a delete: stay ahead of the tombstone
		a.conv.Version, a.conv.Epoch = a.tomb.Version+1, a.tomb.Epoch
	}
	if err := a.persist(); err != nil {
		a.conv = nil
		m.answer(convReply{err: err})
		a.release(c)
		return
	}
	a.tomb = nil
	a.rt.met.Inc(metrics.Activations, "new")
	out := copyConv(a.conv)
	a.replicated(func(err error) {
		if errors.Is(err, errStale) {
			m.answer(convReply{err: movedError()})
			return
		}
		m.answer(convReply{conv: out})
	})
}

func (a *conversation) delete(c actor.Context, m *deleteMsg) {
	if a.loadErr != nil {
		m.answer(a.loadErr)
		return
	}
	if a.conv == nil {
		m.answer(a.notFound())
		a.release(c)
		return
	}
	if a.rt.clustered() {
		// A tombstone, replicated: a stale copy elsewhere cannot bring it back.
		tomb := &moltbot.Conversation{Tenant: a.tenant, ID: a.id, Version: a.conv.Version + 1, Epoch: a.conv.Epoch, Deleted: true,
			Created: a.conv.Created, Updated: time.Now().UnixMilli()}
		if err := a.rt.store.Put(tomb, true); err != nil {
			m.answer(&moltbot.Error{Code: moltbot.EUnavailable, Message: "could not delete the conversation", Err: err})
			return
		}
		a.tomb = tomb
		targets, rt, done := a.rt.replicaTargets(a.tenant, a.id), a.rt, m
		go func() { done.answer(errNil(rt.replicate(tomb, targets, false))) }() // answered after replication
		a.current, m = nil, nil
	} else if err := a.rt.store.Delete(a.tenant, a.id, true); err != nil {
		m.answer(&moltbot.Error{Code: moltbot.EUnavailable, Message: "could not delete the conversation", Err: err})
		return
	}
	a.conv = nil
	if a.running != nil {
		a.cancelRun() // its turnDone answers the caller
	}
	for _, q := range a.queue {
		q.answer(turnReply{err: a.notFound()})
	}
	a.queue = nil
	if m != nil {
		m.answer(nil)
	}
	a.release(c)
}

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
	chain, err := a.rt.router.Resolve(model)
	if err != nil {
		m.answer(turnReply{err: err})
		return
	}
	now := time.Now().UnixMilli()
	// A retry of a turn this conversation already has: replay its reply, or
	// answer its stored user message without adding it again.
	if i := a.findTurn(m.turnID); i >= 0 {
		if i+1 < len(a.conv.Messages) && a.conv.Messages[i+1].Role == moltbot.RoleAssistant && !a.conv.Messages[i+1].Incomplete {
			r := a.conv.Messages[i+1]
			m.answer(turnReply{res: &TurnResult{Message: r, Version: a.conv.Version, Completion: &moltbot.Completion{
				Content: r.Content, Served: refOf(r.Model), FinishReason: "stop"}}})
			return
		}
		if i == len(a.conv.Messages)-1 {
			a.run(c, m, chain)
			return
		}
	}
	user := moltbot.Message{ID: m.turnID, Role: moltbot.RoleUser, Content: m.content, Created: now}
	budget := a.rt.budget(m.opts.MaxTokens)
	a.conv.Messages = append(a.conv.Messages, user)
	_, _, ok := buildContext(a.conv.System, a.conv.Messages, budget)
	if !ok {
		a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
		need := inference.MessageTokens(&user)
		if a.conv.System != "" {
			need += inference.MessageTokens(&moltbot.Message{Content: a.conv.System})
		}
		m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: fmt.Sprintf(
			"the message is too long for the context: about %d tokens with the system prompt, and %d fit (conversations.max_context_tokens less room for the reply)",
			need, budget)}})
		return
	}
	a.conv.Version++
	a.conv.Updated = now
	if err := a.persist(); err != nil {
		a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
		a.conv.Version--
		m.answer(turnReply{err: err})
		return
	}
	a.replicated(func(error) {}) // the user message: copied without waiting
	a.run(c, m, chain)
}

// findTurn returns the index of the user message of turn id, or -1. Only
// the last few messages are searched: a retry follows its first attempt.
func (a *conversation) findTurn(id string) int {
	if id == "" {
		return -1
	}
	for i := len(a.conv.Messages) - 1; i >= 0 && i >= len(a.conv.Messages)-4; i-- {
		if m := &a.conv.Messages[i]; m.Role == moltbot.RoleUser && m.ID == id {
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
	msgs, dropped, _ := buildContext(a.conv.System, a.conv.Messages, a.rt.budget(m.opts.MaxTokens))
	if dropped > 0 {
		a.rt.met.Counter(metrics.ContextTrimmed).Add(dropped)
	}
	ctx, cancel := context.WithTimeout(m.ctx, a.rt.requestTimeout)
	a.running, a.cancelRun = m, cancel
	self, root, rt := c.Self(), a.rt.system.Root, a.rt
	go func() {
		comp, err := rt.router.Chat(ctx, chain, msgs, m.opts, m.fn, m.visible)
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
	a.current = m // in hand until answered: a panic below answers it
	a.lastActive = time.Now()
	switch {
	case a.conv == nil:
		a.rt.met.Inc(metrics.ConversationTurns, "deleted")
		m.answer(turnReply{err: moltbot.Errorf(moltbot.ENotFound, "conversation %q was deleted during the turn", a.id)})
	case d.err != nil:
		// The user message stays. If the client saw part of a reply, that
		// part is stored, marked incomplete: the conversation holds what the
		// user saw, nothing more.
		a.rt.met.Inc(metrics.ConversationTurns, "error")
		if d.comp != nil && d.comp.Content != "" && m.visible {
			part := moltbot.Message{ID: m.turnID + ":a", Role: moltbot.RoleAssistant, Content: d.comp.Content, Model: d.comp.Served.String(),
				Created: time.Now().UnixMilli(), Incomplete: true}
			a.conv.Messages = append(a.conv.Messages, part)
			a.conv.Version++
			a.conv.Updated = part.Created
			if err := a.persist(); err != nil {
				a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
				a.conv.Version--
			}
		}
		m.answer(turnReply{err: d.err})
	default:
		asst := moltbot.Message{ID: m.turnID + ":a", Role: moltbot.RoleAssistant, Content: d.comp.Content, Model: d.comp.Served.String(), Created: time.Now().UnixMilli()}
		a.conv.Messages = append(a.conv.Messages, asst)
		a.conv.Version++
		a.conv.Updated = asst.Created
		if err := a.persist(); err != nil {
			a.conv.Messages = a.conv.Messages[:len(a.conv.Messages)-1]
			a.conv.Version--
			a.rt.met.Inc(metrics.ConversationTurns, "error")
			m.answer(turnReply{err: err})
			break
		}
		a.rt.met.Inc(metrics.ConversationTurns, "ok")
		res := &TurnResult{Message: asst, Completion: d.comp, Version: a.conv.Version}
		// Acknowledged only once the replicas hold the reply too.
		a.replicated(func(err error) {
			if errors.Is(err, errStale) {
				m.answer(turnReply{err: movedError()})
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

// handoffCheck asks a conversation whether it still belongs here.
type handoffCheck struct{}

// handedOff: the new owner has the conversation; stop.
type handedOff struct{}

func errNil(err error) error {
	if errors.Is(err, errStale) {
		return movedError()
	}
	return nil
}

func copyConv(c *moltbot.Conversation) *moltbot.Conversation {
	out := *c
	out.Messages = append([]moltbot.Message(nil), c.Messages...)
	return &out
}
