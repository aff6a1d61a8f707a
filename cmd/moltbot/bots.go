package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/manage"
	"github.com/urfave/cli/v2"
)

// checkBots warns about what the bots of cfg name and this node does not
// have: a skill that no skill or flow of skills/ is (it may be a preset
// still to come: a warning, not an error), a tenant the node does not know
// (made through the API later, it works then).
func (n *Node) checkBots(cfg *configs.Config) {
	var have []string
	if n.skills != nil {
		if sk := n.skills.cur.Load(); sk != nil {
			for _, s := range sk.Skills() {
				have = append(have, s.Name)
			}
		}
		for _, f := range n.skills.flows.Flows().Flows {
			have = append(have, f.Name)
		}
	}
	var guards []string
	for _, p := range n.presets.presets() {
		have = append(have, p.Name())
		if p.Use() == "guard" {
			guards = append(guards, p.Name())
		}
	}
	for i, b := range cfg.Bots {
		at := fmt.Sprintf("bots[%d]", i)
		if l := cfg.Line(at + ".name"); l > 0 {
			at = fmt.Sprintf("%s:%d: %s", cfg.File, l, at)
		}
		for _, s := range b.Skills {
			if !slices.Contains(have, s) {
				n.Log.Warn("a bot names a skill that skills/ does not hold: the bot runs without it", "bot", b.Name, "skill", s, "at", at)
			}
		}
		for _, g := range b.Guards {
			if !slices.Contains(guards, g) {
				n.Log.Warn("a bot names a guard that skills.presets does not hold (a preset of use: guard): the bot runs without it", "bot", b.Name, "guard", g, "at", at)
			}
		}
		if len(b.Guards) > 0 {
			for _, g := range guards {
				if !slices.Contains(b.Guards, g) && !slices.Contains(b.Skills, g) {
					n.Log.Info("a guard preset does not watch a bot's turns: its guards: list leaves it out", "bot", b.Name, "guard", g, "at", at)
				}
			}
		}
		tenant := b.Tenant
		if tenant == "" {
			tenant = "default"
		}
		if n.auth != nil {
			if _, ok := n.auth.Tenant(tenant); !ok {
				n.Log.Warn("a bot's tenant does not exist (yet): no key can bind to the bot until it does", "bot", b.Name, "tenant", tenant, "at", at)
			}
		}
	}
	if n.skills != nil {
		for _, note := range intentNotes(n.skills.intents.Set(), nil, nil, cfg) {
			n.Log.Warn("a bot names an intent skills/intents.yaml does not define: it is never recognized for the bot", "note", note)
		}
	}
}

func botsCommand() *cli.Command {
	return &cli.Command{
		Name:  "bots",
		Usage: "list and show the bots of the node's config (bots:), through its admin API",
		Description: `A bot is a tenant's persona (system prompt), model chain and skills, defined
under bots: in moltbot.yaml (reloaded on SIGHUP or moltbot keys reload). A key
bound to a bot speaks as it:

   moltbot keys create --tenant acme --bot support --name widget

Examples:
   moltbot bots list
   moltbot bots show support`,
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the bots an admin credential may see (the operator: every tenant's)",
				Flags: append(adminFlags(), &cli.StringFlag{Name: "tenant", Usage: "only this tenant's bots"}),
				Action: func(c *cli.Context) error {
					var out struct {
						Bots []manage.BotInfo `json:"bots"`
					}
					path := "/v1/admin/bots"
					if t := c.String("tenant"); t != "" {
						path += "?tenant=" + url.QueryEscape(t)
					}
					if err := adminCall(c, "GET", path, nil, &out); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tTENANT\tCHAIN\tSKILLS\tKNOWLEDGE BASES\tGUARDS")
					for _, b := range out.Bots {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.Tenant, chainText(b.Chain), listText(b.Skills), listText(b.KnowledgeBases), listText(b.Guards))
					}
					return tw.Flush()
				},
			},
			{
				Name: "show", Usage: "show one bot, its persona whole", ArgsUsage: "NAME", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "moltbot bots show NAME")
					if err != nil {
						return err
					}
					var b manage.BotInfo
					if err := adminCall(c, "GET", "/v1/admin/bots/"+url.PathEscape(name), nil, &b); err != nil {
						return err
					}
					w := c.App.Writer
					fmt.Fprintf(w, "name:            %s\ntenant:          %s\nchain:           %s\nskills:          %s\nknowledge bases: %s\nguards:          %s\n",
						b.Name, b.Tenant, chainText(b.Chain), listText(b.Skills), listText(b.KnowledgeBases), listText(b.Guards))
					if len(b.Intents) > 0 {
						fmt.Fprintf(w, "intents:         %s\n", listText(b.Intents))
					}
					fmt.Fprintf(w, "system:\n%s\n", indent(b.System))
					return nil
				},
			},
		},
	}
}

func chainText(chain []string) string {
	if len(chain) == 0 {
		return "(the node's chain)"
	}
	return strings.Join(chain, " -> ")
}

func listText(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ", ")
}

func indent(s string) string {
	if s == "" {
		return "  (none)"
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
