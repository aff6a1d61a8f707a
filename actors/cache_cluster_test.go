//go:build !race && !edge

package actors

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cache"
	"github.com/moltbot/moltbot/inference"
)

// countingModel answers every call the same way and counts them.
type countingModel struct{ calls atomic.Int64 }

func (m *countingModel) Models(context.Context) ([]string, error) { return nil, nil }

func (m *countingModel) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	m.calls.Add(1)
	for _, w := range []string{"the ", "same ", "reply"} {
		if err := fn(inference.Delta{Text: w}); err != nil {
			return inference.Result{}, err
		}
	}
	return inference.Result{FinishReason: "stop", Usage: moltbot.Usage{PromptTokens: 3, CompletionTokens: 3}}, nil
}

// A turn forwarded to its conversation's owner takes the client's word
// with the output cache along (use, bypass) and brings back what the
// owner's cache did: on the first chunk, for a stream's header, and with
// the result (Completion.Cache, which the chat service does not charge).
func TestClusterCacheCrossesNodes(t *testing.T) {
	model := &countingModel{}
	withCache := func(c *Config) {
		oc, err := cache.New(cache.Config{Type: cache.TypeMemory})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { oc.Close() })
		c.Around = []AroundModel{cache.NewStage(oc)}
	}
	nodes := []*tnode{startNodeWith(t, nodeOpts{provider: model, tweak: withCache})}
	nodes = append(nodes, startNodeWith(t, nodeOpts{seed: nodes[0].cl.ID(), provider: model, tweak: withCache}))
	converge(t, nodes)
	via := nodes[0]
	turn := func(id string, mode moltbot.CacheMode, stream bool) (*moltbot.CacheControl, string, *TurnResult) {
		t.Helper()
		cc := &moltbot.CacheControl{Mode: mode}
		seen := ""
		var fn moltbot.StreamFunc
		if stream {
			fn = func(moltbot.Chunk) error {
				if seen == "" {
					seen = cc.Result() + "." // what a stream's header would say
				}
				return nil
			}
		}
		res, err := via.rt.Turn(moltbot.WithCacheControl(ctx(t), cc), "default", id, moltbot.TurnInput{Content: "hello"}, fn)
		if err != nil {
			t.Fatal(err)
		}
		return cc, seen, res
	}
	// Two conversations whose owner is the other node, with the same
	// (empty) history: the second turn's context is the first's.
	var ids []string
	for len(ids) < 2 {
		c, err := via.rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ownerNode(nodes, "default", c.ID) != via {
			ids = append(ids, c.ID)
		}
	}
	// Auto: no temperature 0, no seed: the cache has no part.
	if cc, _, _ := turn(ids[0], moltbot.CacheAuto, false); cc.Result() != "" {
		t.Fatalf("auto: %q", cc.Result())
	}
	// Use: a miss on the owner, then a hit for the same context, streamed:
	// the first chunk already says so.
	cc, _, res := turn(ids[1], moltbot.CacheUse, false)
	if cc.Result() != moltbot.CacheMiss || res.Completion.Cache != moltbot.CacheMiss {
		t.Fatalf("use, first: %q %q", cc.Result(), res.Completion.Cache)
	}
	calls := model.calls.Load()
	c3, err := via.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for ownerNode(nodes, "default", c3.ID) == via {
		if c3, err = via.rt.Create(ctx(t), "default", CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cc, seen, res := turn(c3.ID, moltbot.CacheUse, true)
	if cc.Result() != moltbot.CacheHit || seen != "hit." || res.Completion.Cache != moltbot.CacheHit || model.calls.Load() != calls {
		t.Fatalf("use, again: %q, first chunk %q, %q, %d calls", cc.Result(), seen, res.Completion.Cache, model.calls.Load()-calls)
	}
	// Bypass: the owner asks the model, and says nothing.
	c4, _ := via.rt.Create(ctx(t), "default", CreateOptions{})
	for ownerNode(nodes, "default", c4.ID) == via {
		c4, _ = via.rt.Create(ctx(t), "default", CreateOptions{})
	}
	if cc, _, _ := turn(c4.ID, moltbot.CacheBypass, false); cc.Result() != "" || model.calls.Load() != calls+1 {
		t.Fatalf("bypass: %q, %d calls", cc.Result(), model.calls.Load()-calls)
	}
}
