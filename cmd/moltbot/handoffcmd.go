package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot/manage"
	"github.com/urfave/cli/v2"
)

// handoffCommand is `moltbot handoff list|claim|reply|release`: a human
// agent's work on the hand-off queue, through the node's admin API, with
// an agent key (keys create --scope agent) or an admin one.
func handoffCommand() *cli.Command {
	epochFlag := &cli.Uint64Flag{Name: "epoch", Usage: "the hand-off epoch `moltbot handoff list` shows (required: a stale one is refused)", Required: true}
	op := func(name, usage string, withText bool) *cli.Command {
		flags := append(adminFlags(), epochFlag)
		args := "CONVERSATION"
		if withText {
			flags = append(flags, &cli.StringFlag{Name: "id", Usage: "an idempotency id: the same reply sent again is said once"})
			args = "CONVERSATION TEXT"
		}
		return &cli.Command{
			Name: name, Usage: usage, ArgsUsage: args, Flags: flags,
			Action: func(c *cli.Context) error {
				want := 1
				if withText {
					want = 2
				}
				if c.NArg() != want {
					return fail(2, "usage: moltbot handoff %s --epoch N %s (flags before the arguments)", name, args)
				}
				conv := c.Args().Get(0)
				body := map[string]any{"epoch": c.Uint64("epoch")}
				if withText {
					body["text"] = c.Args().Get(1)
					if id := c.String("id"); id != "" {
						body["id"] = id
					}
				}
				var out manage.HandoffResult
				if err := adminCall(c, "POST", "/v1/admin/handoff/"+url.PathEscape(conv)+"/"+name, body, &out); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: owner %s, epoch %d", out.Conversation, out.Owner, out.Epoch)
				if out.Agent != "" {
					fmt.Fprintf(c.App.Writer, ", agent %s", out.Agent)
				}
				fmt.Fprintln(c.App.Writer)
				return nil
			},
		}
	}
	return &cli.Command{
		Name:  "handoff",
		Usage: "work the hand-off queue: conversations handed to a person",
		Description: `A conversation is handed to a person when its user asks ("转人工", "human
please"), after answers without a knowledge-base hit, low intent confidence or
negative sentiment in a row, for a VIP user, or by a flow's handoff node
(handoff: in moltbot.yaml). While it waits (owner queue) or a person has it
(owner agent) the bot is silent: the user's messages are kept and shown here.
Every change of owner adds one to its epoch; each call names the epoch it saw,
and a stale one is refused (exit 1, HTTP 409).

An agent's key works the queue of its tenant and nothing else:
   moltbot keys create --tenant acme --name alice --scope agent

Examples:
   moltbot handoff list
   moltbot handoff claim --epoch 1 c_abc
   moltbot handoff reply --epoch 2 c_abc "Hello, I am Alice. Let me look."
   moltbot handoff release --epoch 2 c_abc`,
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "the conversations waiting for a person or with one, the longest waiting first",
				Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					var out struct {
						Data []manage.HandoffEntry `json:"data"`
					}
					if err := adminCall(c, "GET", "/v1/admin/handoff", nil, &out); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "CONVERSATION\tOWNER\tEPOCH\tAGENT\tREASON\tWAITING\tLAST MESSAGE")
					for _, e := range out.Data {
						wait := ""
						if e.Since > 0 {
							wait = time.Since(time.UnixMilli(e.Since)).Round(time.Second).String()
						}
						last := strings.Join(strings.Fields(e.Last), " ")
						if r := []rune(last); len(r) > 60 {
							last = string(r[:60]) + "…"
						}
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Conversation, e.Owner, e.Epoch, e.Agent, e.Reason, wait, last)
					}
					return tw.Flush()
				},
			},
			op("claim", "take a queued conversation (the epoch goes up by one)", false),
			op("reply", "say something to the user of a conversation you claimed", true),
			op("release", "give the conversation back to the bot (the epoch goes up by one)", false),
		},
	}
}
