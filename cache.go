package moltbot

import (
	"context"
	"sync/atomic"
)

// CacheMode is what a request asks of the output cache (the gateway reads
// it from X-Moltbot-Cache and Cache-Control).
type CacheMode uint8

// The cache modes.
const (
	// CacheAuto caches deterministic requests only: temperature 0, or a
	// seed given.
	CacheAuto CacheMode = iota
	// CacheUse caches the request whatever its sampling: the client takes
	// a stored reply to a request that would otherwise vary.
	CacheUse
	// CacheRefresh asks the model even when a reply is stored, and stores
	// the new one (Cache-Control: no-cache).
	CacheRefresh
	// CacheBypass neither reads nor writes the cache (X-Moltbot-Cache:
	// bypass, Cache-Control: no-store).
	CacheBypass
)

// What the output cache did for a turn (Completion.Cache, the
// X-Moltbot-Cache response header); "" when it had no part in it.
const (
	CacheHit  = "hit"
	CacheMiss = "miss"
)

// CacheControl is a request's word with the output cache: what the client
// asked (Mode) and, once the turn's cache stage has looked, what it found
// (Result). An edge that sends its headers before the reply is done (a
// stream) reads Result when the first token comes: the stage sets it
// before it sends one. Safe for concurrent use.
type CacheControl struct {
	Mode   CacheMode
	result atomic.Uint32 // 0: none, 1: hit, 2: miss, 3: hit by meaning
}

// SetResult records what the cache did (CacheHit or CacheMiss).
func (c *CacheControl) SetResult(r string) {
	switch r {
	case CacheHit:
		c.result.Store(1)
	case CacheMiss:
		c.result.Store(2)
	}
}

// SetSemanticHit records a hit of the cache's semantic tier: a stored
// reply to a question close in meaning (Result is CacheHit, Semantic
// true).
func (c *CacheControl) SetSemanticHit() { c.result.Store(3) }

// Semantic reports whether the turn was answered by the semantic tier
// (the X-Moltbot-Cache-Match: semantic response header).
func (c *CacheControl) Semantic() bool { return c.result.Load() == 3 }

// Result is CacheHit, CacheMiss, or "" while the cache has not looked (or
// had no part in the turn).
func (c *CacheControl) Result() string {
	switch c.result.Load() {
	case 1, 3:
		return CacheHit
	case 2:
		return CacheMiss
	}
	return ""
}

// Code is Result as a number, 0 (none) to 3 (a hit by meaning), for a
// turn's owner in a cluster to tell the node that took the request.
func (c *CacheControl) Code() uint32 { return c.result.Load() }

// SetCode records a Code another node sent; an unknown one is ignored.
func (c *CacheControl) SetCode(v uint32) {
	if v > 0 && v <= 3 {
		c.result.Store(v)
	}
}

type cacheControlKey struct{}

// WithCacheControl returns ctx carrying c, for the turn's cache stage. It
// reaches the stage wherever the turn runs: a turn forwarded to its
// conversation's owner in a cluster carries the mode there and the result
// back (Code).
func WithCacheControl(ctx context.Context, c *CacheControl) context.Context {
	return context.WithValue(ctx, cacheControlKey{}, c)
}

// CacheControlOf is the CacheControl ctx carries, or nil.
func CacheControlOf(ctx context.Context) *CacheControl {
	c, _ := ctx.Value(cacheControlKey{}).(*CacheControl)
	return c
}
