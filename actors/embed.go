package actors

import (
	"context"
	"fmt"
	"slices"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/route"
	"github.com/moltbot/moltbot/inference"
)

// EmbedChain is the embedding chain (models.embeddings): its models,
// primary first, and the length of its vectors when known ahead (0: the
// first answer says it). Every model's provider must be able to embed.
type EmbedChain struct {
	Models     []moltbot.ModelRef
	Dimensions int
}

// Embeddings embeds text through the embedding chain on this node, with
// the chat chain's providers, slots, breakers and failover policy
// (route.Embedder). A type of its own so that Runtime keeps its size;
// make it with EmbeddingsOf.
type Embeddings struct{ rt *Runtime }

// EmbeddingsOf returns rt's embeddings.
func EmbeddingsOf(rt *Runtime) Embeddings { return Embeddings{rt: rt} }

// ResolveModel checks that model can embed: the chain ("" or "moltbot",
// when one is configured), or one model whose provider has an embeddings
// API (for early 4xx, before limits are spent).
func (e Embeddings) ResolveModel(model string) error {
	_, _, err := e.rt.embed.Resolve(model)
	return err
}

// Embed embeds req.Input, bounded by the runtime's request timeout and its
// lifetime.
func (e Embeddings) Embed(ctx context.Context, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
	rt := e.rt
	if err := rt.life.open(); err != nil {
		return nil, err
	}
	refs, chain, err := rt.embed.Resolve(req.Model)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rt.requestTimeout)
	defer cancel()
	stop := context.AfterFunc(rt.life.base, cancel)
	defer stop()
	return rt.embed.Embed(ctx, refs, chain, req)
}

// checkEmbedChain refuses an embedding chain that names a provider that is
// not configured or cannot embed, before anything starts.
func checkEmbedChain(cfg *Config) error {
	for _, ref := range cfg.Embeddings.Models {
		i := slices.IndexFunc(cfg.Providers, func(p ProviderSpec) bool { return p.Name == ref.Provider })
		if i < 0 {
			return fmt.Errorf("actors: the embedding chain names provider %q, which is not configured", ref.Provider)
		}
		if _, ok := cfg.Providers[i].Provider.(inference.Embedder); !ok {
			return fmt.Errorf("actors: the embedding chain names %s, but provider %q (type %s) has no embeddings API", ref, ref.Provider, cfg.Providers[i].Type)
		}
	}
	return nil
}

// startEmbeddings makes the embedding chain's walker over rt's router (a
// function: Runtime is at its size).
func startEmbeddings(rt *Runtime, c EmbedChain) {
	for _, ref := range c.Models {
		rt.policy.Breaker(ref.Provider, ref.Model) // gauges exist from the start
	}
	rt.embed = route.NewEmbedder(rt.router, route.EmbedConfig{Chain: c.Models, Dimensions: c.Dimensions, Log: rt.log})
}
