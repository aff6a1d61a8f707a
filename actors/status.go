package actors

import (
	"fmt"
	"strings"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/provider"
	"github.com/moltbot/moltbot/cluster"
)

// What the runtime reports: the models a client may ask for, the status
// and readiness of the node, the breakers, the cluster's membership.

// ModelInfo is one entry of /v1/models.
type ModelInfo = moltbot.ModelInfo

// Models lists what a client may ask for: the chain, then each provider's
// models, with their capabilities.
func (rt *Runtime) Models() []ModelInfo {
	out := []ModelInfo{{ID: ChainModel}}
	seen := map[string]bool{ChainModel: true}
	add := func(p, m string) {
		id := p + "/" + m
		if !seen[id] {
			seen[id] = true
			var caps moltbot.Capabilities
			if st := rt.providers.Get(p); st != nil {
				caps = st.Caps(m)
			}
			out = append(out, ModelInfo{ID: id, Provider: p, Caps: caps})
		}
	}
	var caps []moltbot.Capabilities
	for _, ref := range rt.router.Chain() {
		add(ref.Provider, ref.Model)
		if st := rt.providers.Get(ref.Provider); st != nil {
			caps = append(caps, st.Caps(ref.Model))
		}
	}
	out[0].Caps = chainCaps(caps)
	// The embedding chain's models (POST /v1/embeddings asks them by name
	// too), marked as embedding models when nothing else is known.
	if rt.embed != nil {
		for _, ref := range rt.embed.Chain() {
			n := len(out)
			add(ref.Provider, ref.Model)
			if len(out) > n && !out[n].Caps.Known {
				out[n].Caps = moltbot.Capabilities{Known: true, Embeddings: true}
			}
		}
	}
	for _, name := range rt.providers.Names() {
		for _, m := range rt.providers.Get(name).Models() {
			add(name, m)
		}
	}
	return out
}

// chainCaps is what the chain can do: a request goes to the first of its
// models able to serve it, so it can do what any of them can; known only
// when every model's capabilities are (an unknown one is presumed able),
// and its context length the shortest known (what every model holds). It
// is a chat chain: an embedding model in it does not make it one.
func chainCaps(caps []moltbot.Capabilities) moltbot.Capabilities {
	c := moltbot.Capabilities{Known: len(caps) > 0}
	for _, mc := range caps {
		c.Known = c.Known && mc.Known
		c.Tools = c.Tools || mc.Tools
		c.Vision = c.Vision || mc.Vision
		c.JSONSchema = c.JSONSchema || mc.JSONSchema
		if mc.ContextLength > 0 && (c.ContextLength == 0 || mc.ContextLength < c.ContextLength) {
			c.ContextLength = mc.ContextLength
		}
	}
	if !c.Known {
		return moltbot.Capabilities{ContextLength: c.ContextLength}
	}
	return c
}

// ProviderStatus is one provider's state for status and readiness.
type ProviderStatus = provider.Status

// Status is a snapshot of the runtime for /v1/admin/status and /readyz.
type Status struct {
	Chain               []string         `json:"chain"`
	Providers           []ProviderStatus `json:"providers"`
	Breakers            []BreakerStatus  `json:"breakers"`
	ConversationsActive int64            `json:"conversations_active"`
	ConversationsStored int              `json:"conversations_stored"`
	Uptime              time.Duration    `json:"-"`
}

// Status reports providers and counts. The stored count is cached for 5 s.
func (rt *Runtime) Status() Status {
	s := Status{ConversationsActive: rt.convs.Active(), Uptime: time.Since(rt.started)}
	for _, ref := range rt.router.Chain() {
		s.Chain = append(s.Chain, ref.String())
	}
	for _, name := range rt.providers.Names() {
		s.Providers = append(s.Providers, rt.providers.Get(name).Status())
	}
	s.Breakers = rt.Breakers()
	rt.countMu.Lock()
	if time.Since(rt.countedAt) > 5*time.Second {
		if n, err := rt.store.Count(); err == nil {
			rt.count, rt.countedAt = n, time.Now()
		}
	}
	s.ConversationsStored = rt.count
	rt.countMu.Unlock()
	return s
}

