package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Why an attempt was canceled by the router (context causes).
var (
	errFirstToken = errors.New("no first token within threshold.latency")
	errLost       = errors.New("another model answered first")
)

type evKind int

const (
	evFirst evKind = iota
	evDone
	evHedge
)

// event is what the loop hears of an attempt (evDone: its result is a.res).
type event struct {
	kind evKind
	a    *attempt
}

// chatState is one request's walk of the chain.
type chatState struct {
	r        *Router
	ctx      context.Context
	chain    []moltbot.ModelRef
	msgs     []moltbot.Message
	opts     moltbot.ChatOptions
	fn       moltbot.StreamFunc
	needs    moltbot.Needs // what the request needs of a model
	visible  bool
	events   chan event
	writer   atomic.Pointer[attempt] // the attempt whose tokens reach fn
	shown    strings.Builder         // text that reached fn, across attempts
	calls    []moltbot.ToolCall      // the writer's tool calls so far
	running  []*attempt              // at most two run at once (hedging)
	runBuf   [2]*attempt             // running's first backing array
	next     int                     // next chain position to consider
	forced   bool                    // every model was skipped: a second pass ignores breakers
	started  int
	hops     int
	left     *leftModel // the last model left behind, for the failover metric
	failures []string
	last     *inference.Error
	usage    moltbot.Usage
	firstAt  time.Duration
	t0       time.Time
}

type leftModel struct {
	ref    moltbot.ModelRef
	reason string
}

// Chat asks the models of chain until one answers.
//
// Models are tried in order. A model is skipped when its breaker is open, its
// provider is rate limited (Retry-After), unreachable, or restarting after
// a crash (its backoff); when all are
// skipped, they are tried anyway, in order, rather than fail the client. A
// model that fails before its first token, or gives none within
// threshold.latency, is abandoned for the next one when the failure says
// another model could do better; a bad request (400) returns at once. With
// hedging, the next model also starts when the leading one is slow, and the
// first token wins. A failure after tokens reached a visible stream ends the
// stream, or with stream_failure=continue the next model continues the text.
// When the client does not see tokens (visible=false), a mid-reply failure
// is simply retried on the next model.
//
// On error after visible tokens, the returned completion holds the text the
// client saw (so that it can be stored).
func (r *Router) Chat(ctx context.Context, chain []moltbot.ModelRef, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc, visible bool) (*moltbot.Completion, error) {
	s := &chatState{r: r, ctx: ctx, chain: chain, msgs: msgs, opts: opts, fn: fn, visible: visible,
		events: make(chan event, 8*(len(chain)+1)), t0: time.Now()}
	s.running = s.runBuf[:0]
	if s.needs = moltbot.NeedsOf(msgs, opts); s.needs.Any() {
		if err := s.r.unable(chain, s.needs); err != nil {
			return nil, err
		}
	}
	defer s.stopAll(nil)
	if !s.launch(false) {
		return nil, s.fail(true)
	}
	for {
		var ev event
		select {
		case ev = <-s.events:
			// What is there already (a call run on this goroutine has
			// posted its events when it returns) needs no select.
		default:
			select {
			case ev = <-s.events:
			case <-ctx.Done():
				s.stopAll(context.Cause(ctx))
				s.drain()
				return s.partial(), s.ctxErr()
			}
		}
		switch ev.kind {
		case evHedge:
			if s.isRunning(ev.a) && s.writer.Load() == nil && len(s.running) == 1 {
				s.leave(ev.a.ref, "hedge")
				s.launch(false)
			}
		case evFirst:
			// ev.a owns the stream: stop every other attempt.
			for _, a := range s.running {
				if a != ev.a {
					a.lost.Store(true)
					a.cancel(errLost)
				}
			}
		case evDone:
			if comp, err, done := s.done(ev.a, ev.a.res); done {
				return comp, err
			}
		}
	}
}

