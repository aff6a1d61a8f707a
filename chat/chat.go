// Package chat is the transport-neutral chat service: every edge (the
// OpenAI-compatible API, the conversations API, and the channels and the
// console to come) asks it for turns on behalf of a moltbot.Principal, and
// reads the turn's events from a bounded Stream on its own goroutine.
//
// What a turn must pass lives here, once: validation of the message and
// options, the tenant's model allow-list (on every turn, including the
// model a conversation was created with), rate limits on every call that
// costs anything (a completion, a turn, creating a conversation), the
// tenant's quotas on what it stores (conversations, stored bytes: Quota),
// token charging, and the user-level view (a user-bound principal sees only the
// conversations it created). The edges translate wire formats and domain
// error codes; the runtime (actors) runs the turn.
package chat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Runtime runs turns and keeps conversations (*actors.Runtime).
type Runtime interface {
	Complete(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error)
	Create(ctx context.Context, space string, o moltbot.NewConversation) (*moltbot.Conversation, error)
	Get(ctx context.Context, space, id string) (*moltbot.Conversation, error)
	// Delete deletes a conversation; asUser, when set, is the end user it
	// must belong to (checked by its owner).
	Delete(ctx context.Context, space, id, asUser string) error
	Turn(ctx context.Context, space, id string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*moltbot.TurnResult, error)
	ResolveModel(model string) error
	Models() []moltbot.ModelInfo
	// Subscribe calls fn with a conversation's events until ctx ends.
	Subscribe(ctx context.Context, space, id string, fn func(moltbot.Event)) error
}

// Policy is what a tenant may spend (auth.Service).
type Policy interface {
	// ModelAllowed reports whether tenant may use model ("" = the chain).
	ModelAllowed(tenant, model string) bool
	// RestrictsModels reports whether tenant has a model allow-list.
	RestrictsModels(tenant string) bool
	// Allow admits one call of p, or says how long to wait.
	Allow(p *moltbot.Principal) (time.Duration, bool)
	// Charge counts tokens p's call used.
	Charge(p *moltbot.Principal, tokens int)
}

// Quota admits the calls that store data against the tenant's quotas
// (usage.Quotas): refused with moltbot.EQuota, before anything is done.
type Quota interface {
	// AdmitCreate admits a new conversation of p's; release is called
	// once the create returned, whatever its outcome.
	AdmitCreate(p *moltbot.Principal) (release func(), err error)
	// AdmitTurn admits a turn (it stores messages).
	AdmitTurn(p *moltbot.Principal) error
}

// Config configures the service.
type Config struct {
	// Quota admits creates and turns against the tenants' quotas on
	// conversations and stored bytes; nil: none.
	Quota Quota
	// MaxMessageBytes caps one message's content and a system prompt.
	MaxMessageBytes int
	// MaxImageBytes caps one image of a message (default 5 MiB); an edge's
	// body limit bounds them too.
	MaxImageBytes int
	// MaxMessages caps the messages of a stateless completion.
	MaxMessages int
	// EventBuffer is how many events of a streamed turn may wait for a slow
	// edge; past it the turn is canceled (ESlowClient).
	EventBuffer int
	// MaxSubscriptions bounds the subscriptions a space holds at once on
	// this node (each holds goroutines, a hub entry and, in a cluster, one
	// of the leases the owner keeps for this node, which every tenant
	// shares); past it Subscribe is ERateLimited.
	MaxSubscriptions int
	Metrics          *metrics.Registry
	Logger           *slog.Logger

	// Embedder embeds text for Embed (actors.Embeddings); nil: none.
	Embedder Embedder

	// Bots finds the bots principals are bound to (bots.go); nil: none
	// (a bot-bound principal is then refused).
	Bots moltbot.Bots
}

