package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot/channels"
	"github.com/urfave/cli/v2"
)

// channelsCommand is `moltbot channels list|status|test`, through the
// node's admin API.
func channelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "channels",
		Usage: "list the node's channels (channels:), show one's state, send a test message",
		Description: `A channel is a chat platform (Slack, Discord, Telegram, Feishu), a signed
webhook or the web widget a bot is reached through, defined under channels: in
moltbot.yaml. In a cluster, each channel's outbound connection runs on one node
(status says which); inbound requests reach any node at /channels/NAME/.
Counters are the node's own since it started.

Examples:
   moltbot channels list
   moltbot channels status hooks
   moltbot channels test hooks --to "t1 http://127.0.0.1:9000/reply" --text hello`,
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "the channels an admin credential may see (the operator: every tenant's)",
				Flags: append(adminFlags(), &cli.StringFlag{Name: "tenant", Usage: "only this tenant's channels"}),
				Action: func(c *cli.Context) error {
					var out struct {
						Channels []channels.Status `json:"channels"`
					}
					path := "/v1/admin/channels"
					if t := c.String("tenant"); t != "" {
						path += "?tenant=" + url.QueryEscape(t)
					}
					if err := adminCall(c, "GET", path, nil, &out); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tTYPE\tBOT\tTENANT\tSTATE\tNODE\tACCEPTED\tPENDING\tLAST ERROR")
					for _, s := range out.Channels {
						state := s.State
						if s.RunState != "" {
							state += " (" + s.RunState + ")"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.Type, dash(s.Bot), s.Tenant, state, dash(s.Node),
							s.Counters.Accepted, s.Pending, dash(cutText(s.LastError, 60)))
					}
					return tw.Flush()
				},
			},
			{
				Name: "status", Usage: "one channel's state, node, last error, last event and counters", ArgsUsage: "NAME", Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "moltbot channels status NAME")
					if err != nil {
						return err
					}
					var s channels.Status
					if err := adminCall(c, "GET", "/v1/admin/channels/"+url.PathEscape(name), nil, &s); err != nil {
						return err
					}
					w := c.App.Writer
					state := s.State
					if s.RunState != "" {
						state += " (" + s.RunState + " on " + s.Node + ")"
					}
					fmt.Fprintf(w, "name:        %s\ntype:        %s\nbot:         %s\ntenant:      %s\nstate:       %s\nnode:        %s\n",
						s.Name, s.Type, dash(s.Bot), s.Tenant, state, dash(s.Node))
					fmt.Fprintf(w, "last error:  %s\n", dash(s.LastError))
					if !s.ErrorAt.IsZero() {
						fmt.Fprintf(w, "error at:    %s\n", s.ErrorAt.Format(time.RFC3339))
					}
					last := "-"
					if !s.LastEvent.IsZero() {
						last = s.LastEvent.Format(time.RFC3339)
					}
					k := s.Counters
					fmt.Fprintf(w, "last event:  %s\npending:     %d\naccepted:    %d\nduplicates:  %d\ndropped:     %d (bot %d, budget %d, empty %d)\nturns failed: %d\nsent:        %d\nsend failed: %d\n",
						last, s.Pending, k.Accepted, k.Duplicates, k.DroppedBot+k.Budget+k.Empty, k.DroppedBot, k.Budget, k.Empty, k.Failed, k.Sent, k.SendFailed)
					return nil
				},
			},
			{
				Name: "test", Usage: "send a test message through a channel's adapter", ArgsUsage: "NAME",
				Flags: append(adminFlags(),
					&cli.StringFlag{Name: "to", Usage: "the `ADDRESS` to send to, as the channel's type reads it (a chat id, a callback URL)", Required: true},
					&cli.StringFlag{Name: "text", Usage: "the message (default: a line naming the channel)"}),
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "moltbot channels test NAME --to ADDRESS [--text T] (flags before the name)")
					if err != nil {
						return err
					}
					body := map[string]any{"to": c.String("to"), "text": c.String("text")}
					if err := adminCall(c, "POST", "/v1/admin/channels/"+url.PathEscape(name)+"/test", body, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "sent through %s to %s\n", name, c.String("to"))
					return nil
				},
			},
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cutText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
