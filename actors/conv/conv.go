// Package conv runs moltbot's conversations as actors: a manager
// ("conversations") that owns one child actor per conversation id
// (<tenant>/<id>), and the conversation actors themselves.
//
// The manager spawns a child on demand (it loads its snapshot in Started),
// routes every message to it and passivates it when idle, buffering
// messages while a child stops so that none reaches a dead mailbox. A
// conversation actor holds the context, runs one turn at a time (the rest
// wait in a bounded queue), persists the user message (synced) before
// asking a model and the reply (synced) before answering the caller. Every
// request gets exactly one answer, the one whose handling made the actor
// panic included.
//
// The package sees the model chain through Router (actors/route) and the
// cluster through Cluster (the cluster link in actors): a conversation
// asks whether it is still owned here, acquires the newest copy when it
// becomes the owner, and copies each change to its replicas.
package conv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// Router is the model chain as a turn sees it: the turn pipeline's stages
// around the failover router (actors' pipeline).
type Router interface {
	// Resolve turns a requested model name into the chain to try.
	Resolve(model string) ([]moltbot.ModelRef, error)
	// Chat runs the turn (t.Chain, t.Messages, ...), streaming to fn.
	Chat(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error)
}

// Cluster is what a conversation needs of the cluster link. Until the node
// is attached to a membership (and always when it runs alone) Clustered is
// false and nothing else is asked.
type Cluster interface {
	// Clustered reports whether the node routes by a membership.
	Clustered() bool
	// IsOwner reports whether this node owns the conversation now.
	IsOwner(tenant, id string) bool
	// Acquire, as the conversation's new owner, asks the other holders to
	// stop serving it and returns the newest copy they hold, or nil. It
	// blocks (the actor's Started calls it).
	Acquire(tenant, id string) *moltbot.Conversation
	// ReplicaTargets are the nodes besides this one that hold copies.
	ReplicaTargets(tenant, id string) []cluster.Node
	// Replicate copies c to targets (with handoff: to its new owner and
	// replicas) and waits for their acks; ErrStale when a newer owner
	// fenced this node off. It blocks: call it from a goroutine.
	Replicate(c *moltbot.Conversation, targets []cluster.Node, handoff bool) error
}

// Config starts a Manager.
type Config struct {
	Store   storage.Store
	Metrics *metrics.Registry
	Log     *slog.Logger
	Router  Router
	Cluster Cluster

	// IdleTimeout passivates a conversation idle this long.
	IdleTimeout time.Duration
	// MaxContextTokens bounds the context sent to a model.
	MaxContextTokens int
	// Summary shapes the summaries of what no longer fits the context
	// (summary.go); Models is what makes them: the failover router,
	// without the turn pipeline's stages. Without Models, no summaries.
	Summary SummaryConfig
	Models  Models
	// MaxQueuedTurns bounds turns waiting in one conversation.
	MaxQueuedTurns int
	// RequestTimeout bounds one turn.
	RequestTimeout time.Duration
	// Supervisor restarts a crashed conversation actor (with backoff:
	// messages wait in its suspended mailbox meanwhile).
	Supervisor actor.SupervisorStrategy
	// Base ends every turn when canceled (the runtime's shutdown).
	Base context.Context
	// Deliver sends outbox messages to their destinations (nil: none are
	// sent; they wait in the outbox). DeliverBackoff is the first retry's
	// wait (1 s), doubling to 5 min; MaxDeliveries bounds the deliveries
	// in flight on the node (16).
	Deliver        Deliverer
	DeliverBackoff time.Duration
	MaxDeliveries  int
	// KeepUnpacked keeps idle conversations in their working form instead
	// of packed (packed.go): more memory, no decode per message. For
	// measurements.
	KeepUnpacked bool
	// Bots finds the bot of a conversation (Conversation.Bot) on each of
	// its turns: its chain and skills as the config says now. Nil: no
	// bots (a conversation of one cannot take a turn).
	Bots moltbot.Bots
}

