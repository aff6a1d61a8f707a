package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/skills"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/moltbot/moltbot/skills/wire"
	"github.com/urfave/cli/v2"
)

// skillsCommand: the workspace's JavaScript skills, loaded and tried
// through the moltbot-skills worker, without a node.
func skillsCommand() *cli.Command {
	flags := func() []cli.Flag {
		return []cli.Flag{workspaceFlag(),
			&cli.StringFlag{Name: "worker", Usage: "the moltbot-skills binary (default: skills.worker of WORKSPACE/moltbot.yaml, else the one beside moltbot)"}}
	}
	return &cli.Command{
		Name:  "skills",
		Usage: "the workspace's skills (presets, flows, JavaScript, intents): list them, lint them, try one on a message, measure the intents",
		Description: `Loads WORKSPACE/skills/*.js in the moltbot-skills worker, and the YAML flows of
WORKSPACE/skills/flows/*.yaml, as a node does, and builds the preset skills
of WORKSPACE/moltbot.yaml (skills.presets). "list" prints each preset's name,
kind and what it does (a preset that does not build, such as an FAQ file that
does not parse, is an error naming it, exit 1), each skill's name,
file and patterns, the tools the model is offered (skills' that export tool,
and the skills.mcp servers': a server that does not answer is a warning), and
each flow's name, file, version, triggers and nodes (a
file that does not load is an error naming it, and for a flow the line and
the key, exit 1), and the intents of skills/intents.yaml (name, rules,
examples, description; the settings); "lint" loads them too and notes, by file and line, what
works otherwise than it reads: a destructured capture (const { input } =
context.matches[1], the captured text here, undefined in strict mode), a
callModel alias that neither a models: map (the skill's own, skills.models)
nor a model of the config answers to (it goes to the chain), a flow's node no
trigger leads to, an intent with fewer examples than settings.min_examples,
an example given to two intents, a flow's trigger, a skill's intent: or a
bot's intents: naming an intent skills/intents.yaml does not define; a models: entry naming a model the config does not know is
an error, as it is when a node loads the skills; "show NAME" prints a skill's
file, patterns (as written and as Go's RE2 runs them), models: map, resolved
aliases and limits; "eval" measures the intents on labelled JSONL sets (see
moltbot skills eval --help); "test" runs messages against the flows, presets and
skills with the in-process simulator as the model (no node needed): several
messages are the turns of one conversation through the flows (the flow's
nodes, its model calls, its reply, the node it waits at); one message no
flow takes goes through the presets, in order (what each does to it, masked
or noted, is printed; one that answers ends the test with its model calls
and its reply), then to the skills, and test prints which skill matched with
its captures, each callModel with its alias (and the model it resolves to)
and prompt, and the
reply; "no skill matches" otherwise.

Examples:
   moltbot skills list --workspace ./mb
   moltbot skills lint --workspace ./mb
   moltbot skills show --workspace ./mb code-assistant
   moltbot skills test --workspace ./mb "请帮我生成Go代码"
   moltbot skills test --workspace ./mb "I want a refund" "abc" "123456"
   moltbot skills eval --workspace ./mb eval.jsonl

A tenant's own skills (push, pull, rm, files) go to a running node through its
admin API and reach every node of its cluster: see moltbot skills push --help.`,
		Subcommands: append([]*cli.Command{{
			Name: "list", Usage: "the presets (skills.presets); each skill's name, file and patterns; the tools the model is offered", Flags: flags(),
			Action: func(c *cli.Context) error {
				if err := listPresets(c); err != nil {
					return err
				}
				sk, err := openSkills(c)
				if err != nil {
					return err
				}
				if sk != nil {
					defer sk.Close()
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tFILE\tPATTERNS")
					for _, s := range sk.Skills() {
						pats := s.Patterns
						if s.Intent != "" {
							pats = append(slices.Clone(pats), "intent:"+s.Intent)
						}
						fmt.Fprintf(tw, "%s\tskills/%s\t%s\n", s.Name, s.File, strings.Join(pats, " "))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				}
				// The server-side tools the model is offered.
				if tools := toolsOf(sk); len(tools) > 0 {
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(c.App.Writer)
					fmt.Fprintln(tw, "TOOL\tFROM\tDESCRIPTION")
					for _, t := range tools {
						from := "skill " + t.Skill
						if t.Server != "" {
							from = "mcp " + t.Server
						}
						d := strings.Join(strings.Fields(t.Description), " ")
						if r := []rune(d); len(r) > 80 {
							d = string(r[:77]) + "..."
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, from, d)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				}
				set, err := openFlows(c, sk)
				if err != nil {
					return err
				}
				if err := listFlows(c.App.Writer, set); err != nil {
					return err
				}
				in, err := openIntents(c)
				if err != nil {
					return err
				}
				return listIntents(c.App.Writer, in)
			},
		}, {
			Name: "show", Usage: "a skill's file, patterns, models and limits", ArgsUsage: "NAME", Flags: flags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fail(2, "want a skill's name, such as: moltbot skills show code-assistant")
				}
				sk, err := openSkills(c)
				if err != nil || sk == nil {
					return err
				}
				defer sk.Close()
				s, ok := sk.Skill(c.Args().First())
				if !ok {
					var names []string
					for _, s := range sk.Skills() {
						names = append(names, s.Name)
					}
					return fail(1, "no skill named %q (skills: %s)", c.Args().First(), strings.Join(names, ", "))
				}
				showSkill(c.App.Writer, sk, s)
				return nil
			},
		}, {
			Name: "lint", Usage: "load the skills and note what works otherwise than it reads", Flags: flags(),
			Action: func(c *cli.Context) error {
				sk, err := openSkills(c)
				if err != nil {
					return err
				}
				set, err := openFlows(c, sk)
				if err != nil {
					if sk != nil {
						sk.Close()
					}
					return err
				}
				flowNotes := 0
				for _, f := range set.Flows {
					for _, n := range f.Notes {
						fmt.Fprintln(c.App.Writer, n)
						flowNotes++
					}
				}
				if len(set.Flows) > 0 {
					fmt.Fprintf(c.App.ErrWriter, "%d flow(s) loaded, %d note(s)\n", len(set.Flows), flowNotes)
				}
				var cfg *configs.Config
				if path := filepath.Join(c.String("workspace"), "moltbot.yaml"); fileExists(path) {
					cfg, _ = configs.Load(path) // openSkills has loaded it once: it parses
				}
				// The intents: the file's own notes (few examples, an
				// example of two intents), then their uses (a trigger, a
				// skill or a bot naming an intent the file does not define).
				in, err := openIntents(c)
				if err != nil {
					if sk != nil {
						sk.Close()
					}
					return err
				}
				skIntents := map[string]string{}
				if sk != nil {
					for _, s := range sk.Skills() {
						if s.Intent != "" {
							skIntents[s.File] = s.Intent
						}
					}
				}
				var inNotes []string
				if in != nil {
					inNotes = append(inNotes, in.Notes...)
				}
				inNotes = append(inNotes, intentNotes(in, set, skIntents, cfg)...)
				for _, n := range inNotes {
					fmt.Fprintln(c.App.Writer, n)
				}
				if in != nil || len(inNotes) > 0 {
					k := 0
					if in != nil {
						k = len(in.Intents)
					}
					fmt.Fprintf(c.App.ErrWriter, "%d intent(s) loaded, %d note(s)\n", k, len(inNotes))
				}
				if sk == nil {
					return nil
				}
				defer sk.Close()
				notes := 0
				for _, s := range sk.Skills() {
					src, err := os.ReadFile(filepath.Join(c.String("workspace"), "skills", s.File))
					if err != nil {
						return fail(1, "skills/%s: %v", s.File, err)
					}
					for _, n := range lintSkill(string(src), cfg, s.Models) {
						fmt.Fprintf(c.App.Writer, "skills/%s:%s\n", s.File, n)
						notes++
					}
				}
				fmt.Fprintf(c.App.ErrWriter, "%d skill(s) loaded, %d note(s)\n", len(sk.Skills()), notes)
				return nil
			},
		}, evalCommand(), {
			Name: "test", Usage: "run messages against the flows and skills, the simulator as the model", ArgsUsage: "MESSAGE...", Flags: flags(),
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return fail(2, "want a message, such as: moltbot skills test \"请帮我生成Go代码\" (several: the turns of one conversation, through the flows)")
				}
				sk, err := openSkills(c)
				if err != nil {
					return err
				}
				if sk != nil {
					defer sk.Close()
				}
				set, err := openFlows(c, sk)
				if err != nil {
					return err
				}
				msgs := c.Args().Slice()
				if len(set.Flows) > 0 {
					var done bool
					if msgs, done, err = testFlows(c, sk, set, msgs); err != nil || done {
						return err
					}
				}
				if len(msgs) == 1 {
					m, done, err := testPresets(c, msgs[0])
					if err != nil || done {
						return err
					}
					msgs[0] = m // as the skills after the presets see it (masked)
				}
				if sk == nil {
					fmt.Fprintln(c.App.Writer, "no skill matches")
					return nil
				}
				if len(msgs) != 1 {
					return fail(2, "a JavaScript skill runs on one message; %d given", len(msgs))
				}
				msg := msgs[0]
				w := c.App.Writer
				name, matches := sk.Match(msg)
				if name == "" {
					// A skill that exports intent: takes a message of that
					// intent, recognized with confidence.
					in, err := openIntents(c)
					if err != nil {
						return err
					}
					if in != nil {
						r := in.Classify(c.Context, msg, intent.Options{Stages: intent.UseRules | intent.UseNgram})
						t := &moltbot.Turn{}
						intent.Note(t, r)
						if name = sk.MatchIntent(c.Context, t); name != "" {
							fmt.Fprintf(w, "intent: %s (%s, %.2f)\n", r.Intent, r.Stage, r.Confidence)
							matches = []*string{&msg}
						}
					}
				}
				if name == "" {
					fmt.Fprintln(w, "no skill matches")
					return nil
				}
				fmt.Fprintf(w, "skill: %s\n", name)
				for i, m := range matches {
					v := "(none)"
					if m != nil {
						v = fmt.Sprintf("%q", *m)
					}
					fmt.Fprintf(w, "matches[%d]: %s\n", i, v)
				}
				// context.kv: a store in memory, for this run only (the
				// node's data stays untouched).
				reply, err := sk.RunIn(c.Context, name, msg, matches, skills.Env{Model: simModelResolved(w), Tenant: "default"})
				if err != nil {
					return fail(1, "skill %s: %v", name, err)
				}
				fmt.Fprintf(w, "reply:\n%s\n", reply)
				return nil
			},
		}}, skillFileCommands()...),
	}
}

