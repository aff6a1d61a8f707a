package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// The core: what makes adapters real on a node. It is the Host of every
// configured channel (core.go, inbox.go), runs each adapter's Run on the
// one node of a cluster that owns the channel (run.go), serves their
// inbound requests and routes the outbox's replies to their Send
// (serve.go). It knows the chat service, storage and the ring only
// through the small interfaces below, which cmd fills in.

// Chat is what the core asks of the chat service (cmd wraps
// *chat.Service): a turn of a stored conversation, run to its end, and
// the creation of one.
type Chat interface {
	Turn(ctx context.Context, p *moltbot.Principal, conversation string, in moltbot.TurnInput) (*moltbot.TurnResult, error)
	Create(ctx context.Context, p *moltbot.Principal, o moltbot.NewConversation) (*moltbot.Conversation, error)
}

// KV is a namespace of records (a storage.KV; a storage/replica.Set for
// what the cluster shares).
type KV interface {
	Get(key string) (val []byte, found bool, err error)
	Put(key string, val []byte) error
	Delete(key string) error
	ScanPrefix(prefix string, fn func(key string, val []byte) bool) error
}

// Placement says which node of a cluster owns a key (the ring's owner)
// and when that may have changed (nil: a node alone owns everything).
type Placement interface {
	// Owner is the node that owns key and whether it is this one; "" and
	// false when nobody does yet (the node has not joined).
	Owner(key string) (node string, self bool)
	// Changed is closed at the next change of the ring.
	Changed() <-chan struct{}
}

// CoreConfig configures a Core.
type CoreConfig struct {
	Chat Chat
	// Space is the space of a tenant's conversations (Principal.Space);
	// an error when the tenant does not exist.
	Space func(tenant string) (string, error)
	// Inbox is this node's durable inbox (a synced storage namespace);
	// State the channels' Get/Put state, the same on every member.
	Inbox, State KV
	// Placement is the cluster's ring; nil: alone.
	Placement Placement
	Metrics   *metrics.Registry
	Logger    *slog.Logger
	// Workers run the turns of accepted messages (default 4); MaxPending
	// bounds what waits in the inbox (default 10000): past it Accept is
	// EBusy and the platform retries later.
	Workers, MaxPending int
	// MaxPendingBytes bounds the bytes of what waits (default 64 MiB):
	// a waiting message is held in memory as well as on disk, images
	// included (4 of 5 MiB each), so a count alone lets a few hundred
	// image messages fill a 512 MB device. Past it Accept is EBusy, but
	// an empty inbox takes any one message.
	MaxPendingBytes int64
	// Budget messages per Window from one (chat, user) pair, then
	// Cooldown of refusals (defaults 20, 60 s, 60 s).
	Budget           int
	Window, Cooldown time.Duration
	// TurnTimeout bounds one turn (default 10 min); Attempts is how many
	// times a turn failing with a server error is tried (default 5).
	TurnTimeout time.Duration
	Attempts    int
	// TypingEvery is how often Typing is called while a turn runs
	// (default 5 s).
	TypingEvery time.Duration
	// RetryBase is the first retry's wait (default 2 s; Backoff to 5 min).
	RetryBase time.Duration
	// Self names this node in a status (the cluster's id); "" alone.
	Self string
	Now  func() time.Time
}

