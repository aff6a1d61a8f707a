package provider

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Backoff restarts a failed child with a backoff that doubles with each
// failure inside Window (Base, 2×Base, ... up to Max), and counts every
// restart. A restarted provider keeps its queue (see State.carry).
//
// Two ways to wait out the backoff. By default the child restarts after it,
// and messages wait in its suspended mailbox (conversations: nobody else
// can serve them). With RestartNow the child restarts at once and
// OnRestart is told the backoff, during which the child refuses work
// (providers: the router fails over at once instead of waiting).
type Backoff struct {
	Base, Max, Window time.Duration
	Metrics           *metrics.Registry
	Log               *slog.Logger
	Kind              string // the actor label of moltbot_actor_restarts_total
	RestartNow        bool
	// OnRestart runs on the supervisor's goroutine before the restart is
	// counted (so whoever sees the count sees its effects).
	OnRestart func(child *actor.PID, backoff time.Duration)
}

func (s *Backoff) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	rs.Fail()
	n := rs.NumberOfFailures(s.Window)
	delay := s.Base
	for i := 1; i < n && delay < s.Max; i++ {
		delay *= 2
	}
	delay = min(delay, s.Max)
	if s.OnRestart != nil {
		s.OnRestart(child, delay)
	}
	s.Metrics.Inc(metrics.ActorRestarts, s.Kind)
	s.Log.Error("actor crashed; restarting", "actor", s.Kind, "id", child.Id, "failures", n, "backoff", delay, "reason", firstLine(fmt.Sprint(reason)))
	if s.RestartNow {
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
