package cache

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func entry(c *Cache, text string) *Entry {
	return &Entry{Content: text, Served: served, FinishReason: "stop", Expires: c.expires()}
}

func tierOf(st Stats, name string) TierStats {
	for _, ts := range st.Tiers {
		if ts.Tier == name {
			return ts
		}
	}
	return TierStats{Tier: "none"}
}

// The pebble tier keeps entries behind the memory one: a node that lost
// its memory tier (a restart) still finds them; an expired entry is
// refused, then swept.
func TestPebbleTier(t *testing.T) {
	for _, db := range []struct {
		name string
		open func(t *testing.T) storage.Namespaces
	}{
		{"memory store", func(*testing.T) storage.Namespaces { return storage.NewMemory() }},
		{"pebble", func(t *testing.T) storage.Namespaces {
			p, err := storage.Open(t.TempDir(), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			clk := newClock()
			store := db.open(t)
			met := metrics.New("test")
			cfg := Config{Type: TypePebble, Store: store, TTL: time.Minute, Now: clk.now, Metrics: met}
			c := newCache(t, cfg)
			ctx := context.Background()
			a, b := key("acme", 1), key("bob", 2)
			c.Put(a, entry(c, "for acme"))
			c.Put(b, entry(c, "for bob"))
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			c.Close()

			// A new cache over the same database: memory is empty.
			cfg.Metrics = metrics.New("test")
			c = newCache(t, cfg)
			if e := c.Get(ctx, a); e == nil || e.Content != "for acme" {
				t.Fatalf("from pebble: %+v", e)
			}
			st := c.Stats(ctx)
			if m, p := tierOf(st, TypeMemory), tierOf(st, TypePebble); m.Misses != 1 || p.Hits != 1 || m.Entries != 1 || p.Entries != 2 || !p.Up {
				t.Errorf("stats %+v", st)
			}
			if e := c.Get(ctx, a); e == nil || tierOf(c.Stats(ctx), TypeMemory).Hits != 1 {
				t.Error("a pebble hit is not kept in memory")
			}
			res, err := c.Purge(ctx, "acme")
			if err != nil || res.Removed[TypeMemory] != 1 || res.Removed[TypePebble] != 1 {
				t.Fatalf("purge %+v %v", res, err)
			}
			if c.Get(ctx, a) != nil || c.Get(ctx, b) == nil {
				t.Error("purge of acme")
			}
			clk.add(2 * time.Minute)
			c.mem.purge("") // as after a restart
			if c.Get(ctx, b) != nil {
				t.Error("an expired entry was served")
			}
			if n, err := c.pebble.sweep(); n != 1 || err != nil {
				t.Errorf("sweep: %d %v", n, err)
			}
			if p := tierOf(c.Stats(ctx), TypePebble); p.Entries != 0 || p.Bytes != 0 {
				t.Errorf("after the sweep %+v", p)
			}
		})
	}
}

func TestMemoryCache(t *testing.T) {
	clk := newClock()
	c := newCache(t, Config{Type: TypeMemory, MaxBytes: 1 << 20, MaxEntryBytes: 1 << 10, TTL: time.Minute, Now: clk.now})
	ctx := context.Background()
	c.Put(key("a", 1), entry(c, "x"))
	c.Put(key("a", 2), entry(c, strings.Repeat("x", 2<<10))) // over max_entry_bytes
	if c.Get(ctx, key("a", 1)) == nil || c.Get(ctx, key("a", 2)) != nil {
		t.Error("max_entry_bytes")
	}
	clk.add(time.Minute)
	if c.Get(ctx, key("a", 1)) != nil {
		t.Error("served past its ttl")
	}
	st := c.Stats(ctx)
	if len(st.Tiers) != 1 || st.Tiers[0].Hits != 1 || st.Tiers[0].Misses != 2 || st.Tiers[0].Stores != 1 || st.TTLSeconds != 60 {
		t.Errorf("stats %+v", st)
	}
	if _, err := c.Purge(ctx, "no/such"); moltbot.ErrorCode(err) != moltbot.EInvalid {
		t.Errorf("purge of a bad tenant id: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Type: "disk"},
		{Type: TypePebble},
		{Type: TypeMemory, MaxBytes: 1 << 10, MaxEntryBytes: 1 << 20},
		{Type: TypeRedis, Port: 70000},
	} {
		if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), "cache: ") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
