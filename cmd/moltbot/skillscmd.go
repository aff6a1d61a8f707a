package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/configs"
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
		Usage: "the workspace's JavaScript skills: list them, try one on a message",
		Description: `Loads WORKSPACE/skills/*.js in the moltbot-skills worker, as a node does.
"list" prints each skill's name, file and patterns (a file that does not load
is an error naming it, exit 1); "test" runs a message against the skills with
the in-process simulator as the model (no node needed) and prints which skill
matched with its captures, each callModel with its alias and prompt, and the
reply; "no skill matches" otherwise.

Examples:
   moltbot skills list --workspace ./mb
   moltbot skills test --workspace ./mb "请帮我生成Go代码"`,
		Subcommands: []*cli.Command{{
			Name: "list", Usage: "each skill's name, file and patterns", Flags: flags(),
			Action: func(c *cli.Context) error {
				sk, err := openSkills(c)
				if err != nil || sk == nil {
					return err
				}
				defer sk.Close()
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tFILE\tPATTERNS")
				for _, s := range sk.Skills() {
					fmt.Fprintf(tw, "%s\tskills/%s\t%s\n", s.Name, s.File, strings.Join(s.Patterns, " "))
				}
				return tw.Flush()
			},
		}, {
			Name: "test", Usage: "run a message against the skills, the simulator as the model", ArgsUsage: "MESSAGE", Flags: flags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fail(2, "want one message, such as: moltbot skills test \"请帮我生成Go代码\"")
				}
				msg := c.Args().First()
				sk, err := openSkills(c)
				if err != nil || sk == nil {
					return err
				}
				defer sk.Close()
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
				eng := sim.NewEngine(sim.Options{Tokens: 16, Seed: 1})
				calls := 0
				model := func(alias, prompt string) (string, error) {
					calls++
					fmt.Fprintf(w, "callModel %d: alias %q, prompt %q\n", calls, alias, prompt)
					var b strings.Builder
					_, err := eng.Generate(c.Context, []moltbot.Message{{Role: moltbot.RoleUser, Content: prompt}}, 0,
						func(tok string) error { b.WriteString(tok); return nil })
					fmt.Fprintf(w, "  answer (simulator): %q\n", b.String())
					return b.String(), err
				}
				reply, err := sk.Run(c.Context, name, msg, matches, model)
				if err != nil {
					return fail(1, "skill %s: %v", name, err)
				}
				fmt.Fprintf(w, "reply:\n%s\n", reply)
				return nil
			},
		}},
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
	if sk == nil {
		fmt.Fprintf(c.App.Writer, "no skills: %s holds no .js file\n", dir)
	}
	return sk, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
