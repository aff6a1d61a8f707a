package provider

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Config starts the providers.
type Config struct {
	Specs []Spec
	// Chain is the configured model chain (its providers must be in Specs).
	Chain []moltbot.ModelRef
	// RestartBackoff is the first delay of a crashed provider's backoff.
	RestartBackoff time.Duration
	Metrics        *metrics.Registry
	Log            *slog.Logger
	// Now is the clock of restart backoffs.
	Now func() time.Time
}

// Set is a node's providers: their states, in configuration order, and
// their actors. Its methods are safe for concurrent use.
type Set struct {
	states map[string]*State
	order  []string
	chain  []moltbot.ModelRef
	pids   map[string]*actor.PID
	root   *actor.RootContext
	log    *slog.Logger
	met    *metrics.Registry
	now    func() time.Time
	// recheck wakes HealthLoop for a check now (Forget).
	recheck chan struct{}
}

// Start spawns the supervisor "providers" in system with one provider actor
// per spec under it. The supervisor restarts a crashed provider at once and
// marks it out of service for the backoff (Backoff with RestartNow).
func Start(system *actor.ActorSystem, cfg Config) (*Set, error) {
	s := &Set{states: map[string]*State{}, chain: cfg.Chain, root: system.Root, log: cfg.Log, met: cfg.Metrics, now: cfg.Now,
		recheck: make(chan struct{}, 1)}
	for _, spec := range cfg.Specs {
		if _, dup := s.states[spec.Name]; dup {
			return nil, fmt.Errorf("actors: provider %q given twice", spec.Name)
		}
		s.states[spec.Name] = &State{spec: spec, chainModels: map[string]bool{}}
		s.order = append(s.order, spec.Name)
	}
	for _, ref := range cfg.Chain {
		if s.states[ref.Provider] == nil {
			return nil, fmt.Errorf("actors: chain names provider %q, which is not configured", ref.Provider)
		}
		s.states[ref.Provider].chainModels[ref.Model] = true
	}

	// Providers live under a supervisor that restarts them with backoff.
	pids := make(chan map[string]*actor.PID, 1)
	strategy := &Backoff{Base: cfg.RestartBackoff, Max: 30 * time.Second, Window: time.Minute,
		Metrics: s.met, Log: s.log, Kind: "provider", RestartNow: true, OnRestart: func(child *actor.PID, backoff time.Duration) {
			for _, st := range s.states {
				if st.pid.Load() != nil && st.pid.Load().Id == child.Id {
					st.downUntil.Store(s.now().Add(backoff).UnixNano())
					st.restarts.Add(1)
				}
			}
		}}
	supProps := actor.PropsFromProducer(func() actor.Actor {
		return &supervisor{s: s, system: system, out: pids}
	}, actor.WithSupervisor(strategy))
	if _, err := system.Root.SpawnNamed(supProps, "providers"); err != nil {
		return nil, fmt.Errorf("actors: spawn providers: %w", err)
	}
	s.pids = <-pids
	return s, nil
}

type supervisor struct {
	s      *Set
	system *actor.ActorSystem
	out    chan map[string]*actor.PID
}

func (sup *supervisor) Receive(c actor.Context) {
	if _, ok := c.Message().(*actor.Started); !ok {
		return
	}
	s := sup.s
	pids := map[string]*actor.PID{}
	for _, name := range s.order {
		st := s.states[name]
		props := actor.PropsFromProducer(func() actor.Actor {
			return &providerActor{set: s, st: st, log: s.log, met: s.met, system: sup.system, now: s.now}
		})
		pid, err := c.SpawnNamed(props, name)
		if err != nil {
			pid = c.Spawn(props)
		}
		st.pid.Store(pid)
		pids[name] = pid
	}
	if sup.out != nil {
		sup.out <- pids
		sup.out = nil
	}
}

// Get returns the state of provider name, or nil.
func (s *Set) Get(name string) *State { return s.states[name] }

// Names are the providers in configuration order.
func (s *Set) Names() []string { return s.order }

// HealthLoop probes every provider now and then every interval, until ctx
// ends. A chain model an Ollama server lacks is marked missing on its
// breaker in policy.
func (s *Set) HealthLoop(ctx context.Context, every time.Duration, policy *failover.Policy) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.checkAll(ctx, policy)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.recheck:
		}
	}
}

// checkAll probes providers concurrently, each bounded by 3 s.
func (s *Set) checkAll(base context.Context, policy *failover.Policy) {
	done := make(chan struct{}, len(s.order))
	for _, name := range s.order {
		st := s.states[name]
		go func() {
			defer func() { done <- struct{}{} }()
			ctx, cancel := context.WithTimeout(base, 3*time.Second)
			defer cancel()
			models, err := st.spec.Provider.Models(ctx)
			if base.Err() != nil {
				return
			}
			if err == nil && st.spec.Type == "ollama" {
				// A chain model Ollama does not have (not pulled) is skipped
				// and shown as missing until it appears; the log says so,
				// and how to get it, when that changes.
				for _, ref := range s.chain {
					if ref.Provider == st.spec.Name {
						b := policy.Breaker(ref.Provider, ref.Model)
						missing := !hasModel(models, ref.Model)
						if was := b.Stats(time.Now()).Missing; missing && !was {
							s.log.Warn("a chain model is missing on its Ollama; requests skip it", "model", ref.String(), "url", st.spec.URL,
								"fix", fmt.Sprintf("ollama pull %s (with OLLAMA_HOST=%s if that is not the default)", ref.Model, st.spec.URL))
						} else if !missing && was {
							s.log.Info("a chain model is on its Ollama now", "model", ref.String())
						}
						b.SetMissing(missing)
					}
				}
			}
			if err == nil {
				s.learnModels(base, ctx, st)
			}
			st.mu.Lock()
			was, first := st.healthy, st.checked.IsZero()
			st.checked = time.Now()
			st.healthy = err == nil
			if err != nil {
				st.lastErr = err.Error()
			} else {
				st.lastErr = ""
				st.discovered = models
			}
			st.mu.Unlock()
			if was != (err == nil) || first {
				if err != nil {
					s.log.Warn("provider unreachable", "provider", st.spec.Name, "url", st.spec.URL, "err", err, "fix", unreachableFix(st.spec))
				} else {
					s.log.Info("provider reachable", "provider", st.spec.Name, "models", len(models))
				}
			}
		}()
	}
	for range s.order {
		<-done
	}
}

// hasModel reports whether list holds model, taking "m" and "m:latest" as one.
func hasModel(list []string, model string) bool {
	for _, m := range list {
		if m == model || strings.TrimSuffix(m, ":latest") == strings.TrimSuffix(model, ":latest") {
			return true
		}
	}
	return false
}

// unreachableFix says what to do about a provider that does not answer.
func unreachableFix(sp Spec) string {
	switch sp.Type {
	case "ollama":
		return fmt.Sprintf("start Ollama (ollama serve) so that it answers at %s, or set this provider's url to where it runs; "+
			"`moltbot start --preset demo` falls back to the built-in simulator", sp.URL)
	case "sim":
		return "the built-in simulator always answers; this is a bug"
	}
	return fmt.Sprintf("check that %s answers from this host (the provider's url, the network, a proxy)", sp.URL)
}
