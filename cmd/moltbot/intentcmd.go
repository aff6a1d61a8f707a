package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/skills/intent"
	"github.com/urfave/cli/v2"
)

// openIntents loads the workspace's skills/intents.yaml (nil, nil when
// there is none); a file that does not load is an error naming the file,
// the line and the key (exit 1).
func openIntents(c *cli.Context) (*intent.Set, error) {
	rel := intent.File
	if p := c.String("intents"); p != "" {
		rel = p
	}
	path := rel
	if !filepath.IsAbs(path) && c.String("intents") == "" {
		path = filepath.Join(c.String("workspace"), rel)
	}
	set, err := intent.Load(path, rel)
	if err != nil {
		return nil, fail(1, "%v", err)
	}
	return set, nil
}

// listIntents prints the intents: name, rules, examples, description.
func listIntents(w io.Writer, set *intent.Set) error {
	if set == nil {
		return nil
	}
	st := set.Settings
	model := st.Model
	if model == "" {
		model = "off"
	}
	fmt.Fprintf(w, "\nintents (%s): threshold %g, margin %g, fallback %s, model %s\n", set.File, st.Threshold, st.Margin, st.Fallback, model)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTENT\tRULES\tEXAMPLES\tDESCRIPTION")
	for _, in := range set.Intents {
		d := in.Description
		if r := []rune(d); len(r) > 60 {
			d = string(r[:57]) + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", in.Name, len(in.Rules), len(in.Examples), d)
	}
	return tw.Flush()
}

// evalCommand is moltbot skills eval.
func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "measure the intents on labelled JSONL sets: accuracy, macro-F1, confusions, fallback and false-accept rates",
		ArgsUsage: "SET.jsonl...",
		Description: `Runs the intent cascade of WORKSPACE/skills/intents.yaml (or --intents FILE) on
each line of the JSONL files, {"text":"我要退货","intent":"refund","lang":"zh"}
(intent out_of_scope: no intent should take it; the cascade is right when it
falls back), and prints accuracy, macro-F1 (the intents and out_of_scope),
the fallback rate (in-scope lines that fell back), the false-accept rate
(out-of-scope lines given an intent), each intent's precision, recall and F1,
and the confusions. --stages chooses the stages (rules,ngram,model); the
model stage asks settings.model through the config's providers directly (no
node needed; --sim asks the in-process simulator instead, which answers an
enum by the words of the message). --min-f1 exits 1 below a macro-F1 bar.

Examples:
   moltbot skills eval --workspace ./mb skills/intent/testdata/intents/*.jsonl
   moltbot skills eval --workspace ./mb --stages rules,ngram --min-f1 0.8 set.jsonl
   moltbot skills eval --workspace ./mb --stages rules,ngram,model set.jsonl`,
		Flags: []cli.Flag{workspaceFlag(),
			&cli.StringFlag{Name: "intents", Usage: "the intents file (default: WORKSPACE/skills/intents.yaml)"},
			&cli.StringFlag{Name: "stages", Value: "rules,ngram", Usage: "the cascade's stages: rules, ngram, model, comma-separated"},
			&cli.BoolFlag{Name: "sim", Usage: "the model stage asks the in-process simulator, not the config's providers"},
			&cli.Float64Flag{Name: "min-f1", Usage: "exit 1 when macro-F1 is below this (0: never)"},
			&cli.IntFlag{Name: "confusions", Value: 20, Usage: "the confusions printed (0: all)"},
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.NArg() == 0 {
		return fail(2, "want JSONL files of {\"text\",\"intent\",\"lang\"} lines, such as: moltbot skills eval --workspace ./mb eval.jsonl")
	}
	stages, err := intent.ParseStages(c.String("stages"))
	if err != nil {
		return fail(2, "--stages: %v", err)
	}
	if f := c.Float64("min-f1"); f < 0 || f > 1 {
		return fail(2, "--min-f1: %g: want a number from 0 to 1", f)
	}
	set, err := openIntents(c)
	if err != nil {
		return err
	}
	if set == nil {
		return fail(1, "no %s in the workspace %s (moltbot init writes one; --intents FILE names another)", intent.File, c.String("workspace"))
	}
	var samples []intent.Sample
	for _, p := range c.Args().Slice() {
		f, err := os.Open(p)
		if err != nil {
			return fail(1, "%v", err)
		}
		s, err := intent.ReadSamples(f, p)
		f.Close()
		if err != nil {
			return fail(1, "%v", err)
		}
		samples = append(samples, s...)
	}
	o := intent.Options{Stages: stages}
	if stages&intent.UseModel != 0 {
		if set.Settings.Model == "" {
			return fail(2, "--stages: the model stage needs settings.model in %s (an alias or provider/model)", set.File)
		}
		if o.Model, err = evalModel(c, set.Settings.Model); err != nil {
			return err
		}
	}
	rep, err := set.Evaluate(c.Context, samples, o)
	if err != nil {
		return fail(1, "%v", err)
	}
	if err := rep.Print(c.App.Writer, c.Int("confusions")); err != nil {
		return err
	}
	if bar := c.Float64("min-f1"); bar > 0 && rep.MacroF1 < bar {
		return fail(1, "macro-F1 %.3f is below --min-f1 %g", rep.MacroF1, bar)
	}
	return nil
}

// evalModel is the model stage's asker for eval: the in-process
// simulator (--sim), or the provider of the config that model resolves to,
// called directly.
func evalModel(c *cli.Context, model string) (intent.Asker, error) {
	var prov inference.Provider
	name := model
	if c.Bool("sim") {
		prov = sim.NewProvider("sim", sim.Options{Tokens: 16, Seed: 1})
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
	} else {
		path := filepath.Join(c.String("workspace"), "moltbot.yaml")
		if !fileExists(path) {
			return nil, fail(2, "--stages: the model stage asks the providers of %s, which is not there (--sim: the simulator)", path)
		}
		cfg, err := configs.Load(path)
		if err != nil {
			return nil, fail(2, "%v", err)
		}
		ref, err := cfg.ResolveModel(model)
		if err != nil {
			return nil, fail(2, "settings.model %q: %v", model, err)
		}
		specs, _, err := buildProviders(cfg, metrics.New("eval"))
		if err != nil {
			return nil, fail(1, "%v", err)
		}
		for _, s := range specs {
			if s.Name == ref.Provider {
				prov = s.Provider
			}
		}
		if prov == nil {
			return nil, fail(2, "settings.model %q: provider %q is not configured", model, ref.Provider)
		}
		name = ref.Model
	}
	return func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions) (string, error) {
		var b strings.Builder
		opts.Model = ""
		_, err := prov.Chat(ctx, &inference.Request{Model: name, Messages: msgs, ChatOptions: opts}, func(d inference.Delta) error {
			b.WriteString(d.Text)
			return nil
		})
		return b.String(), err
	}, nil
}