// launch starts the next admissible model; it reports false when none is left.
// cont marks a continuation of a reply another model began.
func (s *chatState) launch(cont bool) bool {
	now := s.r.now()
	for {
		if s.next >= len(s.chain) {
			if s.started > 0 || s.forced {
				return false
			}
			// Every model was skipped: try them all anyway, in order. The
			// skips passed nothing over (the first model is asked first
			// again), so the count starts afresh and no failover is
			// counted into the first model (it would be one to itself
			// with a chain of one).
			s.forced, s.next, s.hops, s.left = true, 0, 0, nil
		}
		ref := s.chain[s.next]
		s.next++
		st := s.r.providers.Get(ref.Provider)
		if st == nil {
			continue
		}
		if s.needs.Any() && st.Caps(ref.Model).Lacks(s.needs) != "" {
			continue // it cannot serve this request: not a failure of its own
		}
		probe := false
		if !s.forced {
			ok, p, reason := false, false, "restarting"
			// A provider in its crash backoff would refuse the call; asked
			// first so that no half-open probe is handed out for it.
			if st.RestartLeft(now) == 0 {
				ok, p, reason = s.r.policy.Admit(now, ref.Provider, ref.Model, st.Reachable())
			}
			if !ok {
				s.hops++
				s.leave(ref, reason)
				s.failures = append(s.failures, fmt.Sprintf("%s: skipped (%s)", ref, strings.ReplaceAll(reason, "_", " ")))
				continue
			}
			probe = p
		}
		s.start(ref, probe, cont)
		return true
	}
}

// leave notes that the request moved on from ref; the failover is counted
// when the next model starts.
func (s *chatState) leave(ref moltbot.ModelRef, reason string) {
	s.left = &leftModel{ref: ref, reason: reason}
}

func (s *chatState) start(ref moltbot.ModelRef, probe, cont bool) {
	if s.left != nil {
		s.r.met.Inc(metrics.Failovers, s.left.ref.String(), ref.String(), s.left.reason)
		s.left = nil
	}
	actx, cancel := context.WithCancelCause(s.ctx)
	a := &attempt{ref: ref, hop: s.hops, probe: probe, ctx: actx, cancel: cancel, start: time.Now(), isCont: cont, hasNext: s.next < len(s.chain)}
	a.req = inference.Request{Model: ref.Model, Messages: s.msgs, ChatOptions: s.opts}
	s.hops++
	s.started++
	s.running = append(s.running, a)
	if cont {
		a.req.Messages = append(append(make([]moltbot.Message, 0, len(s.msgs)+1), s.msgs...), moltbot.Message{Role: moltbot.RoleAssistant, Content: s.shown.String()})
	}
	a.call = provider.Call{Ctx: actx, Cancel: cancel, Req: &a.req,
		Fn:    func(d inference.Delta) error { return s.token(a, d) },
		Reply: func(res provider.Result) { a.res = res; s.events <- event{kind: evDone, a: a} }}
	call := &a.call
	if a.hasNext {
		if s.r.providers.Get(ref.Provider).Cold(ref.Model) {
			// The model must be loaded first (Ollama, on a small device:
			// seconds). The load is no first-token failure: the clock
			// starts when the model is in memory.
			call.Loaded = func() {
				a.start = time.Now()
				s.firstTokenDeadline(a)
			}
		} else {
			s.firstTokenDeadline(a)
		}
	}
	if s.r.hedgeAfter > 0 && a.hasNext && s.writer.Load() == nil {
		a.hedge = time.AfterFunc(s.r.hedgeAfter, func() {
			if !a.first.Load() {
				s.events <- event{kind: evHedge, a: a}
			}
		})
	}
	// Without hedging one attempt runs at a time and the loop has nothing
	// to do meanwhile: the call runs on this goroutine when it may start
	// at once (no hand-off to a goroutine and back).
	s.r.providers.Call(ref.Provider, call, s.r.hedgeAfter <= 0)
}

