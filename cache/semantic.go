package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// TierSemantic labels the semantic tier's metrics and figures.
const TierSemantic = "semantic"

// SemanticConfig is the semantic tier: a turn that misses the exact tier
// is looked up by the meaning of its last user message, among the
// entries stored for the same context (everything else of the request,
// exactly). Off unless Enabled.
type SemanticConfig struct {
	Enabled bool
	// Threshold is the least cosine similarity of a hit (0 < t <= 1).
	Threshold float64
	// MaxEntries bounds the index (every context and tenant together);
	// the least recently used entries go first.
	MaxEntries int
	// Timeout bounds the embedding of a message: a slower one bypasses
	// the tier.
	Timeout time.Duration
	// Embed embeds one text (the node's embedding chain).
	Embed func(ctx context.Context, text string) ([]float32, error)
}

// Defaults of SemanticConfig.
const (
	DefaultSemanticThreshold  = 0.95
	DefaultSemanticMaxEntries = 4096
	DefaultSemanticTimeout    = 200 * time.Millisecond
)

// maxSemanticText bounds the message the semantic tier embeds: a longer
// one is looked up exactly only (an embedding model reads a few thousand
// tokens at most, and two long prompts that are close in meaning are
// seldom the same question).
const maxSemanticText = 8 << 10

// semVersion heads a context key's hash (KeyOf's keyVersion for the
// exact key): the two never meet.
const semVersion = "moltbot.cache.semantic.v1\x00"

func (c *SemanticConfig) ensureDefaults() {
	if c.Threshold == 0 {
		c.Threshold = DefaultSemanticThreshold
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultSemanticMaxEntries
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultSemanticTimeout
	}
}

func (c *SemanticConfig) check() error {
	if !c.Enabled {
		return nil
	}
	if c.Embed == nil {
		return errors.New("cache: the semantic tier needs an embedding chain (models.embeddings)")
	}
	if !(c.Threshold > 0 && c.Threshold <= 1) {
		return fmt.Errorf("cache: semantic threshold must be above 0 and at most 1, got %v", c.Threshold)
	}
	return nil
}

// semanticText is the text the semantic tier compares for turn t, and
// whether t may be looked up by meaning at all: its last message is the
// user's, in text; no tools are offered and no message holds a tool call,
// a tool result or an image (a reply to those depends on more than the
// wording of a question).
func semanticText(t *moltbot.Turn) (string, bool) {
	if len(t.Options.Tools) > 0 || len(t.Messages) == 0 {
		return "", false
	}
	for i := range t.Messages {
		m := &t.Messages[i]
		if m.Role == moltbot.RoleTool {
			return "", false
		}
		for j := range m.Parts {
			if m.Parts[j].Type != moltbot.PartText {
				return "", false
			}
		}
	}
	last := &t.Messages[len(t.Messages)-1]
	if last.Role != moltbot.RoleUser {
		return "", false
	}
	text := last.Content
	if len(last.Parts) > 0 {
		var b strings.Builder
		b.WriteString(text)
		for j := range last.Parts {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(last.Parts[j].Text)
		}
		text = b.String()
	}
	if strings.TrimSpace(text) == "" || len(text) > maxSemanticText {
		return "", false
	}
	return text, true
}

// semantic is the stage's semantic tier: the embedding of a turn's last
// user message, the index, the metrics.
type semantic struct {
	cfg SemanticConfig
	c   *Cache
	idx *semIndex

	counters
	embedTime, searchTime histogram
}

// histogram is a latency histogram (internal/metrics hands them out).
type histogram interface{ Update(float64) }

func newSemantic(c *Cache) *semantic {
	cfg := c.cfg.Semantic
	met := c.cfg.Metrics
	s := &semantic{cfg: cfg, c: c, idx: newSemIndex(cfg.MaxEntries), counters: newCounters(met, TierSemantic),
		embedTime: met.Histogram(metrics.CacheSemanticLookup, "embed"), searchTime: met.Histogram(metrics.CacheSemanticLookup, "search")}
	met.Gauge(`moltbot_cache_entries{tier="semantic"}`, func() float64 { n, _ := s.idx.stats(); return float64(n) })
	met.Gauge(`moltbot_cache_bytes{tier="semantic"}`, func() float64 { _, b := s.idx.stats(); return float64(b) })
	return s
}

// probe is a turn's semantic lookup: its context key and its message's
// vector (normalized).
type probe struct {
	ctx Key
	vec []float32
}

