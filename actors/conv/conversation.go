package conv

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unique"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// conversation is the actor of one conversation. Its state is the
// conversation itself; every change is persisted (synced) before the caller
// hears of it, so a restart or passivation loses nothing acknowledged.
// Where the copies go (the store, the replicas, a new owner) is own's
// business (copies.go); running a turn is turn.go's.
type conversation struct {
	d          *deps
	tenant, id string
	conv       *moltbot.Conversation // nil: no such conversation (yet, or deleted), or packed
	packed     []byte                // the conversation while idle (packed.go), or nil
	system     unique.Handle[string] // its system prompt while packed
	tomb       *moltbot.Conversation // the tombstone, when deleted (cluster mode)
	own        copies                // the store and the replicas; whether it moved
	yield      []*relinquishMsg      // relinquish requests waiting for the running turn
	loadErr    error
	kept       convKept // survives restarts (named carries it)
	// current is the request in hand: being handled, not yet answered nor
	// handed to a goroutine that answers it. A panic answers it.
	current    request
	running    *turnMsg
	cancelRun  context.CancelFunc
	queue      []*turnMsg
	lastActive time.Duration // deps.since
	out        outbox        // deliveries in flight, the next attempt's timer
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
	if unpacks(c.Message()) {
		unpack(a)
	}
	a.receive(c)
	a.current = nil
	pack(a)
}