var (
	lintInput  = regexp.MustCompile(`\{\s*input\s*\}\s*=\s*context\.matches\[`)
	lintAlias  = regexp.MustCompile(`callModel\(\s*['"]([^'"]+)['"]`)
	lintStrict = regexp.MustCompile(`\bstrict\s*:\s*true\b`)
)

// showSkill prints what moltbot skills show does.
func showSkill(w io.Writer, sk *skills.Skills, s skills.Skill) {
	fmt.Fprintf(w, "name: %s\nfile: skills/%s\npatterns:\n", s.Name, s.File)
	for i, p := range s.Patterns {
		fmt.Fprintf(w, "  %s  (RE2: %s)\n", p, s.RE2[i])
	}
	aliases := slices.Sorted(maps.Keys(s.Models))
	if len(aliases) == 0 {
		fmt.Fprintln(w, "models: none (an alias names a model, else goes to the chain)")
	} else {
		fmt.Fprintln(w, "models:")
	}
	for _, a := range aliases {
		m, _ := sk.ResolveAlias(s.Name, a)
		if m != s.Models[a] {
			fmt.Fprintf(w, "  %s: %s (skills.models: %s)\n", a, s.Models[a], m)
		} else {
			fmt.Fprintf(w, "  %s: %s\n", a, m)
		}
	}
	fmt.Fprintf(w, "limits:\n  model_calls: %d a run\n", s.ModelCallLimit())
	fmt.Fprintln(w, "tool: none (JavaScript skills answer by their patterns)")
}

