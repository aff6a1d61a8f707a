package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moltbot/moltbot/gateway"
	"github.com/moltbot/moltbot/inference/sse"
	"github.com/urfave/cli/v2"
)

func apiKeyFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "api-key", EnvVars: []string{"MOLTBOT_API_KEY"}, Usage: "API key or token, when the node requires one"}
}

func urlFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "url", Value: "http://127.0.0.1:3000", EnvVars: []string{"MOLTBOT_URL"}, Usage: "the node's base URL (host:port means http://host:port)"}
}

// nodeURL is --url (or $MOLTBOT_URL) as a base URL without a trailing
// slash: "localhost:3000" means http://localhost:3000, as curl reads it;
// anything but an http or https URL with a host is an error naming the
// flag.
func nodeURL(c *cli.Context) (string, error) {
	return baseURL(c.String("url"))
}

func baseURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--url %q: not a node's address; write host:port or http(s)://host:port, e.g. http://127.0.0.1:3000", raw)
	}
	return strings.TrimRight(s, "/"), nil
}

// apiError reads the OpenAI error body of a failed response.
func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Error.Message)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
}

type chatClient struct {
	url  string
	key  string
	http *http.Client
}

func (cc *chatClient) post(ctx context.Context, path string, body any) (*http.Response, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cc.url+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cc.key != "" {
		req.Header.Set("Authorization", "Bearer "+cc.key)
	}
	resp, err := cc.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach moltbot at %s: %w", cc.url, err)
	}
	return resp, nil
}

func (cc *chatClient) create(ctx context.Context, system, model string) (string, error) {
	resp, err := cc.post(ctx, "/v1/conversations", map[string]string{"system": system, "model": model})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", apiError(resp)
	}
	var c struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return "", err
	}
	return c.ID, nil
}

// turn sends one message and streams the reply to out; it returns the model
// that served it.
func (cc *chatClient) turn(ctx context.Context, id, text string, out io.Writer) (string, error) {
	resp, err := cc.post(ctx, "/v1/conversations/"+id+"/messages", map[string]any{"content": text, "stream": true})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", apiError(resp)
	}
	served := resp.Header.Get("X-Moltbot-Provider")
	r := sse.NewReader(resp.Body, 0)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return served, errors.New("the stream ended early")
		}
		if err != nil {
			return served, err
		}
		if string(ev.Data) == "[DONE]" {
			return served, nil
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(ev.Data, &ch); err != nil {
			return served, fmt.Errorf("bad chunk: %v", err)
		}
		if ch.Error != nil {
			return served, errors.New(ch.Error.Message)
		}
		for _, c := range ch.Choices {
			io.WriteString(out, c.Delta.Content)
			if f, ok := out.(interface{ Flush() error }); ok {
				f.Flush()
			}
		}
	}
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:  "chat",
		Usage: "chat with a node in the terminal",
		Description: `An interactive chat: type a message, the reply streams back as it is generated,
followed by the model that served it. The conversation lives on the node and
survives restarts: resume it with --conversation. Commands: /new (a fresh
conversation), /id (show its id), /quit. End of input quits too.

Examples:
   moltbot chat
   moltbot chat --url http://10.0.0.5:3000 --conversation c_abc123
   moltbot chat --url https://moltbot.lan:3000 --ca-file ca.pem
   echo "hello" | moltbot chat --system "answer in French"`,
		Flags: []cli.Flag{
			urlFlag(),
			&cli.StringFlag{Name: "conversation", Usage: "resume this conversation id"},
			&cli.StringFlag{Name: "system", Usage: "system prompt of a new conversation"},
			&cli.StringFlag{Name: "model", Usage: `model of a new conversation ("moltbot" = the configured chain, or provider/model)`},
			apiKeyFlag(),
			caFileFlag(),
		},
		Action: func(c *cli.Context) error {
			hc, err := httpClient(c)
			if err != nil {
				return err
			}
			base, err := nodeURL(c)
			if err != nil {
				return err
			}
			cc := &chatClient{url: base, key: c.String("api-key"), http: hc}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := bufio.NewWriter(c.App.Writer)
			defer out.Flush()
			errw := c.App.ErrWriter
			id := c.String("conversation")
			if id == "" {
				var err error
				if id, err = cc.create(ctx, c.String("system"), c.String("model")); err != nil {
					return fail(1, "%v", err)
				}
			}
			fmt.Fprintf(errw, "conversation %s (type /quit to leave)\n", id)
			in := bufio.NewScanner(c.App.Reader)
			in.Buffer(make([]byte, 64<<10), 1<<20)
			for {
				fmt.Fprint(errw, "> ")
				if !in.Scan() {
					fmt.Fprintln(errw)
					return nil
				}
				line := strings.TrimSpace(in.Text())
				switch line {
				case "":
					continue
				case "/quit", "/exit":
					return nil
				case "/id":
					fmt.Fprintln(errw, id)
					continue
				case "/new":
					nid, err := cc.create(ctx, c.String("system"), c.String("model"))
					if err != nil {
						fmt.Fprintln(errw, "error:", err)
						continue
					}
					id = nid
					fmt.Fprintf(errw, "conversation %s\n", id)
					continue
				}
				served, err := cc.turn(ctx, id, line, out)
				out.WriteString("\n")
				out.Flush()
				if err != nil {
					fmt.Fprintln(errw, "error:", err)
					if ctx.Err() != nil {
						return nil
					}
					continue
				}
				fmt.Fprintf(errw, "  (served by %s)\n", served)
			}
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a node's health, providers and counts",
		Description: `Asks a node for its status: readiness, the model chain, each provider's
reachability (and its address) and load, conversations active and stored,
request counters. Exits 1 when the node cannot be reached, 3 when it answers
but is not ready (no model of the chain usable, still joining the cluster,
shutting down): the first line says why.

Examples:
   moltbot status
   moltbot status --url http://127.0.0.1:3001 --json`,
		Flags: append(adminFlags(), &cli.BoolFlag{Name: "json", Usage: "print the raw JSON"}),
		Action: func(c *cli.Context) error {
			base, raw, err := adminShow(c, "/v1/admin/status")
			if err != nil || raw == nil {
				return err
			}
			var st gateway.StatusResponse
			if err := json.Unmarshal(raw, &st); err != nil {
				return fail(1, "unexpected status body: %v", err)
			}
			printStatus(c.App.Writer, base, &st)
			if st.Status != "ready" {
				return fail(3, "the node is %s", st.Status)
			}
			return nil
		},
	}
}

