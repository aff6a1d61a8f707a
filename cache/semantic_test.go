package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// simCounted is the simulator with its chat calls counted.
type simCounted struct {
	*sim.Provider
	calls atomic.Int64
}

func (c *simCounted) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	c.calls.Add(1)
	return c.Provider.Chat(ctx, req, fn)
}

// semEnv is a runtime over the simulator (chat model m/m) with an
// embedding chain (another simulator, e/embed) and a memory cache whose
// semantic tier embeds through it.
type semEnv struct {
	*env
	chat   *simCounted
	emb    *sim.Provider
	embeds atomic.Int64 // embedding calls the tier made
}

const embedModel = "embed"

func startSemantic(t testing.TB, sc SemanticConfig) *semEnv {
	t.Helper()
	met := metrics.New("test")
	se := &semEnv{chat: &simCounted{Provider: sim.NewProvider("m", sim.Options{Tokens: 8, Seed: 1})}, emb: sim.NewProvider("e", sim.Options{Seed: 1})}
	var rtp atomic.Pointer[actors.Runtime]
	sc.Enabled = true
	sc.Embed = func(ctx context.Context, text string) ([]float32, error) {
		se.embeds.Add(1)
		out, err := actors.EmbeddingsOf(rtp.Load()).Embed(ctx, &moltbot.EmbedRequest{Input: []string{text}})
		if err != nil {
			return nil, err
		}
		return out.Vectors[0], nil
	}
	c := newCache(t, Config{Type: TypeMemory, Metrics: met, Semantic: sc})
	stage := NewStage(c)
	rt, err := actors.New(actors.Config{
		Providers: []actors.ProviderSpec{
			{Name: "m", Type: "sim", Provider: se.chat, MaxInFlight: 64, MaxQueue: 64, Timeout: 20 * time.Second},
			{Name: "e", Type: "sim", Provider: se.emb, MaxInFlight: 64, MaxQueue: 64, Timeout: 20 * time.Second}},
		Chain:      []moltbot.ModelRef{{Provider: "m", Model: "m"}},
		Embeddings: actors.EmbedChain{Models: []moltbot.ModelRef{{Provider: "e", Model: embedModel}}},
		Store:      storage.NewMemory(), Metrics: met, HealthInterval: time.Hour,
		Around: []actors.AroundModel{stage}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	rtp.Store(rt)
	se.env = &env{rt: rt, c: c, stage: stage, met: met}
	return se
}

// ask is a stateless completion of tenant: a system prompt, then the
// user's question; temperature 0.
func (se *semEnv) ask(t testing.TB, tenant, system, question string) answer {
	t.Helper()
	c := moltbot.WithPrincipal(ctx(t), &moltbot.Principal{Tenant: tenant, Space: tenant})
	cc := &moltbot.CacheControl{}
	c = moltbot.WithCacheControl(c, cc)
	msgs := []moltbot.Message{{Role: moltbot.RoleSystem, Content: system}, {Role: moltbot.RoleUser, Content: question}}
	var a answer
	a.comp, a.err = se.rt.Complete(c, msgs, zero(), nil)
	a.result = cc.Result()
	if cc.Semantic() {
		a.result = "semantic"
	}
	if a.err != nil {
		t.Fatalf("%q: %v", question, a.err)
	}
	return a
}

// similarity is the cosine of two texts under the simulator's embeddings.
func similarity(t testing.TB, a, b string) float64 {
	v, err := sim.Embed(embedModel, []string{a, b}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return float64(dot(v[0], v[1]))
}

const (
	sys        = "You are a terse assistant."
	question   = "what is the capital city of france"
	paraphrase = "tell me what is the capital city of france"
	unrelated  = "how do I bake sourdough bread at home"
)

// A paraphrase that shares most words is answered by the stored reply
// (no model call; marked semantic); an unrelated question is not.
func TestSemanticParaphraseHits(t *testing.T) {
	s := similarity(t, question, paraphrase)
	if s < 0.85 || s >= 0.99 {
		t.Fatalf("the simulator puts the paraphrase at %.3f; the test wants it between 0.85 and 0.99", s)
	}
	if u := similarity(t, question, unrelated); u > 0.3 {
		t.Fatalf("unrelated at %.3f", u)
	}
	se := startSemantic(t, SemanticConfig{Threshold: 0.85})
	first := se.ask(t, "acme", sys, question)
	if first.result != moltbot.CacheMiss || se.chat.calls.Load() != 1 {
		t.Fatalf("first: %s, %d calls", first.result, se.chat.calls.Load())
	}
	second := se.ask(t, "acme", sys, paraphrase)
	if second.result != "semantic" || second.comp.Cache != moltbot.CacheHit || second.comp.Content != first.comp.Content {
		t.Fatalf("paraphrase: %s %q, want the stored %q", second.result, second.comp.Content, first.comp.Content)
	}
	if n := se.chat.calls.Load(); n != 1 {
		t.Errorf("model calls %d after the paraphrase, want 1", n)
	}
	// The exact question again: the exact tier, no embedding.
	before := se.embeds.Load()
	if a := se.ask(t, "acme", sys, question); a.result != moltbot.CacheHit {
		t.Errorf("exact repeat: %s", a.result)
	}
	if se.embeds.Load() != before {
		t.Error("an exact hit made an embedding call")
	}
	third := se.ask(t, "acme", sys, unrelated)
	if third.result != moltbot.CacheMiss || se.chat.calls.Load() != 2 || third.comp.Content == first.comp.Content {
		t.Fatalf("unrelated: %s, %d calls", third.result, se.chat.calls.Load())
	}
	if h, m := se.met.Get(metrics.CacheHits, TierSemantic), se.met.Get(metrics.CacheMisses, TierSemantic); h != 1 || m != 2 {
		t.Errorf("semantic hits %d misses %d, want 1 and 2", h, m)
	}
	if n := se.met.Get(metrics.CacheStores, TierSemantic); n != 2 {
		t.Errorf("semantic stores %d, want 2", n)
	}
	st := se.c.Stats(ctx(t))
	if last := st.Tiers[len(st.Tiers)-1]; last.Tier != TierSemantic || last.Entries != 2 || last.Bytes < 2*384*4 {
		t.Errorf("stats %+v", last)
	}
	// A purge of the tenant empties the index too.
	res, err := se.c.Purge(ctx(t), "acme")
	if err != nil || res.Removed[TierSemantic] != 2 {
		t.Fatalf("purge %+v %v", res, err)
	}
	if a := se.ask(t, "acme", sys, paraphrase); a.result != moltbot.CacheMiss {
		t.Errorf("after the purge: %s", a.result)
	}
}

// Only the last user message is compared by meaning: another system
// prompt, another earlier message, another tenant never hit.
func TestSemanticContextMustMatch(t *testing.T) {
	se := startSemantic(t, SemanticConfig{Threshold: 0.85})
	se.ask(t, "acme", sys, question)
	if a := se.ask(t, "acme", "You are a pirate.", paraphrase); a.result != moltbot.CacheMiss {
		t.Errorf("another system prompt: %s", a.result)
	}
	if a := se.ask(t, "beta", sys, question); a.result != moltbot.CacheMiss {
		t.Errorf("another tenant, the same question: %s", a.result)
	}
	if a := se.ask(t, "gamma", sys, paraphrase); a.result != moltbot.CacheMiss {
		t.Errorf("another tenant: %s", a.result)
	}
	if a := se.ask(t, "acme", sys, paraphrase); a.result != "semantic" {
		t.Errorf("the same context: %s", a.result)
	}
	// Earlier messages count exactly.
	c := moltbot.WithPrincipal(ctx(t), &moltbot.Principal{Tenant: "acme", Space: "acme"})
	cc := &moltbot.CacheControl{}
	msgs := []moltbot.Message{{Role: moltbot.RoleSystem, Content: sys}, {Role: moltbot.RoleUser, Content: "hello"},
		{Role: moltbot.RoleAssistant, Content: "hi"}, {Role: moltbot.RoleUser, Content: paraphrase}}
	if _, err := se.rt.Complete(moltbot.WithCacheControl(c, cc), msgs, zero(), nil); err != nil || cc.Semantic() || cc.Result() != moltbot.CacheMiss {
		t.Errorf("a longer history: %s %v", cc.Result(), err)
	}
	if n := se.chat.calls.Load(); n != 5 {
		t.Errorf("model calls %d, want 5", n)
	}
}

// The threshold is the line: a similarity just above it hits, just below
// misses.
func TestSemanticThreshold(t *testing.T) {
	s := similarity(t, question, paraphrase)
	for _, tc := range []struct {
		threshold float64
		want      string
	}{{s - 0.001, "semantic"}, {s + 0.001, moltbot.CacheMiss}} {
		se := startSemantic(t, SemanticConfig{Threshold: tc.threshold})
		se.ask(t, "acme", sys, question)
		if a := se.ask(t, "acme", sys, paraphrase); a.result != tc.want {
			t.Errorf("similarity %.4f, threshold %.4f: %s, want %s", s, tc.threshold, a.result, tc.want)
		}
	}
}

// An embedding chain that fails or is slow bypasses the tier: the turn is
// answered by the model, in time, and the failure counted.
func TestSemanticEmbeddingDownBypasses(t *testing.T) {
	se := startSemantic(t, SemanticConfig{Threshold: 0.85, Timeout: 50 * time.Millisecond})
	se.ask(t, "acme", sys, question)
	se.emb.Engine.SetOptions(sim.Options{Seed: 1, ErrorRate: 1})
	if a := se.ask(t, "acme", sys, paraphrase); a.result != moltbot.CacheMiss || a.comp.Content == "" {
		t.Errorf("chain down: %s %q", a.result, a.comp.Content)
	}
	if n := se.met.Get(metrics.CacheErrors, TierSemantic); n != 1 {
		t.Errorf("semantic errors %d, want 1", n)
	}
	se.emb.Engine.SetOptions(sim.Options{Seed: 1, Latency: 2 * time.Second})
	start := time.Now()
	if a := se.ask(t, "acme", sys, "tell me please what is the capital city of france"); a.result != moltbot.CacheMiss {
		t.Errorf("chain slow: %s", a.result)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a slow embedding held the turn %v", d)
	}
	if n := se.met.Get(metrics.CacheErrors, TierSemantic); n != 2 {
		t.Errorf("semantic errors %d, want 2", n)
	}
	if n := se.chat.calls.Load(); n != 3 {
		t.Errorf("model calls %d, want 3", n)
	}
	// Back: the entries stored before still answer.
	se.emb.Engine.SetOptions(sim.Options{Seed: 1})
	if a := se.ask(t, "acme", sys, "please tell me what is the capital city of france"); a.result != "semantic" {
		t.Errorf("chain back: %s", a.result)
	}
}

// Requests with tools, tool results or images, and ones the exact tier
// would not cache, are never embedded.
func TestSemanticEligibility(t *testing.T) {
	se := startSemantic(t, SemanticConfig{Threshold: 0.85})
	c := moltbot.WithPrincipal(ctx(t), &moltbot.Principal{Tenant: "acme", Space: "acme"})
	user := moltbot.Message{Role: moltbot.RoleUser, Content: question}
	tools := zero()
	tools.Tools = []moltbot.Tool{{Name: "get_weather", Parameters: []byte(`{"type":"object"}`)}}
	img := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: question},
		{Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG")}}}
	warm := moltbot.ChatOptions{Temperature: f64(0.7)}
	for name, tc := range map[string]struct {
		msgs []moltbot.Message
		opts moltbot.ChatOptions
	}{
		"tools":           {[]moltbot.Message{user}, tools},
		"image":           {[]moltbot.Message{img}, zero()},
		"not determinist": {[]moltbot.Message{user}, warm},
		"last not user":   {[]moltbot.Message{user, {Role: moltbot.RoleAssistant, Content: "Paris"}}, zero()},
	} {
		if _, err := se.rt.Complete(c, tc.msgs, tc.opts, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := se.embeds.Load(); n != 0 {
		t.Errorf("%d embeddings for requests the tier does not take", n)
	}
	// A message in text parts is embedded as its text.
	parts := moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartText, Text: question}}}
	if text, ok := semanticText(&moltbot.Turn{Messages: []moltbot.Message{parts}}); !ok || text != question {
		t.Errorf("parts: %q %v", text, ok)
	}
}

// The index keeps max_entries, the least recently used going first.
func TestSemanticEviction(t *testing.T) {
	se := startSemantic(t, SemanticConfig{Threshold: 0.85, MaxEntries: 3})
	qs := []string{"what is the capital city of france", "how do I bake sourdough bread at home",
		"which planet in our solar system is the largest", "who wrote the novel war and peace", "how many legs does a spider have"}
	for _, q := range qs {
		se.ask(t, "acme", sys, q)
	}
	if n, _ := se.c.sem.idx.stats(); n != 3 {
		t.Errorf("entries %d, want 3", n)
	}
	if n := se.met.Get(metrics.CacheEvictions, TierSemantic); n != 2 {
		t.Errorf("evictions %d, want 2", n)
	}
	if a := se.ask(t, "acme", sys, "tell me "+qs[0]); a.result != moltbot.CacheMiss {
		t.Errorf("the oldest, evicted: %s", a.result)
	}
	if a := se.ask(t, "acme", sys, "tell me "+qs[4]); a.result != "semantic" {
		t.Errorf("the newest: %s", a.result)
	}
}

// The index's bookkeeping: removal moves the group's last vector into the
// hole; lookups find what add put; forget and purge.
func TestSemIndex(t *testing.T) {
	x := newSemIndex(100)
	rng := rand.New(rand.NewPCG(1, 2))
	ctxA, ctxB := Key{Tenant: "a", Sum: [32]byte{1}}, Key{Tenant: "b", Sum: [32]byte{2}}
	vecs := map[[32]byte][]float32{}
	var keys []Key
	for i := range 40 {
		v := randUnit(rng, 16)
		k := Key{Tenant: "a", Sum: [32]byte{byte(i), 9}}
		c := ctxA
		if i%2 == 1 {
			c, k.Tenant = ctxB, "b"
		}
		x.add(c, v, k, 1<<62)
		vecs[k.Sum] = v
		keys = append(keys, k)
	}
	for i, k := range keys {
		if i%3 == 0 {
			x.forget(&k.Sum)
		}
	}
	for i, k := range keys {
		c := ctxA
		if i%2 == 1 {
			c = ctxB
		}
		got, s, ok := x.lookup(&c.Sum, vecs[k.Sum], 0.999, 0)
		if i%3 == 0 {
			if ok && got == k {
				t.Errorf("%d: forgotten, found", i)
			}
			continue
		}
		if !ok || got != k || s < 0.999 {
			t.Errorf("%d: %v %v %.4f", i, ok, got == k, s)
		}
	}
	// Expired entries are passed over.
	if _, _, ok := x.lookup(&ctxA.Sum, vecs[keys[2].Sum], 0.999, 1<<62); ok {
		t.Error("an expired entry answered")
	}
	if n := x.purge("b"); n != 20-7 {
		t.Errorf("purged %d", n)
	}
	if _, ok := x.groups[ctxB.Sum]; ok {
		t.Error("an empty group stays")
	}
	n, _ := x.stats()
	if n != 40-14-13 || x.floats != int(n)*16 {
		t.Errorf("entries %d, floats %d", n, x.floats)
	}
}

func randUnit(rng *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	v, _ = normalized(v)
	return v
}

// BenchmarkSemanticLookup is one lookup (the search, not the embedding)
// in a context of n entries of the simulator's 384 dimensions and of
// 768 (nomic-embed-text's).
func BenchmarkSemanticLookup(b *testing.B) {
	for _, dims := range []int{384, 768} {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("dims=%d/entries=%d", dims, n), func(b *testing.B) {
				x := newSemIndex(n)
				rng := rand.New(rand.NewPCG(1, 2))
				c := Key{Tenant: "acme", Sum: [32]byte{1}}
				for i := range n {
					x.add(c, randUnit(rng, dims), Key{Tenant: "acme", Sum: [32]byte{byte(i), byte(i >> 8), 7}}, 1<<62)
				}
				q := randUnit(rng, dims)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					x.lookup(&c.Sum, q, 0.95, 0)
				}
			})
		}
	}
}

// BenchmarkSemanticHit is a paraphrase answered by the semantic tier
// through the runtime: the exact tier's miss, the embedding through the
// embedding chain (the in-process simulator, 384 dimensions), the search
// of a context of one entry, the replay.
func BenchmarkSemanticHit(b *testing.B) {
	se := startSemantic(b, SemanticConfig{Threshold: 0.85})
	se.ask(b, "acme", sys, question)
	c := moltbot.WithPrincipal(context.Background(), &moltbot.Principal{Tenant: "acme", Space: "acme"})
	msgs := []moltbot.Message{{Role: moltbot.RoleSystem, Content: sys}, {Role: moltbot.RoleUser, Content: paraphrase}}
	b.ReportAllocs()
	for b.Loop() {
		cc := &moltbot.CacheControl{}
		if _, err := se.rt.Complete(moltbot.WithCacheControl(c, cc), msgs, zero(), nil); err != nil || !cc.Semantic() {
			b.Fatal(err, cc.Result())
		}
	}
}
