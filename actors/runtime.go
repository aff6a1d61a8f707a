package actors

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/actors/route"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// ProviderSpec is one configured model server.
type ProviderSpec = provider.Spec

// ChainModel is the model name that means "the configured chain".
const ChainModel = route.ChainModel

// MaxModelName caps a requested model name, in bytes.
const MaxModelName = route.MaxModelName

// Config configures a Runtime.
type Config struct {
	// Before and After are the turn pipeline's stages (pipeline.go), in
	// order: skills, a cache, guards; none by default.
	Before []BeforeModel
	After  []AfterModel
	// Around wrap the model call, between Before and the model (the
	// output cache); those that are WholeTurn (an output guard) wrap the
	// whole turn, Before included.
	Around []AroundModel
	// Deliver sends what waits in conversations' outboxes to their
	// destinations (the channel adapters); nil: deliveries wait.
	// DeliverBackoff is the first retry's wait (default 1 s).
	Deliver        Deliverer
	DeliverBackoff time.Duration
	// Bots finds the bots conversations and callers speak as (their
	// chains and skills, read on every turn of one: a reload that swaps
	// them takes effect at once); nil: no bots.
	Bots moltbot.Bots
	// ModelAllowed reports whether a tenant may use a model (as
	// requested): a stage's own model calls (a skill's callModel, a
	// flow's llm node, a preset) that name a model are held to it as the
	// turn's request was; nil: no allow-lists.
	ModelAllowed func(tenant, model string) bool

	Providers []ProviderSpec
	// Chain is the configured model chain: primary, then fallbacks.
	Chain   []moltbot.ModelRef
	Store   storage.Store
	Metrics *metrics.Registry
	Logger  *slog.Logger

	// Embeddings is the embedding chain (EmbeddingsOf); none by default.
	Embeddings EmbedChain

	// Defaults of every field: DefaultConfig.

	// IdleTimeout passivates a conversation actor idle this long.
	IdleTimeout time.Duration
	// MaxContextTokens bounds the context sent to a model.
	MaxContextTokens int
	// Summary shapes the summaries of what no longer fits
	// MaxContextTokens (on unless Off; zero MaxTokens and Prompt take
	// their defaults).
	Summary SummaryConfig
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
	if c.Summary.MaxTokens <= 0 {
		c.Summary.MaxTokens = d.Summary.MaxTokens
	}
	if c.Summary.Prompt == "" {
		c.Summary.Prompt = d.Summary.Prompt
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

// Runtime is a node's actor system and the facade over its parts: the
// providers (actors/provider), the failover router (actors/route), the
// conversations (actors/conv) and the cluster link (Link). The gateway and
// cmd use it; of the parts, only the link is handed out (Link: cmd attaches
// the membership to it).
type Runtime struct {
	system         *actor.ActorSystem
	store          storage.Store
	met            *metrics.Registry
	log            *slog.Logger
	providers      *provider.Set
	policy         *failover.Policy
	router         *route.Router
	embed          *route.Embedder
	pipe           *pipeline // the stages around router
	bots           moltbot.Bots
	convs          *conv.Manager
	link           *Link // always set; routes by a membership once attached
	requestTimeout time.Duration
	turnIDs        *turnIDs
	life           *lifetime
	started        time.Time

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
	if err := checkEmbedChain(&cfg); err != nil {
		return nil, err
	}
	summary, err := summaryModel(&cfg)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{store: cfg.Store, met: cfg.Metrics, log: cfg.Logger, requestTimeout: cfg.RequestTimeout, started: time.Now(),
		turnIDs: newTurnIDs(), life: &lifetime{}, now: cfg.clock}
	rt.life.base, rt.life.stop = context.WithCancel(context.Background())
	quiet := slog.New(levelFilter{h: cfg.Logger.Handler(), min: slog.LevelWarn}).With("component", "protoactor")
	rt.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	// Sinks and futures are named by this counter, and members address
	// them by (RPC address, id) for as long as a turn streams or a lease
	// lives: a node restarted at the same address must not name them as
	// its previous life did, or an answer, a chunk or a followed
	// conversation's events meant for the old one would reach a new one.
	var seq [8]byte
	_, _ = rand.Read(seq[:])
	rt.system.ProcessRegistry.SequenceID = binary.LittleEndian.Uint64(seq[:]) >> 2
	rt.link = newLink(rt.system, rt.life, cfg)
	if cfg.RemoteAddr != "" {
		if err := rt.link.startRemote(cfg.RemoteAddr, cfg.RemoteAdvertise); err != nil {
			return nil, err
		}
	}

	// The embedding chain's models and the summaries' are chain models to
	// the providers too: their metric labels, the health check's "missing"
	// for Ollama, and a name the router knows.
	chains := append(slices.Clip(cfg.Chain), cfg.Embeddings.Models...)
	if summary.Model != "" && !slices.Contains(chains, summary) {
		chains = append(chains, summary)
	}
	providers, err := provider.Start(rt.system, provider.Config{Specs: cfg.Providers, Chain: chains,
		RestartBackoff: cfg.RestartBackoff, Metrics: rt.met, Log: rt.log, Now: rt.now})
	if err != nil {
		return nil, err
	}
	rt.providers = providers

	rt.policy = failover.NewPolicy(cfg.Failover, func(key string, b *failover.Breaker) {
		i := strings.IndexByte(key, '/')
		rt.met.Gauge(fmt.Sprintf(`moltbot_provider_state{provider=%q,model=%q}`, key[:i], rt.providers.Get(key[:i]).MetricModel(key[i+1:])),
			func() float64 { return float64(b.State()) })
	})
	for _, ref := range cfg.Chain {
		rt.policy.Breaker(ref.Provider, ref.Model) // gauges exist from the start
	}
	rt.router = route.New(route.Config{Chain: cfg.Chain, Providers: rt.providers, Metrics: rt.met, Policy: rt.policy,
		HedgeAfter: cfg.HedgeAfter, ContinueStreams: cfg.StreamContinue, Now: rt.now})
	startEmbeddings(rt, cfg.Embeddings)
	rt.bots = cfg.Bots
	rt.pipe = newPipeline(rt.router, cfg.Before, cfg.Around, cfg.After)
	rt.pipe.log, rt.pipe.allowed = rt.log, cfg.ModelAllowed
	if len(cfg.Embeddings.Models) > 0 {
		rt.pipe.embed = EmbeddingsOf(rt).Embed
	}
	convStrategy := &provider.Backoff{Base: 10 * time.Millisecond, Max: time.Second, Window: time.Minute,
		Metrics: rt.met, Log: rt.log, Kind: "conversation"}
	rt.convs, err = conv.Start(rt.system, conv.Config{Store: rt.store, Metrics: rt.met, Log: rt.log, Router: rt.pipe, Cluster: &rt.link.repl,
		IdleTimeout: cfg.IdleTimeout, MaxContextTokens: cfg.MaxContextTokens, Summary: cfg.Summary, Models: rt.router, MaxQueuedTurns: cfg.MaxQueuedTurns,
		RequestTimeout: cfg.RequestTimeout, Supervisor: convStrategy, Base: rt.life.base,
		Deliver: cfg.Deliver, DeliverBackoff: cfg.DeliverBackoff, Bots: cfg.Bots})
	if err != nil {
		return nil, err
	}
	// Before Attach, so before the agent serves anyone (it refuses every
	// envelope until the membership is there).
	rt.link.convs = rt.convs
	if cfg.RemoteAddr == "" && cfg.Deliver != nil {
		// Alone: every stored conversation is this node's. (In a cluster
		// the first ring decides, in the rebalancing pass.)
		wakeOutboxes(rt.link, nil)
	}

	rt.life.wg.Add(1)
	go func() {
		defer rt.life.wg.Done()
		rt.providers.HealthLoop(rt.life.base, cfg.HealthInterval, rt.policy)
	}()
	if cfg.HedgeAfter > 0 || cfg.StreamContinue {
		rt.log.Debug("failover options", "hedge_after", cfg.HedgeAfter, "stream_continue", cfg.StreamContinue)
	}
	return rt, nil
}

// Link is the cluster link: cmd attaches the membership to it, hands its
// peer check to the membership and publishes shared state through it.
func (rt *Runtime) Link() *Link { return rt.link }

// ActiveConversations is the number of conversation actors in memory.
func (rt *Runtime) ActiveConversations() int64 { return rt.convs.Active() }

// Shutdown cancels running turns, stops the actors and waits for the health
// checker. It does not close the store: its owner does, after this returns.
// It is idempotent.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	if rt.life.closed.Swap(true) {
		return nil
	}
	rt.life.stop()
	done := make(chan struct{})
	go func() {
		rt.life.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Deliveries in flight end with base; their adapters are stopped after
	// the runtime, so none may still run when Shutdown returns.
	rt.convs.StopDeliveries(ctx)
	// Poison the manager: it finishes what is in its mailbox (turns now fail
	// fast: their contexts are canceled) and stops its children.
	rt.convs.Stop()
	if rt.link.remote != nil {
		rt.link.remote.Shutdown(false)
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