// TurnResult is a finished turn: the stored assistant message and how it was made.
type TurnResult = moltbot.TurnResult

// ExternalTurn is the prefix of the turn id of a message that came with an
// external id (moltbot.TurnInput.ExternalID): its user message's id is the
// prefix and the external id, and a retry is looked for in the whole
// conversation, not only in its last messages.
const ExternalTurn = moltbot.ExternalIDPrefix

var (
	// ErrMoved: this node is not (or no longer) the conversation's owner.
	ErrMoved = errors.New("actors: the conversation is owned by another node")
	// ErrStale: a replica holds a newer epoch: this node's write is fenced
	// off (Cluster.Replicate returns it).
	ErrStale = errors.New("actors: a newer owner exists (fenced write)")
)

// Moved is the error for a request that must go to another node: the
// conversation moved (retriable, wraps ErrMoved).
func Moved() error {
	return &moltbot.Error{Code: moltbot.EMoved, Message: "the conversation moved to another node; retry", RetryAfter: time.Second, Err: ErrMoved}
}

// deps is what the manager and every conversation actor share.
type deps struct {
	store          storage.Store
	met            *metrics.Registry
	log            *slog.Logger
	router         Router
	cluster        Cluster
	root           *actor.RootContext
	idle, tick     time.Duration
	maxContext     int
	summary        SummaryConfig
	models         Models
	maxQueued      int
	requestTimeout time.Duration
	hub            *Hub
	deliver        Deliverer
	deliverBase    time.Duration
	deliverSlots   chan struct{}
	base           context.Context
	bots           moltbot.Bots
	unpacked       bool // Config.KeepUnpacked

	deliverMu      sync.Mutex
	deliverStopped bool           // StopDeliveries was called
	deliveries     sync.WaitGroup // in flight

	// props is every conversation actor's (see named); carry holds a
	// crashed incarnation's convKept for the next, by actor id.
	props *actor.Props
	carry sync.Map

	epoch time.Time // conversations' lastActive count from here (since)
	// manager is the manager's PID: its children send it releaseMsg and
	// childStopped.
	manager *actor.PID
}

// managerName is the manager's actor name; its children's names are
// under it: managerName/<tenant>/<id>.
const managerName = "conversations"

// since is the time since the manager started: a conversation's last
// activity in 8 bytes rather than a time.Time's 24.
func (d *deps) since() time.Duration { return time.Since(d.epoch) }

// budget is the context size left for the prompt when maxTokens are kept for the reply.
func (d *deps) budget(maxTokens int) int {
	reserve := maxTokens
	if reserve <= 0 {
		reserve = min(1024, d.maxContext/4)
	}
	return max(d.maxContext-reserve, d.maxContext/4)
}

// named is a conversation actor as the manager spawns it: one Props for
// every conversation (deps.props), and the actor learns which one it is
// from its name (the manager spawns it as conversations/<tenant>/<id>) when it
// starts. What must survive its restarts (convKept) is handed from one
// incarnation to the next through deps.carry. Before, every conversation
// had Props of its own, a closure and a convKept beside the actor: about
// 300 B of each active conversation's memory.
type named struct {
	conversation
}

func newNamed(d *deps) actor.Actor {
	return &named{conversation: conversation{d: d}}
}

func (n *named) Receive(c actor.Context) {
	switch c.Message().(type) {
	case *actor.Started: // every incarnation's first message
		self := c.Self().Id
		n.tenant, n.id, _ = strings.Cut(strings.TrimPrefix(self, managerName+"/"), "/")
		n.own = copies{a: &n.conversation}
		if k, ok := n.d.carry.LoadAndDelete(self); ok {
			n.kept = k.(convKept)
		}
	case *actor.Restarting: // to the incarnation that crashed
		n.conversation.Receive(c)
		n.d.carry.Store(c.Self().Id, n.kept)
		return
	case *actor.Stopped:
		n.d.carry.Delete(c.Self().Id) // stopped instead of restarted
		// Its name is free (protoactor removed it from the registry before
		// Stopped): the manager may spawn a successor.
		c.Send(n.d.manager, &childStopped{id: c.Self().Id})
	}
	n.conversation.Receive(c)
}

