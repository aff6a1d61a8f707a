package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// ProviderSpec is one configured model server.
type ProviderSpec struct {
	Name     string
	Type     string
	Provider inference.Provider
	// MaxInFlight calls run at once; MaxQueue more wait; past both, busy.
	MaxInFlight int
	MaxQueue    int
	// Timeout bounds one call.
	Timeout time.Duration
	// Models lists configured model names (shown by /v1/models).
	Models []string
	// Keys reports the state of the provider's API keys (status pages).
	Keys func() []inference.KeyStatus
}

// providerState is what survives a provider actor's restart and what status
// reads without asking the actor: counters and health.
type providerState struct {
	spec     ProviderSpec
	pid      atomic.Pointer[actor.PID]
	inFlight atomic.Int64
	queued   atomic.Int64
	restarts atomic.Int64
	// downUntil (unix ns; 0: never crashed) ends a crash's backoff. Until
	// then the router skips the provider and the actor refuses calls at
	// once: a restarting provider is skipped, not waited for.
	downUntil atomic.Int64

	// chainModels are this provider's models named in the chain; with the
	// configured and discovered models they bound the metrics' model label.
	chainModels map[string]bool

	mu         sync.Mutex
	carry      *carry // work handed from a crashed incarnation to the next
	healthy    bool
	checked    time.Time
	lastErr    string
	discovered []string
}

type carry struct {
	inFlight int
	queue    []*callMsg
}

// callMsg asks a provider actor for one model call. reply is called exactly
// once, with the result, and must not block (it may run inside Receive). fn
// is called from the call's goroutine only.
type callMsg struct {
	ctx   context.Context
	req   *inference.Request
	fn    inference.DeltaFunc
	reply func(callResult)
}

type callResult struct {
	res  inference.Result
	err  error
	ttft time.Duration
}

// callFinished tells the actor a call's goroutine is done.
type callFinished struct {
	panicked any
	stack    string
}

// restartLeft is how long the provider stays out of service after a crash
// (0: it serves).
func (st *providerState) restartLeft(now time.Time) time.Duration {
	until := st.downUntil.Load()
	if until == 0 {
		return 0
	}
	return max(time.Duration(until-now.UnixNano()), 0)
}

// providerActor admits calls to one provider. Its state (in-flight count and
// queue) is carried across restarts through providerState.carry.
type providerActor struct {
	st       *providerState
	log      *slog.Logger
	met      *metrics.Registry
	system   *actor.ActorSystem
	now      func() time.Time
	inFlight int
	queue    []*callMsg
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
	case *callMsg:
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

func (a *providerActor) admit(c actor.Context, m *callMsg) {
	if err := m.ctx.Err(); err != nil {
		m.reply(callResult{err: inference.Classify(m.ctx, a.st.spec.Name, err)})
		return
	}
	if left := a.st.restartLeft(a.now()); left > 0 {
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
	m.reply(callResult{err: &inference.Error{Kind: inference.KindBusy, Provider: a.st.spec.Name,
		Message: fmt.Sprintf("busy: %d calls running and %d waiting", a.inFlight, len(a.queue)), RetryAfter: time.Second}})
}

// refuseRestarting answers a call at once while the provider is out of
// service after a crash: busy (neutral for the breaker, which already
// counted the crash), so the router moves on to the next model.
func (a *providerActor) refuseRestarting(m *callMsg, left time.Duration) {
	a.met.Inc(metrics.ProviderBusy, a.st.spec.Name)
	m.reply(callResult{err: &inference.Error{Kind: inference.KindBusy, Provider: a.st.spec.Name, RetryAfter: left,
		Message: fmt.Sprintf("restarting after a crash (back in %s)", left.Round(time.Millisecond))}})
}

// drain starts queued calls while slots are free; while the provider is
// restarting after a crash it fails them all over at once instead.
func (a *providerActor) drain(c actor.Context) {
	left := a.st.restartLeft(a.now())
	for len(a.queue) > 0 && (left > 0 || a.inFlight < a.st.spec.MaxInFlight) {
		m := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		switch err := m.ctx.Err(); {
		case err != nil:
			m.reply(callResult{err: inference.Classify(m.ctx, a.st.spec.Name, err)})
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

func (a *providerActor) start(c actor.Context, m *callMsg) {
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
		var out callResult
		defer func() {
			if r := recover(); r != nil {
				fin.panicked, fin.stack = r, string(debug.Stack())
				out = callResult{err: &inference.Error{Kind: inference.KindCrashed, Provider: spec.Name, Message: fmt.Sprintf("provider crashed: %v", r)}}
			}
			root.Send(self, fin)
			m.reply(out)
		}()
		ctx, cancel := context.WithTimeout(m.ctx, spec.Timeout)
		defer cancel()
		t0 := time.Now()
		var ttft time.Duration
		res, err := spec.Provider.Chat(ctx, m.req, func(s string) error {
			if ttft == 0 {
				ttft = time.Since(t0)
			}
			return m.fn(s)
		})
		model := st.metricModel(m.req.Model)
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
		out = callResult{res: res, err: err, ttft: ttft}
	}()
}

// metricModel returns model when the provider knows it, else "other": a
// client must not be able to mint metric series with made-up model names.
func (st *providerState) metricModel(model string) string {
	if st.chainModels[model] {
		return model
	}
	for _, m := range st.models() {
		if m == model {
			return model
		}
	}
	return "other"
}

// backoffStrategy restarts a failed child with a backoff that doubles with
// each failure inside window (base, 2×base, ... up to max), and counts every
// restart. A restarted provider keeps its queue (see providerState.carry).
//
// Two ways to wait out the backoff. By default the child restarts after it,
// and messages wait in its suspended mailbox (conversations: nobody else
// can serve them). With restartNow the child restarts at once and
// onRestart is told the backoff, during which the child refuses work
// (providers: the router fails over at once instead of waiting).
type backoffStrategy struct {
	base, max, window time.Duration
	met               *metrics.Registry
	log               *slog.Logger
	kind              string
	restartNow        bool
	// onRestart runs on the supervisor's goroutine before the restart is
	// counted (so whoever sees the count sees its effects).
	onRestart func(child *actor.PID, backoff time.Duration)
}

func (s *backoffStrategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	rs.Fail()
	n := rs.NumberOfFailures(s.window)
	delay := s.base
	for i := 1; i < n && delay < s.max; i++ {
		delay *= 2
	}
	delay = min(delay, s.max)
	if s.onRestart != nil {
		s.onRestart(child, delay)
	}
	s.met.Inc(metrics.ActorRestarts, s.kind)
	s.log.Error("actor crashed; restarting", "actor", s.kind, "id", child.Id, "failures", n, "backoff", delay, "reason", firstLine(fmt.Sprint(reason)))
	if s.restartNow {
		sup.RestartChildren(child)
		return
	}
	time.AfterFunc(delay, func() { sup.RestartChildren(child) })
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// supervisorActor only parents children; the strategy in its props decides.
type supervisorActor struct{}

func (supervisorActor) Receive(actor.Context) {}