// crashed answers what the actor holds when it panics.
func (a *conversation) crashed(p any) {
	a.d.log.Error("conversation crashed", "conversation", a.tenant+"/"+a.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
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
		a.lastActive = a.d.since()
		conv, err := a.d.store.Get(a.tenant, a.id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			conv = nil
		case err != nil:
			a.loadErr = &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not load the conversation", Err: err}
			return
		}
		if a.d.cluster.Clustered() {
			conv = a.own.activate(conv)
		}
		if conv != nil && conv.Deleted {
			a.tomb, conv = conv, nil
		}
		if conv != nil {
			a.conv = conv
			a.d.met.Inc(metrics.Activations, "snapshot")
			a.out.pump(a, c) // what waits since before a restart or a move
		}
	case *actor.Restarting:
		// crashed answered everything already; this is the backstop.
		a.failWaiting(a.crashError())
	case *actor.Stopping:
		if a.running != nil {
			a.cancelRun()
		}
		a.out.stop()
	case *createMsg:
		a.kept.processed++
		if a.own.moved() {
			m.answer(convReply{err: Moved()})
			a.release(c)
			return
		}
		a.create(c, m)
	case *getMsg:
		a.kept.processed++
		switch {
		case a.own.moved():
			m.answer(convReply{err: Moved()})
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
		if a.own.moved() {
			m.answer(Moved())
			a.release(c)
			return
		}
		a.delete(c, m)
	case *turnMsg:
		a.kept.processed++
		a.lastActive = a.d.since()
		switch {
		case a.own.moved():
			m.answer(turnReply{err: Moved()})
			a.release(c)
		case a.loadErr != nil:
			m.answer(turnReply{err: a.loadErr})
		case a.conv == nil:
			m.answer(turnReply{err: a.notFound()})
			a.release(c)
		case m.asUser != "" && a.conv.User != m.asUser:
			m.answer(turnReply{err: a.notFound()}) // another user's: it does not exist for this one
		case a.running != nil:
			if a.redelivery(m) {
				// Another delivery of a message whose turn is running or
				// waiting: it waits too (past the queue's bound, up to
				// maxRedeliveries) and then gets the same reply.
				a.queue = append(a.queue, m)
				return
			}
			if len(a.queue) >= a.d.maxQueued {
				a.d.met.Inc(metrics.ConversationsBusy)
				m.answer(turnReply{err: &moltbot.Error{Code: moltbot.EBusy, RetryAfter: time.Second,
					Message: fmt.Sprintf("conversation %q is busy: a turn is running and %d wait", a.id, len(a.queue))}})
				return
			}
			a.queue = append(a.queue, m)
		default:
			a.start(c, m)
		}
	case *retainMsg:
		a.kept.processed++
		m.apply(a, c)
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
		if a.own.handoffDue && a.running == nil && !a.own.handingOff {
			a.own.handoff(a.conv, c.Self())
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
		if a.d.cluster.Clustered() && a.conv != nil && !a.own.handingOff && !a.d.cluster.IsOwner(a.tenant, a.id) {
			if a.running != nil {
				a.own.handoffDue = true
			} else {
				a.own.handoff(a.conv, c.Self())
			}
		}
	case *handedOff:
		a.conv = nil
		for _, q := range a.queue {
			q.answer(turnReply{err: Moved()})
		}
		a.queue = nil
		a.release(c)
	case *passivateMsg:
		a.kept.processed++
		// A conversation with deliveries to make stays: it drives them.
		if (a.conv == nil || a.d.since()-a.lastActive >= a.d.idle) && !a.out.pending(a) {
			a.release(c)
		}
	case *wakeMsg:
		a.kept.processed++
		a.out.pump(a, c)
	case *outboxWake:
		a.out.pump(a, c)
	case *deliveryDone:
		a.out.done(a, c, m)
	}
}

// release asks the manager to stop this actor if nothing is in progress.
func (a *conversation) release(c actor.Context) {
	if a.running != nil || len(a.queue) > 0 {
		return
	}
	c.Send(a.d.manager, &releaseMsg{key: a.tenant + "/" + a.id, pid: c.Self().Id, processed: a.kept.processed})
}

// stepDown stops serving: another node owns the conversation now (it
// acquired it, or fenced this node's write). Everything acknowledged is in
// the store; waiting turns are told to retry; the actor asks to stop.
func (a *conversation) stepDown(c actor.Context) {
	a.own.handingOff = true
	for _, q := range a.queue {
		q.answer(turnReply{err: Moved()})
	}
	a.queue = nil
	a.release(c)
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
	a.conv = &moltbot.Conversation{Tenant: a.tenant, ID: a.id, System: m.system, Model: m.model, User: m.user, Bot: m.bot, Version: 1, Epoch: 1, Created: now, Updated: now}
	if a.tomb != nil { // recreated after a delete: stay ahead of the tombstone
		a.conv.Version, a.conv.Epoch = a.tomb.Version+1, a.tomb.Epoch
	}
	if err := a.own.persist(a.conv); err != nil {
		a.conv = nil
		m.answer(convReply{err: err})
		a.release(c)
		return
	}
	a.tomb = nil
	a.d.met.Inc(metrics.Activations, "new")
	out := copyConv(a.conv)
	a.own.replicated(a.conv, func(err error) {
		if errors.Is(err, ErrStale) {
			m.answer(convReply{err: Moved()})
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
	if a.conv == nil || m.asUser != "" && a.conv.User != m.asUser {
		m.answer(a.notFound()) // another user's does not exist for this one
		a.release(c)
		return
	}
	if a.d.cluster.Clustered() {
		// A tombstone, replicated: a stale copy elsewhere cannot bring it back.
		tomb := &moltbot.Conversation{Tenant: a.tenant, ID: a.id, Version: a.conv.Version + 1, Epoch: a.conv.Epoch, Deleted: true,
			Created: a.conv.Created, Updated: time.Now().UnixMilli()}
		if err := a.d.store.Put(tomb, true); err != nil {
			m.answer(&moltbot.Error{Code: moltbot.EUnavailable, Message: "could not delete the conversation", Err: err})
			return
		}
		a.tomb = tomb
		targets, cl, done := a.d.cluster.ReplicaTargets(a.tenant, a.id), a.d.cluster, m
		go func() { done.answer(errNil(cl.Replicate(tomb, targets, false))) }() // answered after replication
		a.current, m = nil, nil
	} else if err := a.d.store.Delete(a.tenant, a.id, true); err != nil {
		m.answer(&moltbot.Error{Code: moltbot.EUnavailable, Message: "could not delete the conversation", Err: err})
		return
	}
	a.conv = nil
	a.d.hub.close(a.tenant, a.id, moltbot.Errorf(moltbot.ENotFound, "conversation %q was deleted", a.id))
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

func errNil(err error) error {
	if errors.Is(err, ErrStale) {
		return Moved()
	}
	return nil
}
