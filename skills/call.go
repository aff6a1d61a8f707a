package skills

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/moltbot/moltbot"
)

// Has reports whether a skill of that name is loaded.
func (s *Skills) Has(name string) bool {
	return slices.ContainsFunc(s.skills.Load().skills, func(sk Skill) bool { return sk.Name == name })
}

// Call runs skill on input for turn t, as a flow's skill node does (no
// pattern asked: matches[0] is the whole input), and returns its reply and
// what its model calls used.
//
// The turn's tenant's pushed skill of that name, if any, runs rather than
// the workspace's.
func (s *Skills) Call(ctx context.Context, t *moltbot.Turn, skill, input string) (string, moltbot.Usage, error) {
	ts, err := s.tenantSkills(ctx, tenantOf(t))
	if err != nil {
		s.tenantLoadFailed(tenantOf(t), err)
		ts = nil
	}
	_, set, ok := s.lookup(ts, skill)
	if !ok {
		return "", moltbot.Usage{}, fmt.Errorf("skills: no skill %q is loaded", skill)
	}
	if len(input) > s.cfg.MaxInput {
		return "", moltbot.Usage{}, fmt.Errorf("skills: the input of skill %s is %d bytes; at most %d", skill, len(input), s.cfg.MaxInput)
	}
	return s.runTurn(ctx, t, set, skill, input, []*string{&input})
}

// runTurn runs a skill (of ts, a tenant's; nil: the workspace's) for turn
// t in the turn's environment (envOf).
func (s *Skills) runTurn(ctx context.Context, t *moltbot.Turn, ts *tenantSet, skill, text string, matches []*string) (string, moltbot.Usage, error) {
	var usage moltbot.Usage
	var mu sync.Mutex
	reply, err := s.runIn(ctx, ts, skill, text, matches, envOf(t, &usage, &mu, s.cfg.Search))
	mu.Lock()
	defer mu.Unlock()
	return reply, usage, err
}

// envOf is turn t as a running skill (or JavaScript tool) reaches it: its
// callModel(alias, {prompt}) asks t.Model for the model the alias
// resolves to (ResolveAlias; an alias no models: map takes and the router
// does not know goes to the turn's chain instead), context.embed asks
// t.Embed, context.search asks search for t, and context.kv keeps the
// records of the turn's tenant. What
// the calls use is added to usage, under mu.
func envOf(t *moltbot.Turn, usage *moltbot.Usage, mu *sync.Mutex,
	search func(ctx context.Context, t *moltbot.Turn, kb, query string, k int) ([]moltbot.Citation, error)) Env {
	model := func(ctx context.Context, _, model, prompt string) (string, error) {
		if t.Model == nil {
			return "", errors.New("no model in this turn")
		}
		msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: prompt}}
		c, err := t.Model(ctx, msgs, moltbot.ChatOptions{Model: model}, nil)
		var me *moltbot.Error
		if errors.As(err, &me) && me.Code == moltbot.ENotFound && me.Param == "model" {
			c, err = t.Model(ctx, msgs, moltbot.ChatOptions{}, nil) // an unknown alias: the chain
		}
		if err != nil {
			return "", err
		}
		mu.Lock()
		usage.PromptTokens += c.Usage.PromptTokens
		usage.CompletionTokens += c.Usage.CompletionTokens
		mu.Unlock()
		return c.Content, nil
	}
	tenant := t.Tenant
	if tenant == "" {
		tenant = t.Space
	}
	env := Env{Model: model, Tenant: tenant}
	if search != nil {
		env.Search = func(ctx context.Context, kb, query string, k int) ([]moltbot.Citation, error) {
			return search(ctx, t, kb, query, k)
		}
	}
	if t.Embed != nil {
		env.Embed = func(ctx context.Context, texts []string) ([][]float32, error) {
			e, err := t.Embed(ctx, &moltbot.EmbedRequest{Input: texts})
			if err != nil {
				return nil, err
			}
			mu.Lock()
			usage.PromptTokens += e.Usage.PromptTokens // the turn's input, as a model call's
			mu.Unlock()
			return e.Vectors, nil
		}
	}
	return env
}
