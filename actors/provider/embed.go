package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// EmbedCall makes a Call an embedding call (Call.Embed): the provider's
// Embed runs in one of its slots, admitted, queued and refused as a chat
// call is, and its panics are the provider's crash as a chat call's are.
// Req and Fn of the Call are unused; Res holds the answer when Reply is
// called without an error.
type EmbedCall struct {
	Req *inference.EmbedRequest
	Res inference.EmbedResult
}

// Embeds reports whether provider name can embed (its client is an
// inference.Embedder). A method of Set: State is at its size.
func (s *Set) Embeds(name string) bool {
	st := s.states[name]
	if st == nil {
		return false
	}
	_, ok := st.spec.Provider.(inference.Embedder)
	return ok
}

// embed makes embedding call e within run's slot and deadline.
func (s *Set) embed(ctx context.Context, st *State, e *EmbedCall) Result {
	spec := st.spec
	em, ok := spec.Provider.(inference.Embedder)
	if !ok {
		return Result{Err: &inference.Error{Kind: inference.KindBadRequest, Provider: spec.Name,
			Message: fmt.Sprintf("provider %s (type %s) cannot embed", spec.Name, spec.Type)}}
	}
	t0 := time.Now()
	res, err := em.Embed(ctx, e.Req)
	model := st.MetricModel(e.Req.Model)
	outcome := "ok"
	if err != nil {
		outcome = "error"
		if ie, ok := inference.AsError(err); ok {
			outcome = ie.Kind.String()
		}
	}
	s.met.Inc(metrics.InferenceRequests, spec.Name, model, outcome)
	if err != nil {
		return Result{Err: err}
	}
	s.met.Observe(metrics.InferenceDuration, time.Since(t0), spec.Name, model)
	if res.Usage.PromptTokens > 0 {
		s.met.Counter(metrics.InferenceTokens, spec.Name, model, "prompt").Add(res.Usage.PromptTokens)
	}
	e.Res = res
	return Result{}
}
