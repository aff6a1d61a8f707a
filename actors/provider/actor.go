package provider

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Call asks a provider actor for one model call. Reply is called exactly
// once, with the result, and must not block (it may run inside Receive). Fn
// is called from the call's goroutine only.
type Call struct {
	Ctx   context.Context
	Req   *inference.Request
	Fn    inference.DeltaFunc
	Reply func(Result)
}

// Result is a call's outcome.
type Result struct {
	Res  inference.Result
	Err  error
	TTFT time.Duration
}

// callFinished tells the actor a call's goroutine is done.
type callFinished struct {
	panicked any
	stack    string
}

// providerActor admits calls to one provider. Its state (in-flight count and
// queue) is carried across restarts through State.carry.
type providerActor struct {
	st       *State
	log      *slog.Logger
	met      *metrics.Registry
	system   *actor.ActorSystem
	now      func() time.Time
	inFlight int
	queue    []*Call
}

func (a *providerActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		a.st.mu.Lock()
		if cr := a.st.carry; cr != nil {
			a.inFlight, a.queue = cr.inFlight, cr.queue
			a.st.carry = nil
		}
		a.st.mu.Unlock()
		a.drain(c)
	case *actor.Restarting:
		a.st.mu.Lock()
		a.st.carry = &carry{inFlight: a.inFlight, queue: a.queue}
		a.st.mu.Unlock()
	case *Call:
		a.admit(c, m)
	case *callFinished:
		a.inFlight--
		a.st.inFlight.Store(int64(a.inFlight))
		if m.panicked != nil {
			// The goroutine already failed its caller (who fails over). Crash
			// this actor so the supervisor restarts it with backoff and counts it.
			panic(fmt.Sprintf("provider %s: call panicked: %v\n%s", a.st.spec.Name, m.panicked, m.stack))
		}
		a.drain(c)
	}
}

func (a *providerActor) admit(c actor.Context, m *Call) {
	if err := m.Ctx.Err(); err != nil {
		m.Reply(Result{Err: inference.Classify(m.Ctx, a.st.spec.Name, err)})
		return
	}
	if left := a.st.RestartLeft(a.now()); left > 0 {
		a.refuseRestarting(m, left)
		return
	}
	if a.inFlight < a.st.spec.MaxInFlight {
		a.start(c, m)
		return
	}
	if len(a.queue) < a.st.spec.MaxQueue {
		a.queue = append(a.queue, m)
		a.st.queued.Store(int64(len(a.queue)))
		return
	}
	a.met.Inc(metrics.ProviderBusy, a.st.spec.Name)
	m.Reply(Result{Err: &inference.Error{Kind: inference.KindBusy, Provider: a.st.spec.Name,
		Message: fmt.Sprintf("busy: %d calls running and %d waiting", a.inFlight, len(a.queue)), RetryAfter: time.Second}})
}

// refuseRestarting answers a call at once while the provider is out of
// service after a crash: busy (neutral for the breaker, which already
// counted the crash), so the router moves on to the next model.
func (a *providerActor) refuseRestarting(m *Call, left time.Duration) {
	a.met.Inc(metrics.ProviderBusy, a.st.spec.Name)
	m.Reply(Result{Err: &inference.Error{Kind: inference.KindBusy, Provider: a.st.spec.Name, RetryAfter: left,
		Message: fmt.Sprintf("restarting after a crash (back in %s)", left.Round(time.Millisecond))}})
}

// drain starts queued calls while slots are free; while the provider is
// restarting after a crash it fails them all over at once instead.
func (a *providerActor) drain(c actor.Context) {
	left := a.st.RestartLeft(a.now())
	for len(a.queue) > 0 && (left > 0 || a.inFlight < a.st.spec.MaxInFlight) {
		m := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		switch err := m.Ctx.Err(); {
		case err != nil:
			m.Reply(Result{Err: inference.Classify(m.Ctx, a.st.spec.Name, err)})
		case left > 0:
			a.refuseRestarting(m, left)
		default:
			a.start(c, m)
		}
	}
	if len(a.queue) == 0 {
		a.queue = nil // let the backing array go
	}
	a.st.queued.Store(int64(len(a.queue)))
}

func (a *providerActor) start(c actor.Context, m *Call) {
	a.inFlight++
	a.st.inFlight.Store(int64(a.inFlight))
	self := c.Self()
	root := a.system.Root
	spec := a.st.spec
	met := a.met
	st := a.st
	go func() {
		// The actor hears of the end before the caller does: the caller's
		// next call then finds the slot free (the mailbox is FIFO).
		fin := &callFinished{}
		var out Result
		defer func() {
			if r := recover(); r != nil {
				fin.panicked, fin.stack = r, string(debug.Stack())
				out = Result{Err: &inference.Error{Kind: inference.KindCrashed, Provider: spec.Name, Message: fmt.Sprintf("provider crashed: %v", r)}}
			}
			root.Send(self, fin)
			m.Reply(out)
		}()
		ctx, cancel := context.WithTimeout(m.Ctx, spec.Timeout)
		defer cancel()
		t0 := time.Now()
		var ttft time.Duration
		res, err := spec.Provider.Chat(ctx, m.Req, func(s string) error {
			if ttft == 0 {
				ttft = time.Since(t0)
			}
			return m.Fn(s)
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
	}()
}
