package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
)

// EmbedConfig is the embedding chain (models.embeddings).
type EmbedConfig struct {
	// Chain is primary, then fallbacks; empty: no embedding chain.
	Chain []moltbot.ModelRef
	// Dimensions, when not 0, is the length of the chain's vectors, known
	// before the first answer; 0: the first answer says it.
	Dimensions int
	Log        *slog.Logger
}

// Embedder walks the embedding chain with the chat router's providers,
// breakers and failover policy: a model is skipped while its breaker is
// open, its provider rate limited, unreachable or restarting; a failure
// that another model may not repeat moves on to the next, a bad request
// (400) is answered at once.
//
// Vectors of different models are not comparable, nor are vectors of
// different lengths: a client stores what it got and compares later
// answers with it. So the chain has one dimension, configured or learned
// from its first answer, and a model known to give another is never
// failed over to (skipped, reason "dimensions"); an answer of another
// length is discarded, counted (moltbot_embedding_mismatches_total) and
// logged, and the model is skipped from then on. A request that asks for
// a dimension goes only to models that can give it: a model whose own
// length it is (asked without "dimensions", which older models refuse),
// or one not yet seen to ignore the request. What the chain learns lives
// until the node restarts; configure models.embeddings.dimensions to fix
// the chain's dimension before the first answer.
//
// It is safe for concurrent use; Embed runs on the caller's goroutine.
type Embedder struct {
	r     *Router
	chain []moltbot.ModelRef
	log   *slog.Logger

	mu       sync.Mutex
	chainDim int                          // 0: not known yet
	models   map[moltbot.ModelRef]*dimsOf // bounded by the models Resolve admits
}

// dimsOf is what the chain learned of one model's vectors.
type dimsOf struct {
	native int // the length it gives unasked (0: not seen)
	// shortens: 1 it gave a length asked for, -1 it answered another.
	shortens int8
}

// NewEmbedder returns the embedding chain over r's providers and policy.
func NewEmbedder(r *Router, cfg EmbedConfig) *Embedder {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Embedder{r: r, chain: cfg.Chain, log: cfg.Log, chainDim: cfg.Dimensions, models: map[moltbot.ModelRef]*dimsOf{}}
}

// Chain is the configured embedding chain.
func (e *Embedder) Chain() []moltbot.ModelRef { return e.chain }

// noChain says how to configure an embedding chain.
const noChain = `no embedding chain is configured: set models.embeddings.primary (and models.embeddings.fallback) in the config, or ask for one model as "provider/model"`

// Resolve turns a requested model name into the models to try; chain
// reports whether they are the embedding chain (whose dimension holds).
//
//	"" or "moltbot"   the embedding chain
//	"provider/model"  that model only (a chain entry, or as Router.Resolve)
//	"model"           the chain entry of that name, or as Router.Resolve
//
// A model whose provider cannot embed (its client has no Embed) is refused.
func (e *Embedder) Resolve(model string) (refs []moltbot.ModelRef, chain bool, err error) {
	if model == "" || model == ChainModel {
		if len(e.chain) == 0 {
			return nil, false, &moltbot.Error{Code: moltbot.ENotFound, Param: "model", Message: noChain}
		}
		return e.chain, true, nil
	}
	for _, ref := range e.chain {
		if ref.String() == model || ref.Model == model {
			return []moltbot.ModelRef{ref}, false, nil
		}
	}
	refs, err = e.r.Resolve(model)
	if err != nil {
		return nil, false, err
	}
	for _, ref := range refs {
		if e.r.providers.Get(ref.Provider) != nil && !e.r.providers.Embeds(ref.Provider) {
			return nil, false, &moltbot.Error{Code: moltbot.EInvalid, Param: "model",
				Message: fmt.Sprintf("model %q cannot embed: provider %q has no embeddings API", model, ref.Provider)}
		}
	}
	return refs, false, nil
}

// embedWalk is one request's walk of its models.
type embedWalk struct {
	e        *Embedder
	ctx      context.Context
	req      *moltbot.EmbedRequest
	chain    bool
	hops     int
	started  int
	left     *leftModel
	failures []string
	last     *inference.Error
	dimsOnly bool // every model passed over was passed over for its dimension
}

