// Package retention applies each tenant's retention policy to the
// conversations this node owns: a conversation idle (by its last change)
// for longer than the policy's days is deleted, one with more messages
// than the policy keeps is trimmed to its newest ones (the system prompt
// stays), and with archive set what goes is first appended to the
// workspace's archive (archive.go).
//
// A Sweeper runs a sweep at start, every Config.Interval and on Kick, on a
// goroutine it owns (Close stops it and waits). A sweep reads the store
// once: it feeds every stored conversation to the usage recount (Counter)
// and notes what the policies want done, then does it through the runtime
// (Runtime.Retain), which applies each decision on the conversation's
// owner only if the conversation is still at the version it was decided
// (and archived) on. Deletes are the runtime's: a replicated tombstone,
// so they reach every copy. In a cluster each node sweeps only the
// conversations it owns, so each is swept once.
package retention

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Policy is a tenant's retention; zero fields keep everything.
type Policy struct {
	// Days deletes conversations idle for longer (0: none).
	Days int
	// Messages trims conversations to their newest Messages (0: none).
	Messages int
	// Archive appends what is deleted or trimmed to the archive first.
	Archive bool
}

func (p Policy) active() bool { return p.Days > 0 || p.Messages > 0 }

// Runtime is what a sweep does to conversations (actors.Retention).
type Runtime interface {
	// Owns reports whether this node owns the conversation.
	Owns(space, id string) bool
	// Retain deletes (drop < 0) or trims the drop oldest messages of a
	// conversation, only if it is still at version; an error wrapping
	// ErrChanged otherwise.
	Retain(ctx context.Context, space, id string, version uint64, drop int) error
}

// ErrChanged is what Runtime.Retain wraps when the conversation changed
// since the sweep read it (actors.ErrChanged; set by the caller).
var ErrChanged = errors.New("retention: the conversation changed")

// Store is what a sweep reads (storage.Store).
type Store interface {
	ForEach(fn func(c *moltbot.Conversation) bool) error
	Get(space, id string) (*moltbot.Conversation, error)
}

// Counter is told of every stored conversation a sweep reads: a recount
// (usage.Table). Begin comes before the scan, End after it (complete: the
// scan read everything).
type Counter interface {
	Begin()
	Saw(c *moltbot.Conversation)
	End(complete bool)
}

// Config configures a Sweeper.
type Config struct {
	// Interval between sweeps (DefaultConfig: 1h).
	Interval time.Duration
	// Policy returns the policy of the tenant whose space holds a
	// conversation, and the tenant's id; false when it has none (or the
	// space is no live tenant's).
	Policy func(space string) (tenant string, p Policy, ok bool)
	Store  Store
	// Runtime deletes and trims; Changed is the error its Retain wraps
	// when a conversation changed (actors.ErrChanged).
	Runtime Runtime
	Changed error
	// Counter, when set, recounts usage from every sweep's scan.
	Counter Counter
	// ArchiveDir is where archives go: <dir>/<tenant>/<YYYY-MM-DD>.jsonl
	// (the workspace's archive/). "" with a policy that archives: nothing
	// is deleted or trimmed for it (logged).
	ArchiveDir string
	// Timeout bounds the runtime's work on one conversation.
	Timeout time.Duration
	Now     func() time.Time
	Metrics *metrics.Registry
	Logger  *slog.Logger
}

// DefaultConfig is a sweeper's configuration when nothing is set.
func DefaultConfig() Config { return Config{Interval: time.Hour, Timeout: 30 * time.Second} }

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New("")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Changed == nil {
		c.Changed = ErrChanged
	}
	if c.Policy == nil {
		c.Policy = func(string) (string, Policy, bool) { return "", Policy{}, false }
	}
}

// Result is what one sweep did.
type Result struct {
	// Scanned conversations (tombstones included).
	Scanned int `json:"scanned"`
	// Deleted, Trimmed conversations; Archived records written.
	Deleted  int `json:"deleted"`
	Trimmed  int `json:"trimmed"`
	Archived int `json:"archived"`
	// Skipped decisions: the conversation changed, moved or went meanwhile
	// (the next sweep decides again).
	Skipped int `json:"skipped"`
	// Errors: decisions that failed (logged, counted, retried next sweep).
	Errors int `json:"errors"`
}

// Sweeper runs retention sweeps.
type Sweeper struct {
	cfg  Config
	arch archive

	mu   sync.Mutex // one sweep at a time
	kick chan struct{}
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// New returns a sweeper; Start runs it periodically, Sweep once.
func New(cfg Config) *Sweeper {
	cfg.fill()
	return &Sweeper{cfg: cfg, arch: archive{dir: cfg.ArchiveDir}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// Start runs a sweep now, then every Interval and on Kick, until Close.
func (s *Sweeper) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-s.stop
			cancel()
		}()
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("retention sweep", "err", err)
			}
			select {
			case <-s.stop:
				return
			case <-s.kick:
			case <-t.C:
			}
		}
	}()
}