// DefaultConfig is the service's configuration when nothing is set.
func DefaultConfig() Config {
	return Config{MaxMessageBytes: 256 << 10, MaxImageBytes: 5 << 20, MaxMessages: 1024, EventBuffer: 256, MaxSubscriptions: 256}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.MaxImageBytes <= 0 {
		c.MaxImageBytes = d.MaxImageBytes
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = d.MaxMessages
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = d.EventBuffer
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New("")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Service is the chat service.
type Service struct {
	rt  Runtime
	pol Policy
	cfg Config

	subsMu sync.Mutex
	subs   map[string]int // subscriptions held, by space
}

// New returns the service over rt; pol nil admits everything.
func New(rt Runtime, pol Policy, cfg Config) *Service {
	cfg.fill()
	return &Service{rt: rt, pol: pol, cfg: cfg}
}

// Config returns the service's configuration, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// CompletionRequest is a stateless chat: the whole context in Messages.
type CompletionRequest struct {
	Messages []moltbot.Message
	Options  moltbot.ChatOptions
	// Stream asks for token events; without it the Stream holds only the
	// final event, and a reply cut off mid-way may be redone by the next
	// model (nobody saw it).
	Stream bool
}

// TurnRequest is one user message to a stored conversation.
type TurnRequest struct {
	Conversation string
	Input        moltbot.TurnInput
	Stream       bool
}

// Complete runs a stateless completion for p.
func (s *Service) Complete(ctx context.Context, p *moltbot.Principal, req CompletionRequest) (*Stream, error) {
	msgs, err := s.admitCompletion(p, &req)
	if err != nil {
		return nil, err
	}
	if req.Stream {
		return s.completeStream(ctx, p, msgs, req.Options)
	}
	res, err := s.completeWhole(ctx, p, msgs, req.Options)
	if err != nil {
		return nil, err
	}
	return finished(res), nil
}

// CompleteWhole runs a stateless completion for p that does not stream
// (req.Stream is not read) and returns its result: what Complete and the
// Stream's Wait give, without a Stream between them (an edge that writes
// the reply whole).
func (s *Service) CompleteWhole(ctx context.Context, p *moltbot.Principal, req CompletionRequest) (*moltbot.TurnResult, error) {
	msgs, err := s.admitCompletion(p, &req)
	if err != nil {
		return nil, err
	}
	return s.completeWhole(ctx, p, msgs, req.Options)
}

// admitCompletion checks a stateless completion of p's (the caller, the
// messages, the options, the model or p's bot) and returns the messages
// to send (a bot's persona first).
func (s *Service) admitCompletion(p *moltbot.Principal, req *CompletionRequest) ([]moltbot.Message, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	if err := s.validMessages(req.Messages); err != nil {
		return nil, err
	}
	if err := validOptions(req.Options); err != nil {
		return nil, err
	}
	msgs := req.Messages
	if p.Bot != "" {
		b, err := s.admitBot(p, req.Options.Model, true)
		if err != nil {
			return nil, err
		}
		return withPersona(b, msgs), nil
	}
	if err := s.admitModel(p, req.Options.Model, true); err != nil {
		return nil, err
	}
	return msgs, nil
}

// completeWhole is run's path for a turn that does not stream, without the
// closure (and the options it would take along) that starting one that
// streams needs.
func (s *Service) completeWhole(ctx context.Context, p *moltbot.Principal, msgs []moltbot.Message, opts moltbot.ChatOptions) (*moltbot.TurnResult, error) {
	res, err := s.complete(ctx, p, msgs, opts, nil)
	if err != nil {
		return nil, err
	}
	s.charge(p, res)
	return res, nil
}

// completeStream runs a stateless completion that streams (run).
func (s *Service) completeStream(ctx context.Context, p *moltbot.Principal, msgs []moltbot.Message, opts moltbot.ChatOptions) (*Stream, error) {
	return s.run(ctx, p, true, func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
		return s.complete(ctx, p, msgs, opts, fn)
	})
}

// complete asks the runtime for a stateless completion of msgs for p.
func (s *Service) complete(ctx context.Context, p *moltbot.Principal, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
	if moltbot.PrincipalOf(ctx) != p { // an edge may have put it there already (the gateway does)
		ctx = moltbot.WithPrincipal(ctx, p)
	}
	c, err := s.rt.Complete(ctx, msgs, opts, fn)
	if err != nil {
		return nil, err
	}
	return &moltbot.TurnResult{Message: moltbot.Message{Role: moltbot.RoleAssistant, Content: c.Content, Parts: replyParts(c),
		Model: c.Served.String()}, Completion: c}, nil
}

// replyParts are the parts of the assistant message that stores reply c:
// nil for text only; else its text (if any) and one tool_call part per
// call, in order.
func replyParts(c *moltbot.Completion) []moltbot.Part {
	if len(c.ToolCalls) == 0 {
		return nil
	}
	parts := make([]moltbot.Part, 0, len(c.ToolCalls)+1)
	if c.Content != "" {
		parts = append(parts, moltbot.Part{Type: moltbot.PartText, Text: c.Content})
	}
	for _, tc := range c.ToolCalls {
		parts = append(parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
	}
	return parts
}

// Turn runs one turn of a conversation of p's.
func (s *Service) Turn(ctx context.Context, p *moltbot.Principal, req TurnRequest) (*Stream, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	in := req.Input
	if err := s.validTurn(&in); err != nil {
		return nil, err
	}
	if err := validExternalID(in.ExternalID); err != nil {
		return nil, err
	}
	if err := validOptions(in.Options); err != nil {
		return nil, err
	}
	model := in.Options.Model
	// A user-bound caller may only speak in its own conversations: checked
	// by the conversation's owner in the same step as the turn, so there is
	// no window between a check here and the turn there.
	if p.UserBound {
		in.AsUser = p.User
	}
	if p.Bot != "" {
		// Only the bot's own conversations (a Get: the bound principal's
		// turns only; a conversation's bot never changes).
		if _, err := s.admitBot(p, model, false); err != nil {
			return nil, err
		}
		c, err := s.get(ctx, p, req.Conversation)
		if err != nil {
			return nil, err
		}
		if model == "" && c.Model != "" && s.pol != nil && !s.pol.ModelAllowed(p.Tenant, c.Model) {
			return nil, notAllowed(p, c.Model, "the conversation's model ")
		}
		return s.admitTurn(ctx, p, req, in)
	}
	if model != "" {
		if err := s.admitModel(p, model, false); err != nil {
			return nil, err
		}
	}
	// A tenant with an allow-list may only use the models on it: the model
	// a conversation was created with is checked again on every turn.
	if model == "" && s.pol != nil && s.pol.RestrictsModels(p.Tenant) {
		c, err := s.get(ctx, p, req.Conversation)
		if err != nil {
			return nil, err
		}
		if err := s.conversationModelAllowed(p, c); err != nil {
			return nil, err
		}
	}
	return s.admitTurn(ctx, p, req, in)
}

// conversationModelAllowed checks, for a tenant with an allow-list, the
// model a conversation runs on: the one it was created with, or its bot's
// chain, or the node's.
func (s *Service) conversationModelAllowed(p *moltbot.Principal, c *moltbot.Conversation) error {
	if c.Model == "" && c.Bot != "" && s.cfg.Bots != nil {
		if b := s.cfg.Bots.Bot(p.Tenant, c.Bot); b != nil {
			return s.chainAllowed(p, b, "")
		}
	}
	if !s.pol.ModelAllowed(p.Tenant, c.Model) {
		return notAllowed(p, c.Model, "the conversation's model ")
	}
	return nil
}

// admitTurn passes a checked turn through the quotas and rate limits and
// runs it.
func (s *Service) admitTurn(ctx context.Context, p *moltbot.Principal, req TurnRequest, in moltbot.TurnInput) (*Stream, error) {
	// Quotas before rate limits: a refused call spends nothing.
	if s.cfg.Quota != nil {
		if err := s.cfg.Quota.AdmitTurn(p); err != nil {
			return nil, err
		}
	}
	if err := s.allow(p); err != nil {
		return nil, err
	}
	return s.run(ctx, p, req.Stream, func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.TurnResult, error) {
		return s.rt.Turn(ctx, p.Space, req.Conversation, in, fn)
	})
}

// Create starts a conversation for p. It costs a stored record, so it
// passes the same limits as a turn.
func (s *Service) Create(ctx context.Context, p *moltbot.Principal, o moltbot.NewConversation) (*moltbot.Conversation, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	if len(o.System) > s.cfg.MaxMessageBytes {
		return nil, &moltbot.Error{Code: moltbot.ETooLarge, Param: "system",
			Message: fmt.Sprintf("system is %d bytes; at most %d are allowed (conversations.max_message_bytes)", len(o.System), s.cfg.MaxMessageBytes)}
	}
	o.Bot = p.Bot // never the caller's to say
	if p.Bot != "" {
		b, err := s.admitBot(p, o.Model, false)
		if err != nil {
			return nil, err
		}
		if o.System != "" {
			return nil, invalid("system", "the credential speaks as bot %q, whose persona is the system prompt of its conversations; leave system out", b.Name)
		}
		o.System = b.System
	} else {
		if o.Model != "" {
			// Unknown and oversized names are refused before they are echoed.
			if err := s.rt.ResolveModel(o.Model); err != nil {
				return nil, err
			}
		}
		if s.pol != nil && !s.pol.ModelAllowed(p.Tenant, o.Model) {
			return nil, notAllowed(p, o.Model, "")
		}
	}
	// Quotas before rate limits: a refused call spends nothing.
	if s.cfg.Quota != nil {
		release, err := s.cfg.Quota.AdmitCreate(p)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	if err := s.allow(p); err != nil {
		return nil, err
	}
	o.User = p.User
	return s.rt.Create(ctx, p.Space, o)
}

// Get returns a conversation of p's.
func (s *Service) Get(ctx context.Context, p *moltbot.Principal, id string) (*moltbot.Conversation, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	return s.get(ctx, p, id)
}

func (s *Service) get(ctx context.Context, p *moltbot.Principal, id string) (*moltbot.Conversation, error) {
	c, err := s.rt.Get(ctx, p.Space, id)
	if err != nil {
		return nil, err
	}
	if !p.Sees(c.User) || !p.SeesBot(c.Bot) {
		// Another user's (another bot's) conversation does not exist for this one.
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	return c, nil
}

// Delete deletes a conversation of p's.
func (s *Service) Delete(ctx context.Context, p *moltbot.Principal, id string) error {
	if err := notAgent(p); err != nil {
		return err
	}
	asUser := ""
	if p.UserBound {
		asUser = p.User // checked by the owner, in the same step as the delete
	}
	if p.Bot != "" {
		// Another bot's conversation is not found (a Get first: a
		// conversation's bot never changes).
		if _, err := s.get(ctx, p, id); err != nil {
			return err
		}
	}
	return s.rt.Delete(ctx, p.Space, id, asUser)
}

// Models lists the models p may ask for.
func (s *Service) Models(p *moltbot.Principal) []moltbot.ModelInfo {
	all := s.rt.Models()
	var b *moltbot.Bot
	if p.Bot != "" {
		var err error
		if b, err = s.bot(p); err != nil {
			return all[:0:0] // its calls are refused: nothing to ask for
		}
	}
	if s.pol == nil && b == nil {
		return all
	}
	out := all[:0:0]
	for _, m := range all {
		if b != nil && !b.Allows(m.ID) {
			continue
		}
		if s.pol == nil || s.pol.ModelAllowed(p.Tenant, m.ID) {
			out = append(out, m)
		}
	}
	return out
}

// admitModel checks that model exists and that p's tenant may use it, then,
// with limits, spends one call of p's rate limits.
func (s *Service) admitModel(p *moltbot.Principal, model string, limits bool) error {
	if err := s.rt.ResolveModel(model); err != nil {
		return err
	}
	if s.pol != nil && !s.pol.ModelAllowed(p.Tenant, model) {
		return notAllowed(p, model, "")
	}
	if limits {
		return s.allow(p)
	}
	return nil
}

func notAllowed(p *moltbot.Principal, model, what string) error {
	if model == "" {
		model = moltbot.ChainModel
	}
	return &moltbot.Error{Code: moltbot.EForbidden, Param: "model", Message: fmt.Sprintf("%smodel %q is not allowed for tenant %q", what, model, p.Tenant)}
}

// allow spends one call of p's rate limits.
func (s *Service) allow(p *moltbot.Principal) error {
	if s.pol == nil {
		return nil
	}
	if wait, ok := s.pol.Allow(p); !ok {
		s.cfg.Metrics.Inc(metrics.RateLimited, p.Tenant)
		return &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: wait,
			Message: fmt.Sprintf("tenant %q is over its limits; retry in %s", p.Tenant, wait.Round(time.Second))}
	}
	return nil
}

func (s *Service) charge(p *moltbot.Principal, r *moltbot.TurnResult) {
	// A replayed turn or a cached reply asked no model: nothing to charge.
	if s.pol != nil && r != nil && r.Completion != nil && !r.Replayed && r.Completion.Cache != moltbot.CacheHit {
		s.pol.Charge(p, r.Completion.Usage.Total())
	}
}

// Subscribe follows a conversation of p's: each message stored in it
// (whoever wrote it: the user, a model, later a human agent) and the
// tokens of streamed turns that start while it follows, until the stream is closed
// or the conversation is deleted (an ENotFound error, last). A follower
// that falls EventBuffer events behind is dropped (ESlowClient).
func (s *Service) Subscribe(ctx context.Context, p *moltbot.Principal, id string) (*Stream, error) {
	if err := notAgent(p); err != nil {
		return nil, err
	}
	if _, err := s.get(ctx, p, id); err != nil {
		return nil, err
	}
	if err := s.allow(p); err != nil {
		return nil, err
	}
	leave, err := s.holdSubscription(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	st := newStream(s.cfg.EventBuffer, cancel)
	var slow atomic.Bool
	ready := make(chan error, 1) // the first EventSubscribed, or why not
	var once sync.Once
	go func() {
		defer st.running.Done()
		defer leave()
		defer cancel()
		err := s.rt.Subscribe(ctx, p.Space, id, func(ev moltbot.Event) {
			if ev.Kind == moltbot.EventSubscribed {
				once.Do(func() { ready <- nil })
			}
			if ev.Kind == moltbot.EventError || slow.Load() {
				return // the end comes back as Subscribe's error
			}
			if !st.push(ev) {
				slow.Store(true)
				cancel()
			}
		})
		once.Do(func() { ready <- err })
		switch {
		case slow.Load():
			s.cfg.Metrics.Inc(metrics.ChatSlowClients)
			err = &moltbot.Error{Code: moltbot.ESlowClient, Message: fmt.Sprintf("the follower did not read events as fast as they came (%d waited)", s.cfg.EventBuffer)}
		case err == nil:
			st.end(moltbot.Event{Kind: moltbot.EventDone})
			return
		}
		st.end(moltbot.Event{Kind: moltbot.EventError, Err: err})
	}()
	// Return once the follower is in place: what happens after this
	// returns reaches it, and a conversation that cannot be followed is an
	// error here, not an event.
	if err := <-ready; err != nil {
		st.Close()
		return nil, err
	}
	if ctx.Err() != nil && st.Pending() == 0 {
		st.Close()
		return nil, moltbot.Errorf(moltbot.EInvalid, "the request ended before the subscription began")
	}
	// Checked again now that the follower is in place: a delete from here
	// on ends it, and one before (the id then made again, maybe by another
	// user) shows here.
	if _, err := s.get(ctx, p, id); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// holdSubscription counts a subscription of p's space, or refuses it past
// MaxSubscriptions; leave gives the place back.
func (s *Service) holdSubscription(p *moltbot.Principal) (leave func(), err error) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if s.subs[p.Space] >= s.cfg.MaxSubscriptions {
		return nil, &moltbot.Error{Code: moltbot.ERateLimited, RetryAfter: 5 * time.Second, Message: fmt.Sprintf(
			"tenant %q follows %d conversations on this node, the most it may at once; close one first", p.Tenant, s.cfg.MaxSubscriptions)}
	}
	if s.subs == nil {
		s.subs = map[string]int{}
	}
	s.subs[p.Space]++
	return func() {
		s.subsMu.Lock()
		if s.subs[p.Space]--; s.subs[p.Space] <= 0 {
			delete(s.subs, p.Space)
		}
		s.subsMu.Unlock()
	}, nil
}

// notAgent refuses a human agent's credential (moltbot.ScopeAgent): it
// works on handed-off conversations through the management service's
// hand-off calls only, never through chat.
func notAgent(p *moltbot.Principal) error {
	if p.Agent() {
		return moltbot.Errorf(moltbot.EForbidden, "a credential of scope agent may only work on the hand-off queue (/v1/admin/handoff), not chat")
	}
	return nil
}
