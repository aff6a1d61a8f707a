package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference/ollama"
	"github.com/urfave/cli/v2"
)

func modelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "models",
		Usage: "list the models a node's providers offer; pull one into Ollama",
		Description: `Lists every model a running node can serve: the chain ("moltbot"), the
models of its config and those its providers report (an Ollama's pulled
models). "models pull NAME" asks Ollama to pull a model, with its progress:
the Ollama of the workspace's config (its first ollama provider, or
--provider), else OLLAMA_HOST as Ollama's tools read it, else
http://127.0.0.1:11434; --ollama names it outright. No node is needed.

Examples:
   moltbot models
   moltbot models --json
   moltbot models pull qwen2.5:0.5b
   moltbot models pull --ollama http://10.0.0.5:11434 llama3.2`,
		Flags: []cli.Flag{urlFlag(), apiKeyFlag(), caFileFlag(), &cli.BoolFlag{Name: "json", Usage: "print the raw JSON"}},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand(c.Command.Subcommands)(c)
			}
			return listModels(c)
		},
		Subcommands: []*cli.Command{{
			Name:      "pull",
			Usage:     "ask Ollama to pull a model",
			ArgsUsage: "NAME",
			Flags: []cli.Flag{workspaceFlag(),
				&cli.StringFlag{Name: "provider", Usage: "the ollama provider of the config whose server pulls (default: the first)"},
				&cli.StringFlag{Name: "ollama", Usage: "the Ollama's URL (overrides the config and OLLAMA_HOST)"}},
			Action: pullModel,
		}},
	}
}

func listModels(c *cli.Context) error {
	base, err := nodeURL(c)
	if err != nil {
		return err
	}
	hc, err := httpClient(c)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(c.Context, "GET", base+"/v1/models", nil)
	if err != nil {
		return err
	}
	if k := c.String("api-key"); k != "" {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fail(1, "cannot reach moltbot at %s: %v", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(1, "%s: %v", base, apiError(resp))
	}
	var list struct {
		Data []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	raw := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 8<<20))
	if c.Bool("json") {
		var v any
		if err := raw.Decode(&v); err != nil {
			return fail(1, "unexpected body: %v", err)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	if err := raw.Decode(&list); err != nil {
		return fail(1, "unexpected body: %v", err)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tPROVIDER")
	for _, m := range list.Data {
		owner := m.OwnedBy
		if m.ID == "moltbot" {
			owner = "(the chain: the primary, then its fallbacks)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", m.ID, owner)
	}
	return tw.Flush()
}

// pullURL is the Ollama a pull goes to: --ollama, else the config's ollama
// provider (--provider, or the first), else OLLAMA_HOST (ollama.HostURL).
func pullURL(c *cli.Context) (url, provider string, err error) {
	if u := c.String("ollama"); u != "" {
		u, err := baseURL(u)
		return u, "", err
	}
	path := filepath.Join(c.String("workspace"), "moltbot.yaml")
	if _, err := os.Stat(path); err == nil {
		cfg, err := configs.Load(path)
		if err != nil {
			return "", "", fail(2, "%v", err)
		}
		want := c.String("provider")
		var names []string
		for _, p := range cfg.Providers {
			if p.Type != ollama.TypeName {
				continue
			}
			names = append(names, p.Name)
			if want == "" || p.Name == want {
				return p.URL, p.Name, nil
			}
		}
		if want != "" {
			return "", "", fail(2, "--provider %q: %s has no ollama provider of that name (ollama providers: %s)", want, path, strings.Join(names, ", "))
		}
	} else if c.IsSet("provider") {
		return "", "", fail(2, "--provider: no config at %s to find it in", path)
	}
	return ollama.HostURL(), "", nil
}

func pullModel(c *cli.Context) error {
	name := c.Args().First()
	if c.Args().Len() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
		return fail(2, "models pull: flags go before the name: moltbot models pull %s %s", strings.Join(c.Args().Slice()[1:], " "), name)
	}
	if name == "" || c.Args().Len() > 1 {
		return fail(2, "models pull takes one model name, e.g. moltbot models pull qwen2.5:0.5b")
	}
	u, prov, err := pullURL(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt)
	defer stop()
	w := c.App.Writer
	fmt.Fprintf(w, "pulling %s into the Ollama at %s\n", name, u)
	lastStatus, lastPct := "", -1
	err = ollama.Pull(ctx, u, name, nil, func(p ollama.Progress) error {
		pct := -1
		if p.Total > 0 {
			pct = int(p.Completed * 100 / p.Total)
		}
		// A line when the status changes, and every 10% of a download.
		if p.Status == lastStatus && (pct < 0 || pct/10 == lastPct/10) {
			return nil
		}
		if pct >= 0 {
			fmt.Fprintf(w, "%s %d%% of %s\n", p.Status, pct, bytesText(p.Total))
		} else {
			fmt.Fprintln(w, p.Status)
		}
		lastStatus, lastPct = p.Status, pct
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return fail(1, "pull of %s canceled", name)
		}
		return fail(1, "pull of %s: %v", name, err)
	}
	if prov == "" {
		prov = "<provider>"
	}
	fmt.Fprintf(w, "%s is ready: moltbot start --model %s/%s\n", name, prov, name)
	return nil
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
