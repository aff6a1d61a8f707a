package cache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// The benchmarks of BENCHMARKS.md ("The output cache"): a hit through the
// stage, tier by tier, against the direct call of the simulated model it
// stands in for (16 tokens, no delays); hits at concurrency 16; what an
// entry costs in memory; the key's hash.

func benchSim() *sim.Provider { return sim.NewProvider("m", sim.Options{Tokens: 16, Seed: 1}) }

var benchMsgs = []moltbot.Message{{Role: moltbot.RoleSystem, Content: "You are a helpful assistant. Answer briefly."},
	{Role: moltbot.RoleUser, Content: "What is the capital of Norway, and what is it known for?"}}

// benchEnv is a runtime over the simulator; typ "" has no cache.
func benchEnv(b *testing.B, typ string) *env {
	b.Helper()
	cfg := Config{Type: typ}
	switch typ {
	case TypePebble:
		p, err := storage.Open(b.TempDir(), storage.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		cfg.Store = p
	case TypeRedis:
		r := startRedis(b)
		cfg.Host, cfg.Port = "127.0.0.1", r.port
	}
	if typ == "" {
		return &env{rt: newRuntime(b, benchSim(), metrics.New("test"), nil)}
	}
	e := start(b, benchSim(), cfg)
	if typ != TypeMemory {
		e.c.mem.max = 0 // every hit from the tier itself
	}
	return e
}

func run(b *testing.B, e *env, ctx context.Context, stream bool) *moltbot.Completion {
	var fn moltbot.StreamFunc
	if stream {
		fn = func(moltbot.Chunk) error { return nil }
	}
	c, err := e.rt.Complete(ctx, benchMsgs, zero(), fn)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkHit(b *testing.B) {
	for _, typ := range []string{"direct", TypeMemory, TypePebble, TypeRedis} {
		for _, stream := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/stream=%v", typ, stream), func(b *testing.B) {
				t := typ
				if t == "direct" {
					t = ""
				}
				e := benchEnv(b, t)
				ctx := moltbot.WithPrincipal(context.Background(), &moltbot.Principal{Tenant: "acme", Space: "acme"})
				run(b, e, ctx, stream)
				if t != "" {
					e.c.Flush(ctx)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					c := run(b, e, ctx, stream)
					if t != "" && c.Cache != moltbot.CacheHit {
						b.Fatalf("a %q", c.Cache)
					}
				}
			})
		}
	}
}

// Hits at concurrency 16 (2 cores): requests a second through the stage.
func BenchmarkHitParallel(b *testing.B) {
	for _, typ := range []string{"direct", TypeMemory, TypePebble, TypeRedis} {
		b.Run(typ, func(b *testing.B) {
			t := typ
			if t == "direct" {
				t = ""
			}
			e := benchEnv(b, t)
			ctx := moltbot.WithPrincipal(context.Background(), &moltbot.Principal{Tenant: "acme", Space: "acme"})
			run(b, e, ctx, true)
			if t != "" {
				e.c.Flush(ctx)
			}
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					run(b, e, ctx, true)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// What an entry of a 16-token streamed reply costs in the memory tier:
// the heap it holds, against what Size counts for max_bytes.
func BenchmarkMemoryPerEntry(b *testing.B) {
	comp := &moltbot.Completion{Served: served, FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 30, CompletionTokens: 16}}
	var chunks []moltbot.Chunk
	for i := range 16 {
		tok := fmt.Sprintf("word%02d ", i)
		chunks = append(chunks, moltbot.Chunk{Content: tok, Served: served})
		comp.Content += tok
	}
	const n = 10000
	for b.Loop() {
		m := newMemory(1 << 30)
		keys := make([]Key, n)
		for i := range keys {
			keys[i] = key("acme", 0)
			keys[i].Sum[0], keys[i].Sum[1] = byte(i), byte(i>>8)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range keys {
			// Each entry as the stage makes it: its own content string.
			c := *comp
			c.Content = strings.Clone(comp.Content)
			m.put(keys[i], newEntry(&c, chunks, 1), 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		_, counted := m.stats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/entry")
		b.ReportMetric(float64(counted)/n, "counted-B/entry")
		runtime.KeepAlive(m)
	}
}

func BenchmarkKeyOf(b *testing.B) {
	t := &moltbot.Turn{Tenant: "acme", Chain: []moltbot.ModelRef{{Provider: "m", Model: "m"}}, Messages: benchMsgs, Options: zero()}
	b.ReportAllocs()
	for b.Loop() {
		KeyOf(t)
	}
}

// The floor under "direct": the simulator's Chat alone, no runtime.
func BenchmarkSimCall(b *testing.B) {
	p := benchSim()
	req := &inference.Request{Model: "m", Messages: benchMsgs, ChatOptions: zero()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Chat(context.Background(), req, func(inference.Delta) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
