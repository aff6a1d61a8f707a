package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/flow"
)

// loadFlows reads skills/flows/*.yaml again and, when every flow loads,
// puts them in place of those in use; conversations inside a flow finish
// it on the version they began (its source is in their state). A skill
// node must name a JavaScript skill loaded now. An error keeps the flows
// in use (st.mu held).
func (st *skillStage) loadFlows() error {
	set, err := flow.Load(filepath.Join(st.cfg.Dir, flow.Dir), "skills/"+flow.Dir, skillCaller{st}.has)
	if err != nil {
		return err
	}
	st.flows.Swap(set)
	for _, f := range set.Flows {
		st.log.Info("flow loaded", "flow", f.Name, "file", f.File, "version", f.Version, "nodes", len(f.Nodes))
		for _, note := range f.Notes {
			st.log.Warn("flow", "note", note)
		}
	}
	return nil
}

// skillCaller is the JavaScript skills as a flow's skill nodes call them:
// the skills loaded now (a turn that reaches skills a reload closed tries
// the new ones).
type skillCaller struct{ st *skillStage }

func (c skillCaller) has(name string) bool {
	sk := c.st.cur.Load()
	return sk != nil && sk.Has(name)
}

func (c skillCaller) Call(ctx context.Context, t *moltbot.Turn, skill, input string) (string, moltbot.Usage, error) {
	for range 3 {
		sk := c.st.current()
		if sk == nil {
			break
		}
		reply, usage, err := sk.Call(ctx, t, skill, input)
		if errors.Is(err, skills.ErrClosed) {
			continue
		}
		return reply, usage, err
	}
	return "", moltbot.Usage{}, fmt.Errorf("no skill %q is loaded (skills/*.js)", skill)
}

// withoutNoWorker is err (load's) without its skills.ErrNoWorker part: a
// node serves without its JavaScript skills, not with a flow that does not
// load.
func withoutNoWorker(err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if errors.Is(err, skills.ErrNoWorker) {
			return nil
		}
		return err
	}
	var rest []error
	for _, e := range j.Unwrap() {
		if !errors.Is(e, skills.ErrNoWorker) {
			rest = append(rest, e)
		}
	}
	return errors.Join(rest...)
}