// lintSkill notes, as "LINE: text", what in a skill's source works
// otherwise than it reads. cfg (nil: none) says which model names a
// callModel alias may be, besides the skill's models: map (models) and
// skills.models.
func lintSkill(src string, cfg *configs.Config, models map[string]string) []string {
	var out []string
	strict := lintStrict.MatchString(src)
	for i, line := range strings.Split(src, "\n") {
		if lintInput.MatchString(line) {
			if strict {
				out = append(out, fmt.Sprintf("%d: const { input } = context.matches[...] is undefined in strict mode (plain JavaScript): use the capture itself", i+1))
			} else {
				out = append(out, fmt.Sprintf("%d: const { input } = context.matches[...] gives the captured text here (moltbot's default mode, as the seed's example means); in plain JavaScript (strict: true) it is undefined", i+1))
			}
		}
		for _, m := range lintAlias.FindAllStringSubmatch(line, -1) {
			alias := m[1]
			if _, ok := models[alias]; ok || alias == moltbot.ChainModel || cfg == nil {
				continue
			}
			if _, ok := cfg.Skills.Models[alias]; ok {
				continue
			}
			if !configNames(cfg, alias) {
				out = append(out, fmt.Sprintf("%d: callModel(%q): no models: map (the skill's, skills.models) takes it and no model of the config answers to it, so it goes to the chain (unless a provider lists it when the node runs); map it in the skill's models: or skills.models, or name a model (provider/model, or one a provider's models: lists)",
					i+1, alias))
			}
		}
	}
	return out
}

