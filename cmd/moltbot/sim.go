//go:build !edge

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/moltbot/moltbot/inference/sim"
	"github.com/urfave/cli/v2"
)

// The simulator's HTTP servers (its Ollama, OpenAI and Anthropic wires)
// are linked by this command only: the edge build leaves it out (edge.go).
// The in-process sim provider (type sim, the demo preset's fallback) is in
// every build.

func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "run a simulated model server (Ollama, OpenAI and Anthropic APIs)",
		Description: `Serves a simulated model that speaks the Ollama API (/api/chat NDJSON, /api/tags,
/api/show, /api/ps, /api/embed, /api/embeddings, /api/version), the OpenAI API
(/v1/chat/completions SSE and JSON, /v1/embeddings, /v1/models) and Anthropic's
Messages API (/v1/messages JSON and SSE). It answers for any model name; its
text is deterministic for a seed and the prompt, and starts with "[simulated]".
For demos, tests and load tests.

It does what a capable model does, deterministically:
  tools        offered tools (not tool_choice none) are called: the one tool_choice
               names, else one picked by the prompt; two when the prompt says "both"
               or "all" and parallel calls are allowed. Arguments are made from the
               tool's JSON Schema. After a tool result the reply quotes it.
  JSON         response_format json_object / json_schema (Ollama: format "json" or a
               schema) gets a JSON value that holds to the schema.
  images       are counted (85 prompt tokens each) and mentioned: "I see 1 image(s)".
  embeddings   seeded unit vectors, by model and words; the length is the number the
               model name ends in ("embed-768"), else 384.
  capabilities /api/show reports completion, tools and vision for a chat model, and
               embedding for a model whose name contains "embed" (which refuses chat);
               --capabilities replaces a model's, and the sim holds requests to them.

Faults (flags, or while it runs: POST /sim/faults with JSON such as
{"error_rate":0.1,"status":429,"retry_after":"5s","latency":"2s",
"stall_after":3,"drop_after":5}; GET shows them, DELETE clears them), on every
endpoint that calls the model:
--error-rate answers that share with --status (500 by default); --status alone
fails every request; --latency delays the first token; --stall-after N holds
the connection after N tokens; --drop-after N closes it after N tokens.

Examples:
   moltbot sim --addr 127.0.0.1:11434                 # stand in for Ollama
   moltbot sim --addr 127.0.0.1:8000 --ttft 0 --itl 0  # as fast as possible
   moltbot sim --error-rate 0.05 --latency 2s         # a flaky, slow model
   moltbot sim --status 429 --retry-after 5s          # rate limited
   moltbot sim --models llama3.2,llava --embed-models nomic-embed-768 \
               --capabilities llama3.2=completion+tools   # llama3.2 without vision
   curl -X POST localhost:11434/sim/faults -H 'Content-Type: application/json' -d '{"drop_after":4}'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:11434", Usage: "listen address"},
			&cli.DurationFlag{Name: "ttft", Value: 50 * time.Millisecond, Usage: "time to first token"},
			&cli.DurationFlag{Name: "itl", Value: 10 * time.Millisecond, Usage: "time between tokens"},
			&cli.IntFlag{Name: "tokens", Value: 32, Usage: "tokens per reply"},
			&cli.DurationFlag{Name: "latency", Usage: "extra delay before the first token"},
			&cli.Float64Flag{Name: "error-rate", Usage: "share of requests answered with HTTP 500, 0 to 1"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of the generated text"},
			&cli.StringSliceFlag{Name: "models", Value: cli.NewStringSlice("sim"), Usage: "model names to list"},
			&cli.IntFlag{Name: "status", Usage: "HTTP status of injected failures (default 500); alone, every request fails with it"},
			&cli.DurationFlag{Name: "retry-after", Usage: "Retry-After sent with injected failures"},
			&cli.IntFlag{Name: "stall-after", Usage: "after N tokens stop sending and hold the connection"},
			&cli.IntFlag{Name: "drop-after", Usage: "after N tokens close the connection"},
			&cli.StringSliceFlag{Name: "embed-models", Value: cli.NewStringSlice("sim-embed"), Usage: "embedding model names to list"},
			&cli.IntFlag{Name: "context-length", Value: sim.DefaultContextLength, Usage: "context window /api/show reports for a chat model"},
			&cli.StringSliceFlag{Name: "capabilities", Usage: "a model's capabilities, MODEL=CAP+CAP (completion, tools, vision, embedding)"},
		},
		Action: func(c *cli.Context) error {
			if r := c.Float64("error-rate"); r < 0 || r > 1 {
				return fail(2, "--error-rate: must be between 0 and 1, got %g", r)
			}
			if c.Int("tokens") < 1 {
				return fail(2, "--tokens: must be at least 1")
			}
			for _, f := range []string{"ttft", "itl", "latency"} {
				if c.Duration(f) < 0 {
					return fail(2, "--%s: must not be negative", f)
				}
			}
			if st := c.Int("status"); st != 0 && (st < 400 || st > 599) {
				return fail(2, "--status: must be an error status, 400 to 599, got %d", st)
			}
			for _, f := range []string{"stall-after", "drop-after"} {
				if c.Int(f) < 0 {
					return fail(2, "--%s: must not be negative", f)
				}
			}
			if c.Duration("retry-after") < 0 {
				return fail(2, "--retry-after: must not be negative")
			}
			if c.Int("context-length") < 1 {
				return fail(2, "--context-length: must be at least 1")
			}
			caps, err := simCapabilities(c.StringSlice("capabilities"))
			if err != nil {
				return fail(2, "--capabilities: %v", err)
			}
			s := sim.NewServer(sim.Options{TTFT: c.Duration("ttft"), ITL: c.Duration("itl"), Tokens: c.Int("tokens"),
				Latency: c.Duration("latency"), ErrorRate: c.Float64("error-rate"), Seed: c.Int64("seed"), Models: c.StringSlice("models"),
				Status: c.Int("status"), RetryAfter: c.Duration("retry-after"), StallAfter: c.Int("stall-after"), DropAfter: c.Int("drop-after"),
				EmbedModels: c.StringSlice("embed-models"), ContextLength: c.Int("context-length"), Capabilities: caps})
			ln, err := net.Listen("tcp", c.String("addr"))
			if err != nil {
				return fail(1, "--addr %s: %v", c.String("addr"), err)
			}
			srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(c.App.Writer, "moltbot sim listening on http://%s (Ollama: /api/chat, OpenAI: /v1/chat/completions, Anthropic: /v1/messages)\n", ln.Addr())
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, sigterm)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fail(1, "%v", err)
			}
			return nil
		},
	}
}

// simCapabilities reads --capabilities: MODEL=CAP+CAP, each capability
// one the simulator knows.
func simCapabilities(in []string) (map[string][]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	known := []string{sim.CapCompletion, sim.CapTools, sim.CapVision, sim.CapEmbedding}
	out := map[string][]string{}
	for _, v := range in {
		model, list, ok := strings.Cut(v, "=")
		if !ok || model == "" {
			return nil, fmt.Errorf("%q: want MODEL=CAP+CAP, such as llama3.2=completion+tools", v)
		}
		caps := []string{}
		for _, c := range strings.Split(list, "+") {
			if !slices.Contains(known, c) {
				return nil, fmt.Errorf("%q: unknown capability %q (want %s)", v, c, strings.Join(known, ", "))
			}
			caps = append(caps, c)
		}
		out[model] = caps
	}
	return out, nil
}
