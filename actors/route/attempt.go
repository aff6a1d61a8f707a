package route

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/inference"
)

// attempt is one model call within a request.
type attempt struct {
	ref    moltbot.ModelRef
	hop    int // models tried or skipped before this one
	probe  bool
	ctx    context.Context
	cancel context.CancelCauseFunc
	start  time.Time
	first  atomic.Bool
	lost   atomic.Bool     // canceled because another attempt took the stream
	ttft   time.Duration   // written before the first event is sent
	tokens int             // written by the call's goroutine; read after done
	res    provider.Result // written before evDone is sent
	// deadline is the first-token deadline: set by the router, or on the
	// call's goroutine once a cold model is loaded (call.Loaded).
	deadline atomic.Pointer[time.Timer]
	hedge    *time.Timer
	isCont   bool // continues a reply another model began
	hasNext  bool // a later model exists: the first-token deadline applies
	// The call and its request live with the attempt: one allocation.
	call provider.Call
	req  inference.Request
}

// stopTimers stops a's timers.
func (a *attempt) stopTimers() {
	if t := a.deadline.Load(); t != nil {
		t.Stop()
	}
	if a.hedge != nil {
		a.hedge.Stop()
	}
}

// firstTokenDeadline gives a up for the next model when it has produced no
// token within the threshold.
func (s *chatState) firstTokenDeadline(a *attempt) {
	a.deadline.Store(time.AfterFunc(s.r.policy.Config().Latency, func() {
		if !a.first.Load() {
			a.cancel(errFirstToken)
		}
	}))
}
