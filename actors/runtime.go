package actors

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// Config configures a Runtime.
type Config struct {
	Providers []ProviderSpec
	// Chain is the configured model chain: primary, then fallbacks.
	Chain   []moltbot.ModelRef
	Store   storage.Store
	Metrics *metrics.Registry
	Logger  *slog.Logger

	// Defaults of every field: DefaultConfig.

	// IdleTimeout passivates a conversation actor idle this long.
	IdleTimeout time.Duration
	// MaxContextTokens bounds the context sent to a model.
	MaxContextTokens int
	// MaxQueuedTurns bounds turns waiting in one conversation (0: none).
	MaxQueuedTurns int
	// RequestTimeout bounds one turn.
	RequestTimeout time.Duration
	// HealthInterval is how often providers are probed.
	HealthInterval time.Duration
	// RestartBackoff is the first delay before a crashed actor restarts.
	RestartBackoff time.Duration
	// Failover is the breakers' thresholds and the first-token deadline.
	Failover failover.Config
	// HedgeAfter > 0 also asks the next model when the first has produced no
	// token by then.
	HedgeAfter time.Duration
	// StreamContinue makes the next model continue a reply that broke
	// mid-stream (stream_failure: continue) instead of ending it.
	StreamContinue bool
	// RemoteAddr, when set, serves protoactor remote there (cluster mode);
	// then call Attach with the membership.
	RemoteAddr string
	// RemoteAdvertise is the host other nodes dial for RPC (default: RemoteAddr's).
	RemoteAdvertise string
	// Replicas is how many nodes hold each conversation, owner included.
	Replicas int
	// RemoteTLS, when set, makes node-to-node RPC mutual TLS with these
	// credentials (cluster.NewCredentials); nil: plain gRPC (loopback or
	// cluster.insecure).
	RemoteTLS *cluster.Credentials
	// Shared is state every member holds (auth records), carried over RPC
	// once the runtime is attached; SharedInterval is the period of the
	// full exchange with one random member.
	Shared         SharedState
	SharedInterval time.Duration
	// RemoteWork bounds what other nodes may start here at once (zero
	// fields: DefaultRemoteWork).
	RemoteWork RemoteWork

	// clock is the time for restart backoffs and breakers (tests; nil: time.Now).
	clock func() time.Time
}

