package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/skills/handoff"
	"github.com/moltbot/moltbot/storage"
)

// The hand-off to a person (skills/handoff), wired: the stage first of
// the turn pipeline (and after the model, for the counted triggers), the
// queue's index (a part of the cluster's shared state, tag 0x02, kept in
// storage's handoff namespace), the ticket webhook as the outbox's
// deliverer for handoff.ticket, and the timer that expires queued
// conversations on their owner.

// handoffTag is the hand-off queue's part of the cluster's shared state.
const handoffTag = 0x02

// handoffParts is what startHandoff makes.
type handoffParts struct {
	stage *handoff.Stage
	index *handoff.Index
	rt    *atomic.Pointer[actors.Runtime]
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	base    context.Context // start's: the timer runs under it once needed
	stop    context.CancelFunc
	stopped bool
	wg      sync.WaitGroup
}

// newHandoff builds the stage and the index (loaded from storage, shared
// with the cluster).
func (n *Node) newHandoff(cfg *configs.Config, store storage.Namespaces, rt *atomic.Pointer[actors.Runtime]) (*handoffParts, error) {
	index := handoff.NewIndex()
	if err := index.Load(store.Namespace(storage.Handoff)); err != nil {
		return nil, fmt.Errorf("handoff: reading the queue's index: %w", err)
	}
	publish, err := n.sharePart(handoffTag, index)
	if err != nil {
		return nil, err
	}
	index.Publish = publish
	stage, err := handoff.NewStage(cfg.Handoff(), index, n.Log)
	if err != nil {
		if l := cfg.Line("handoff"); l > 0 {
			return nil, fmt.Errorf("%s:%d: %w", cfg.File, l, err)
		}
		return nil, err
	}
	every := time.Second
	if t := stage.Config().QueueTimeout / 10; t < every {
		every = max(t, 50*time.Millisecond)
	}
	h := &handoffParts{stage: stage, index: index, rt: rt, log: n.Log, every: every}
	index.Added = h.run
	return h, nil
}

// List implements manage.Handoff.
func (h *handoffParts) List(space string) []handoff.Entry { return h.index.List(space) }

// Operate implements manage.Handoff: the operation runs as a turn on the
// conversation's owner.
func (h *handoffParts) Operate(ctx context.Context, space, id string, in moltbot.TurnInput) (*moltbot.TurnResult, error) {
	rt := h.rt.Load()
	if rt == nil {
		return nil, &moltbot.Error{Code: moltbot.EUnavailable, Message: "the node is starting", RetryAfter: time.Second}
	}
	return rt.Turn(ctx, space, id, in, nil)
}

// deliverer is the outbox's: hand-off tickets, and the adapters the node
// was given (Node.Channels), by channel.
func (n *Node) deliverer(cfg *configs.Config, rt *atomic.Pointer[actors.Runtime]) actors.Deliverer {
	return deliverMux{node: n, rt: rt, channels: n.Channels}
}

type deliverMux struct {
	node     *Node
	rt       *atomic.Pointer[actors.Runtime]
	channels map[string]actors.Deliverer
}

func (d deliverMux) Deliver(ctx context.Context, space, id string, to moltbot.Destination, m moltbot.Message) error {
	if to.Channel == moltbot.TicketChannel {
		// The webhook as the config says now (a reload may change it).
		hc := d.node.handoff.stage.Config()
		tickets := &handoff.Tickets{URL: hc.TicketURL, Secret: hc.TicketSecret, Get: func(ctx context.Context, space, id string) (*moltbot.Conversation, error) {
			r := d.rt.Load()
			if r == nil {
				return nil, moltbot.Errorf(moltbot.EUnavailable, "the node is starting")
			}
			return r.Get(ctx, space, id)
		}}
		return tickets.Deliver(ctx, space, id, to, m)
	}
	if c := d.channels[to.Channel]; c != nil {
		return c.Deliver(ctx, space, id, to, m)
	}
	if cs := d.node.chans; cs != nil && cs.Has(to.Channel) {
		return cs.Deliver(ctx, space, id, to, m) // the config's channels:
	}
	// Retried with backoff: the adapter may come with a restart.
	return fmt.Errorf("no adapter for channel %q on this node", to.Channel)
}

// start runs the queue's timer: every tick, the queued conversations
// this node owns whose deadline passed are expired, each by a turn on it
// (fenced by the epoch the index saw: a claim that came first wins).
//
// The timer's goroutine starts with the first entry of the index (now, or
// when a conversation is first handed off here or on a peer): a node that
// never hands off runs none (an idle goroutine's stack is scanned at every
// collection and its code counts in the node's idle RSS).
func (h *handoffParts) start(base context.Context) {
	h.mu.Lock()
	h.base = base
	h.mu.Unlock()
	if h.index.Len() > 0 {
		h.run()
	}
}

