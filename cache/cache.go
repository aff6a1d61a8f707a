package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// frontTTL caps how long the memory tier in front of Redis serves an
// entry: a purge made through another node (which empties Redis and that
// node's memory) reaches this node's memory tier within it.
const frontTTL = time.Minute

// writeQueue bounds the writes to a back tier that wait: a request does
// not wait for Redis or Pebble to take its reply, and past the bound a
// write is dropped (counted as the tier's error).
const writeQueue = 256

// Cache is the output cache's tiers: memory, and pebble or redis behind
// it. Safe for concurrent use; Close stops it.
type Cache struct {
	cfg     Config
	mem     *memory
	memC    counters
	back    backend // nil: memory only
	backC   counters
	guard   *guard
	writes  chan write
	wg      sync.WaitGroup
	stop    chan struct{}
	closing sync.Once
	pebble  *pebbleTier // back, when it is pebble (swept)
	sem     *semantic   // the semantic tier, nil when off
	forged  sync.Once   // the first forged Redis entry is logged (all are counted)
}

// write is a reply on its way to the back tier; a write with done set is
// a barrier (Flush).
type write struct {
	key  string
	val  []byte
	ttl  time.Duration
	done chan struct{}
}

// New starts the cache of cfg.Type; Close stops it.
func New(cfg Config) (*Cache, error) {
	cfg.EnsureDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, mem: newMemory(cfg.MaxBytes), memC: newCounters(cfg.Metrics, TypeMemory), stop: make(chan struct{})}
	met := cfg.Metrics
	met.Gauge(`moltbot_cache_entries{tier="memory"}`, func() float64 { n, _ := c.mem.stats(); return float64(n) })
	met.Gauge(`moltbot_cache_bytes{tier="memory"}`, func() float64 { _, b := c.mem.stats(); return float64(b) })
	switch cfg.Type {
	case TypePebble:
		c.pebble = &pebbleTier{kv: cfg.Store.Namespace(storage.Cache), now: cfg.Now}
		c.back = c.pebble
		met.Gauge(`moltbot_cache_entries{tier="pebble"}`, func() float64 { return float64(c.pebble.entries.Load()) })
		met.Gauge(`moltbot_cache_bytes{tier="pebble"}`, func() float64 { return float64(c.pebble.bytes.Load()) })
	case TypeRedis:
		c.back = newRedis(&cfg)
	}
	if c.back != nil {
		c.backC = newCounters(met, cfg.Type)
		c.guard = &guard{tier: cfg.Type, first: cfg.Retry, max: cfg.MaxRetry, now: cfg.Now, log: cfg.Logger}
		met.Gauge(`moltbot_cache_up{tier="`+cfg.Type+`"}`, func() float64 {
			if c.guard.up() {
				return 1
			}
			return 0
		})
		c.writes = make(chan write, writeQueue)
		c.wg.Add(1)
		go c.writer()
	}
	if c.pebble != nil {
		c.wg.Add(1)
		go c.sweeper()
	}
	if cfg.Semantic.Enabled {
		c.sem = newSemantic(c)
	}
	return c, nil
}

// Close stops the cache: the writes waiting are made, the sweeps stop,
// Redis connections close. Safe to call more than once.
func (c *Cache) Close() error {
	var err error
	c.closing.Do(func() {
		close(c.stop)
		c.wg.Wait()
		if c.back != nil {
			err = c.back.close()
		}
	})
	return err
}

// Type is the configured tier type.
func (c *Cache) Type() string { return c.cfg.Type }

// TTL is how long an entry is served.
func (c *Cache) TTL() time.Duration { return c.cfg.TTL }