// Ready returns nil when at least one model of the chain is usable: its
// provider answered its last health check, is not restarting after a crash,
// is not rate limited, and its breaker is not open (nor the model missing).
func (rt *Runtime) Ready() error {
	if rt.life.closed.Load() {
		return moltbot.Errorf(moltbot.EShutdown, "shutting down")
	}
	if rt.link.clustered() && !rt.link.place().Ready() {
		return moltbot.Errorf(moltbot.EUnavailable, "still joining the cluster")
	}
	now := rt.now()
	var why []string
	for _, ref := range rt.router.Chain() {
		st := rt.providers.Get(ref.Provider)
		healthy, checked := st.Health()
		b := rt.policy.Breaker(ref.Provider, ref.Model)
		switch {
		case !checked:
			why = append(why, ref.String()+": not checked yet")
		case !healthy:
			at := ""
			if u := st.Status().URL; u != "" {
				at = " at " + u
			}
			why = append(why, ref.String()+": unreachable"+at)
		case b.Stats(now).Missing:
			why = append(why, fmt.Sprintf("%s: not on its server (ollama pull %s)", ref, ref.Model))
		case st.RestartLeft(now) > 0:
			why = append(why, ref.String()+": restarting after a crash")
		case rt.policy.HeldFor(now, ref.Provider) > 0:
			why = append(why, ref.String()+": rate limited")
		case !b.Usable(now):
			why = append(why, ref.String()+": breaker "+b.State().String())
		default:
			return nil
		}
	}
	return moltbot.Errorf(moltbot.EUnavailable, "no model of the chain is usable (%s)", strings.Join(why, "; "))
}

// BreakerStatus is one provider/model's breaker for /v1/admin/providers.
type BreakerStatus struct {
	Provider       string  `json:"provider"`
	Model          string  `json:"model"`
	State          string  `json:"state"`
	Reachable      bool    `json:"reachable"`
	Requests       int     `json:"requests"`
	ErrorRate      float64 `json:"error_rate"`
	P95TTFTMs      float64 `json:"p95_ttft_ms"`
	CooldownLeftMs float64 `json:"cooldown_left_ms"`
	CooldownMs     float64 `json:"cooldown_ms"`
	RateLimitedMs  float64 `json:"rate_limited_ms"`
	Opens          int     `json:"opens"`
	Missing        bool    `json:"missing"`
	LastError      string  `json:"last_error,omitempty"`
	InChain        bool    `json:"in_chain"`
}

// Breakers reports every breaker over the policy's window.
func (rt *Runtime) Breakers() []BreakerStatus {
	inChain := map[string]bool{}
	for _, ref := range rt.router.Chain() {
		inChain[ref.String()] = true
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var out []BreakerStatus
	for _, e := range rt.policy.Snapshot(time.Now()) {
		st := rt.providers.Get(e.Provider)
		out = append(out, BreakerStatus{Provider: e.Provider, Model: e.Model, State: e.State.String(), Reachable: st != nil && st.Reachable(),
			Requests: e.Requests, ErrorRate: e.ErrorRate, P95TTFTMs: ms(e.P95), CooldownLeftMs: ms(e.CooldownLeft), CooldownMs: ms(e.Cooldown),
			RateLimitedMs: ms(e.HeldFor), Opens: e.Opens, Missing: e.Missing, LastError: e.LastError, InChain: inChain[e.Provider+"/"+e.Model]})
	}
	return out
}

// ClusterStatus is the membership for /v1/admin/cluster.
type ClusterStatus struct {
	Self     string         `json:"self"`
	Replicas int            `json:"replicas"`
	Members  []cluster.Node `json:"members"`
}

// Cluster reports the membership, or nil when the node runs alone.
func (rt *Runtime) Cluster() *ClusterStatus {
	l := rt.link
	if !l.clustered() {
		return nil
	}
	return &ClusterStatus{Self: l.place().ID(), Replicas: l.replicas, Members: l.place().Members()}
}