// prepare embeds text for turn t, within the tier's timeout; nil when the
// embedding failed (counted: the turn goes on without the tier).
func (s *semantic) prepare(ctx context.Context, t *moltbot.Turn, text string) *probe {
	start := time.Now()
	ectx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	vec, err := s.cfg.Embed(ectx, text)
	cancel()
	s.embedTime.Update(time.Since(start).Seconds())
	if err == nil {
		vec, err = normalized(vec)
	}
	if err != nil {
		s.errors.Inc()
		if ctx.Err() == nil {
			s.c.cfg.Logger.Debug("semantic cache bypassed: the embedding failed", "err", err)
		}
		return nil
	}
	return &probe{ctx: contextKey(t), vec: vec}
}

// find returns the stored reply closest to p, when its similarity reaches
// the threshold and the exact tiers still hold it, and the similarity.
func (s *semantic) find(ctx context.Context, p *probe) (*Entry, float32) {
	start := time.Now()
	now := s.c.cfg.Now().UnixMilli()
	k, sim, ok := s.idx.lookup(&p.ctx.Sum, p.vec, float32(s.cfg.Threshold), now)
	s.searchTime.Update(time.Since(start).Seconds())
	if !ok {
		s.misses.Inc()
		return nil, sim
	}
	e := s.c.Get(ctx, k)
	if e == nil {
		// The reply is gone (evicted, expired, purged): so is its vector.
		s.idx.forget(&k.Sum)
		s.misses.Inc()
		return nil, sim
	}
	s.hits.Inc()
	return e, sim
}

// add indexes the reply stored under k (until expires) by p.
func (s *semantic) add(p *probe, k Key, expires int64) {
	s.stores.Inc()
	if n := s.idx.add(p.ctx, p.vec, k, expires); n > 0 {
		s.evictions.Add(n)
	}
}

// normalized is v scaled to length 1, or an error when it has none.
func normalized(v []float32) ([]float32, error) {
	var sum float64
	for _, f := range v {
		sum += float64(f) * float64(f)
	}
	if len(v) == 0 || !(sum > 0) || math.IsInf(sum, 0) {
		return nil, errors.New("cache: the embedding has no direction (empty, zero or not finite)")
	}
	if math.Abs(sum-1) < 1e-6 {
		return v, nil
	}
	inv := 1 / math.Sqrt(sum)
	out := make([]float32, len(v))
	for i, f := range v {
		out[i] = float32(float64(f) * inv)
	}
	return out, nil
}

// contextKey is the key of everything in t but its last message: the
// tenant's space, the chain, the earlier messages, every option. Entries
// compared by meaning share it.
func contextKey(t *moltbot.Turn) Key { return keyOf(t, semVersion, len(t.Messages)-1) }

// semIndex holds the vectors of stored replies, by context key: a flat
// list per context (a lookup compares the message with every vector of
// its context), bounded in entries over all contexts, least recently
// used first out. Vectors are float32, normalized (cosine is a dot
// product). Safe for concurrent use: lookups share a read lock.
type semIndex struct {
	mu     sync.RWMutex
	max    int
	groups map[[sha256.Size]byte]*semGroup
	byKey  map[[sha256.Size]byte]*semNode // by the reply's exact key
	lru    semNode                        // sentinel: lru.next is the most recently used
	floats int                            // held in every group's vecs
}

// semGroup is one context's entries: node i's vector is vecs[i*dims:].
type semGroup struct {
	sum    [sha256.Size]byte
	tenant string
	dims   int
	vecs   []float32
	nodes  []*semNode
}

type semNode struct {
	prev, next *semNode
	g          *semGroup
	i          int
	key        Key   // the reply's exact key
	expires    int64 // Unix ms
}

// semNodeBytes approximates what an entry costs beyond its vector: the
// node, its slot in the group and in byKey.
const semNodeBytes = 200

func newSemIndex(max int) *semIndex {
	x := &semIndex{max: max, groups: map[[sha256.Size]byte]*semGroup{}, byKey: map[[sha256.Size]byte]*semNode{}}
	x.lru.next, x.lru.prev = &x.lru, &x.lru
	return x
}

