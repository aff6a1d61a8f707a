package actors

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// ChainModel is the model name that means "the configured chain".
const ChainModel = "moltbot"

// router walks a chain of models for one request. It runs on the caller's
// goroutine (a turn's goroutine or an HTTP handler), never inside Receive.
type router struct {
	root      *actor.RootContext
	chain     []moltbot.ModelRef
	providers map[string]*actor.PID
	states    map[string]*providerState
	met       *metrics.Registry
}

// resolve turns a requested model name into the chain to try.
//
//	"" or "moltbot"   the configured chain
//	"provider/model"  that model only (the provider must exist)
//	"model"           the first chain entry, or the first provider, that lists it
func (r *router) resolve(model string) ([]moltbot.ModelRef, error) {
	if model == "" || model == ChainModel {
		return r.chain, nil
	}
	if strings.Contains(model, "/") {
		ref, err := moltbot.ParseModelRef(model)
		if err != nil {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "model", Message: err.Error()}
		}
		if _, ok := r.providers[ref.Provider]; ok {
			return []moltbot.ModelRef{ref}, nil
		}
		// Maybe the whole name is a model of a provider ("org/model" on vLLM).
		if refs := r.lookupBare(model); len(refs) > 0 {
			return refs, nil
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

func (r *router) lookupBare(model string) []moltbot.ModelRef {
	for _, ref := range r.chain {
		if ref.Model == model {
			return []moltbot.ModelRef{ref}
		}
	}
	for _, name := range r.names() {
		st := r.states[name]
		for _, m := range st.models() {
			if m == model || strings.TrimSuffix(m, ":latest") == model {
				return []moltbot.ModelRef{{Provider: name, Model: model}}
			}
		}
	}
	return nil
}

func (r *router) names() []string {
	out := make([]string, 0, len(r.providers))
	for n := range r.providers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// chat asks each model of chain in turn until one answers. A model that fails
// before its first token is skipped when the failure says another model could
// do better (down, timed out, busy, rate limited, model missing); once tokens
// have reached fn, a failure ends the call (the client has seen them).
func (r *router) chat(ctx context.Context, chain []moltbot.ModelRef, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	var failures []string
	var last *inference.Error
	t0 := time.Now()
	for i, ref := range chain {
		pid := r.providers[ref.Provider]
		if pid == nil {
			continue // validated at config time; defensive
		}
		var text strings.Builder
		tokens := 0
		var firstAt time.Duration
		call := &callMsg{
			ctx:  ctx,
			req:  &inference.Request{Model: ref.Model, Messages: msgs, ChatOptions: opts},
			done: make(chan callResult, 1),
			fn: func(s string) error {
				if tokens == 0 {
					firstAt = time.Since(t0)
				}
				tokens++
				text.WriteString(s)
				return fn(moltbot.Chunk{Content: s, Served: ref, Failovers: i})
			},
		}
		r.root.Send(pid, call)
		var res callResult
		select {
		case res = <-call.done:
		case <-ctx.Done():
			// The call sees the same ctx and ends; wait so fn is never called
			// after we return.
			res = <-call.done
		}
		if res.err == nil {
			return &moltbot.Completion{Content: text.String(), Served: ref, Usage: res.res.Usage,
				FinishReason: orStop(res.res.FinishReason), Failovers: i, TTFT: firstAt}, nil
		}
		e, ok := inference.AsError(res.err)
		if !ok {
			// fn's own error (the client went away): pass it through.
			return nil, res.err
		}
		last = e
		failures = append(failures, e.Error())
		if tokens > 0 || !e.Failover() || ctx.Err() != nil {
			return nil, chainError(last, failures, len(chain), false)
		}
		if i+1 < len(chain) {
			r.met.Inc(metrics.Failovers, ref.String(), chain[i+1].String(), e.Kind.String())
		}
	}
	if last == nil {
		return nil, moltbot.Errorf(moltbot.EUnavailable, "no model is configured")
	}
	return nil, chainError(last, failures, len(chain), true)
}

func orStop(s string) string {
	if s == "" {
		return "stop"
	}
	return s
}

// chainError is the client-facing error after the chain is exhausted.
func chainError(last *inference.Error, failures []string, n int, exhausted bool) error {
	code := last.Code()
	if last.Kind == inference.KindModelNotFound && n == 1 {
		code = moltbot.ENotFound
	}
	msg := last.Error()
	if exhausted && len(failures) > 1 {
		msg = fmt.Sprintf("all %d models failed: %s", len(failures), strings.Join(failures, "; "))
	}
	return &moltbot.Error{Code: code, Message: msg, RetryAfter: last.RetryAfter, Err: last}
}