// configNames reports whether the config names model as the router
// resolves a requested name: a model of the chain (whole, or its bare
// name), or a model a provider lists in its models: (whole or bare).
func configNames(cfg *configs.Config, model string) bool {
	for _, r := range cfg.Chain() {
		if r.String() == model || r.Model == model {
			return true
		}
	}
	for _, p := range cfg.Providers {
		for _, m := range p.Models {
			if m == model || p.Name+"/"+m == model {
				return true
			}
		}
	}
	return false
}

// simModel answers callModel with the in-process simulator, printing each
// call and its answer to w.
func simModel(c *cli.Context, w io.Writer) func(alias, prompt string) (string, error) {
	m := simModelResolved(w)
	return func(alias, prompt string) (string, error) { return m(c.Context, alias, alias, prompt) }
}

// simModelResolved is simModel for a skill's run (skills.Env.Model): it
// prints the model an alias resolved to when it is another.
func simModelResolved(w io.Writer) func(ctx context.Context, alias, model, prompt string) (string, error) {
	eng := sim.NewEngine(sim.Options{Tokens: 16, Seed: 1})
	calls := 0
	return func(ctx context.Context, alias, model, prompt string) (string, error) {
		calls++
		if model != alias {
			fmt.Fprintf(w, "callModel %d: alias %q (model %q), prompt %q\n", calls, alias, model, prompt)
		} else {
			fmt.Fprintf(w, "callModel %d: alias %q, prompt %q\n", calls, alias, prompt)
		}
		var b strings.Builder
		_, err := eng.Generate(ctx, []moltbot.Message{{Role: moltbot.RoleUser, Content: prompt}}, 0,
			func(tok string) error { b.WriteString(tok); return nil })
		fmt.Fprintf(w, "  answer (simulator): %q\n", b.String())
		return b.String(), err
	}
}