// Manager is this node's conversations: the manager actor and the calls
// that reach a conversation through it. Its methods are safe for
// concurrent use.
type Manager struct {
	d      *deps
	pid    *actor.PID
	active atomic.Int64
	base   context.Context
}

// Start spawns the manager "conversations" in system.
func Start(system *actor.ActorSystem, cfg Config) (*Manager, error) {
	d := &deps{store: cfg.Store, met: cfg.Metrics, log: cfg.Log, router: cfg.Router, cluster: cfg.Cluster, root: system.Root,
		idle: cfg.IdleTimeout, maxContext: cfg.MaxContextTokens, summary: cfg.Summary, models: cfg.Models, maxQueued: cfg.MaxQueuedTurns,
		requestTimeout: cfg.RequestTimeout, hub: &Hub{}, deliver: cfg.Deliver, deliverBase: cfg.DeliverBackoff, base: cfg.Base, bots: cfg.Bots,
		unpacked: cfg.KeepUnpacked, epoch: time.Now()}
	if d.models == nil {
		d.summary.Off = true
	}
	if d.base == nil {
		d.base = context.Background()
	}
	d.deliverSlots = make(chan struct{}, max(cfg.MaxDeliveries, 1))
	if cfg.MaxDeliveries <= 0 {
		d.deliverSlots = make(chan struct{}, 16)
	}
	d.tick = min(max(cfg.IdleTimeout/4, 5*time.Millisecond), 30*time.Second)
	// A mailbox that holds nothing while empty (mailbox.go), where the
	// default's ring buffer sets aside room for ten messages and the
	// lock-free one keeps two queues and their nodes.
	//
	// The children are spawned from the root, named under the manager
	// ("conversations/<tenant>/<id>"), supervised by a guardian with the
	// manager's strategy, and tell the manager themselves when they stop
	// (childStopped): as the manager's children in protoactor's sense,
	// each cost a slot in the manager's set of children (a map and a
	// slice: ~90 B an active conversation) that nothing here reads.
	opts := []actor.PropsOption{actor.WithMailbox(newMailbox)}
	if cfg.Supervisor != nil {
		opts = append(opts, actor.WithGuardian(cfg.Supervisor))
	}
	d.props = actor.PropsFromProducer(func() actor.Actor { return newNamed(d) }, opts...)
	d.manager = system.NewLocalPID(managerName)
	m := &Manager{d: d, base: cfg.Base}
	props := actor.PropsFromProducer(func() actor.Actor { return &managerActor{m: m} })
	pid, err := system.Root.SpawnNamed(props, managerName)
	if err != nil {
		return nil, fmt.Errorf("actors: spawn conversations: %w", err)
	}
	m.pid = pid
	d.met.Gauge("moltbot_conversations_active", func() float64 { return float64(m.active.Load()) })
	return m, nil
}

// Hub is this node's subscriptions to its conversations' events.
func (m *Manager) Hub() *Hub { return m.d.hub }

// Create starts a conversation and stores it (synced) before returning.
func (m *Manager) Create(ctx context.Context, tenant string, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	msg := &createMsg{tenant: tenant, id: o.ID, system: o.System, model: o.Model, user: o.User, bot: o.Bot, reply: make(chan convReply, 1)}
	m.d.root.Send(m.pid, msg)
	return waitConv(ctx, msg.reply)
}