// Kick asks the running sweeper for a sweep soon; it never blocks.
func (s *Sweeper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the sweeper (a sweep in progress is canceled) and waits.
func (s *Sweeper) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// decision is what a policy wants done to one conversation.
type decision struct {
	space, id, tenant string
	version           uint64
	drop              int // < 0: delete
	archive           bool
}

// Sweep runs one sweep now (after the one in progress, if any).
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res Result
	todo, err := s.scan(ctx, &res)
	if err != nil {
		return res, err
	}
	for _, d := range todo {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		s.apply(ctx, d, &res)
	}
	if res.Deleted+res.Trimmed+res.Errors > 0 {
		s.cfg.Logger.Info("retention sweep", "scanned", res.Scanned, "deleted", res.Deleted, "trimmed", res.Trimmed,
			"archived", res.Archived, "skipped", res.Skipped, "errors", res.Errors)
	}
	return res, nil
}

// scan reads every stored conversation once: the recount, and the
// decisions of the policies about the conversations this node owns.
func (s *Sweeper) scan(ctx context.Context, res *Result) ([]decision, error) {
	type pol struct {
		tenant string
		p      Policy
		ok     bool
	}
	policies := map[string]pol{}
	now := s.cfg.Now().UnixMilli()
	var todo []decision
	if s.cfg.Counter != nil {
		s.cfg.Counter.Begin()
	}
	err := s.cfg.Store.ForEach(func(c *moltbot.Conversation) bool {
		if ctx.Err() != nil {
			return false // Close: a shutdown does not wait for a whole scan
		}
		res.Scanned++
		if s.cfg.Counter != nil {
			s.cfg.Counter.Saw(c)
		}
		if c.Deleted {
			return true
		}
		p, seen := policies[c.Tenant]
		if !seen {
			p.tenant, p.p, p.ok = s.cfg.Policy(c.Tenant)
			p.ok = p.ok && p.p.active()
			policies[c.Tenant] = p
		}
		if !p.ok || !s.cfg.Runtime.Owns(c.Tenant, c.ID) {
			return true
		}
		d := decision{space: c.Tenant, id: c.ID, tenant: p.tenant, version: c.Version, archive: p.p.Archive}
		switch {
		case p.p.Days > 0 && now-c.Updated > int64(p.p.Days)*24*int64(time.Hour/time.Millisecond):
			d.drop = -1
		case p.p.Messages > 0 && len(c.Messages) > p.p.Messages:
			d.drop = len(c.Messages) - p.p.Messages
		default:
			return true
		}
		todo = append(todo, d)
		return true
	})
	if err == nil {
		err = ctx.Err()
	}
	if s.cfg.Counter != nil {
		s.cfg.Counter.End(err == nil)
	}
	return todo, err
}

// apply archives (when the policy says so) and then deletes or trims one
// conversation.
func (s *Sweeper) apply(ctx context.Context, d decision, res *Result) {
	log := s.cfg.Logger.With("conversation", d.space+"/"+d.id)
	if d.archive {
		c, err := s.cfg.Store.Get(d.space, d.id)
		switch {
		case err != nil || c.Deleted:
			res.Skipped++ // gone meanwhile (or unreadable: the next sweep tells)
			return
		case c.Version != d.version:
			res.Skipped++
			return
		}
		reason := "idle"
		if d.drop > 0 {
			reason = "trimmed"
			c.Messages = c.Messages[:d.drop]
		}
		if err := s.arch.append(d.tenant, s.cfg.Now(), reason, c); err != nil {
			res.Errors++
			s.cfg.Metrics.Inc(metrics.RetentionErrors)
			log.Error("retention: could not archive; the conversation is kept", "err", err)
			return
		}
		res.Archived++
		s.cfg.Metrics.Inc(metrics.RetentionArchived)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := s.cfg.Runtime.Retain(cctx, d.space, d.id, d.version, d.drop)
	cancel()
	switch code := moltbot.ErrorCode(err); {
	case err == nil && d.drop < 0:
		res.Deleted++
		s.cfg.Metrics.Inc(metrics.RetentionDeleted)
	case err == nil:
		res.Trimmed++
		s.cfg.Metrics.Inc(metrics.RetentionTrimmed)
		log.Debug("retention: trimmed", "messages", d.drop)
	case errors.Is(err, s.cfg.Changed) || code == moltbot.EMoved || code == moltbot.ENotFound:
		res.Skipped++
	default:
		res.Errors++
		s.cfg.Metrics.Inc(metrics.RetentionErrors)
		log.Warn("retention: could not apply the policy; retried at the next sweep", "err", err)
	}
}
