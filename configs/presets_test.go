package configs

import (
	"strings"
	"testing"

	"github.com/moltbot/moltbot/skills/builtin"
)

const presetsBase = "models: {primary: sim/sim}\nproviders:\n  - {name: sim, type: sim}\n"

// skills.presets: each preset's with: decoded into its kind's options;
// every mistake named by key and line.
func TestPresets(t *testing.T) {
	cfg, err := Parse("moltbot.yaml", []byte(presetsBase+`skills:
  presets:
    - {name: support-faq, use: faq, with: {file: faq.yaml}}
    - name: pii
      use: guard
      with:
        mask: [email, phone]
        blocklist: [坏蛋]
        action: refuse
    - {name: calc, use: tools}
    - {name: coder, use: code-gen, with: {model: code-generator, patterns: ['生成(.*)代码']}}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ps := cfg.Skills.Presets
	if len(ps) != 4 || ps[0].With.Opts.(*builtin.FAQOptions).File != "faq.yaml" {
		t.Fatalf("%+v", ps)
	}
	g := ps[1].With.Opts.(*builtin.GuardOptions)
	if g.Action != "refuse" || len(g.Mask) != 2 || g.Blocklist[0] != "坏蛋" || !g.Output {
		t.Errorf("guard: %+v", g)
	}
	if tl := ps[2].With.Opts.(*builtin.ToolsOptions); !tl.Calculator || !tl.Dates {
		t.Errorf("tools defaults: %+v", tl)
	}
	if cg := ps[3].With.Opts.(*builtin.CodeGenOptions); cg.Model != "code-generator" || len(cg.Commands) != 1 {
		t.Errorf("code-gen: %+v", cg)
	}
	if r := cfg.Redacted(); !strings.Contains(r, "action: refuse") {
		t.Errorf("Redacted has no preset options:\n%s", r)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"    - {name: x, use: gaurd}\n", `moltbot.yaml:6: skills.presets[0].use: unknown preset "gaurd" (did you mean "guard"?)`},
		{"    - {name: x, use: nope}\n", `moltbot.yaml:6: skills.presets[0].use: unknown preset "nope" (known: code-explain, code-gen, collect, faq, guard, sentiment, summarize, tools, translate)`},
		{"    - {name: x}\n", `skills.presets[0].use: missing`},
		{"    - name: x\n      use: guard\n      with:\n        action: block\n", `moltbot.yaml:9: skills.presets[0].with.action: want mask or refuse, got "block"`},
		{"    - name: x\n      use: guard\n      with:\n        mask: [email, ssn]\n", `moltbot.yaml:9: skills.presets[0].with.mask[1]: unknown kind "ssn"`},
		{"    - name: x\n      use: guard\n      with:\n        actoin: mask\n", `moltbot.yaml:9: skills.presets[0].with.actoin: unknown key (did you mean "action"?)`},
		{"    - name: x\n      use: faq\n      with: {file: ../secrets.yaml}\n", `moltbot.yaml:8: skills.presets[0].with.file: "../secrets.yaml": want a path inside skills/`},
		{"    - name: x\n      use: faq\n", `skills.presets[0].with.file: the faq needs a file`},
		{"    - name: x\n      use: code-gen\n      with:\n        patterns: ['(a)\\1']\n", `moltbot.yaml:9: skills.presets[0].with.patterns[0]: not an RE2 pattern`},
		{"    - name: x\n      use: summarize\n      with: {chunk: ten}\n", `moltbot.yaml:8: skills.presets[0].with.chunk: want a whole number, got "ten"`},
		{"    - {name: a, use: tools}\n    - {name: a, use: faq, with: {file: f.yaml}}\n", `moltbot.yaml:7: skills.presets[1].name: "a" is skills.presets[0]'s name too`},
		{"    - {name: 'a b', use: tools}\n", `skills.presets[0].name: "a b": want letters`},
		{"    - {name: t, use: tools, with: {timezone: Mars/Base}}\n", `skills.presets[0].with.timezone: unknown time zone Mars/Base`},
		{"    - {name: t, use: tools, with: [1]}\n", `skills.presets[0].with: want a mapping of keys, got a list`},
	} {
		_, err := Parse("moltbot.yaml", []byte(presetsBase+"skills:\n  presets:\n"+tc.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
