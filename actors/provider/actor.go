package provider

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
)

// slotFreed tells the actor a call ended while calls waited.
type slotFreed struct{}

// crashed tells the actor a call's provider code panicked.
type crashed struct {
	panicked any
	stack    string
}

// providerActor admits the calls the fast path (Set.Call) did not: it
// queues them while every slot is taken, refuses them past MaxQueue or
// while the provider restarts, and starts them as slots free up. Slots are
// State.inFlight, shared with the fast path; its queue is carried across
// restarts through State.carry.
type providerActor struct {
	set    *Set
	st     *State
	log    *slog.Logger
	met    *metrics.Registry
	system *actor.ActorSystem
	now    func() time.Time
	queue  []*Call
}

func (a *providerActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		a.st.mu.Lock()
		if cr := a.st.carry; cr != nil {
			a.queue = cr.queue
			a.st.carry = nil
		}
		a.st.mu.Unlock()
		a.drain()
	case *actor.Restarting:
		a.st.mu.Lock()
		a.st.carry = &carry{queue: a.queue}
		a.st.mu.Unlock()
	case *Call:
		a.admit(m)
	case *slotFreed:
		a.drain()
	case *crashed:
		// The call already failed its caller (who fails over). Crash this
		// actor so the supervisor restarts it with backoff and counts it.
		panic(fmt.Sprintf("provider %s: call panicked: %v\n%s", a.st.spec.Name, m.panicked, m.stack))
	}
}

func (a *providerActor) admit(m *Call) {
	if err := m.Ctx.Err(); err != nil {
		m.Reply(Result{Err: inference.Classify(m.Ctx, a.st.spec.Name, err)})
		return
	}
	if left := a.st.RestartLeft(a.now()); left > 0 {
		a.refuseRestarting(m, left)
		return
	}
	if len(a.queue) == 0 && a.st.acquire() {
		go a.set.run(a.st, m)
		return
	}
	if len(a.queue) < a.st.spec.MaxQueue {
		a.queue = append(a.queue, m)
		a.st.queued.Store(int64(len(a.queue)))
		// A call that ended before the count was stored did not tell us:
		// look again (the queued count is stored before the slots are read,
		// the slot freed before the count is read; see Set.run).
		a.drain()
		return
	}
	a.met.Inc(metrics.ProviderBusy, a.st.spec.Name)
	m.Reply(Result{Err: &inference.Error{Kind: inference.KindBusy, Provider: a.st.spec.Name,
		Message: fmt.Sprintf("busy: %d calls running and %d waiting", a.st.inFlight.Load(), len(a.queue)), RetryAfter: time.Second}})
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
func (a *providerActor) drain() {
	left := a.st.RestartLeft(a.now())
	for len(a.queue) > 0 {
		m := a.queue[0]
		switch err := m.Ctx.Err(); {
		case err != nil:
			m.Reply(Result{Err: inference.Classify(m.Ctx, a.st.spec.Name, err)})
		case left > 0:
			a.refuseRestarting(m, left)
		case a.st.acquire():
			go a.set.run(a.st, m)
		default:
			a.st.queued.Store(int64(len(a.queue)))
			return // every slot is taken: the next call to end tells us
		}
		a.queue[0] = nil
		a.queue = a.queue[1:]
	}
	a.queue = nil // let the backing array go
	a.st.queued.Store(0)
}