func (c *Config) ensureDefaults() {
	d := DefaultConfig()
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.MaxContextTokens <= 0 {
		c.MaxContextTokens = d.MaxContextTokens
	}
	if c.MaxQueuedTurns < 0 {
		c.MaxQueuedTurns = 0
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = d.HealthInterval
	}
	if c.RestartBackoff <= 0 {
		c.RestartBackoff = d.RestartBackoff
	}
	if c.Failover == (failover.Config{}) {
		c.Failover = d.Failover
	}
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
	if c.SharedInterval <= 0 {
		c.SharedInterval = d.SharedInterval
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(moltbot.Version)
	}
	c.RemoteWork.ensureDefaults()
	if c.clock == nil {
		c.clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dp := DefaultProviderSpec()
	for i := range c.Providers {
		p := &c.Providers[i]
		if p.MaxInFlight <= 0 {
			p.MaxInFlight = dp.MaxInFlight
		}
		if p.MaxQueue < 0 {
			p.MaxQueue = 0
		}
		if p.Timeout <= 0 {
			p.Timeout = dp.Timeout
		}
	}
}

// Runtime is a node's actor system: providers, conversations, the router.
type Runtime struct {
	system         *actor.ActorSystem
	store          storage.Store
	met            *metrics.Registry
	log            *slog.Logger
	router         *router
	policy         *failover.Policy
	manager        *actor.PID
	states         map[string]*providerState
	order          []string
	idle, tick     time.Duration
	maxContext     int
	maxQueued      int
	requestTimeout time.Duration
	convStrategy   actor.SupervisorStrategy

	// cluster mode. placement is nil until Attach (alone, or not attached
	// yet): the agent and the RPC guard serve as soon as remote starts,
	// before the membership exists, so it is read atomically (place()).
	placement atomic.Pointer[placeRef]
	remote    *remote.Remote
	replicas  int
	ring      atomic.Pointer[cluster.Ring]
	ringMu    sync.Mutex
	ringCh    chan struct{}
	rebal     rebalancer
	guard     *rpcGuard
	creds     *cluster.Credentials
	nodeName  string
	shared    *sharedLink
	attached  chan struct{}
	futures   sync.Map // pending requests to other nodes: future id -> the node asked
	yields    sync.Map // conversation key -> yielded: handed to another member (cluster.go)
	work      remotePools

	active     atomic.Int64
	turnIDs    atomic.Uint64
	turnPrefix string
	base       context.Context // canceled by Shutdown: ends every turn
	stop       context.CancelFunc
	wg         sync.WaitGroup
	closed     atomic.Bool
	started    time.Time

	now func() time.Time // restart backoffs, breakers

	countMu   sync.Mutex
	count     int
	countedAt time.Time
}

// New starts a runtime. Call Shutdown to stop it.
func New(cfg Config) (*Runtime, error) {
	cfg.ensureDefaults()
	if cfg.Store == nil {
		return nil, errors.New("actors: a store is required")
	}
	if len(cfg.Providers) == 0 {
		return nil, errors.New("actors: at least one provider is required")
	}
	rt := &Runtime{store: cfg.Store, met: cfg.Metrics, log: cfg.Logger, states: map[string]*providerState{},
		idle: cfg.IdleTimeout, maxContext: cfg.MaxContextTokens, maxQueued: cfg.MaxQueuedTurns,
		requestTimeout: cfg.RequestTimeout, started: time.Now()}
	rt.tick = min(max(cfg.IdleTimeout/4, 5*time.Millisecond), 30*time.Second)
	rt.replicas = max(cfg.Replicas, 1)
	rt.ringCh = make(chan struct{})
	rt.attached = make(chan struct{})
	rt.creds = cfg.RemoteTLS
	if rt.creds != nil {
		rt.nodeName = rt.creds.Identity().Name
		met := rt.met
		rt.creds.OnRefuse(func(reason string) { met.Inc(metrics.ClusterRefused, reason) })
	}
	if cfg.Shared != nil {
		rt.shared = newSharedLink(rt, cfg.Shared, cfg.SharedInterval)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	rt.turnPrefix = "t" + idEncoding.EncodeToString(rnd[:]) + "."
	rt.base, rt.stop = context.WithCancel(context.Background())
	rt.now = cfg.clock
	quiet := slog.New(levelFilter{h: cfg.Logger.Handler(), min: slog.LevelWarn}).With("component", "protoactor")
	rt.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	rt.work = newRemotePools(cfg.RemoteWork)
	if cfg.RemoteAddr != "" {
		rt.work.gauges(rt.met)
		if err := rt.startRemote(cfg.RemoteAddr, cfg.RemoteAdvertise, cfg.RemoteTLS); err != nil {
			return nil, err
		}
		if _, err := rt.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &agent{rt: rt} }), agentName); err != nil {
			return nil, fmt.Errorf("actors: spawn agent: %w", err)
		}
	}

	for _, spec := range cfg.Providers {
		if _, dup := rt.states[spec.Name]; dup {
			return nil, fmt.Errorf("actors: provider %q given twice", spec.Name)
		}
		rt.states[spec.Name] = &providerState{spec: spec, chainModels: map[string]bool{}}
		rt.order = append(rt.order, spec.Name)
	}
	for _, ref := range cfg.Chain {
		if rt.states[ref.Provider] == nil {
			return nil, fmt.Errorf("actors: chain names provider %q, which is not configured", ref.Provider)
		}
		rt.states[ref.Provider].chainModels[ref.Model] = true
	}

	// Providers live under a supervisor that restarts them with backoff.
	pids := make(chan map[string]*actor.PID, 1)
	provStrategy := &backoffStrategy{base: cfg.RestartBackoff, max: 30 * time.Second, window: time.Minute,
		met: rt.met, log: rt.log, kind: "provider", restartNow: true, onRestart: func(child *actor.PID, backoff time.Duration) {
			for _, st := range rt.states {
				if st.pid.Load() != nil && st.pid.Load().Id == child.Id {
					st.downUntil.Store(rt.now().Add(backoff).UnixNano())
					st.restarts.Add(1)
				}
			}
		}}
	supProps := actor.PropsFromProducer(func() actor.Actor {
		return &providerSupervisor{rt: rt, out: pids}
	}, actor.WithSupervisor(provStrategy))
	if _, err := rt.system.Root.SpawnNamed(supProps, "providers"); err != nil {
		return nil, fmt.Errorf("actors: spawn providers: %w", err)
	}
	provPIDs := <-pids

	rt.policy = failover.NewPolicy(cfg.Failover, func(key string, b *failover.Breaker) {
		i := strings.IndexByte(key, '/')
		rt.met.Gauge(fmt.Sprintf(`moltbot_provider_state{provider=%q,model=%q}`, key[:i], rt.states[key[:i]].metricModel(key[i+1:])),
			func() float64 { return float64(b.State()) })
	})
	for _, ref := range cfg.Chain {
		rt.policy.Breaker(ref.Provider, ref.Model) // gauges exist from the start
	}
	rt.router = &router{root: rt.system.Root, chain: cfg.Chain, providers: provPIDs, states: rt.states, met: rt.met,
		policy: rt.policy, hedgeAfter: cfg.HedgeAfter, continueStreams: cfg.StreamContinue, now: rt.now}
	rt.convStrategy = &backoffStrategy{base: 10 * time.Millisecond, max: time.Second, window: time.Minute,
		met: rt.met, log: rt.log, kind: "conversation"}
	mgrProps := actor.PropsFromProducer(func() actor.Actor { return &manager{rt: rt} }, actor.WithSupervisor(rt.convStrategy))
	mgr, err := rt.system.Root.SpawnNamed(mgrProps, "conversations")
	if err != nil {
		return nil, fmt.Errorf("actors: spawn conversations: %w", err)
	}
	rt.manager = mgr
	rt.met.Gauge("moltbot_conversations_active", func() float64 { return float64(rt.active.Load()) })

	rt.wg.Add(1)
	go rt.healthLoop(cfg.HealthInterval)
	if cfg.HedgeAfter > 0 || cfg.StreamContinue {
		rt.log.Debug("failover options", "hedge_after", cfg.HedgeAfter, "stream_continue", cfg.StreamContinue)
	}
	return rt, nil
}

