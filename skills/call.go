package skills

import (
	"context"
	"fmt"
	"slices"

	"github.com/moltbot/moltbot"
)

// Has reports whether a skill of that name is loaded.
func (s *Skills) Has(name string) bool {
	return slices.ContainsFunc(s.skills.Load().skills, func(sk Skill) bool { return sk.Name == name })
}

// Call runs skill on input for turn t, as a flow's skill node does (no
// pattern asked: matches[0] is the whole input), and returns its reply and
// what its model calls used.
func (s *Skills) Call(ctx context.Context, t *moltbot.Turn, skill, input string) (string, moltbot.Usage, error) {
	if !s.Has(skill) {
		return "", moltbot.Usage{}, fmt.Errorf("skills: no skill %q is loaded", skill)
	}
	if len(input) > s.cfg.MaxInput {
		return "", moltbot.Usage{}, fmt.Errorf("skills: the input of skill %s is %d bytes; at most %d", skill, len(input), s.cfg.MaxInput)
	}
	return s.runTurn(ctx, t, skill, input, []*string{&input})
}

// runTurn runs a skill for turn t: its callModel(alias, {prompt}) asks
// t.Model with the alias as the model's name (an alias the router does
// not know goes to the turn's chain instead).
func (s *Skills) runTurn(ctx context.Context, t *moltbot.Turn, skill, text string, matches []*string) (string, moltbot.Usage, error) {
	var usage moltbot.Usage
	reply, err := s.Run(ctx, skill, text, matches, modelOf(ctx, t, &usage))
	return reply, usage, err
}
