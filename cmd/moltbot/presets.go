package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/moltbot/moltbot"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/skills/builtin"
)

// buildPresets builds the config's preset skills (skills.presets), in the
// order listed; their files (an FAQ) are read from the workspace's
// skills/. An error names the preset, and the file and line when a file
// does not parse.
func buildPresets(cfg *configs.Config, ws string) ([]builtin.Preset, error) {
	var out []builtin.Preset
	for i, p := range cfg.Skills.Presets {
		pr, err := builtin.New(builtin.Spec{Name: p.Name, Use: p.Use, With: p.With.Opts}, builtin.Env{Dir: filepath.Join(ws, "skills")})
		if err != nil {
			return nil, fmt.Errorf("%s: skills.presets[%d] (%s): %w", cfg.File, i, p.Name, err)
		}
		out = append(out, pr)
	}
	return out, nil
}

// presetSet is the presets as turn-pipeline stages: those that act
// before the model (all but a guard's output side), in order, and those
// around it (a guard's output masking), in order.
type presetSet struct {
	presets []builtin.Preset
	before  []actors.BeforeModel
	around  []actors.AroundModel
}

func newPresetSet(ps []builtin.Preset, log *slog.Logger) *presetSet {
	set := &presetSet{presets: ps}
	for _, p := range ps {
		if b, ok := p.(actors.BeforeModel); ok {
			set.before = append(set.before, b)
		}
		if a, ok := p.(actors.AroundModel); ok {
			set.around = append(set.around, a)
		}
		if log != nil {
			log.Info("preset skill loaded", "preset", p.Name(), "use", p.Use(), "what", p.Describe())
		}
	}
	return set
}

// presetStage is the node's presets as they are now: a reload (SIGHUP,
// moltbot keys reload) that reads skills.presets again swaps the set.
// Each stage reads the set when the turn reaches it: a reload that lands
// between a turn's stage before the model and its stage around it gives
// the turn the old set's input side and the new set's output side. With none the stages idle, and
// the turn's path is as without presets (actors.Idler).
type presetStage struct{ cur atomic.Pointer[presetSet] }

func (ps *presetStage) set() *presetSet { return ps.cur.Load() }

// presets are the presets now.
func (ps *presetStage) presets() []builtin.Preset {
	if ps == nil {
		return nil
	}
	return ps.set().presets
}

// presetBefore is the presets' stage before the model: each preset's in
// the order listed, until one answers.
type presetBefore struct{ *presetStage }

func (ps presetBefore) Idle() bool { return len(ps.set().before) == 0 }

func (ps presetBefore) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	for _, b := range ps.set().before {
		if c, err := b.BeforeModel(ctx, t, fn); err != nil || c != nil {
			return c, err
		}
	}
	return nil, nil
}

// presetAround is the guards' output side around the model, the first
// listed outermost.
type presetAround struct{ *presetStage }

func (ps presetAround) Idle() bool { return len(ps.set().around) == 0 }

// WholeTurn: the guards mask whatever reaches the user, the answer of a
// flow or a skill before the model as much as the model's
// (actors.WholeTurn).
func (presetAround) WholeTurn() {}

func (ps presetAround) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	return aroundAll(ctx, t, fn, ps.set().around, next)
}

func aroundAll(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc, ws []actors.AroundModel,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	if len(ws) == 0 {
		return next(ctx, fn)
	}
	return ws[0].AroundModel(ctx, t, fn, func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		return aroundAll(ctx, t, fn, ws[1:], next)
	})
}

// swapPresets builds cfg's presets and, when they all build, puts them
// in place of those in use; an error (naming the preset, and the file and
// line of one that does not parse) keeps them.
func (n *Node) swapPresets(cfg *configs.Config) error {
	ps, err := buildPresets(cfg, n.Workspace)
	if err != nil {
		n.Log.Error("skills.presets not reloaded; the presets in use stay", "err", err)
		return err
	}
	n.presets.cur.Store(newPresetSet(ps, n.Log))
	return nil
}

// reloadPresets reads the presets' files again (an FAQ) when the node
// has no config file to read them from (an embedded preset); with one,
// reloadConfig builds skills.presets again (swapPresets). One that does
// not load keeps what it had, and its error, naming the preset and the
// file, is logged and returned.
func (n *Node) reloadPresets() error {
	var errs []error
	for _, p := range n.presets.presets() {
		r, ok := p.(builtin.Reloader)
		if !ok {
			continue
		}
		if err := r.Reload(); err != nil {
			err = fmt.Errorf("preset %s: %w", p.Name(), err)
			n.Log.Error("preset not reloaded; what it had stays", "preset", p.Name(), "err", err)
			errs = append(errs, err)
			continue
		}
		n.Log.Info("preset reloaded", "preset", p.Name(), "what", p.Describe())
	}
	return errors.Join(errs...)
}
