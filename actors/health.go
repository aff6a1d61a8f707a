package actors

import (
	"context"
	"strings"
	"time"
)

// models returns the configured and discovered model names of a provider.
func (st *providerState) models() []string {
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

// lists reports whether the provider has model configured or listed it at
// its last health check ("m" also matches "m:latest"). It does not allocate.
func (st *providerState) lists(model string) bool {
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

// reachable is the provider's last health check; before the first check
// completes it is presumed reachable.
func (st *providerState) reachable() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthy || st.checked.IsZero()
}

// healthLoop probes every provider now and then every interval, until Shutdown.
func (rt *Runtime) healthLoop(every time.Duration) {
	defer rt.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rt.checkAll()
		select {
		case <-rt.base.Done():
			return
		case <-t.C:
		}
	}
}

// checkAll probes providers concurrently, each bounded by 3 s.
func (rt *Runtime) checkAll() {
	done := make(chan struct{}, len(rt.order))
	for _, name := range rt.order {
		st := rt.states[name]
		go func() {
			defer func() { done <- struct{}{} }()
			ctx, cancel := context.WithTimeout(rt.base, 3*time.Second)
			defer cancel()
			models, err := st.spec.Provider.Models(ctx)
			if rt.base.Err() != nil {
				return
			}
			if err == nil && st.spec.Type == "ollama" {
				// A chain model Ollama does not have (not pulled) is skipped
				// and shown as missing until it appears.
				for _, ref := range rt.router.chain {
					if ref.Provider == st.spec.Name {
						rt.policy.Breaker(ref.Provider, ref.Model).SetMissing(!hasModel(models, ref.Model))
					}
				}
			}
			st.mu.Lock()
			was := st.healthy
			st.checked = time.Now()
			st.healthy = err == nil
			if err != nil {
				st.lastErr = err.Error()
			} else {
				st.lastErr = ""
				st.discovered = models
			}
			st.mu.Unlock()
			if was != (err == nil) {
				if err != nil {
					rt.log.Warn("provider unreachable", "provider", st.spec.Name, "err", err)
				} else {
					rt.log.Info("provider reachable", "provider", st.spec.Name, "models", len(models))
				}
			}
		}()
	}
	for range rt.order {
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