// Get returns a copy of a conversation.
func (m *Manager) Get(ctx context.Context, tenant, id string) (*moltbot.Conversation, error) {
	msg := &getMsg{tenant: tenant, id: id, reply: make(chan convReply, 1)}
	m.d.root.Send(m.pid, msg)
	return waitConv(ctx, msg.reply)
}

// Delete removes a conversation; a running turn is canceled.
func (m *Manager) Delete(ctx context.Context, tenant, id, asUser string) error {
	msg := &deleteMsg{tenant: tenant, id: id, asUser: asUser, reply: make(chan error, 1)}
	m.d.root.Send(m.pid, msg)
	select {
	case err := <-msg.reply:
		return err
	case <-ctx.Done():
		return CtxError(ctx)
	}
}

// Turn runs turn turnID on this node's conversation actor, streaming the
// reply to fn (nil: the caller does not stream). It ends with ctx or with
// Base; a caller that gives up waits AbandonGrace for the answer.
func (m *Manager) Turn(ctx context.Context, tenant, id, turnID string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*TurnResult, error) {
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	// The turn ends with the caller's context or with Shutdown.
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(m.base, cancel)
	defer stopOnShutdown()

	g := NewGuard(fn)
	msg := &turnMsg{tenant: tenant, id: id, turnID: turnID, ctx: tctx, content: in.Content, parts: in.Parts, results: in.ToolResults, opts: in.Options, replyTo: in.ReplyTo, asUser: in.AsUser,
		handoff: in.Handoff, fn: g.Call, visible: visible, reply: make(chan turnReply, 1)}
	m.d.root.Send(m.pid, msg)
	select {
	case r := <-msg.reply:
		g.Close()
		return r.res, r.err
	case <-tctx.Done():
	}
	m.Cancel(tenant, id, msg.turnID)
	t := time.NewTimer(AbandonGrace)
	defer t.Stop()
	select {
	case r := <-msg.reply:
		g.Close()
		if r.err == nil {
			return r.res, nil // it finished just as we gave up: it is stored
		}
	case <-t.C:
		g.Close()
	}
	if m.base.Err() != nil {
		return nil, &moltbot.Error{Code: moltbot.EShutdown, Message: "the node is shutting down", RetryAfter: time.Second}
	}
	return nil, CtxError(ctx)
}

// Cancel cancels turn turnID of a conversation, running or queued.
func (m *Manager) Cancel(tenant, id, turnID string) {
	m.d.root.Send(m.pid, &cancelMsg{tenant: tenant, id: id, turnID: turnID})
}

// Relinquish stops serving a conversation here (another node takes it
// over): the returned channel closes once it stopped, after its running
// turn, or at once if it is not active here.
func (m *Manager) Relinquish(tenant, id string) <-chan struct{} {
	done := make(chan struct{})
	m.d.root.Send(m.pid, &relinquishMsg{tenant: tenant, id: id, done: done})
	return done
}

// RingChanged tells every active conversation to check that it still
// belongs here; those that do not hand themselves to their new owner.
func (m *Manager) RingChanged() { m.d.root.Send(m.pid, &ringMsg{}) }

// Active is the number of conversation actors in memory.
func (m *Manager) Active() int64 { return m.active.Load() }

// Stop poisons the manager: it finishes what is in its mailbox and stops
// its children.
func (m *Manager) Stop() { m.d.root.Poison(m.pid) }

func waitConv(ctx context.Context, ch chan convReply) (*moltbot.Conversation, error) {
	select {
	case r := <-ch:
		return r.conv, r.err
	case <-ctx.Done():
		return nil, CtxError(ctx)
	}
}

func copyConv(c *moltbot.Conversation) *moltbot.Conversation {
	out := *c
	out.Messages = append([]moltbot.Message(nil), c.Messages...)
	// The actor changes its outbox's entries in place (attempts, errors).
	out.Outbox = append([]moltbot.Delivery(nil), c.Outbox...)
	if len(out.Outbox) == 0 {
		out.Outbox = nil
	}
	return &out
}
