package provider

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Call asks a provider for one model call. Reply is called exactly once,
// with the result, and must not block (it may run inside Receive, or on the
// goroutine that called Set.Call). Fn is called from the goroutine that
// runs the call only. With Embed set the call embeds instead (embed.go).
type Call struct {
	Ctx   context.Context
	Req   *inference.Request
	Fn    inference.DeltaFunc
	Reply func(Result)
	// Loaded, when set, asks that the model be loaded first (a Loader
	// provider; State.Cold) and is called once it is, before the call
	// starts, on the call's goroutine: the caller starts its first-token
	// clock then.
	Loaded func()
	// Embed, when set, makes this an embedding call (Req, Fn and Loaded
	// unused).
	Embed *EmbedCall
	// Cancel, when set, cancels Ctx, which the caller made for this call
	// alone: the provider's timeout then cancels Ctx with the cause
	// context.DeadlineExceeded (inference.Classify reads it as a timeout)
	// instead of deriving a context of its own, one context less a call.
	Cancel context.CancelCauseFunc
}

// Result is a call's outcome.
type Result struct {
	Res  inference.Result
	Err  error
	TTFT time.Duration
}

// Call hands c to provider name; false when there is no such provider (c
// is not answered then).
//
// The fast path asks no actor: when a slot is free (State.inFlight below
// MaxInFlight), no call waits in the provider's queue and the provider is
// not restarting, the call takes the slot with a compare-and-swap and runs
// at once: on the caller's goroutine when wait is set (Call returns after
// Reply), else on a goroutine of its own. Otherwise c goes to the
// provider's actor, which queues it, refuses it (busy, restarting) or
// starts it, and Reply comes from another goroutine later.
func (s *Set) Call(name string, c *Call, wait bool) bool {
	st := s.states[name]
	pid := s.pids[name]
	if st == nil || pid == nil {
		return false
	}
	if st.queued.Load() == 0 && c.Ctx.Err() == nil && (st.downUntil.Load() == 0 || st.RestartLeft(s.now()) == 0) && st.acquire() {
		if wait {
			s.run(st, c)
		} else {
			go s.run(st, c)
		}
		return true
	}
	s.root.Send(pid, c)
	return true
}

// acquire takes a call slot if one is free.
func (st *State) acquire() bool {
	for {
		n := st.inFlight.Load()
		if n >= int64(st.spec.MaxInFlight) {
			return false
		}
		if st.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// run makes call m, which holds a slot of st. The slot is freed before m
// is answered (the caller's next call finds it free); when calls wait, or
// the provider's code panicked, the actor is told.
func (s *Set) run(st *State, m *Call) {
	var out Result
	defer func() {
		var crash *crashed
		if r := recover(); r != nil {
			crash = &crashed{panicked: r, stack: string(debug.Stack())}
			out = Result{Err: &inference.Error{Kind: inference.KindCrashed, Provider: st.spec.Name, Message: fmt.Sprintf("provider crashed: %v", r)}}
		}
		// The slot is freed before the queued count is read; the actor
		// stores the count before it reads the slots (providerActor.admit).
		st.inFlight.Add(-1)
		if crash != nil {
			s.root.Send(st.pid.Load(), crash)
		} else if st.queued.Load() > 0 {
			s.root.Send(st.pid.Load(), &slotFreed{})
		}
		m.Reply(out)
	}()
	spec := st.spec
	ctx := m.Ctx
	if m.Cancel != nil {
		t := time.AfterFunc(spec.Timeout, func() { m.Cancel(context.DeadlineExceeded) })
		defer t.Stop()
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(m.Ctx, spec.Timeout)
		defer cancel()
	}
	if m.Embed != nil {
		out = s.embed(ctx, st, m.Embed)
		return
	}
	if m.Loaded != nil {
		if l, ok := spec.Provider.(inference.Loader); ok && st.Cold(m.Req.Model) {
			if err := l.Load(ctx, m.Req.Model); err != nil {
				out = Result{Err: inference.Classify(ctx, spec.Name, err)}
				s.met.Inc(metrics.InferenceRequests, spec.Name, st.MetricModel(m.Req.Model), out.Err.(*inference.Error).Kind.String())
				return
			}
			st.setWarm(m.Req.Model, true)
		}
		m.Loaded()
	}
	t0 := time.Now()
	var ttft time.Duration
	res, err := spec.Provider.Chat(ctx, m.Req, func(d inference.Delta) error {
		if ttft == 0 {
			ttft = time.Since(t0)
		}
		return m.Fn(d)
	})
	model := st.MetricModel(m.Req.Model)
	outcome := "ok"
	if err != nil {
		if e, ok := inference.AsError(err); ok {
			outcome = e.Kind.String()
		} else {
			outcome = "aborted" // the caller's callback stopped the call
		}
	}
	met := s.met
	met.Inc(metrics.InferenceRequests, spec.Name, model, outcome)
	if err == nil {
		met.Observe(metrics.InferenceDuration, time.Since(t0), spec.Name, model)
		if res.Usage.PromptTokens > 0 {
			met.Counter(metrics.InferenceTokens, spec.Name, model, "prompt").Add(res.Usage.PromptTokens)
		}
		if res.Usage.CompletionTokens > 0 {
			met.Counter(metrics.InferenceTokens, spec.Name, model, "completion").Add(res.Usage.CompletionTokens)
		}
	}
	if ttft > 0 {
		met.Observe(metrics.InferenceTTFT, ttft, spec.Name, model)
	}
	out = Result{Res: res, Err: err, TTFT: ttft}
}