type providerSupervisor struct {
	rt  *Runtime
	out chan map[string]*actor.PID
}

func (s *providerSupervisor) Receive(c actor.Context) {
	if _, ok := c.Message().(*actor.Started); !ok {
		return
	}
	pids := map[string]*actor.PID{}
	for _, name := range s.rt.order {
		st := s.rt.states[name]
		props := actor.PropsFromProducer(func() actor.Actor {
			return &providerActor{st: st, log: s.rt.log, met: s.rt.met, system: s.rt.system, now: s.rt.now}
		})
		pid, err := c.SpawnNamed(props, name)
		if err != nil {
			pid = c.Spawn(props)
		}
		st.pid.Store(pid)
		pids[name] = pid
	}
	if s.out != nil {
		s.out <- pids
		s.out = nil
	}
}

// convProps makes one conversation's actor; what must survive its restarts
// lives in kept, shared by its incarnations.
func (rt *Runtime) convProps(tenant, id string) *actor.Props {
	kept := &convKept{}
	return actor.PropsFromProducer(func() actor.Actor {
		return &conversation{rt: rt, tenant: tenant, id: id, kept: kept}
	})
}

// budget is the context size left for the prompt when maxTokens are kept for the reply.
func (rt *Runtime) budget(maxTokens int) int {
	reserve := maxTokens
	if reserve <= 0 {
		reserve = min(1024, rt.maxContext/4)
	}
	return max(rt.maxContext-reserve, rt.maxContext/4)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random conversation id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "c_" + idEncoding.EncodeToString(b[:])
}

