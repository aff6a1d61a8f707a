//go:build !edge

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/moltbot/moltbot/bench"
	"github.com/moltbot/moltbot/configs"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/urfave/cli/v2"
)

// parseRate reads "200", "200/s" or "12000/m" as requests per second.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("want a rate such as 200/s, got %q", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "s":
		return v, nil
	case "m":
		return v / 60, nil
	}
	return 0, fmt.Errorf("want a rate such as 200/s or 12000/m, got %q", s)
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "load-test a node (or a spawned one) and report LLM-serving metrics",
		Description: `Sends chat load to a node and reports throughput, errors by class, end-to-end
latency percentiles, and for streams TTFT, ITL and TPOT, output tokens/s,
goodput against SLOs, and which provider served (X-Moltbot-Provider).

  closed loop (default): --concurrency requests always in flight.
  open loop: --rate arrivals per second whatever the server does; latency is
  measured from the scheduled send time, so queueing cannot hide.

Scenarios: stateless /v1/chat/completions, or --conversations N --turns M
through the conversations API. Several --url, comma-separated, spread the
load over a cluster's nodes. --spawn starts a node in front of a simulator
inside this process, so it works on a fresh machine. --baseline URL measures
the latency moltbot adds over calling the model server directly (URL of its
OpenAI API, e.g. http://127.0.0.1:11434/v1, or "spawn" with --spawn).

Examples:
   moltbot bench --spawn --duration 10s
   moltbot bench --url http://127.0.0.1:3000 --mode open --rate 500/s --duration 30s --stream
   moltbot bench --conversations 100 --turns 5 --stream --slo-ttft 500ms --json out.json --html out.html
   moltbot bench --spawn --baseline spawn --requests 2000
   moltbot bench --url http://10.0.0.1:3000,http://10.0.0.2:3000,http://10.0.0.3:3000 --conversations 300 --turns 5`,
		Flags: []cli.Flag{
			urlFlag(),
			&cli.BoolFlag{Name: "spawn", Usage: "start a node and a simulator in this process and test them"},
			&cli.StringFlag{Name: "mode", Value: "closed", Usage: "closed (fixed concurrency) or open (fixed arrival rate)"},
			&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: 16, Usage: "requests in flight (closed loop)"},
			&cli.StringFlag{Name: "rate", Value: "200/s", Usage: "arrival rate (open loop): 200/s, 12000/m"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: 30 * time.Second, Usage: "how long to run"},
			&cli.IntFlag{Name: "requests", Aliases: []string{"n"}, Usage: "how many requests (instead of --duration)"},
			&cli.IntFlag{Name: "conversations", Usage: "stateful scenario: this many conversations..."},
			&cli.IntFlag{Name: "turns", Value: 1, Usage: "...of this many turns each"},
			&cli.BoolFlag{Name: "stream", Usage: "stream replies (SSE): measures TTFT, ITL, TPOT"},
			&cli.IntFlag{Name: "prompt-tokens", Value: 64, Usage: "approximate prompt size"},
			&cli.IntFlag{Name: "max-tokens", Usage: "max_tokens per reply (0: not sent)"},
			&cli.StringFlag{Name: "model", Usage: `model to ask for (default: the node's chain, "moltbot")`},
			&cli.StringSliceFlag{Name: "header", Aliases: []string{"H"}, Usage: "extra request header K:V (repeatable)"},
			apiKeyFlag(),
			caFileFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "per-request timeout"},
			&cli.StringFlag{Name: "baseline", Usage: `model server URL to compare with (its OpenAI API base), or "spawn"`},
			&cli.StringFlag{Name: "baseline-model", Value: "sim", Usage: "model name sent to the baseline server"},
			&cli.IntFlag{Name: "baseline-rounds", Value: 10, Usage: "interleaved rounds for --baseline"},
			&cli.IntFlag{Name: "baseline-requests", Value: 200, Usage: "requests per side per round for --baseline"},
			&cli.StringFlag{Name: "json", Usage: "write the full report as JSON to this file"},
			&cli.StringFlag{Name: "html", Usage: "write a self-contained HTML report to this file"},
			&cli.DurationFlag{Name: "slo-ttft", Usage: "goodput: TTFT at most this (streams)"},
			&cli.DurationFlag{Name: "slo-e2e", Usage: "goodput: end-to-end latency at most this"},
			&cli.DurationFlag{Name: "sim-ttft", Usage: "with --spawn: the simulator's time to first token"},
			&cli.DurationFlag{Name: "sim-itl", Usage: "with --spawn: the simulator's time between tokens"},
			&cli.IntFlag{Name: "sim-tokens", Value: 16, Usage: "with --spawn: tokens per simulated reply"},
		},
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	base := c.String("url")
	if base != "" {
		var err error
		if base, err = baseURL(base); err != nil {
			return err
		}
	}
	cfg := bench.Config{URL: base, Mode: bench.Mode(c.String("mode")), Concurrency: c.Int("concurrency"),
		Duration: c.Duration("duration"), Requests: c.Int("requests"), Conversations: c.Int("conversations"), Turns: c.Int("turns"),
		Stream: c.Bool("stream"), PromptTokens: c.Int("prompt-tokens"), MaxTokens: c.Int("max-tokens"), Model: c.String("model"),
		Timeout: c.Duration("timeout"), SLOTTFT: c.Duration("slo-ttft"), SLOE2E: c.Duration("slo-e2e"),
		Progress: c.App.ErrWriter, Headers: http.Header{}}
	var err error
	if cfg.TLS, err = clientTLS(c); err != nil {
		return err
	}
	if cfg.Mode != bench.Closed && cfg.Mode != bench.Open {
		return fail(2, "--mode: must be closed or open, got %q", cfg.Mode)
	}
	rate, err := parseRate(c.String("rate"))
	if err != nil {
		return fail(2, "--rate: %v", err)
	}
	cfg.Rate = rate
	for name, v := range map[string]int{"concurrency": cfg.Concurrency, "turns": cfg.Turns, "prompt-tokens": cfg.PromptTokens} {
		if v < 1 {
			return fail(2, "--%s: must be at least 1, got %d", name, v)
		}
	}
	for name, v := range map[string]int{"requests": cfg.Requests, "conversations": cfg.Conversations, "max-tokens": cfg.MaxTokens} {
		if v < 0 {
			return fail(2, "--%s: must not be negative, got %d", name, v)
		}
	}
	if cfg.Duration <= 0 && cfg.Requests == 0 && cfg.Conversations == 0 {
		return fail(2, "--duration: must be more than 0")
	}
	for _, h := range c.StringSlice("header") {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return fail(2, "--header: want K:V, got %q", h)
		}
		cfg.Headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if k := c.String("api-key"); k != "" {
		cfg.Headers.Set("Authorization", "Bearer "+k)
	}
	if f, ok := c.App.ErrWriter.(*os.File); ok {
		cfg.Terminal = bench.IsTerminal(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, sigterm)
	defer stop()

	baseline := c.String("baseline")
	if c.Bool("spawn") {
		s, err := spawn(c)
		if err != nil {
			return fail(1, "--spawn: %v", err)
		}
		defer s.stop()
		cfg.URL = s.node.URL()
		if baseline == "spawn" {
			baseline = s.simURL + "/v1"
		}
		fmt.Fprintf(c.App.ErrWriter, "spawned moltbot at %s in front of moltbot sim at %s\n", cfg.URL, s.simURL)
	} else if baseline == "spawn" {
		return fail(2, "--baseline spawn needs --spawn")
	} else if strings.Contains(cfg.URL, ",") && baseline != "" {
		return fail(2, "--baseline measures one node: give one --url")
	}

	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	if baseline != "" {
		res, err := measureBaseline(ctx, c, cfg, baseline)
		if err != nil {
			return fail(1, "--baseline: %v", err)
		}
		rep.Baseline = res
	}
	rep.WriteTable(c.App.Writer)
	if path := c.String("json"); path != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return fail(1, "--json: %v", err)
		}
	}
	if path := c.String("html"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fail(1, "--html: %v", err)
		}
		if err := rep.WriteHTML(f); err != nil {
			f.Close()
			return fail(1, "--html: %v", err)
		}
		if err := f.Close(); err != nil {
			return fail(1, "--html: %v", err)
		}
	}
	return nil
}