// Get returns the entry under k, or nil: from memory, else from the back
// tier (then kept in memory too). A back tier that fails is a miss.
func (c *Cache) Get(ctx context.Context, k Key) *Entry {
	now := c.cfg.Now().UnixMilli()
	if e := c.mem.get(&k.Sum, now); e != nil {
		c.memC.hits.Inc()
		return e
	}
	c.memC.misses.Inc()
	if c.back == nil {
		return nil
	}
	ok, probe := c.guard.allow()
	if !ok {
		return nil // bypassed; counted when it went down
	}
	val, found, err := c.back.get(ctx, k.String())
	if err != nil && ctx.Err() != nil {
		c.guard.release(probe) // the request ran out of time, not the tier
	} else {
		c.settle(probe, err)
	}
	if err != nil {
		c.backC.errors.Inc()
		if errors.Is(err, errForged) {
			c.forged.Do(func() { c.cfg.Logger.Warn(err.Error(), "tier", c.cfg.Type) })
		}
		return nil
	}
	var e *Entry
	if found {
		if e, err = decodeEntry(val); err != nil {
			c.backC.errors.Inc()
		}
	}
	if e == nil || e.Expires <= now {
		c.backC.misses.Inc()
		return nil
	}
	c.backC.hits.Inc()
	c.keep(k, e, now)
	return e
}

// settle tells the guard how a back tier call ended, when it has news:
// a failure, or the outcome of a try.
func (c *Cache) settle(probe bool, err error) {
	switch {
	case failed(err):
		c.guard.done(probe, err)
	case probe:
		c.guard.done(true, nil)
	}
}

// keep puts e in the memory tier.
func (c *Cache) keep(k Key, e *Entry, now int64) {
	exp := e.Expires
	if c.cfg.Type == TypeRedis {
		exp = min(exp, now+frontTTL.Milliseconds())
	}
	if n := c.mem.put(k, e, exp); n > 0 {
		c.memC.evictions.Add(n)
	}
}

// Put stores e under k: in memory at once, in the back tier in the
// background. An entry over MaxEntryBytes is not stored (false).
func (c *Cache) Put(k Key, e *Entry) bool {
	if e.Size() > c.cfg.MaxEntryBytes {
		return false
	}
	c.keep(k, e, c.cfg.Now().UnixMilli())
	c.memC.stores.Inc()
	if c.back == nil {
		return true
	}
	select {
	case c.writes <- write{key: k.String(), val: e.encode(nil), ttl: time.Duration(e.Expires-c.cfg.Now().UnixMilli()) * time.Millisecond}:
	default:
		c.backC.errors.Inc()
	}
	return true
}

// expires is when an entry made now expires (Unix ms).
func (c *Cache) expires() int64 { return c.cfg.Now().Add(c.cfg.TTL).UnixMilli() }

// writer makes the back tier's writes, one at a time, until Close; those
// waiting then are made before it returns.
func (c *Cache) writer() {
	defer c.wg.Done()
	for {
		select {
		case w := <-c.writes:
			c.write(w)
		case <-c.stop:
			for {
				select {
				case w := <-c.writes:
					c.write(w)
				default:
					return
				}
			}
		}
	}
}

func (c *Cache) write(w write) {
	if w.done != nil {
		close(w.done)
		return
	}
	ok, probe := c.guard.allow()
	if !ok {
		c.backC.errors.Inc()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RedisTimeout)
	err := c.back.set(ctx, w.key, w.val, w.ttl)
	cancel()
	c.settle(probe, err)
	if err != nil {
		c.backC.errors.Inc()
		return
	}
	c.backC.stores.Inc()
}

