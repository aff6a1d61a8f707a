package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/skills"
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
		Usage: "the workspace's skills (presets, flows, JavaScript): list them, lint them, try one on a message",
		Description: `Loads WORKSPACE/skills/*.js in the moltbot-skills worker, and the YAML flows of
WORKSPACE/skills/flows/*.yaml, as a node does, and builds the preset skills
of WORKSPACE/moltbot.yaml (skills.presets). "list" prints each preset's name,
kind and what it does (a preset that does not build, such as an FAQ file that
does not parse, is an error naming it, exit 1), each skill's name,
file and patterns, and each flow's name, file, version, triggers and nodes (a
file that does not load is an error naming it, and for a flow the line and
the key, exit 1); "lint" loads them too and notes, by file and line, what
works otherwise than it reads: a destructured capture (const { input } =
context.matches[1], the captured text here, undefined in strict mode), a
callModel alias no model of the config answers to (it goes to the chain), a
flow's node no trigger leads to; "test" runs messages against the flows,
presets and skills with the in-process simulator as the model (no node
needed): several messages are the turns of one conversation through the flows
(the flow's nodes, its model calls, its reply, the node it waits at); one
message no flow takes goes through the presets, in order (what each does to
it, masked or noted, is printed; one that answers ends the test with its
model calls and its reply), then to the skills, and test prints which skill
matched with its captures, each callModel with its alias and prompt, and the
reply; "no skill matches" otherwise.

Examples:
   moltbot skills list --workspace ./mb
   moltbot skills lint --workspace ./mb
   moltbot skills test --workspace ./mb "请帮我生成Go代码"
   moltbot skills test --workspace ./mb "I want a refund" "abc" "123456"`,
		Subcommands: []*cli.Command{{
			Name: "list", Usage: "the preset skills of the config (skills.presets), then each JavaScript skill's name, file and patterns", Flags: flags(),
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
						fmt.Fprintf(tw, "%s\tskills/%s\t%s\n", s.Name, s.File, strings.Join(s.Patterns, " "))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				}
				set, err := openFlows(c, sk)
				if err != nil {
					return err
				}
				return listFlows(c.App.Writer, set)
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
				if sk == nil {
					return nil
				}
				defer sk.Close()
				var cfg *configs.Config
				if path := filepath.Join(c.String("workspace"), "moltbot.yaml"); fileExists(path) {
					cfg, _ = configs.Load(path) // openSkills has loaded it once: it parses
				}
				notes := 0
				for _, s := range sk.Skills() {
					src, err := os.ReadFile(filepath.Join(c.String("workspace"), "skills", s.File))
					if err != nil {
						return fail(1, "skills/%s: %v", s.File, err)
					}
					for _, n := range lintSkill(string(src), cfg) {
						fmt.Fprintf(c.App.Writer, "skills/%s:%s\n", s.File, n)
						notes++
					}
				}
				fmt.Fprintf(c.App.ErrWriter, "%d skill(s) loaded, %d note(s)\n", len(sk.Skills()), notes)
				return nil
			},
		}, {
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
				reply, err := sk.Run(c.Context, name, msg, matches, simModel(c, w))
				if err != nil {
					return fail(1, "skill %s: %v", name, err)
				}
				fmt.Fprintf(w, "reply:\n%s\n", reply)
				return nil
			},
		}},
	}
}

var (
	lintInput  = regexp.MustCompile(`\{\s*input\s*\}\s*=\s*context\.matches\[`)
	lintAlias  = regexp.MustCompile(`callModel\(\s*['"]([^'"]+)['"]`)
	lintStrict = regexp.MustCompile(`\bstrict\s*:\s*true\b`)
)

// lintSkill notes, as "LINE: text", what in a skill's source works
// otherwise than it reads. cfg (nil: none) says which model names a
// callModel alias may be.
func lintSkill(src string, cfg *configs.Config) []string {
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
			if alias == moltbot.ChainModel || cfg == nil {
				continue
			}
			if !configNames(cfg, alias) {
				out = append(out, fmt.Sprintf("%d: callModel(%q): no model of the config answers to it, so it goes to the chain (unless a provider lists it when the node runs); name a model (provider/model, or one a provider's models: lists) to pick it",
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
// call and its answer.
func simModel(c *cli.Context, w io.Writer) func(alias, prompt string) (string, error) {
	eng := sim.NewEngine(sim.Options{Tokens: 16, Seed: 1})
	calls := 0
	return func(alias, prompt string) (string, error) {
		calls++
		fmt.Fprintf(w, "callModel %d: alias %q, prompt %q\n", calls, alias, prompt)
		var b strings.Builder
		_, err := eng.Generate(c.Context, []moltbot.Message{{Role: moltbot.RoleUser, Content: prompt}}, 0,
			func(tok string) error { b.WriteString(tok); return nil })
		fmt.Fprintf(w, "  answer (simulator): %q\n", b.String())
		return b.String(), err
	}
}

// openSkills loads the workspace's skills in a worker; nil, nil (after
// saying so) when skills/ holds no .js file.
func openSkills(c *cli.Context) (*skills.Skills, error) {
	ws := c.String("workspace")
	worker, timeout := c.String("worker"), time.Duration(0)
	if path := filepath.Join(ws, "moltbot.yaml"); fileExists(path) {
		cfg, err := configs.Load(path)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		if worker == "" {
			worker = cfg.Skills.Worker
		}
		timeout = cfg.Skills.Timeout.D()
	}
	dir := filepath.Join(ws, "skills")
	sk, err := skills.Open(skills.Config{Dir: dir, Worker: worker, Deadline: timeout})
	if err != nil {
		return nil, fail(1, "%v", err)
	}
	if sk == nil && c.Command.Name != "test" {
		fmt.Fprintf(c.App.Writer, "no skills: %s holds no .js file\n", dir)
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
		before, notes := lastUserText(turn.Messages), maps.Clone(turn.Notes)
		comp, err := b.BeforeModel(c.Context, turn, nil)
		if err != nil {
			return msg, true, fail(1, "preset %s: %v", p.Name(), err)
		}
		if after := lastUserText(turn.Messages); after != before {
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
	return lastUserText(turn.Messages), false, nil
}

func lastUserText(msgs []moltbot.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == moltbot.RoleUser {
			return msgs[i].Content
		}
	}
	return ""
}