func (rt *Runtime) checkOpen() error {
	if rt.closed.Load() {
		return &moltbot.Error{Code: moltbot.EShutdown, Message: "the node is shutting down", RetryAfter: time.Second}
	}
	return nil
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

// newTurnID returns an id unique across nodes and restarts.
func (rt *Runtime) newTurnID() string {
	return rt.turnPrefix + strconv.FormatUint(rt.turnIDs.Add(1), 36)
}

// CreateOptions shape a new conversation.
type CreateOptions struct {
	ID     string // empty: a random id
	System string
	Model  string // empty: the configured chain
}

// Create starts a conversation and stores it (synced) before returning.
func (rt *Runtime) Create(ctx context.Context, tenant string, o CreateOptions) (*moltbot.Conversation, error) {
	if err := rt.checkOpen(); err != nil {
		return nil, err
	}
	if o.ID == "" {
		o.ID = NewID()
	}
	if err := validIDs(tenant, o.ID); err != nil {
		return nil, err
	}
	if o.Model != "" {
		if _, err := rt.router.resolve(o.Model); err != nil {
			return nil, err
		}
	}
	return rt.routeConv(ctx, tenant, o.ID, func() (*moltbot.Conversation, error) { return rt.localCreate(ctx, tenant, o) },
		&pb.ConvRequest{Op: pb.ConvRequest_CREATE, Tenant: tenant, Id: o.ID, System: o.System, Model: o.Model})
}

func (rt *Runtime) localCreate(ctx context.Context, tenant string, o CreateOptions) (*moltbot.Conversation, error) {
	m := &createMsg{tenant: tenant, id: o.ID, system: o.System, model: o.Model, reply: make(chan convReply, 1)}
	rt.system.Root.Send(rt.manager, m)
	return rt.withOwner(waitConv(ctx, m.reply))
}

func (rt *Runtime) withOwner(c *moltbot.Conversation, err error) (*moltbot.Conversation, error) {
	if c != nil && rt.clustered() {
		c.Owner = rt.place().ID()
	}
	return c, err
}

// routeConv runs a conversation operation on its owner: here, or forwarded.
// A "moved" answer (the ring changed under us) is retried a few times.
func (rt *Runtime) routeConv(ctx context.Context, tenant, id string, local func() (*moltbot.Conversation, error), req *pb.ConvRequest) (*moltbot.Conversation, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		owner, self := rt.ownerOf(tenant, id)
		var c *moltbot.Conversation
		var err error
		switch {
		case self:
			c, err = local()
		case owner.ID == "":
			err = rt.noOwner()
		default:
			c, err = rt.forwardConv(owner, req)
		}
		if err == nil || !retriable(err) || !retryMore(start, attempt) || ctx.Err() != nil {
			return c, err
		}
		time.Sleep(retryPause(attempt))
	}
}

// Get returns a copy of a conversation.
func (rt *Runtime) Get(ctx context.Context, tenant, id string) (*moltbot.Conversation, error) {
	if err := rt.checkOpen(); err != nil {
		return nil, err
	}
	if err := validIDs(tenant, id); err != nil {
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	return rt.routeConv(ctx, tenant, id, func() (*moltbot.Conversation, error) { return rt.localGet(ctx, tenant, id) },
		&pb.ConvRequest{Op: pb.ConvRequest_GET, Tenant: tenant, Id: id})
}

func (rt *Runtime) localGet(ctx context.Context, tenant, id string) (*moltbot.Conversation, error) {
	m := &getMsg{tenant: tenant, id: id, reply: make(chan convReply, 1)}
	rt.system.Root.Send(rt.manager, m)
	return rt.withOwner(waitConv(ctx, m.reply))
}

// Delete removes a conversation; a running turn is canceled.
func (rt *Runtime) Delete(ctx context.Context, tenant, id string) error {
	if err := rt.checkOpen(); err != nil {
		return err
	}
	if err := validIDs(tenant, id); err != nil {
		return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	_, err := rt.routeConv(ctx, tenant, id, func() (*moltbot.Conversation, error) { return nil, rt.localDelete(ctx, tenant, id) },
		&pb.ConvRequest{Op: pb.ConvRequest_DELETE, Tenant: tenant, Id: id})
	return err
}

func (rt *Runtime) localDelete(ctx context.Context, tenant, id string) error {
	m := &deleteMsg{tenant: tenant, id: id, reply: make(chan error, 1)}
	rt.system.Root.Send(rt.manager, m)
	select {
	case err := <-m.reply:
		return err
	case <-ctx.Done():
		return ctxError(ctx)
	}
}

func waitConv(ctx context.Context, ch chan convReply) (*moltbot.Conversation, error) {
	select {
	case r := <-ch:
		return r.conv, r.err
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &moltbot.Error{Code: moltbot.ETimeout, Message: "timed out", Err: ctx.Err()}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: "request canceled", Err: ctx.Err()}
}

// guard lets a caller abandon a stream callback safely: after close, the
// turn's goroutine can no longer reach the caller's writer.
type guard struct {
	mu     sync.Mutex
	fn     moltbot.StreamFunc
	closed bool
}

var errAbandoned = errors.New("actors: the caller stopped listening")

func (g *guard) call(c moltbot.Chunk) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errAbandoned
	}
	return g.fn(c)
}

