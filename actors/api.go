package actors

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/storage"
)

// The runtime's calls: conversations (routed to their owner in a cluster)
// and stateless completions (through the router, on this node).

// CreateOptions shape a new conversation.
type CreateOptions = moltbot.NewConversation

// TurnResult is a finished turn: the stored assistant message and how it was made.
type TurnResult = conv.TurnResult

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random conversation id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "c_" + idEncoding.EncodeToString(b[:])
}

func validIDs(tenant, id string) error {
	if !storage.ValidID(tenant) {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "tenant", Message: fmt.Sprintf("invalid tenant %q", tenant)}
	}
	if !storage.ValidID(id) {
		return &moltbot.Error{Code: moltbot.EInvalid, Param: "id", Message: fmt.Sprintf("invalid conversation id %q: use 1-128 letters, digits, '-', '_', '.' or ':'", id)}
	}
	return nil
}

// turnIDs makes turn ids unique across nodes and restarts: a random prefix
// per runtime, then a counter.
type turnIDs struct {
	prefix string
	n      atomic.Uint64
}

func newTurnIDs() *turnIDs {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return &turnIDs{prefix: "t" + idEncoding.EncodeToString(rnd[:]) + "."}
}

func (t *turnIDs) next() string { return t.prefix + strconv.FormatUint(t.n.Add(1), 36) }

// Create starts a conversation and stores it (synced) before returning.
func (rt *Runtime) Create(ctx context.Context, tenant string, o CreateOptions) (*moltbot.Conversation, error) {
	if err := rt.life.open(); err != nil {
		return nil, err
	}
	if o.ID == "" {
		o.ID = NewID()
	}
	if err := validIDs(tenant, o.ID); err != nil {
		return nil, err
	}
	if o.Model != "" {
		if _, err := rt.router.Resolve(o.Model); err != nil {
			return nil, err
		}
	}
	return rt.link.fwd.conv(ctx, tenant, o.ID, func() (*moltbot.Conversation, error) {
		return rt.link.own.withOwner(rt.convs.Create(ctx, tenant, o))
	}, &pb.ConvRequest{Op: pb.ConvRequest_CREATE, Tenant: tenant, Id: o.ID, System: o.System, Model: o.Model, User: o.User, Bot: o.Bot})
}

// Get returns a copy of a conversation.
func (rt *Runtime) Get(ctx context.Context, tenant, id string) (*moltbot.Conversation, error) {
	if err := rt.life.open(); err != nil {
		return nil, err
	}
	if err := validIDs(tenant, id); err != nil {
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	return rt.link.fwd.conv(ctx, tenant, id, func() (*moltbot.Conversation, error) {
		return rt.link.own.withOwner(rt.convs.Get(ctx, tenant, id))
	}, &pb.ConvRequest{Op: pb.ConvRequest_GET, Tenant: tenant, Id: id})
}

// Delete removes a conversation; a running turn is canceled. asUser, when
// set, is the end user the conversation must belong to (another user's is
// not found), checked by the owner in the same step as the delete.
func (rt *Runtime) Delete(ctx context.Context, tenant, id, asUser string) error {
	if err := rt.life.open(); err != nil {
		return err
	}
	if err := validIDs(tenant, id); err != nil {
		return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	_, err := rt.link.fwd.conv(ctx, tenant, id, func() (*moltbot.Conversation, error) { return nil, rt.convs.Delete(ctx, tenant, id, asUser) },
		&pb.ConvRequest{Op: pb.ConvRequest_DELETE, Tenant: tenant, Id: id, User: asUser})
	return err
}

// Turn adds a user message to a conversation and runs one model turn,
// streaming the reply to fn (which may be nil). The user message is stored
// before the model is asked and the reply before Turn returns. In a cluster
// the turn runs on the conversation's owner; if the owner moves or dies
// before any token reached fn, the turn is retried on the new owner with the
// same turn id, so it is never answered twice into the context. A message
// with an external id has a turn id made of it: delivered again (a
// channel's or a client's retry, on any node, at any later time), it runs
// no second turn and gets the stored reply (TurnResult.Replayed).
func (rt *Runtime) Turn(ctx context.Context, tenant, id string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*TurnResult, error) {
	content := in.Content
	if err := rt.life.open(); err != nil {
		return nil, err
	}
	if err := validIDs(tenant, id); err != nil {
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	if content == "" && len(in.Parts) == 0 && len(in.ToolResults) == 0 && in.Handoff == nil {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: "content must not be empty"}
	}
	turnID := rt.turnIDs.next()
	if in.ExternalID != "" {
		if len(in.ExternalID) > moltbot.MaxExternalIDLen {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "external_id", Message: fmt.Sprintf("an external message id is at most %d bytes", moltbot.MaxExternalIDLen)}
		}
		turnID = conv.ExternalTurn + in.ExternalID
	}
	if in.ReplyTo != nil && (in.ReplyTo.Channel == "" || len(in.ReplyTo.Channel) > 64 || len(in.ReplyTo.Address) > 1024) {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "reply_to", Message: "a reply destination needs a channel (at most 64 bytes) and an address of at most 1024 bytes"}
	}
	if !rt.link.clustered() {
		return rt.convs.Turn(ctx, tenant, id, turnID, in, fn)
	}
	return rt.link.fwd.turn(ctx, tenant, id, turnID, in, fn)
}

