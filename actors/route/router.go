// Package route walks a request's model chain: the failover router. It is
// plain Go on the caller's goroutine (a turn's goroutine, or the HTTP
// handler of a stateless completion), never inside an actor's Receive; it
// asks the providers (actors/provider) for one call per attempt and
// keeps the breakers of inference/failover up to date with the outcomes.
package route

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
)

// ChainModel is the model name that means "the configured chain".
const ChainModel = moltbot.ChainModel

// Config shapes a Router.
type Config struct {
	// Chain is the configured model chain: primary, then fallbacks.
	Chain     []moltbot.ModelRef
	Providers *provider.Set
	Metrics   *metrics.Registry
	Policy    *failover.Policy
	// HedgeAfter > 0 also starts the next model when the leading one has
	// produced no token by then.
	HedgeAfter time.Duration
	// ContinueStreams asks the next model to continue a visible reply that
	// broke mid-stream, instead of ending it with an error.
	ContinueStreams bool
	// Now is the breakers' clock.
	Now func() time.Time
}

// Router walks a chain of models for one request. It runs on the caller's
// goroutine (a turn's goroutine or an HTTP handler), never inside Receive.
// It is safe for concurrent use.
type Router struct {
	chain     []moltbot.ModelRef
	providers *provider.Set
	met       *metrics.Registry
	policy    *failover.Policy
	// hedgeAfter > 0 also starts the next model when the leading one has
	// produced no token by then.
	hedgeAfter time.Duration
	// continueStreams asks the next model to continue a visible reply that
	// broke mid-stream, instead of ending it with an error.
	continueStreams bool
	now             func() time.Time
}

// New returns a router over cfg's providers.
func New(cfg Config) *Router {
	return &Router{chain: cfg.Chain, providers: cfg.Providers, met: cfg.Metrics, policy: cfg.Policy,
		hedgeAfter: cfg.HedgeAfter, continueStreams: cfg.ContinueStreams, now: cfg.Now}
}

// Chain is the configured model chain.
func (r *Router) Chain() []moltbot.ModelRef { return r.chain }

// MaxModelName caps a requested model name, in bytes.
const MaxModelName = 256

// Resolve turns a requested model name into the chain to try.
//
//	"" or "moltbot"   the configured chain
//	"provider/model"  that model only: the provider must exist and know it
//	"model"           the first chain entry, or the first provider, that lists it
//
// A provider knows the models of the chain, its configured models: and the
// models its last successful health check listed (Ollama's /api/tags, the
// OpenAI and Anthropic /v1/models). Anything else is refused here, before a
// breaker or a metric series exists for it: a client cannot grow the node's
// state by inventing names.
func (r *Router) Resolve(model string) ([]moltbot.ModelRef, error) {
	if model == "" || model == ChainModel {
		return r.chain, nil
	}
	if len(model) > MaxModelName {
		return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "model",
			Message: fmt.Sprintf("model: the name is %d bytes; at most %d are allowed", len(model), MaxModelName)}
	}
	if strings.Contains(model, "/") {
		ref, err := moltbot.ParseModelRef(model)
		if err != nil {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "model", Message: err.Error()}
		}
		if r.providers.Get(ref.Provider) != nil {
			if known := r.known(ref); known.Model != "" {
				return []moltbot.ModelRef{known}, nil
			}
		}
		// Maybe the whole name is a model of a provider ("org/model" on vLLM).
		if refs := r.lookupBare(model); len(refs) > 0 {
			return refs, nil
		}
		if r.providers.Get(ref.Provider) != nil {
			return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: "model",
				Message: fmt.Sprintf("model %q not found: provider %q neither has it configured nor lists it (GET /v1/models shows what can be asked for)", model, ref.Provider)}
		}
		return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: "model",
			Message: fmt.Sprintf("model %q not found: no provider named %q (providers: %s)", model, ref.Provider, strings.Join(r.names(), ", "))}
	}
	if refs := r.lookupBare(model); len(refs) > 0 {
		return refs, nil
	}
	return nil, &moltbot.Error{Code: moltbot.ENotFound, Param: "model",
		Message: fmt.Sprintf("model %q not found: use %q for the configured chain, or provider/model (providers: %s)", model, ChainModel, strings.Join(r.names(), ", "))}
}

// known returns ref as its provider knows it (the chain's entry, or the
// configured or listed name, "m" matching "m:latest"), or a zero ref.
func (r *Router) known(ref moltbot.ModelRef) moltbot.ModelRef {
	for _, c := range r.chain {
		if c == ref {
			return c
		}
	}
	st := r.providers.Get(ref.Provider)
	if st == nil {
		return moltbot.ModelRef{}
	}
	if st.InChain(ref.Model) || st.Lists(ref.Model) {
		return ref
	}
	return moltbot.ModelRef{}
}

func (r *Router) lookupBare(model string) []moltbot.ModelRef {
	for _, ref := range r.chain {
		if ref.Model == model {
			return []moltbot.ModelRef{ref}
		}
	}
	for _, name := range r.names() {
		if r.providers.Get(name).Lists(model) {
			return []moltbot.ModelRef{{Provider: name, Model: model}}
		}
	}
	return nil
}

// unable is the error for a request that no model of chain can serve (each
// lacks something it needs: tools, vision, a JSON Schema), or nil.
func (r *Router) unable(chain []moltbot.ModelRef, n moltbot.Needs) error {
	var why []string
	for _, ref := range chain {
		st := r.providers.Get(ref.Provider)
		if st == nil {
			continue
		}
		lack := st.Caps(ref.Model).Lacks(n)
		if lack == "" {
			return nil
		}
		why = append(why, fmt.Sprintf("%s lacks %s", ref, lack))
	}
	if len(why) == 0 {
		return nil
	}
	param := "model"
	switch {
	case n.Tools:
		param = "tools"
	case n.Vision:
		param = "messages"
	case n.JSONSchema:
		param = "response_format"
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Param: param, Message: fmt.Sprintf(
		"no model can serve this request: %s (capabilities come from the provider's capabilities: in the config, or from the server)", strings.Join(why, "; "))}
}

func (r *Router) names() []string {
	out := append([]string(nil), r.providers.Names()...)
	sort.Strings(out)
	return out
}