func (c *CoreConfig) fill() {
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 64 << 20
	}
	if c.Budget <= 0 {
		c.Budget = 20
	}
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.Cooldown <= 0 {
		c.Cooldown = time.Minute
	}
	if c.TurnTimeout <= 0 {
		c.TurnTimeout = 10 * time.Minute
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.TypingEvery <= 0 {
		c.TypingEvery = 5 * time.Second
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 2 * time.Second
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New("")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Spec is one configured channel: its config, its type, and whether bot
// authors are let in (allow_bots).
type Spec struct {
	Config    Config
	Type      Type
	AllowBots bool
}

func (s Spec) same(o Spec) bool {
	a, b := s.Config, o.Config
	return a.Name == b.Name && a.Type == b.Type && a.Bot == b.Bot && a.Tenant == b.Tenant && a.Conversations == b.Conversations &&
		maps.Equal(a.Options, b.Options) && s.AllowBots == o.AllowBots
}

// ErrInFlight marks a duplicate (errors.Is(err, ErrDuplicate) too) whose
// first delivery waits in this node's inbox or runs: its reply is still
// to come (a webhook's sync request may wait for it).
var ErrInFlight = errors.New("channels: the first delivery's turn has not been answered yet")

// duplicate is Accept's ErrDuplicate, with whether the turn is in flight.
type duplicate struct{ inFlight bool }

func (d duplicate) Error() string {
	if d.inFlight {
		return ErrDuplicate.Error() + " (its turn is to come)"
	}
	return ErrDuplicate.Error()
}

func (d duplicate) Is(t error) bool { return t == ErrDuplicate || d.inFlight && t == ErrInFlight }

// Core runs a node's channels. Make it with NewCore, give it the channels
// with Set, start it with Start; Close stops it. Safe for concurrent use.
type Core struct {
	cfg CoreConfig
	log *slog.Logger

	setMu   sync.Mutex // one Set at a time
	mu      sync.RWMutex
	chans   map[string]*channel
	started bool
	base    context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup // the workers and the placement loop

	q       queue
	pairs   pairBudget
	recent  recent
	stripes [64]sync.Mutex
	seq     atomic.Int64 // inbox.go's nextSeq
	working atomic.Bool  // the workers run (q.running, read without the lock)
}

// NewCore returns a core without channels.
func NewCore(cfg CoreConfig) *Core {
	cfg.fill()
	c := &Core{cfg: cfg, log: cfg.Logger, chans: map[string]*channel{}}
	c.q.init(cfg.Workers)
	c.pairs.init(cfg.Budget, cfg.Window, cfg.Cooldown)
	return c
}

// Place sets the ring the Runs are placed by and this node's id in it
// (a cluster node, before Start).
func (c *Core) Place(p Placement, self string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.Placement, c.cfg.Self = p, self
}

// channel is one configured channel on this node: its adapter and its
// Host.
type channel struct {
	core  *Core
	spec  Spec
	label string // TYPE:NAME
	log   *slog.Logger
	ad    Adapter

	mu     sync.Mutex
	status Status
	run    *runner // its Run, when this node runs it
}

// Status is how a channel is on this node (`moltbot channels status`).
type Status struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Bot  string `json:"bot,omitempty"`
	// Tenant is the bot's tenant (default without a bot).
	Tenant string `json:"tenant"`
	// State is one of the State* constants; Node the cluster node that
	// runs its Run ("" alone, or when nobody does yet).
	State string `json:"state"`
	Node  string `json:"node,omitempty"`
	// RunState is, on a node where State is elsewhere, the state the
	// running node last shared (the cluster's state holds it), and the
	// last error is that node's when this one has none.
	RunState  string    `json:"run_state,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	ErrorAt   time.Time `json:"last_error_at,omitzero"`
	// LastEvent is when this node last accepted a message of the channel.
	LastEvent time.Time `json:"last_event,omitzero"`
	Counters  Counters  `json:"counters"`
	// Pending is what waits in this node's inbox for the channel.
	Pending int `json:"pending"`
}

// Counters are a channel's counts on this node since it started.
type Counters struct {
	Accepted   uint64 `json:"accepted"`
	Duplicates uint64 `json:"duplicates"`
	DroppedBot uint64 `json:"dropped_bot"`
	Budget     uint64 `json:"dropped_budget"`
	Empty      uint64 `json:"dropped_empty"`
	Failed     uint64 `json:"turns_failed"`
	Sent       uint64 `json:"sent"`
	SendFailed uint64 `json:"send_failed"`
}

// Set makes specs the node's channels: a channel whose spec did not change
// keeps its adapter (and its Run); a new or changed one gets a new
// adapter (the old one's Run is stopped); one no longer listed stops.
// Messages waiting in the inbox of a channel that went away stay there
// until it comes back. Nothing is changed when an adapter cannot be made.
func (c *Core) Set(specs []Spec) error {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	next := map[string]*channel{}
	c.mu.RLock()
	for _, s := range specs {
		name := s.Config.Name
		if _, dup := next[name]; dup {
			c.mu.RUnlock()
			return fmt.Errorf("channels: channel %q is configured twice", name)
		}
		if old := c.chans[name]; old != nil && old.spec.same(s) {
			next[name] = old
			continue
		}
		ch := &channel{core: c, spec: s, label: s.Config.Type + ":" + name}
		ch.log = c.log.With("channel", name, "type", s.Config.Type)
		ch.status = Status{Name: name, Type: s.Config.Type, Bot: s.Config.Bot, Tenant: s.Config.Tenant, State: StateStopped}
		ad, err := s.Type.New(s.Config, ch)
		if err != nil {
			c.mu.RUnlock()
			return fmt.Errorf("channels: channel %q (%s): %w", name, s.Config.Type, err)
		}
		ch.ad = ad
		next[name] = ch
	}
	c.mu.RUnlock()
	c.mu.Lock()
	old := c.chans
	c.chans = next
	started := c.started
	c.mu.Unlock()
	for name, ch := range old {
		if next[name] != ch {
			ch.stopRun()
		}
	}
	if started {
		for name := range next {
			if old[name] == nil {
				if err := c.replay(name); err != nil {
					c.log.Warn("channels: the inbox of a channel added was not read", "channel", name, "err", err)
				}
			}
		}
		c.startWork()
		c.place()
	}
	return nil
}

// Names are the channels, sorted.
func (c *Core) Names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.chans))
}

func (c *Core) channel(name string) *channel {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.chans[name]
}

// Start replays the inbox (what was accepted before a restart and not
// answered) and starts the workers and each channel's Run where this node
// owns it. A node without channels starts nothing: no goroutine, until a
// Set brings one.
func (c *Core) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("channels: started twice")
	}
	c.started = true
	c.base, c.stop = context.WithCancel(ctx)
	c.mu.Unlock()
	if err := c.replay(""); err != nil {
		return err
	}
	c.startWork()
	c.place()
	return nil
}

// startWork starts the workers and the placement loop once there is a
// channel or something in the inbox.
func (c *Core) startWork() {
	if c.working.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base == nil || c.base.Err() != nil || c.q.running || (len(c.chans) == 0 && c.q.len() == 0) {
		return
	}
	c.q.running = true
	c.working.Store(true)
	for i := range c.cfg.Workers {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.work(c.base, i) }()
	}
	if p := c.cfg.Placement; p != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			// Each change of the ring, and a look every 10 s besides (the
			// node's joining, which may come without a change).
			// The channel before the look: a change after it is seen.
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				changed := p.Changed()
				c.place()
				select {
				case <-c.base.Done():
					return
				case <-changed:
				case <-t.C:
				}
			}
		}()
	}
}

// Close stops every Run and the workers (a turn running is canceled; its
// message stays in the inbox for the next start) and waits for them.
func (c *Core) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	stop := c.stop
	chans := slices.Collect(maps.Values(c.chans))
	c.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	c.q.wakeAll()
	for _, ch := range chans {
		ch.stopRun()
	}
	c.wg.Wait()
}

// Status is every channel's status on this node, by name.
func (c *Core) Status() []Status {
	c.mu.RLock()
	chans := slices.Collect(maps.Values(c.chans))
	c.mu.RUnlock()
	slices.SortFunc(chans, func(a, b *channel) int {
		if a.spec.Config.Name < b.spec.Config.Name {
			return -1
		}
		return 1
	})
	out := make([]Status, 0, len(chans))
	for _, ch := range chans {
		out = append(out, ch.snapshot())
	}
	return out
}

// StatusOf is one channel's status; false when there is no such channel.
func (c *Core) StatusOf(name string) (Status, bool) {
	ch := c.channel(name)
	if ch == nil {
		return Status{}, false
	}
	return ch.snapshot(), true
}

func (ch *channel) snapshot() Status {
	m, n := ch.core.cfg.Metrics, ch.spec.Config.Name
	ch.mu.Lock()
	s := ch.status
	ch.mu.Unlock()
	s.Counters = Counters{
		Accepted: m.Get(metrics.ChannelEvents, n, "accepted"), Duplicates: m.Get(metrics.ChannelEvents, n, "duplicate"),
		DroppedBot: m.Get(metrics.ChannelEvents, n, "dropped_bot"), Budget: m.Get(metrics.ChannelEvents, n, "dropped_budget"),
		Empty: m.Get(metrics.ChannelEvents, n, "dropped_empty"), Failed: m.Get(metrics.ChannelTurnsFailed, n),
		Sent: m.Get(metrics.ChannelSends, n, "ok"), SendFailed: m.Get(metrics.ChannelSends, n, "failed"),
	}
	s.Pending = ch.core.q.pendingOf(n)
	if s.State == StateElsewhere && ch.core.cfg.State != nil {
		if v, ok, err := ch.core.cfg.State.Get(n + "/" + runKey); err == nil && ok {
			var rs runStatus
			if json.Unmarshal(v, &rs) == nil && rs.Node == s.Node {
				s.RunState = rs.State
				if s.LastError == "" {
					s.LastError, s.ErrorAt = rs.Error, rs.At
				}
			}
		}
	}
	return s
}

// runKey is where, in a channel's state, the node running its Run shares
// how it runs (runStatus); adapters' keys never start with '#'.
const runKey = "#run"

// runStatus is a Run's state as its node last reported it.
type runStatus struct {
	State string    `json:"state"`
	Node  string    `json:"node"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at,omitzero"`
}

// The Host of one channel.

// Accept: inbox.go.

// Get reads the channel's state, the same on every member.
func (ch *channel) Get(key string) ([]byte, bool) {
	if ch.core.cfg.State == nil {
		return nil, false
	}
	v, ok, err := ch.core.cfg.State.Get(ch.spec.Config.Name + "/" + key)
	if err != nil {
		ch.log.Warn("channel state not read", "key", key, "err", err)
		return nil, false
	}
	return v, ok
}

// MaxStateValue bounds a value of Host.Put.
const MaxStateValue = 4 << 10

// Put writes the channel's state (last writer wins across the cluster).
func (ch *channel) Put(key string, value []byte) error {
	if len(value) > MaxStateValue {
		return fmt.Errorf("channels: a state value is at most %d bytes, got %d", MaxStateValue, len(value))
	}
	if key == "" || len(key) > 200 || key[0] == '#' {
		return fmt.Errorf("channels: a state key is 1 to 200 bytes, not starting with '#', got %q", key)
	}
	if ch.core.cfg.State == nil {
		return errors.New("channels: no state store")
	}
	return ch.core.cfg.State.Put(ch.spec.Config.Name+"/"+key, value)
}

// Log is the channel's logger.
func (ch *channel) Log() *slog.Logger { return ch.log }

// Report records the adapter's state and last error.
func (ch *channel) Report(state string, err error) {
	ch.mu.Lock()
	changed := ch.status.State != state
	ch.status.State = state
	if err != nil {
		ch.status.LastError = RedactError(err)
		ch.status.ErrorAt = ch.core.cfg.Now()
	} else if state == StateConnected || state == StateListening {
		ch.status.LastError = ""
	}
	share := ch.run != nil && ch.core.cfg.Placement != nil && ch.core.cfg.State != nil && (changed || err != nil)
	rs := runStatus{State: state, Node: ch.status.Node, Error: ch.status.LastError, At: ch.status.ErrorAt}
	ch.mu.Unlock()
	if share {
		// The other nodes' status shows it (a cluster's; alone, nobody asks).
		if b, jerr := json.Marshal(rs); jerr == nil {
			if perr := ch.core.cfg.State.Put(ch.spec.Config.Name+"/"+runKey, b); perr != nil {
				ch.log.Debug("channel state not shared", "err", perr)
			}
		}
	}
	if changed {
		if err != nil {
			ch.log.Warn("channel state", "state", state, "err", RedactError(err))
		} else {
			ch.log.Info("channel state", "state", state)
		}
	}
}

var _ Host = (*channel)(nil)