// Complete runs a stateless chat completion through the router.
func (rt *Runtime) Complete(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if err := rt.life.open(); err != nil {
		return nil, err
	}
	p := moltbot.PrincipalOf(ctx)
	var bot *moltbot.Bot
	if p != nil && p.Bot != "" {
		// A bot's caller: the chat service found the bot; it may be gone
		// since (a reload), and then the call is refused, not widened.
		if rt.bots != nil {
			bot = rt.bots.Bot(p.Tenant, p.Bot)
		}
		if bot == nil {
			return nil, moltbot.Errorf(moltbot.EForbidden, "bot %q is not configured for tenant %q", p.Bot, p.Tenant)
		}
	}
	var chain []moltbot.ModelRef
	var err error
	if bot == nil {
		chain, err = rt.router.Resolve(opts.Model)
	} else {
		chain, err = conv.BotChain(rt.router, bot, opts.Model)
	}
	if err != nil {
		return nil, err
	}
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	ctx, cancel := context.WithTimeout(ctx, rt.requestTimeout)
	defer cancel()
	stop := context.AfterFunc(rt.life.base, cancel)
	defer stop()
	if rt.pipe.idleStateless() {
		// No stage takes a stateless turn now: the router alone, as
		// pipeline.Chat would run it, without a Turn to build.
		return rt.pipe.router.Chat(ctx, chain, msgs, opts, fn, visible)
	}
	t := &moltbot.Turn{Messages: msgs, Options: opts, Chain: chain, Visible: visible, Bot: bot}
	if p != nil {
		t.Tenant = p.Space
		if p.UserBound {
			// An end user's own call: its output cache entries are its
			// own (cache.KeyOf).
			t.User = p.User
		}
	}
	comp, err := rt.pipe.Chat(ctx, t, fn)
	if err != nil {
		return nil, err
	}
	return comp, nil
}

// ResolveModel checks that a model name can be served (for early 404s).
func (rt *Runtime) ResolveModel(model string) error {
	_, err := rt.router.Resolve(model)
	return err
}

// lifetime is the runtime's: Shutdown cancels base, which ends every turn
// and every goroutine the runtime and its link started (counted in wg),
// and waits for them.
type lifetime struct {
	base   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// open returns nil unless the runtime is shutting down.
func (l *lifetime) open() error {
	if l.closed.Load() {
		return &moltbot.Error{Code: moltbot.EShutdown, Message: "the node is shutting down", RetryAfter: time.Second}
	}
	return nil
}
