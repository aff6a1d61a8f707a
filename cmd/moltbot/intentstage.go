package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/skills/flow"
	"github.com/moltbot/moltbot/skills/intent"
)

// loadIntents reads skills/intents.yaml again and, when it loads, puts it
// in place of the intents in use (none when the file is gone). An error
// keeps the intents in use (st.mu held). A flow's trigger naming an
// intent the file does not define is logged: it never fires.
func (st *skillStage) loadIntents() error {
	set, err := intent.Load(filepath.Join(filepath.Dir(st.cfg.Dir), intent.File), intent.File)
	if err != nil {
		return err
	}
	st.intents.Swap(set)
	if set == nil {
		return nil
	}
	st.log.Info("intents loaded", "file", intent.File, "intents", len(set.Intents), "model", set.Settings.Model,
		"threshold", set.Settings.Threshold, "margin", set.Settings.Margin, "fallback", set.Settings.Fallback)
	for _, n := range set.Notes {
		st.log.Warn("intents", "note", n)
	}
	return nil
}

// intentNotes are what lint says of the intents' uses: a flow's trigger
// or a JavaScript skill naming an intent the file does not define (it
// never fires), a bot naming one (it is ignored). set nil: no intents
// file, so every named intent is unknown.
func intentNotes(set *intent.Set, flows *flow.Set, skillIntents map[string]string, cfg *configs.Config) []string {
	var notes []string
	file := intent.File
	unknown := func(name string) string {
		if set == nil {
			return fmt.Sprintf("intent %q: there is no %s", name, file)
		}
		return fmt.Sprintf("intent %q is not defined in %s (%s)", name, file, strings.Join(set.Names(), ", "))
	}
	if flows != nil {
		for _, f := range flows.Flows {
			for _, n := range f.Triggers() {
				if n.Intent != "" && !set.Has(n.Intent) {
					notes = append(notes, fmt.Sprintf("%s:%d: trigger %q: %s: it never fires", f.File, n.Line, n.ID, unknown(n.Intent)))
				}
			}
		}
	}
	for file, in := range skillIntents {
		if !set.Has(in) {
			notes = append(notes, fmt.Sprintf("skills/%s: %s: the skill's intent never selects it", file, unknown(in)))
		}
	}
	if cfg != nil {
		for i, b := range cfg.Bots {
			for j, in := range b.Intents {
				if !set.Has(in) {
					at := fmt.Sprintf("bots[%d].intents[%d]", i, j)
					if l := cfg.Line(at); l > 0 {
						at = fmt.Sprintf("%s:%d: %s", cfg.File, l, at)
					}
					notes = append(notes, fmt.Sprintf("%s: %s", at, unknown(in)))
				}
			}
		}
	}
	return notes
}