func printStatus(w io.Writer, base string, st *gateway.StatusResponse) {
	state := st.Status
	if st.Reason != "" {
		state += " (" + st.Reason + ")"
	}
	fmt.Fprintf(w, "moltbot %s at %s: %s, up %s\n", st.Version, base, state, (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(w, "chain: %s\n\n", strings.Join(st.Chain, " -> "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tTYPE\tURL\tREACHABLE\tIN-FLIGHT\tQUEUED\tRESTARTS\tMODELS")
	for _, p := range st.Providers {
		reach := "yes"
		if !p.Reachable {
			reach = "no"
			if p.CheckedAt.IsZero() {
				reach = "unknown"
			}
		}
		models := strings.Join(p.Models, ",")
		if models == "" {
			models = "-"
		}
		if p.LastError != "" {
			models += "  (" + p.LastError + ")"
		}
		url := p.URL
		if url == "" {
			url = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Name, p.Type, url, reach, p.InFlight, p.Queued, p.Restarts, models)
	}
	tw.Flush()
	for _, p := range st.Providers {
		var ks []string
		for _, k := range p.Keys {
			s := fmt.Sprintf("#%d %s %s", k.Index, k.Suffix, k.State)
			if k.CooldownFor != "" {
				s += " for " + k.CooldownFor
			}
			ks = append(ks, s)
		}
		if len(ks) > 0 {
			fmt.Fprintf(w, "  %s keys: %s\n", p.Name, strings.Join(ks, ", "))
		}
	}
	if len(st.Breakers) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MODEL\tBREAKER\tREQUESTS\tERRORS\tP95 TTFT\tCOOLDOWN LEFT\tNOTE")
		for _, b := range st.Breakers {
			note := ""
			switch {
			case b.Missing:
				note = "model missing on its provider"
			case b.RateLimitedMs > 0:
				note = fmt.Sprintf("rate limited for %s", ms(b.RateLimitedMs))
			case !b.Reachable:
				note = "provider unreachable"
			}
			if b.LastError != "" && b.State != "closed" {
				note = strings.TrimSpace(note + "  " + b.LastError)
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%d\t%.1f%%\t%s\t%s\t%s\n", b.Provider, b.Model, b.State, b.Requests, b.ErrorRate*100,
				ms(b.P95TTFTMs), ms(b.CooldownLeftMs), note)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nconversations: %d active, %d stored\n", st.Conversations.Active, st.Conversations.Stored)
	fmt.Fprintf(w, "requests: %d http, %d inference, %d failovers, %d actor restarts\n",
		st.Requests.HTTP, st.Requests.Inference, st.Requests.Failovers, st.Requests.Restarts)
}

// ms prints milliseconds as a rounded duration, "-" for zero.
func ms(v float64) string {
	if v <= 0 {
		return "-"
	}
	d := time.Duration(v * float64(time.Millisecond))
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "inspect a node's cluster; make its CA, node certificates and gossip key",
		Subcommands: []*cli.Command{{
			Name:  "members",
			Usage: "list the members a node sees: state, addresses, version, conversations",
			Description: `Asks a node for its view of the cluster (GET /v1/admin/cluster): every member
with its state (alive, leaving, dead, left), gossip, RPC and HTTP addresses,
version and the conversations it holds in memory. Exits 1 when the node
cannot be reached.

Examples:
   moltbot cluster members
   moltbot cluster members --url http://10.0.0.5:3000 --json`,
			Flags: append(adminFlags(), &cli.BoolFlag{Name: "json", Usage: "print the raw JSON"}),
			Action: func(c *cli.Context) error {
				base, raw, err := adminShow(c, "/v1/admin/cluster")
				if err != nil || raw == nil {
					return err
				}
				var st struct {
					Enabled  bool   `json:"enabled"`
					Self     string `json:"self"`
					Replicas int    `json:"replicas"`
					Members  []struct {
						ID, Name, RPC, HTTP, Gossip, Version, State string
						Conversations                               int
						Self, Verified                              bool
					} `json:"members"`
				}
				if err := json.Unmarshal(raw, &st); err != nil {
					return fail(1, "unexpected body: %v", err)
				}
				if !st.Enabled {
					fmt.Fprintf(c.App.Writer, "%s runs alone (no cluster.bind)\n", base)
					return nil
				}
				fmt.Fprintf(c.App.Writer, "cluster seen by %s (replicas %d)\n\n", st.Self, st.Replicas)
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tNAME\tSTATE\tVERIFIED\tRPC\tHTTP\tVERSION\tCONVERSATIONS")
				for _, m := range st.Members {
					id := m.ID
					if m.Self {
						id += " (self)"
					}
					name := m.Name
					if name == "" {
						name = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%d\n", id, name, m.State, m.Verified, m.RPC, m.HTTP, m.Version, m.Conversations)
				}
				tw.Flush()
				return nil
			},
		}, caCommand(), keygenCommand()},
	}
}
