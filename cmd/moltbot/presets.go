package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

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

// presetStages are the presets as turn-pipeline stages: those that act
// before the model (all but a guard's output side), in order, and those
// around it (a guard's output masking), in order. None: no stage, and the
// turn's path is as without presets.
func presetStages(ps []builtin.Preset, log *slog.Logger) (before []actors.BeforeModel, around []actors.AroundModel) {
	for _, p := range ps {
		if b, ok := p.(actors.BeforeModel); ok {
			before = append(before, b)
		}
		if a, ok := p.(actors.AroundModel); ok {
			around = append(around, a)
		}
		if log != nil {
			log.Info("preset skill loaded", "preset", p.Name(), "use", p.Use(), "what", p.Describe())
		}
	}
	return before, around
}

// reloadPresets reads the presets' files again (an FAQ: Reload, SIGHUP,
// moltbot keys reload); one that does not load keeps what it had, and
// its error, naming the preset and the file, is logged and returned. The
// presets themselves (skills.presets) are the ones read at start.
func (n *Node) reloadPresets() error {
	var errs []error
	for _, p := range n.presets {
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
