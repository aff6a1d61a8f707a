package failover

import (
	"sort"
	"sync"
	"time"
)

// Policy holds the breakers of every provider/model and the holds placed on
// providers by 429 Retry-After. Safe for concurrent use.
type Policy struct {
	cfg      Config
	mu       sync.Mutex
	breakers map[string]*Breaker
	holds    map[string]time.Time // provider -> rate limited until
	onNew    func(key string, b *Breaker)
}

// NewPolicy returns a policy; onNew, when set, is called once for each
// breaker created (to register its metrics).
func NewPolicy(cfg Config, onNew func(key string, b *Breaker)) *Policy {
	cfg.ensureDefaults()
	return &Policy{cfg: cfg, breakers: map[string]*Breaker{}, holds: map[string]time.Time{}, onNew: onNew}
}

// Config returns the thresholds in force.
func (p *Policy) Config() Config { return p.cfg }

// Breaker returns the breaker of provider/model, creating it closed.
func (p *Policy) Breaker(provider, model string) *Breaker {
	// The key is looked up from a buffer on the stack (a lookup with
	// string(bytes) does not copy): every call asks, one in a lifetime
	// creates.
	var buf [96]byte
	k := append(append(append(buf[:0], provider...), '/'), model...)
	p.mu.Lock()
	b := p.breakers[string(k)]
	created := false
	var key string
	if b == nil {
		key = string(k)
		b = NewBreaker(p.cfg)
		p.breakers[key] = b
		created = true
	}
	p.mu.Unlock()
	if created && p.onNew != nil {
		p.onNew(key, b)
	}
	return b
}

// Hold skips provider until now+d (a 429 with Retry-After).
func (p *Policy) Hold(now time.Time, provider string, d time.Duration) {
	if d <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := now.Add(d); until.After(p.holds[provider]) {
		p.holds[provider] = until
	}
}

// HeldFor returns how long provider stays held (0: not held).
func (p *Policy) HeldFor(now time.Time, provider string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until, ok := p.holds[provider]; ok && now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

// Skip reasons reported by Admit.
const (
	ReasonOpen    = "breaker_open"
	ReasonHeld    = "rate_limited"
	ReasonMissing = "model_missing"
	ReasonDown    = "unreachable"
)

// Admit decides whether a request may go to provider/model now. reachable is
// the provider's last health check. When ok is false, reason says why. When
// probe is true the caller must Record the outcome with probe set.
func (p *Policy) Admit(now time.Time, provider, model string, reachable bool) (ok, probe bool, reason string) {
	if p.HeldFor(now, provider) > 0 {
		return false, false, ReasonHeld
	}
	if !reachable {
		return false, false, ReasonDown
	}
	b := p.Breaker(provider, model)
	ok, probe = b.Allow(now)
	if ok {
		return true, probe, ""
	}
	b.mu.Lock()
	missing := b.missing
	b.mu.Unlock()
	if missing {
		return false, false, ReasonMissing
	}
	return false, false, ReasonOpen
}

// Entry is one breaker for status pages.
type Entry struct {
	Provider, Model string
	Stats
	HeldFor time.Duration
}

// Snapshot lists every breaker, sorted by provider/model.
func (p *Policy) Snapshot(now time.Time) []Entry {
	p.mu.Lock()
	keys := make([]string, 0, len(p.breakers))
	for k := range p.breakers {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	sort.Strings(keys)
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		i := indexByte(k, '/')
		b := p.Breaker(k[:i], k[i+1:])
		out = append(out, Entry{Provider: k[:i], Model: k[i+1:], Stats: b.Stats(now), HeldFor: p.HeldFor(now, k[:i])})
	}
	return out
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