func measureBaseline(ctx context.Context, c *cli.Context, cfg bench.Config, base string) (*bench.OverheadResult, error) {
	prompt := bench.Prompt(cfg.PromptTokens)
	body := func(model string) []byte {
		req := map[string]any{"stream": cfg.Stream, "messages": []map[string]string{{"role": "user", "content": prompt}}}
		if model != "" {
			req["model"] = model
		}
		if cfg.MaxTokens > 0 {
			req["max_tokens"] = cfg.MaxTokens
		}
		b, _ := json.Marshal(req)
		return b
	}
	fmt.Fprintf(c.App.ErrWriter, "measuring added latency against %s...\n", base)
	return bench.Overhead(ctx, bench.OverheadConfig{
		Direct:   bench.Target{URL: strings.TrimRight(base, "/") + "/chat/completions", Body: body(c.String("baseline-model")), Stream: cfg.Stream},
		Via:      bench.Target{URL: cfg.URL + "/v1/chat/completions", Body: body(cfg.Model), Stream: cfg.Stream},
		Rounds:   c.Int("baseline-rounds"),
		PerRound: c.Int("baseline-requests"),
	})
}

type spawned struct {
	node   *Node
	simSrv *http.Server
	simURL string
	dir    string
}

func (s *spawned) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.node.Shutdown(ctx)
	s.simSrv.Shutdown(ctx)
	os.RemoveAll(s.dir)
}

// spawn starts a simulator and a node in front of it, both in-process on
// loopback ports, with data in a temporary directory.
func spawn(c *cli.Context) (*spawned, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	simSrv := &http.Server{Handler: sim.NewServer(sim.Options{TTFT: c.Duration("sim-ttft"), ITL: c.Duration("sim-itl"),
		Tokens: c.Int("sim-tokens"), Seed: 1, Models: []string{"sim"}}), ReadHeaderTimeout: 10 * time.Second}
	go simSrv.Serve(ln)
	simURL := "http://" + ln.Addr().String()
	dir, err := os.MkdirTemp("", "moltbot-bench-")
	if err != nil {
		simSrv.Close()
		return nil, err
	}
	yaml := fmt.Sprintf(`server: {port: 0}
log: {level: warn, format: text}
providers:
  - {name: sim, type: openai, url: "%s/v1", max_in_flight: 4096, max_queue: 4096}
models: {primary: sim/sim}
conversations: {max_queued_turns: 64}
`, simURL)
	cfg, err := configs.Parse("spawn.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		simSrv.Close()
		return nil, err
	}
	log, _ := newLogger(c.App.ErrWriter, cfg)
	n := &Node{Config: cfg, Workspace: dir, Log: log}
	if err := n.Start(); err != nil {
		simSrv.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	// Wait until ready: the health check has seen the simulator.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(n.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			s := &spawned{node: n, simSrv: simSrv, dir: dir}
			s.stop()
			return nil, fmt.Errorf("the spawned node did not become ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &spawned{node: n, simSrv: simSrv, simURL: simURL, dir: dir}, nil
}
