// Package provider runs moltbot's model providers as actors: one provider
// actor per configured model server, under a supervisor ("providers") that
// restarts a crashed provider at once and keeps it out of service for a
// backoff (the router skips it meanwhile), and a health loop that probes
// every provider and learns the models it lists.
//
// Admission (max in-flight, a bounded queue, "busy" past both) has a fast
// path and an actor. A call that finds a slot free, nobody queued and the
// provider not restarting takes the slot (State.inFlight, compare-and-swap)
// and runs at once, on the caller's goroutine or its own (Set.Call): no
// message, no hop. The provider actor takes the others: it queues them,
// refuses them (busy, restarting), and starts them on goroutines of their
// own as slots free up; Receive never blocks on a model. A call that ends
// frees its slot and tells the actor only when calls wait or it panicked.
// What must survive a restart (slots, counters, the queue, health) lives
// in State, which status pages and the router read without asking the
// actor.
//
// Backoff, the supervision strategy, is the runtime's for both of its
// supervisors (providers here, conversations in actors/conv).
package provider

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// Spec is one configured model server.
type Spec struct {
	Name string
	Type string
	// URL is the server's address as configured (no credentials in it):
	// status shows it and the health messages name it.
	URL      string
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
	// Caps are the configured capabilities of models; they win over what
	// the server says (State.Caps).
	Caps map[string]moltbot.Capabilities
}

// State is what survives a provider actor's restart and what status reads
// without asking the actor: counters and health.
type State struct {
	spec Spec
	pid  atomic.Pointer[actor.PID]
	// inFlight are the slots taken (calls running), at most
	// spec.MaxInFlight: taken by Set.Call's fast path and by the actor,
	// freed by the call (Set.run). queued is the actor's queue's length.
	inFlight atomic.Int64
	queued   atomic.Int64
	restarts atomic.Int64
	// downUntil (unix ns; 0: never crashed) ends a crash's backoff. Until
	// then the router skips the provider and the actor refuses calls at
	// once: a restarting provider is skipped, not waited for.
	downUntil atomic.Int64

	models models // capabilities learned, models in memory

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

// carry is a crashed incarnation's queue (the slots in use are inFlight,
// which the restart leaves alone).
type carry struct {
	queue []*Call
}

// Status is one provider's state for status and readiness.
type Status struct {
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	URL       string    `json:"url,omitempty"`
	Reachable bool      `json:"reachable"`
	CheckedAt time.Time `json:"checked_at"`
	LastError string    `json:"last_error,omitempty"`
	InFlight  int64     `json:"in_flight"`
	Queued    int64     `json:"queued"`
	Restarts  int64     `json:"restarts"`
	Models    []string  `json:"models"`
	// Keys are the provider's API keys' states (never their values).
	Keys []inference.KeyStatus `json:"keys,omitempty"`
}

// Status reports the provider's health, counters and models (sorted).
func (st *State) Status() Status {
	st.mu.Lock()
	ps := Status{Name: st.spec.Name, Type: st.spec.Type, URL: st.spec.URL, Reachable: st.healthy, CheckedAt: st.checked, LastError: st.lastErr}
	st.mu.Unlock()
	ps.Models = st.Models()
	if st.spec.Keys != nil {
		ps.Keys = st.spec.Keys()
	}
	ps.InFlight, ps.Queued, ps.Restarts = st.inFlight.Load(), st.queued.Load(), st.restarts.Load()
	sort.Strings(ps.Models)
	return ps
}

// Health is the last health check: whether it succeeded, and whether one
// has completed at all.
func (st *State) Health() (healthy, checked bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthy, !st.checked.IsZero()
}

// RestartLeft is how long the provider stays out of service after a crash
// (0: it serves).
func (st *State) RestartLeft(now time.Time) time.Duration {
	until := st.downUntil.Load()
	if until == 0 {
		return 0
	}
	return max(time.Duration(until-now.UnixNano()), 0)
}

// InChain reports whether the chain names model of this provider.
func (st *State) InChain(model string) bool { return st.chainModels[model] }

// Models returns the configured and discovered model names of a provider.
func (st *State) Models() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.spec.Models)+len(st.discovered))
	seen := make(map[string]bool, cap(out))
	for _, list := range [][]string{st.spec.Models, st.discovered} {
		for _, m := range list {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// Lists reports whether the provider has model configured or listed it at
// its last health check ("m" also matches "m:latest"). It does not allocate.
func (st *State) Lists(model string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, list := range [][]string{st.spec.Models, st.discovered} {
		for _, m := range list {
			if m == model || strings.TrimSuffix(m, ":latest") == model {
				return true
			}
		}
	}
	return false
}

// Reachable is the provider's last health check; before the first check
// completes it is presumed reachable.
func (st *State) Reachable() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthy || st.checked.IsZero()
}

// MetricModel returns model when the provider knows it, else "other": a
// client must not be able to mint metric series with made-up model names.
func (st *State) MetricModel(model string) string {
	if st.chainModels[model] {
		return model
	}
	for _, m := range st.Models() {
		if m == model {
			return model
		}
	}
	return "other"
}