// token runs on the call's goroutine for each piece of attempt a's reply.
// A piece of a tool call counts as a token (the model answered).
func (s *chatState) token(a *attempt, d inference.Delta) error {
	if a.lost.Load() {
		return errLost
	}
	if !a.first.Load() {
		if !s.writer.CompareAndSwap(nil, a) && s.writer.Load() != a {
			return errLost
		}
		now := time.Now()
		a.ttft = now.Sub(a.start)
		if s.firstAt == 0 {
			s.firstAt = now.Sub(s.t0)
		}
		a.first.Store(true)
		s.events <- event{kind: evFirst, a: a}
	} else if s.writer.Load() != a {
		return errLost
	}
	a.tokens++
	if d.ToolCall != nil {
		s.calls = addDelta(s.calls, d.ToolCall) // a nameless call gets an id
		if !s.visible {
			return nil
		}
		return s.fn(moltbot.Chunk{ToolCall: d.ToolCall, Served: a.ref, Failovers: a.hop})
	}
	if s.shown.Cap() == 0 {
		// Room for a short reply at once, not a copy at 8, 16, 32, 64
		// bytes (the text's final size is as before from there on).
		s.shown.Grow(64)
	}
	s.shown.WriteString(d.Text)
	if !s.visible {
		return nil
	}
	return s.fn(moltbot.Chunk{Content: d.Text, Served: a.ref, Failovers: a.hop})
}

// done handles the end of attempt a; done reports whether chat returns.
func (s *chatState) done(a *attempt, res provider.Result) (*moltbot.Completion, error, bool) {
	s.remove(a)
	a.stopTimers()
	cause := context.Cause(a.ctx)
	a.cancel(nil)
	now := s.r.now()
	b := s.r.policy.Breaker(a.ref.Provider, a.ref.Model)
	err := res.Err
	ie, typed := inference.AsError(err)
	switch {
	case err == nil:
		b.Record(now, failover.Success, a.ttft, a.probe, "")
	case errors.Is(cause, errFirstToken) && !a.first.Load():
		ie = &inference.Error{Kind: inference.KindTimeout, Provider: a.ref.Provider,
			Message: fmt.Sprintf("no first token within %s (models.threshold.latency)", s.r.policy.Config().Latency)}
		typed, err = true, ie
		b.Record(now, failover.Failure, s.r.policy.Config().Latency, a.probe, ie.Message)
	case a.lost.Load() || errors.Is(err, errLost) || !typed:
		// Lost a hedge race, or the client's callback failed: says nothing
		// about the model.
		b.Record(now, failover.Neutral, 0, a.probe, "")
	default:
		switch ie.Kind {
		case inference.KindBadRequest, inference.KindCanceled, inference.KindBusy:
			b.Record(now, failover.Neutral, 0, a.probe, "")
		case inference.KindModelNotFound:
			b.Record(now, failover.Neutral, 0, a.probe, "")
			b.Trip(now, 0, true, ie.Error())
		default:
			if ie.Kind == inference.KindRateLimited {
				s.r.policy.Hold(now, a.ref.Provider, ie.RetryAfter)
			}
			b.Record(now, failover.Failure, a.ttft, a.probe, ie.Error())
		}
	}

	if s.ctx.Err() != nil && err != nil {
		s.stopAll(context.Cause(s.ctx))
		s.drain()
		return s.partial(), s.ctxErr(), true
	}
	writer := s.writer.Load() == a
	if err == nil {
		if s.writer.Load() != nil && !writer {
			return nil, nil, false // finished without tokens after another took the stream
		}
		s.writer.Store(a)
		s.usage.PromptTokens = max(s.usage.PromptTokens, res.Res.Usage.PromptTokens)
		s.usage.CompletionTokens += res.Res.Usage.CompletionTokens
		finish := orStop(res.Res.FinishReason)
		if len(s.calls) > 0 && finish == "stop" {
			finish = "tool_calls"
		}
		return &moltbot.Completion{Content: s.shown.String(), ToolCalls: s.calls, Served: a.ref, Usage: s.usage,
			FinishReason: finish, Failovers: a.hop, TTFT: s.firstAt}, nil, true
	}
	if !typed {
		if writer || len(s.running) == 0 {
			s.stopAll(err)
			s.drain()
			return s.partial(), err, true // the client's callback failed: it is gone
		}
		return nil, nil, false // a hedge loser
	}
	if a.lost.Load() && !writer {
		return nil, nil, false
	}
	s.last = ie
	s.failures = append(s.failures, ie.Error())
	if writer {
		s.usage.CompletionTokens += res.Res.Usage.CompletionTokens
		if !ie.Failover() || s.ctx.Err() != nil {
			return s.partial(), s.fail(false), true
		}
		if s.visible && (!s.r.continueStreams || len(s.calls) > 0) {
			// stream_failure: terminate; a tool call half sent cannot be
			// continued by another model either.
			return s.partial(), s.fail(false), true
		}
		// Continue (visible) or start over (the client has seen nothing).
		s.writer.Store(nil)
		cont := s.visible
		if !cont {
			s.shown.Reset()
			s.calls = nil
		}
		s.leave(a.ref, "mid_stream")
		if !s.launch(cont) {
			return s.partial(), s.fail(true), true
		}
		return nil, nil, false
	}
	if !ie.Failover() {
		s.stopAll(err)
		s.drain()
		return nil, s.fail(false), true
	}
	if s.ctx.Err() != nil {
		return nil, nil, false // the ctx case of the loop answers
	}
	reason := ie.Kind.String()
	if errors.Is(cause, errFirstToken) {
		reason = "first_token_timeout"
	}
	s.leave(a.ref, reason)
	if len(s.running) > 0 {
		return nil, nil, false // a hedge is still running: wait for it
	}
	if !s.launch(a.isCont) {
		return s.partial(), s.fail(true), true
	}
	return nil, nil, false
}