// Embed asks the models of refs in order until one gives vectors that fit
// (see Embedder); chain says refs are the embedding chain. When every
// model is skipped by its breaker or provider, they are tried anyway, in
// order, as Router.Chat does; a model skipped for its dimension never is.
func (e *Embedder) Embed(ctx context.Context, refs []moltbot.ModelRef, chain bool, req *moltbot.EmbedRequest) (*moltbot.Embeddings, error) {
	w := &embedWalk{e: e, ctx: ctx, req: req, chain: chain, dimsOnly: true}
	for _, forced := range []bool{false, true} {
		if forced && (w.started > 0 || w.dimsOnly) {
			break
		}
		// The second pass passes nothing over that the first did not: the
		// count starts afresh (see chatState.launch).
		w.hops, w.left = 0, nil
		for _, ref := range refs {
			out, err, done := w.try(ref, forced)
			if done {
				return out, err
			}
		}
	}
	return nil, w.fail()
}

// try asks ref, unless it is to be skipped; done reports whether Embed
// returns with out and err.
func (w *embedWalk) try(ref moltbot.ModelRef, forced bool) (out *moltbot.Embeddings, err error, done bool) {
	e, r := w.e, w.e.r
	st := r.providers.Get(ref.Provider)
	if st == nil {
		return nil, nil, false
	}
	ask, why := e.plan(ref, w.req.Dimensions, w.chain)
	if why != "" {
		w.hops++
		w.skip(ref, "dimensions", why)
		return nil, nil, false
	}
	now := r.now()
	probe := false
	if !forced {
		ok, reason := false, "restarting"
		if st.RestartLeft(now) == 0 {
			ok, probe, reason = r.policy.Admit(now, ref.Provider, ref.Model, st.Reachable())
		}
		if !ok {
			w.dimsOnly = false
			w.hops++
			w.skip(ref, reason, strings.ReplaceAll(reason, "_", " "))
			return nil, nil, false
		}
	}
	if w.left != nil {
		r.met.Inc(metrics.Failovers, w.left.ref.String(), ref.String(), w.left.reason)
		w.left = nil
	}
	w.started++
	hop := w.hops
	w.hops++
	res, err := w.call(ref, ask)
	b := r.policy.Breaker(ref.Provider, ref.Model)
	now = r.now()
	if err == nil {
		b.Record(now, failover.Success, 0, probe, "")
		if why := e.learn(ref, w.req.Dimensions, ask, w.chain, len(res.Vectors[0]), st); why != "" {
			w.skip(ref, "dimensions", why) // counted as a hop when it started
			return nil, nil, false
		}
		usage := res.Usage
		usage.CompletionTokens = 0
		if usage.PromptTokens <= 0 {
			usage.PromptTokens = inference.EstimateInputTokens(w.req.Input)
		}
		return &moltbot.Embeddings{Vectors: res.Vectors, Usage: usage, Served: ref, Failovers: hop}, nil, true
	}
	w.dimsOnly = false
	ie, typed := inference.AsError(err)
	if !typed {
		ie = &inference.Error{Kind: inference.KindUnavailable, Provider: ref.Provider, Message: err.Error(), Err: err}
	}
	switch ie.Kind {
	case inference.KindBadRequest, inference.KindCanceled, inference.KindBusy:
		b.Record(now, failover.Neutral, 0, probe, "")
	case inference.KindModelNotFound:
		b.Record(now, failover.Neutral, 0, probe, "")
		b.Trip(now, 0, true, ie.Error())
	default:
		if ie.Kind == inference.KindRateLimited {
			r.policy.Hold(now, ref.Provider, ie.RetryAfter)
		}
		b.Record(now, failover.Failure, 0, probe, ie.Error())
	}
	if w.ctx.Err() != nil {
		return nil, ctxErr(w.ctx), true
	}
	w.last = ie
	w.failures = append(w.failures, ie.Error())
	if !ie.Failover() {
		return nil, w.fail(), true
	}
	w.left = &leftModel{ref: ref, reason: ie.Kind.String()}
	return nil, nil, false
}