// lookup returns the exact key of the entry of context ctx whose vector
// is closest to vec, when its similarity is at least threshold; the best
// similarity seen either way. Expired entries are passed over.
func (x *semIndex) lookup(ctx *[sha256.Size]byte, vec []float32, threshold float32, now int64) (Key, float32, bool) {
	x.mu.RLock()
	g := x.groups[*ctx]
	if g == nil || g.dims != len(vec) {
		x.mu.RUnlock()
		return Key{}, 0, false
	}
	best, at := float32(-2), -1
	d := g.dims
	for i, n := range g.nodes {
		if n.expires <= now {
			continue
		}
		if s := dot(vec, g.vecs[i*d:i*d+d]); s > best {
			best, at = s, i
		}
	}
	if at < 0 || best < threshold {
		x.mu.RUnlock()
		return Key{}, max(best, 0), false
	}
	n := g.nodes[at]
	k := n.key
	x.mu.RUnlock()
	x.mu.Lock()
	if n.g != nil && x.lru.next != n { // still held
		unlinkSem(n)
		x.front(n)
	}
	x.mu.Unlock()
	return k, best, true
}

// add indexes the reply under k by vec in context ctx, until expires; it
// reports how many entries it evicted to stay within the bound.
func (x *semIndex) add(ctx Key, vec []float32, k Key, expires int64) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := x.byKey[k.Sum]; n != nil {
		x.remove(n) // the same question again (a refresh): its newest
	}
	g := x.groups[ctx.Sum]
	if g != nil && g.dims != len(vec) {
		// The chain's dimension changed (a reload): the old vectors
		// cannot be compared with the new.
		for len(g.nodes) > 0 {
			x.remove(g.nodes[len(g.nodes)-1])
		}
		g = nil
	}
	if g == nil {
		g = &semGroup{sum: ctx.Sum, tenant: ctx.Tenant, dims: len(vec)}
		x.groups[ctx.Sum] = g
	}
	n := &semNode{g: g, i: len(g.nodes), key: k, expires: expires}
	g.nodes = append(g.nodes, n)
	g.vecs = append(g.vecs, vec...)
	x.floats += len(vec)
	x.byKey[k.Sum] = n
	x.front(n)
	evicted := 0
	for len(x.byKey) > x.max {
		x.remove(x.lru.prev)
		evicted++
	}
	return evicted
}

// forget removes the entry of the reply under sum, if there is one.
func (x *semIndex) forget(sum *[sha256.Size]byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := x.byKey[*sum]; n != nil {
		x.remove(n)
	}
}

func (x *semIndex) front(n *semNode) {
	n.prev, n.next = &x.lru, x.lru.next
	x.lru.next.prev = n
	x.lru.next = n
}

func unlinkSem(n *semNode) { n.prev.next, n.next.prev = n.next, n.prev }

// remove takes n out: the group's last entry moves into its slot.
func (x *semIndex) remove(n *semNode) {
	unlinkSem(n)
	delete(x.byKey, n.key.Sum)
	g := n.g
	d, last := g.dims, len(g.nodes)-1
	if n.i != last {
		m := g.nodes[last]
		copy(g.vecs[n.i*d:n.i*d+d], g.vecs[last*d:last*d+d])
		g.nodes[n.i], m.i = m, n.i
	}
	g.nodes[last] = nil
	g.nodes = g.nodes[:last]
	g.vecs = g.vecs[:last*d]
	x.floats -= d
	n.g = nil
	if last == 0 {
		delete(x.groups, g.sum)
	}
}

// purge removes tenant's entries (every entry for ""), and reports how many.
func (x *semIndex) purge(tenant string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := 0
	for n := x.lru.next; n != &x.lru; {
		next := n.next
		if tenant == "" || n.g.tenant == tenant {
			x.remove(n)
			k++
		}
		n = next
	}
	return k
}

// stats returns the entries held and about what they cost.
func (x *semIndex) stats() (entries, bytes int64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return int64(len(x.byKey)), int64(x.floats)*4 + int64(len(x.byKey))*semNodeBytes
}

// dot is the dot product of a and b (of one length): eight sums at a
// time, so the loop carries no one chain of additions.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	for len(a) >= 8 && len(b) >= 8 {
		s0 += a[0] * b[0]
		s1 += a[1] * b[1]
		s2 += a[2] * b[2]
		s3 += a[3] * b[3]
		s4 += a[4] * b[4]
		s5 += a[5] * b[5]
		s6 += a[6] * b[6]
		s7 += a[7] * b[7]
		a, b = a[8:], b[8:]
	}
	for i := range a {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3) + (s4 + s5) + (s6 + s7)
}