// Flush waits until the writes queued before it are made (or ctx ends).
func (c *Cache) Flush(ctx context.Context) error {
	if c.back == nil {
		return nil
	}
	done := make(chan struct{})
	select {
	case c.writes <- write{done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sweeper deletes expired pebble entries every Config.Sweep until Close.
func (c *Cache) sweeper() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Sweep)
	defer t.Stop()
	c.pebble.sweep() // at once: its scan counts what is stored
	for {
		select {
		case <-t.C:
			if _, err := c.pebble.sweep(); err != nil {
				c.cfg.Logger.Warn("cache sweep failed", "tier", TypePebble, "err", err)
			}
		case <-c.stop:
			return
		}
	}
}

// TierStats is one tier's figures. Entries and Bytes are -1 when the tier
// could not be asked.
type TierStats struct {
	Tier      string `json:"tier"`
	Up        bool   `json:"up"`
	Hits      uint64 `json:"hits"`
	Misses    uint64 `json:"misses"`
	Stores    uint64 `json:"stores"`
	Evictions uint64 `json:"evictions"`
	Errors    uint64 `json:"errors"`
	Entries   int64  `json:"entries"`
	Bytes     int64  `json:"bytes"`
	// MaxBytes is the memory tier's bound.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Error says why the tier could not be asked.
	Error string `json:"error,omitempty"`
}

// Stats is the cache's figures, tier by tier (memory first).
type Stats struct {
	Type       string      `json:"type"`
	TTLSeconds float64     `json:"ttl_seconds"`
	Tiers      []TierStats `json:"tiers"`
	// Shared counts requests that shared an identical one's model call.
	Shared uint64 `json:"shared"`
}

// Stats reads every tier's figures; Redis is asked (a SCAN of the
// cache's keys), within ctx.
func (c *Cache) Stats(ctx context.Context) Stats {
	st := Stats{Type: c.cfg.Type, TTLSeconds: c.cfg.TTL.Seconds(), Shared: c.cfg.Metrics.Get(metrics.CacheShared)}
	n, b := c.mem.stats()
	st.Tiers = append(st.Tiers, tierStats(TypeMemory, c.memC, true, n, b))
	st.Tiers[0].MaxBytes = c.cfg.MaxBytes
	if c.back != nil {
		ts := tierStats(c.cfg.Type, c.backC, c.guard.up(), -1, -1)
		if n, b, err := c.back.usage(ctx); err != nil {
			ts.Error = err.Error()
		} else {
			ts.Entries, ts.Bytes = n, b
		}
		st.Tiers = append(st.Tiers, ts)
	}
	if c.sem != nil {
		n, b := c.sem.idx.stats()
		st.Tiers = append(st.Tiers, tierStats(TierSemantic, c.sem.counters, true, n, b))
	}
	return st
}

func tierStats(tier string, k counters, up bool, entries, bytes int64) TierStats {
	return TierStats{Tier: tier, Up: up, Hits: k.hits.Get(), Misses: k.misses.Get(), Stores: k.stores.Get(),
		Evictions: k.evictions.Get(), Errors: k.errors.Get(), Entries: entries, Bytes: bytes}
}

// PurgeResult says what a purge removed, tier by tier.
type PurgeResult struct {
	Tenant  string         `json:"tenant,omitempty"`
	Removed map[string]int `json:"removed"`
}

// Purge removes tenant's entries from every tier (every tenant's for
// ""): first the writes that wait are made, so none lands after. A back
// tier that fails is an EUnavailable error, after memory was purged.
func (c *Cache) Purge(ctx context.Context, tenant string) (*PurgeResult, error) {
	if tenant != "" && !moltbot.ValidTenantID(tenant) {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "tenant", Message: "tenant: " + moltbot.TenantIDRule}
	}
	res := &PurgeResult{Tenant: tenant, Removed: map[string]int{}}
	if err := c.Flush(ctx); err != nil {
		return nil, moltbot.Errorf(moltbot.ETimeout, "cache: purge: the writes waiting were not made in time")
	}
	res.Removed[TypeMemory] = c.mem.purge(tenant)
	if c.sem != nil {
		res.Removed[TierSemantic] = c.sem.idx.purge(tenant)
	}
	if c.back == nil {
		return res, nil
	}
	n, err := c.back.purge(ctx, tenant)
	res.Removed[c.cfg.Type] = n
	if err != nil {
		return res, &moltbot.Error{Code: moltbot.EUnavailable, Message: fmt.Sprintf("cache: purge of the %s tier failed (memory was purged)", c.cfg.Type), Err: err}
	}
	return res, nil
}