func (g *guard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// abandonGrace is how long a caller whose context ended still waits for its
// turn's reply (the model call is canceled and ends quickly) before giving up.
const abandonGrace = 5 * time.Second

// Turn adds a user message to a conversation and runs one model turn,
// streaming the reply to fn (which may be nil). The user message is stored
// before the model is asked and the reply before Turn returns. In a cluster
// the turn runs on the conversation's owner; if the owner moves or dies
// before any token reached fn, the turn is retried on the new owner with the
// same turn id, so it is never answered twice into the context.
func (rt *Runtime) Turn(ctx context.Context, tenant, id, content string, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*TurnResult, error) {
	if err := rt.checkOpen(); err != nil {
		return nil, err
	}
	if err := validIDs(tenant, id); err != nil {
		return nil, moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	if content == "" {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "content", Message: "content must not be empty"}
	}
	turnID := rt.newTurnID()
	if !rt.clustered() {
		return rt.localTurn(ctx, tenant, id, turnID, content, opts, fn)
	}
	var streamed atomic.Bool
	wrapped := fn
	if fn != nil {
		wrapped = func(c moltbot.Chunk) error {
			streamed.Store(true)
			return fn(c)
		}
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		owner, self := rt.ownerOf(tenant, id)
		var res *TurnResult
		var err error
		switch {
		case self:
			res, err = rt.localTurn(ctx, tenant, id, turnID, content, opts, wrapped)
		case owner.ID == "":
			err = rt.noOwner()
		default:
			res, err = rt.forwardTurn(ctx, owner, tenant, id, turnID, content, opts, wrapped, func() { streamed.Store(true) })
		}
		if err == nil || !retriable(err) || streamed.Load() || !retryMore(start, attempt) || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(retryPause(attempt))
	}
}

// routeRetryWindow is how long a request keeps following a conversation
// whose owner changes under it (a join, a leave, a death: the members'
// rings agree again within a few gossip rounds). Past it, the client gets
// a retriable 503.
const routeRetryWindow = 3 * time.Second

func retryMore(start time.Time, attempt int) bool {
	return attempt < 3 || time.Since(start) < routeRetryWindow
}

// retryPause backs off 20, 40, 80, 160 ms, then 200 ms.
func retryPause(attempt int) time.Duration {
	return min(time.Duration(20<<min(attempt, 4))*time.Millisecond, 200*time.Millisecond)
}

// noOwner is the error when this node cannot place a conversation: it has
// not joined yet, or it is leaving.
func (rt *Runtime) noOwner() error {
	if !rt.place().Ready() {
		return notJoined()
	}
	return &moltbot.Error{Code: moltbot.EShutdown, Message: "this node is leaving the cluster; retry on another", RetryAfter: time.Second}
}

// localTurn runs a turn on this node's conversation actor.
func (rt *Runtime) localTurn(ctx context.Context, tenant, id, turnID, content string, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*TurnResult, error) {
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	// The turn ends with the caller's context or with Shutdown.
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnShutdown := context.AfterFunc(rt.base, cancel)
	defer stopOnShutdown()

	g := &guard{fn: fn}
	m := &turnMsg{tenant: tenant, id: id, turnID: turnID, ctx: tctx, content: content, opts: opts,
		fn: g.call, visible: visible, reply: make(chan turnReply, 1)}
	rt.system.Root.Send(rt.manager, m)
	select {
	case r := <-m.reply:
		g.close()
		return r.res, r.err
	case <-tctx.Done():
	}
	rt.system.Root.Send(rt.manager, &cancelMsg{tenant: tenant, id: id, turnID: m.turnID})
	t := time.NewTimer(abandonGrace)
	defer t.Stop()
	select {
	case r := <-m.reply:
		g.close()
		if r.err == nil {
			return r.res, nil // it finished just as we gave up: it is stored
		}
	case <-t.C:
		g.close()
	}
	if rt.base.Err() != nil {
		return nil, &moltbot.Error{Code: moltbot.EShutdown, Message: "the node is shutting down", RetryAfter: time.Second}
	}
	return nil, ctxError(ctx)
}

// Complete runs a stateless chat completion through the router.
func (rt *Runtime) Complete(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	if err := rt.checkOpen(); err != nil {
		return nil, err
	}
	chain, err := rt.router.resolve(opts.Model)
	if err != nil {
		return nil, err
	}
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	ctx, cancel := context.WithTimeout(ctx, rt.requestTimeout)
	defer cancel()
	stop := context.AfterFunc(rt.base, cancel)
	defer stop()
	comp, err := rt.router.chat(ctx, chain, msgs, opts, fn, visible)
	if err != nil {
		return nil, err
	}
	return comp, nil
}

// ResolveModel checks that a model name can be served (for early 404s).
func (rt *Runtime) ResolveModel(model string) error {
	_, err := rt.router.resolve(model)
	return err
}

// ModelInfo is one entry of /v1/models.
type ModelInfo struct {
	ID       string // "moltbot", or provider/model
	Provider string
}

// Models lists what a client may ask for: the chain, then each provider's models.
func (rt *Runtime) Models() []ModelInfo {
	out := []ModelInfo{{ID: ChainModel}}
	seen := map[string]bool{ChainModel: true}
	add := func(p, m string) {
		id := p + "/" + m
		if !seen[id] {
			seen[id] = true
			out = append(out, ModelInfo{ID: id, Provider: p})
		}
	}
	for _, ref := range rt.router.chain {
		add(ref.Provider, ref.Model)
	}
	for _, name := range rt.order {
		for _, m := range rt.states[name].models() {
			add(name, m)
		}
	}
	return out
}

// ProviderStatus is one provider's state for status and readiness.
type ProviderStatus struct {
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Reachable bool      `json:"reachable"`
	CheckedAt time.Time `json:"checked_at"`
	LastError string    `json:"last_error,omitempty"`
	InFlight  int64     `json:"in_flight"`
	Queued    int64     `json:"queued"`
	Restarts  int64     `json:"restarts"`
	Models    []string  `json:"models"`
	// Keys are the provider's API keys' states (never their values).
	Keys []inference.KeyStatus `json:"keys,omitempty"`
}

// Status is a snapshot of the runtime for /v1/admin/status and /readyz.
type Status struct {
	Chain               []string         `json:"chain"`
	Providers           []ProviderStatus `json:"providers"`
	Breakers            []BreakerStatus  `json:"breakers"`
	ConversationsActive int64            `json:"conversations_active"`
	ConversationsStored int              `json:"conversations_stored"`
	Uptime              time.Duration    `json:"-"`
}

// Status reports providers and counts. The stored count is cached for 5 s.
func (rt *Runtime) Status() Status {
	s := Status{ConversationsActive: rt.active.Load(), Uptime: time.Since(rt.started)}
	for _, ref := range rt.router.chain {
		s.Chain = append(s.Chain, ref.String())
	}
	for _, name := range rt.order {
		st := rt.states[name]
		st.mu.Lock()
		ps := ProviderStatus{Name: name, Type: st.spec.Type, Reachable: st.healthy, CheckedAt: st.checked, LastError: st.lastErr}
		st.mu.Unlock()
		ps.Models = st.models()
		if st.spec.Keys != nil {
			ps.Keys = st.spec.Keys()
		}
		ps.InFlight, ps.Queued, ps.Restarts = st.inFlight.Load(), st.queued.Load(), st.restarts.Load()
		sort.Strings(ps.Models)
		s.Providers = append(s.Providers, ps)
	}
	s.Breakers = rt.Breakers()
	rt.countMu.Lock()
	if time.Since(rt.countedAt) > 5*time.Second {
		if n, err := rt.store.Count(); err == nil {
			rt.count, rt.countedAt = n, time.Now()
		}
	}
	s.ConversationsStored = rt.count
	rt.countMu.Unlock()
	return s
}

// Ready returns nil when at least one model of the chain is usable: its
// provider answered its last health check, is not restarting after a crash,
// is not rate limited, and its breaker is not open (nor the model missing).
func (rt *Runtime) Ready() error {
	if rt.closed.Load() {
		return moltbot.Errorf(moltbot.EShutdown, "shutting down")
	}
	if rt.clustered() && !rt.place().Ready() {
		return moltbot.Errorf(moltbot.EUnavailable, "still joining the cluster")
	}
	now := rt.now()
	var why []string
	for _, ref := range rt.router.chain {
		st := rt.states[ref.Provider]
		st.mu.Lock()
		healthy, checked := st.healthy, !st.checked.IsZero()
		st.mu.Unlock()
		b := rt.policy.Breaker(ref.Provider, ref.Model)
		switch {
		case !checked:
			why = append(why, ref.String()+": not checked yet")
		case !healthy:
			why = append(why, ref.String()+": unreachable")
		case st.restartLeft(now) > 0:
			why = append(why, ref.String()+": restarting after a crash")
		case rt.policy.HeldFor(now, ref.Provider) > 0:
			why = append(why, ref.String()+": rate limited")
		case !b.Usable(now):
			why = append(why, ref.String()+": breaker "+b.State().String())
		default:
			return nil
		}
	}
	return moltbot.Errorf(moltbot.EUnavailable, "no model of the chain is usable (%s)", strings.Join(why, "; "))
}

// BreakerStatus is one provider/model's breaker for /v1/admin/providers.
type BreakerStatus struct {
	Provider       string  `json:"provider"`
	Model          string  `json:"model"`
	State          string  `json:"state"`
	Reachable      bool    `json:"reachable"`
	Requests       int     `json:"requests"`
	ErrorRate      float64 `json:"error_rate"`
	P95TTFTMs      float64 `json:"p95_ttft_ms"`
	CooldownLeftMs float64 `json:"cooldown_left_ms"`
	CooldownMs     float64 `json:"cooldown_ms"`
	RateLimitedMs  float64 `json:"rate_limited_ms"`
	Opens          int     `json:"opens"`
	Missing        bool    `json:"missing"`
	LastError      string  `json:"last_error,omitempty"`
	InChain        bool    `json:"in_chain"`
}

// Breakers reports every breaker over the policy's window.
func (rt *Runtime) Breakers() []BreakerStatus {
	inChain := map[string]bool{}
	for _, ref := range rt.router.chain {
		inChain[ref.String()] = true
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var out []BreakerStatus
	for _, e := range rt.policy.Snapshot(time.Now()) {
		st := rt.states[e.Provider]
		out = append(out, BreakerStatus{Provider: e.Provider, Model: e.Model, State: e.State.String(), Reachable: st != nil && st.reachable(),
			Requests: e.Requests, ErrorRate: e.ErrorRate, P95TTFTMs: ms(e.P95), CooldownLeftMs: ms(e.CooldownLeft), CooldownMs: ms(e.Cooldown),
			RateLimitedMs: ms(e.HeldFor), Opens: e.Opens, Missing: e.Missing, LastError: e.LastError, InChain: inChain[e.Provider+"/"+e.Model]})
	}
	return out
}

// ActiveConversations is the number of conversation actors in memory.
func (rt *Runtime) ActiveConversations() int64 { return rt.active.Load() }

// Shutdown cancels running turns, stops the actors and waits for the health
// checker. It does not close the store: its owner does, after this returns.
// It is idempotent.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	if rt.closed.Swap(true) {
		return nil
	}
	rt.stop()
	done := make(chan struct{})
	go func() {
		rt.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Poison the manager: it finishes what is in its mailbox (turns now fail
	// fast: their contexts are canceled) and stops its children.
	rt.system.Root.Poison(rt.manager)
	if rt.remote != nil {
		rt.remote.Shutdown(false)
	}
	rt.system.Shutdown()
	return nil
}

// levelFilter drops records below min (protoactor is chatty at info).
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}