// call makes one embedding call of ref through its provider's slots,
// asking for ask dimensions (0: the model's own).
func (w *embedWalk) call(ref moltbot.ModelRef, ask int) (inference.EmbedResult, error) {
	done := make(chan provider.Result, 1)
	ec := &provider.EmbedCall{Req: &inference.EmbedRequest{Model: ref.Model, Input: w.req.Input, Dimensions: ask}}
	call := &provider.Call{Ctx: w.ctx, Embed: ec, Reply: func(res provider.Result) { done <- res }}
	w.e.r.providers.Call(ref.Provider, call, true)
	// A call that found a slot has run on this goroutine and answered; a
	// queued one answers from the provider's, once a slot frees or its
	// turn comes, which the request need not wait for when it ends first
	// (done is buffered, and ec is not read again).
	select {
	case res := <-done:
		return ec.Res, res.Err
	default:
	}
	select {
	case res := <-done:
		return ec.Res, res.Err
	case <-w.ctx.Done():
		return inference.EmbedResult{}, inference.Classify(w.ctx, ref.Provider, w.ctx.Err())
	}
}

// skip passes ref over; the failover is counted when the next model starts.
func (w *embedWalk) skip(ref moltbot.ModelRef, reason, why string) {
	w.left = &leftModel{ref: ref, reason: reason}
	w.failures = append(w.failures, fmt.Sprintf("%s: skipped (%s)", ref, why))
}

// fail is the client-facing error once the request gives up.
func (w *embedWalk) fail() error {
	msg := strings.Join(w.failures, "; ")
	if w.last == nil {
		if w.dimsOnly && w.req.Dimensions > 0 {
			return &moltbot.Error{Code: moltbot.EInvalid, Param: "dimensions",
				Message: fmt.Sprintf("dimensions: no model can give %d-dimensional vectors: %s", w.req.Dimensions, msg)}
		}
		if msg == "" {
			msg = "no model could be asked"
		}
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: msg}
	}
	code := w.last.Code()
	if w.last.Kind == inference.KindModelNotFound && len(w.failures) == 1 {
		code = moltbot.ENotFound
	}
	if len(w.failures) > 1 {
		msg = "no model could embed: " + msg
	} else {
		msg = w.last.Error()
	}
	return &moltbot.Error{Code: code, Message: msg, RetryAfter: w.last.RetryAfter, Err: w.last}
}

// plan says how to ask ref for vectors of want dimensions (0: its own),
// with ask the dimensions to send (0: none), or why not to ask it.
func (e *Embedder) plan(ref moltbot.ModelRef, want int, chain bool) (ask int, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.models[ref]
	if want == 0 {
		if chain && e.chainDim > 0 && m != nil && m.native > 0 && m.native != e.chainDim {
			return 0, fmt.Sprintf("gives %d dimensions, the chain %d", m.native, e.chainDim)
		}
		return 0, ""
	}
	switch {
	case m != nil && m.native == want:
		return 0, ""
	case m != nil && m.shortens < 0:
		return 0, fmt.Sprintf("gives %d dimensions and cannot give %d", m.native, want)
	}
	return want, ""
}

// learn records that ref gave vectors of got dimensions when asked for
// want (sending ask); why is not empty when they do not fit, and the
// answer is discarded.
func (e *Embedder) learn(ref moltbot.ModelRef, want, ask int, chain bool, got int, st *provider.State) (why string) {
	e.mu.Lock()
	m := e.models[ref]
	if m == nil {
		m = &dimsOf{}
		e.models[ref] = m
	}
	switch {
	case want == 0:
		m.native = got
		if !chain {
			break
		}
		if e.chainDim == 0 {
			e.chainDim = got
			e.mu.Unlock()
			e.log.Info("embedding chain dimension learned", "dimensions", got, "model", ref.String())
			return ""
		}
		if got != e.chainDim {
			why = fmt.Sprintf("gave %d dimensions, the chain %d", got, e.chainDim)
		}
	case got == want:
		if ask > 0 {
			m.shortens = 1
		}
	default:
		if ask > 0 {
			m.shortens = -1
		} else {
			m.native = got // the model changed since it was seen
		}
		why = fmt.Sprintf("gave %d dimensions, %d were asked for", got, want)
	}
	e.mu.Unlock()
	if why != "" {
		e.r.met.Inc(metrics.EmbedMismatches, ref.Provider, st.MetricModel(ref.Model))
		e.log.Warn("embedding answer discarded: another dimension", "model", ref.String(), "reason", why)
	}
	return why
}

// ctxErr is the error of a request whose context ended.
func ctxErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &moltbot.Error{Code: moltbot.ETimeout, Message: "the request timed out (server.request_timeout)"}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: "request canceled", Err: ctx.Err()}
}