// openSkills loads the workspace's skills in a worker; nil, nil (after
// saying so) when skills/ holds no .js file.
func openSkills(c *cli.Context) (*skills.Skills, error) {
	ws := c.String("workspace")
	dir := filepath.Join(ws, "skills")
	scfg := skills.Config{Dir: dir}
	if path := filepath.Join(ws, "moltbot.yaml"); fileExists(path) {
		cfg, err := configs.Load(path)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		scfg = skillsConfig(cfg, dir, new(atomic.Pointer[actors.Runtime]))
		scfg.Workers = 1
	}
	if w := c.String("worker"); w != "" {
		scfg.Worker = w
	}
	scfg.KV = &memKV{m: map[string][]byte{}}
	sk, err := skills.Open(scfg)
	if err != nil {
		return nil, fail(1, "%v", err)
	}
	if sk == nil && c.Command.Name != "test" {
		fmt.Fprintf(c.App.Writer, "no skills: %s holds no .js file and skills.mcp names no server\n", scfg.Dir)
	}
	for _, w := range warnings(sk) {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
	}
	return sk, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// listPresets prints the config's preset skills, built as a node builds
// them; nothing when the workspace has no config or it lists none.
func listPresets(c *cli.Context) error {
	ws := c.String("workspace")
	path := filepath.Join(ws, "moltbot.yaml")
	if !fileExists(path) {
		return nil
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return fail(2, "%v", err)
	}
	if len(cfg.Skills.Presets) == 0 {
		return nil
	}
	ps, err := buildPresets(cfg, ws)
	if err != nil {
		return fail(1, "%v", err)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tUSE\tWHAT")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name(), p.Use(), p.Describe())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer)
	return nil
}

// testPresets runs msg through the config's presets as a turn would, the
// simulator as the model, printing what each does: done when one
// answers; else the message as the skills after them see it (masked).
func testPresets(c *cli.Context, msg string) (string, bool, error) {
	ws := c.String("workspace")
	path := filepath.Join(ws, "moltbot.yaml")
	if !fileExists(path) {
		return msg, false, nil
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return msg, false, fail(2, "%v", err)
	}
	if len(cfg.Skills.Presets) == 0 {
		return msg, false, nil
	}
	ps, err := buildPresets(cfg, ws)
	if err != nil {
		return msg, false, fail(1, "%v", err)
	}
	w := c.App.Writer
	eng := sim.NewEngine(sim.Options{Tokens: 16, Seed: 1})
	calls := 0
	turn := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: msg}},
		Model: func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
			calls++
			fmt.Fprintf(w, "model call %d: model %q, %d message(s), the last %q\n", calls, opts.Model, len(msgs), msgs[len(msgs)-1].Content)
			var b strings.Builder
			r, err := eng.Respond(ctx, &inference.Request{Model: opts.Model, Messages: msgs, ChatOptions: opts},
				func(d inference.Delta) error { b.WriteString(d.Text); return nil })
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(w, "  answer (simulator): %q\n", b.String())
			return &moltbot.Completion{Content: b.String(), Usage: r.Usage, FinishReason: r.FinishReason}, nil
		}}
	for _, p := range ps {
		b, ok := p.(actors.BeforeModel)
		if !ok {
			continue
		}
		before, notes := moltbot.LastUserText(turn.Messages), maps.Clone(turn.Notes)
		comp, err := b.BeforeModel(c.Context, turn, nil)
		if err != nil {
			return msg, true, fail(1, "preset %s: %v", p.Name(), err)
		}
		turn.Resolve(c.Context, "") // notes a stage put off (the intent's): shown here
		if after := moltbot.LastUserText(turn.Messages); after != before {
			fmt.Fprintf(w, "preset %s (%s): the message becomes %q\n", p.Name(), p.Use(), after)
		}
		keys := make([]string, 0, len(turn.Notes))
		for k, v := range turn.Notes {
			if old, ok := notes[k]; !ok || old != v {
				keys = append(keys, k) // what this preset noted
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "preset %s (%s): note %s=%s\n", p.Name(), p.Use(), k, turn.Notes[k])
		}
		if comp != nil {
			fmt.Fprintf(w, "preset: %s (%s)\nreply:\n%s\n", p.Name(), p.Use(), comp.Content)
			return msg, true, nil
		}
	}
	fmt.Fprintln(w, "no preset answers")
	return moltbot.LastUserText(turn.Messages), false, nil
}

// toolsOf is sk's tools (none when sk is nil: no skills).
func toolsOf(sk *skills.Skills) []wire.ToolInfo {
	if sk == nil {
		return nil
	}
	return sk.Tools()
}

func warnings(sk *skills.Skills) []string {
	if sk == nil {
		return nil
	}
	return sk.Warnings()
}

// memKV is context.kv for moltbot skills test: a map, gone with the
// command (storage's Memory would link a whole store into the binary
// for it).
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) Get(key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}

func (k *memKV) Put(key string, val []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = val
	return nil
}

func (k *memKV) Delete(key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

func (k *memKV) ScanPrefix(prefix string, fn func(key string, val []byte) bool) error {
	k.mu.Lock()
	var keys []string
	for key := range k.m {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	k.mu.Unlock()
	slices.Sort(keys)
	for _, key := range keys {
		if v, ok, _ := k.Get(key); ok && !fn(key, v) {
			break
		}
	}
	return nil
}
