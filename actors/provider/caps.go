package provider

import (
	"context"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// models is what a provider learned about its models: capabilities
// (configured ones win), and for a Loader which are in memory.
type models struct {
	mu      sync.Mutex
	learned map[string]moltbot.Capabilities
	warm    map[string]bool
	loading bool // a preload runs
}

// base is model without ":latest" (Ollama's "m" and "m:latest" are one).
func base(model string) string { return strings.TrimSuffix(model, ":latest") }

// Caps is what model can do: as configured, else as learned from the
// server, else unknown (presumed able).
func (st *State) Caps(model string) moltbot.Capabilities {
	if c, ok := st.spec.Caps[model]; ok {
		return c
	}
	if c, ok := st.spec.Caps[base(model)]; ok {
		return c
	}
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	return st.models.learned[base(model)]
}

// learned reports whether model's capabilities were asked of the server.
func (st *State) learned(model string) bool {
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	_, ok := st.models.learned[base(model)]
	return ok
}

func (st *State) learn(model string, c moltbot.Capabilities) {
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	if st.models.learned == nil {
		st.models.learned = map[string]moltbot.Capabilities{}
	}
	st.models.learned[base(model)] = c
}

// Forget drops what the providers learned of their models from their
// servers (capabilities; configured ones stay) and has the health loop
// check every provider now, which asks for them again and refreshes the
// models each server lists. A reload (SIGHUP) calls it: a model updated
// on its server (pulled again with tools or vision) would otherwise keep
// its old capabilities until the node restarts.
func (s *Set) Forget() {
	for _, st := range s.states {
		st.models.mu.Lock()
		st.models.learned = nil
		st.models.mu.Unlock()
	}
	select {
	case s.recheck <- struct{}{}:
	default: // a check is due already
	}
}

// Cold reports whether a call of model must first wait for the server to
// load it: the provider loads models (Ollama) and model is not known to
// be in memory. The router then starts a call's first-token clock only
// once the model is loaded.
func (st *State) Cold(model string) bool {
	if _, ok := st.spec.Provider.(inference.Loader); !ok {
		return false
	}
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	return !st.models.warm[base(model)]
}

func (st *State) setWarm(model string, warm bool) {
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	if st.models.warm == nil {
		st.models.warm = map[string]bool{}
	}
	st.models.warm[base(model)] = warm
}

// SetLoaded records the models the server has in memory now (Ollama's
// /api/ps, asked by the health check); the others are cold.
func (st *State) SetLoaded(list []string) {
	st.models.mu.Lock()
	defer st.models.mu.Unlock()
	st.models.warm = make(map[string]bool, len(list))
	for _, m := range list {
		st.models.warm[base(m)] = true
	}
}

// embedsOnly reports whether a model is known to embed and not to
// complete (an embedding chain's model, such as nomic-embed-text): the
// chat call that loads a model ahead is refused for it ("does not support
// chat"), every health check; its first embedding call loads it instead,
// which no first-token clock times.
func embedsOnly(c moltbot.Capabilities) bool { return c.Known && c.Embeddings && !c.JSONSchema }

// learnModels asks a Describer what the chain's models of st can do (once
// each; Forget starts afresh) and, for a Loader, which are in memory,
// and starts loading the chain's cold models in the background, one at a
// time, so that the first request does not wait for a load (or, on a
// slow device, fail over because of one).
func (s *Set) learnModels(base context.Context, ctx context.Context, st *State) {
	chain := make([]string, 0, 2)
	for _, ref := range s.chain {
		if ref.Provider == st.spec.Name {
			chain = append(chain, ref.Model)
		}
	}
	if d, ok := st.spec.Provider.(inference.Describer); ok {
		for _, m := range chain {
			if st.learned(m) {
				continue
			}
			c, err := d.Describe(ctx, m)
			if err != nil {
				if e, ok := inference.AsError(err); ok && e.Kind == inference.KindModelNotFound {
					continue // missing: SetMissing says so; asked again once pulled
				}
				s.log.Debug("provider: describing a model failed", "provider", st.spec.Name, "model", m, "err", err)
				continue
			}
			st.learn(m, c)
		}
	}
	l, ok := st.spec.Provider.(inference.Loader)
	if !ok {
		return
	}
	loaded, err := l.Loaded(ctx)
	if err != nil {
		return
	}
	st.SetLoaded(loaded)
	var cold []string
	for _, m := range chain {
		if st.Cold(m) && !embedsOnly(st.Caps(m)) {
			cold = append(cold, m)
		}
	}
	st.models.mu.Lock()
	if len(cold) == 0 || st.models.loading {
		st.models.mu.Unlock()
		return
	}
	st.models.loading = true
	st.models.mu.Unlock()
	go func() {
		defer func() {
			st.models.mu.Lock()
			st.models.loading = false
			st.models.mu.Unlock()
		}()
		for _, m := range cold {
			lctx, cancel := context.WithTimeout(base, st.spec.Timeout)
			err := l.Load(lctx, m)
			cancel()
			if base.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("provider: preloading a model failed", "provider", st.spec.Name, "model", m, "err", err)
				continue
			}
			st.setWarm(m, true)
			s.log.Info("provider: model loaded", "provider", st.spec.Name, "model", m)
		}
	}()
}