// run starts the timer, once, after start and before close.
func (h *handoffParts) run() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.base == nil || h.stop != nil || h.stopped {
		return
	}
	ctx, stop := context.WithCancel(h.base)
	h.stop = stop
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				h.expire(ctx, now)
			}
		}
	}()
}

// close stops the timer and waits for it.
func (h *handoffParts) close() {
	h.mu.Lock()
	h.stopped = true
	stop := h.stop
	h.mu.Unlock()
	if stop != nil {
		stop()
		h.wg.Wait()
	}
}

func (h *handoffParts) expire(ctx context.Context, now time.Time) {
	rt := h.rt.Load()
	if rt == nil {
		return
	}
	h.releaseIdle(ctx, rt, now)
	for _, e := range h.index.Expired(now) {
		if ctx.Err() != nil {
			return
		}
		if !actors.RetentionOf(rt).Owns(e.Space, e.Conversation) {
			continue // its owner expires it
		}
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := rt.Turn(tctx, e.Space, e.Conversation, moltbot.TurnInput{Handoff: &moltbot.HandoffOp{Op: moltbot.HandoffExpire, Epoch: e.Epoch}}, nil)
		cancel()
		switch moltbot.ErrorCode(err) {
		case "":
			h.log.Info("hand-off queue timed out: ticket left, the bot resumes", "conversation", e.Space+"/"+e.Conversation, "epoch", e.Epoch)
		case moltbot.EConflict, moltbot.ENotFound:
			// The index was behind the conversation (claimed, released, gone):
			// set it right from the conversation itself.
			h.refresh(ctx, rt, e)
		default:
			h.log.Warn("hand-off queue timeout failed; retried on the next tick", "conversation", e.Space+"/"+e.Conversation, "err", err)
		}
	}
}

// refresh puts the conversation's own hand-off state in the index.
func (h *handoffParts) refresh(ctx context.Context, rt *actors.Runtime, e handoff.Entry) {
	c, err := rt.Get(ctx, e.Space, e.Conversation)
	if moltbot.ErrorCode(err) == moltbot.ENotFound {
		h.index.Put(handoff.Entry{Space: e.Space, Conversation: e.Conversation, Owner: handoff.OwnerBot, Epoch: e.Epoch + 1})
		return
	}
	if err != nil {
		return
	}
	st, _, err := handoff.Decode(c.State[moltbot.HandoffStateName])
	if err != nil {
		return
	}
	h.index.Put(handoff.Entry{Space: e.Space, Conversation: e.Conversation, Owner: st.Owner, Epoch: st.Epoch, Agent: st.Agent,
		Reason: st.Reason, Since: st.Since, Deadline: st.Deadline, Last: e.Last})
}

// releaseIdle gives back to the bot the conversations this node owns
// whose agent went quiet for handoff.agent_timeout (fenced by the epoch
// the index saw, as an agent's release is).
func (h *handoffParts) releaseIdle(ctx context.Context, rt *actors.Runtime, now time.Time) {
	for _, e := range h.index.Idle(now, h.stage.Config().AgentTimeout) {
		if ctx.Err() != nil || !actors.RetentionOf(rt).Owns(e.Space, e.Conversation) {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := rt.Turn(tctx, e.Space, e.Conversation, moltbot.TurnInput{Handoff: &moltbot.HandoffOp{Op: moltbot.HandoffRelease, Epoch: e.Epoch}}, nil)
		cancel()
		switch moltbot.ErrorCode(err) {
		case "":
			h.log.Info("hand-off: the agent went quiet; the bot has the conversation again", "conversation", e.Space+"/"+e.Conversation, "agent", e.Agent)
		case moltbot.EConflict, moltbot.ENotFound:
			h.refresh(ctx, rt, e)
		default:
			h.log.Warn("hand-off: releasing an idle agent's conversation failed; retried on the next tick", "conversation", e.Space+"/"+e.Conversation, "err", err)
		}
	}
}

// handoffRuntime is the runtime as the chat service sees it: a
// conversation deleted through the API leaves the queue at once (a
// tombstone in the index, which the cluster's exchange carries).
type handoffRuntime struct {
	*actors.Runtime
	index *handoff.Index
}

func (r handoffRuntime) Delete(ctx context.Context, space, id, asUser string) error {
	err := r.Runtime.Delete(ctx, space, id, asUser)
	if err == nil {
		if e, ok := r.index.Get(space, id); ok && e.Owner != handoff.OwnerBot {
			r.index.Put(handoff.Entry{Space: space, Conversation: id, Owner: handoff.OwnerBot, Epoch: e.Epoch + 1})
		}
	}
	return err
}