// stopAll cancels every running attempt.
func (s *chatState) stopAll(cause error) {
	for _, a := range s.running {
		a.cancel(cause)
		a.stopTimers()
	}
}

func (s *chatState) isRunning(a *attempt) bool {
	for _, r := range s.running {
		if r == a {
			return true
		}
	}
	return false
}

// remove takes a off the running attempts.
func (s *chatState) remove(a *attempt) {
	for i, r := range s.running {
		if r == a {
			s.running = append(s.running[:i], s.running[i+1:]...)
			return
		}
	}
}

// drain waits for every running attempt to end, so that fn is never called
// after chat returns.
func (s *chatState) drain() {
	for len(s.running) > 0 {
		ev := <-s.events
		if ev.kind == evDone {
			s.remove(ev.a)
		}
	}
}

// partial is the completion to return with an error: what the client saw.
func (s *chatState) partial() *moltbot.Completion {
	if !s.visible || (s.shown.Len() == 0 && len(s.calls) == 0) {
		return nil
	}
	w := s.writer.Load()
	comp := &moltbot.Completion{Content: s.shown.String(), ToolCalls: s.calls, Usage: s.usage, FinishReason: "error", TTFT: s.firstAt}
	if w != nil {
		comp.Served, comp.Failovers = w.ref, w.hop
	}
	return comp
}

func (s *chatState) ctxErr() error {
	if errors.Is(context.Cause(s.ctx), context.DeadlineExceeded) || errors.Is(s.ctx.Err(), context.DeadlineExceeded) {
		return &moltbot.Error{Code: moltbot.ETimeout, Message: "the request timed out (server.request_timeout)"}
	}
	return &moltbot.Error{Code: moltbot.EInvalid, Message: "request canceled", Err: s.ctx.Err()}
}

func orStop(s string) string {
	if s == "" {
		return "stop"
	}
	return s
}

// fail is the client-facing error once the request gives up.
func (s *chatState) fail(exhausted bool) error {
	if s.last == nil {
		msg := "no model could be asked"
		if len(s.failures) > 0 {
			msg = strings.Join(s.failures, "; ")
		}
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: msg}
	}
	code := s.last.Code()
	if s.last.Kind == inference.KindModelNotFound && len(s.chain) == 1 {
		code = moltbot.ENotFound
	}
	msg := s.last.Error()
	if exhausted && len(s.failures) > 1 {
		msg = fmt.Sprintf("all %d models failed: %s", len(s.chain), strings.Join(s.failures, "; "))
	}
	return &moltbot.Error{Code: code, Message: msg, RetryAfter: s.last.RetryAfter, Err: s.last}
}
