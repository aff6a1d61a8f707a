package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/moltbot/moltbot/internal/metrics"
)

// backend is a tier behind the memory one (pebble, redis): it holds
// entries in their stored form under Key.String().
type backend interface {
	get(ctx context.Context, key string) ([]byte, bool, error)
	set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// purge deletes tenant's entries (every entry for "").
	purge(ctx context.Context, tenant string) (int, error)
	// usage counts the entries and their bytes.
	usage(ctx context.Context) (entries, bytes int64, err error)
	close() error
}

// counter is a metrics counter (internal/metrics hands them out).
type counter interface {
	Inc()
	Add(n int)
	Get() uint64
}

// counters are one tier's metrics, looked up once.
type counters struct {
	hits, misses, stores, evictions, errors counter
}

func newCounters(met *metrics.Registry, tier string) counters {
	return counters{hits: met.Counter(metrics.CacheHits, tier), misses: met.Counter(metrics.CacheMisses, tier),
		stores: met.Counter(metrics.CacheStores, tier), evictions: met.Counter(metrics.CacheEvictions, tier),
		errors: met.Counter(metrics.CacheErrors, tier)}
}

// guard keeps a failing back tier out of the requests' way: after an
// error the tier is down, and every call is refused at once (the request
// goes on without the cache) until a wait has passed; then one call tries
// it again. Each failed try doubles the wait, up to max; a success brings
// the tier back. It logs the change both ways, and while the tier stays
// down at most once a minute.
type guard struct {
	tier       string
	first, max time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu      sync.Mutex
	down    bool
	until   time.Time // no try before
	wait    time.Duration
	probing bool // a try is out
	logged  time.Time
}

// errDown: the tier is bypassed after failures.
var errDown = errors.New("cache: tier down; bypassed until its next try")

// logEvery bounds the "still down" log lines.
const logEvery = time.Minute

// allow reports whether a call may go to the tier now, and whether it is
// the one try of a tier that is down.
func (g *guard) allow() (ok, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		return true, false
	}
	if g.probing || g.now().Before(g.until) {
		return false, false
	}
	g.probing = true
	return true, true
}

// done records how a call that allow let through ended. A call that
// started before the tier went down and failed after says nothing new.
func (g *guard) done(probe bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down && !probe && err != nil {
		return
	}
	now := g.now()
	if err == nil {
		if g.down {
			g.log.Info("cache tier is back", "tier", g.tier, "down_for", now.Sub(g.logged).Round(time.Millisecond))
		}
		g.down, g.probing, g.wait = false, false, 0
		return
	}
	if !g.down {
		g.down, g.wait, g.logged = true, g.first, now
		g.log.Warn("cache tier failed; requests bypass it until it answers again", "tier", g.tier, "err", err, "retry_in", g.wait)
	} else {
		g.wait = min(2*g.wait, g.max)
		if now.Sub(g.logged) >= logEvery {
			g.logged = now
			g.log.Warn("cache tier still down; requests bypass it", "tier", g.tier, "err", err, "retry_in", g.wait)
		}
	}
	g.probing = false
	g.until = now.Add(g.wait)
}

// release ends a try that says nothing of the tier (its request ran out
// of time): the next call may try.
func (g *guard) release(probe bool) {
	if !probe {
		return
	}
	g.mu.Lock()
	g.probing = false
	g.mu.Unlock()
}

// up reports whether the tier is in use.
func (g *guard) up() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.down
}

// failed reports whether err says the tier is unwell (rather than busy:
// every connection in use is no sign of an outage).
func failed(err error) bool {
	return err != nil && !errors.Is(err, errBusy) && !errors.Is(err, errForged)
}
