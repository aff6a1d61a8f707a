// Package sim is moltbot's simulated model: deterministic text for a seed and
// a prompt, with configurable time to first token, inter-token latency, extra
// latency and error rate. It runs in-process (Provider, provider type "sim")
// or as an HTTP server that speaks both the Ollama API and the OpenAI API
// (Server, `moltbot sim`). Every reply starts with "[simulated]" and carries
// the header X-Moltbot-Simulated, so it is never mistaken for a real model.
package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
)

// Options shape the simulated model.
type Options struct {
	TTFT      time.Duration // time to first token
	ITL       time.Duration // time between tokens
	Tokens    int           // tokens per reply (capped by the request's max tokens)
	Latency   time.Duration // extra delay before the first token
	ErrorRate float64       // share of requests answered with a server error, 0..1
	Seed      int64
	Models    []string // names listed by /api/tags and /v1/models

	// Status is the HTTP status of injected failures (default 500). Set
	// without ErrorRate, every request fails with it.
	Status int
	// RetryAfter is sent with injected failures when set (e.g. with 429).
	RetryAfter time.Duration
	// StallAfter > 0: after that many tokens stop sending and hold the
	// connection until the client gives up.
	StallAfter int
	// DropAfter > 0: after that many tokens close the connection abruptly.
	DropAfter int
}

// ErrDropped is returned by Generate when DropAfter cut the reply.
var ErrDropped = errors.New("sim: connection dropped (fault injection)")

// DefaultOptions are those of `moltbot sim` without flags: a server slow
// enough to watch.
func DefaultOptions() Options {
	return Options{TTFT: 50 * time.Millisecond, ITL: 10 * time.Millisecond, Tokens: 32, Seed: 1, Models: []string{"sim"}}
}

// DefaultProviderOptions are those of a provider of type sim in a config
// (providers[].sim): quicker than the server's, for demos and tests.
func DefaultProviderOptions() Options {
	d := DefaultOptions()
	d.TTFT, d.ITL, d.Models = 20*time.Millisecond, 5*time.Millisecond, nil
	return d
}

// Label is the first token of every simulated reply.
const Label = "[simulated]"

// ErrSimulated is the failure injected by ErrorRate.
var ErrSimulated = &inference.Error{Kind: inference.KindUnavailable, Provider: "sim", Status: 500, Message: "simulated failure"}

// Engine generates simulated replies. It is safe for concurrent use;
// SetOptions changes the behaviour of calls that start afterwards.
type Engine struct {
	opts atomic.Pointer[Options]
	reqs atomic.Uint64
}

// NewEngine returns an engine with opts (zero Tokens: DefaultOptions').
func NewEngine(opts Options) *Engine {
	e := &Engine{}
	e.SetOptions(opts)
	return e
}

// SetOptions replaces the options.
func (e *Engine) SetOptions(o Options) {
	if o.Tokens <= 0 {
		o.Tokens = DefaultOptions().Tokens
	}
	if len(o.Models) == 0 {
		o.Models = DefaultOptions().Models
	}
	e.opts.Store(&o)
}

// Options returns the current options.
func (e *Engine) Options() Options { return *e.opts.Load() }

var vocab = [...]string{
	"the", "edge", "actor", "model", "stream", "token", "answer", "context",
	"gossip", "node", "cluster", "quick", "small", "device", "reply", "turn",
	"memory", "snapshot", "provider", "latency", "message", "request", "safe",
	"local", "fast", "steady", "simple", "clear", "honest", "useful", "bright",
	"calm", "river", "stone", "cloud", "light", "garden", "window", "path",
	"signal", "field", "paper", "story", "voice", "house", "tree", "bridge",
	"north", "south", "early", "late", "green", "blue", "warm", "cold", "open",
	"close", "near", "far", "kind", "bold", "quiet", "loud", "plain",
}

// Tokens with their leading space, and with a final period, made once.
var spaced, final [len(vocab)]string

func init() {
	for i, w := range vocab {
		spaced[i] = " " + w
		final[i] = " " + w + "."
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hashString(h uint64, s string) uint64 {
	const prime = 1099511628211
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// Reply describes a finished simulated reply.
type Reply struct {
	Usage        moltbot.Usage
	FinishReason string // "stop", or "length" when max tokens cut it
}

// Fail reports whether the next request should fail, per ErrorRate (or
// always, when only Status is set), with the status and Retry-After to send.
// The sequence of failures is deterministic for a seed.
func (e *Engine) Fail() (fail bool, status int, retryAfter time.Duration) {
	o := e.opts.Load()
	status = o.Status
	if status == 0 {
		status = 500
	}
	rate := o.ErrorRate
	if o.Status != 0 && rate == 0 {
		rate = 1
	}
	if rate <= 0 {
		return false, 0, 0
	}
	n := e.reqs.Add(1)
	r := splitmix(uint64(o.Seed)*0x100000001b3 ^ n)
	return float64(r>>11)/(1<<53) < rate, status, o.RetryAfter
}

// Generate streams a reply to fn token by token, honouring the timing options.
// The text depends only on the seed and the last user message. maxTokens <= 0
// means no cap.
func (e *Engine) Generate(ctx context.Context, msgs []moltbot.Message, maxTokens int, fn func(tok string) error) (Reply, error) {
	o := e.opts.Load()
	n := o.Tokens
	finish := "stop"
	if maxTokens > 0 && maxTokens < n {
		n, finish = maxTokens, "length"
	}
	h := uint64(14695981039346656037) ^ uint64(o.Seed)
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == moltbot.RoleUser {
			h = hashString(h, msgs[i].Content)
			break
		}
	}
	// A trailing assistant message is a prefix to continue: skip the tokens
	// of this reply that it already holds, so a continuation completes the
	// very text an uninterrupted reply would have had.
	skip := 0
	if len(msgs) > 0 && msgs[len(msgs)-1].Role == moltbot.RoleAssistant {
		prefix := msgs[len(msgs)-1].Content
		for skip < n {
			tok := token(h, skip, n)
			if len(prefix) < len(tok) || prefix[:len(tok)] != tok {
				break
			}
			prefix = prefix[len(tok):]
			skip++
		}
	}
	var t *time.Timer
	wait := func(d time.Duration) error {
		if d <= 0 {
			return ctx.Err()
		}
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := wait(o.Latency + o.TTFT); err != nil {
		return Reply{}, err
	}
	sent := 0
	for i := skip; i < n; i++ {
		if sent > 0 {
			if err := wait(o.ITL); err != nil {
				return Reply{}, err
			}
		}
		if o.StallAfter > 0 && sent == o.StallAfter {
			<-ctx.Done()
			return Reply{}, ctx.Err()
		}
		if o.DropAfter > 0 && sent == o.DropAfter {
			return Reply{}, ErrDropped
		}
		if err := fn(token(h, i, n)); err != nil {
			return Reply{}, err
		}
		sent++
	}
	if t != nil {
		t.Stop()
	}
	return Reply{Usage: moltbot.Usage{PromptTokens: inference.EstimateTokens(msgs), CompletionTokens: sent}, FinishReason: finish}, nil
}

// token is the i-th of n tokens of the reply seeded by h.
func token(h uint64, i, n int) string {
	switch {
	case i == 0:
		return Label
	case i == n-1:
		return final[splitmix(h+uint64(i))%uint64(len(vocab))]
	}
	return spaced[splitmix(h+uint64(i))%uint64(len(vocab))]
}

// Provider is the in-process simulator as an inference.Provider.
type Provider struct {
	Name   string
	Engine *Engine
}

// TypeName is the provider type of the in-process simulator in a config.
// Its Spec.Options are Options (nil: DefaultProviderOptions); the Spec's
// Models replace theirs.
const TypeName = "sim"

func init() {
	inference.Register(inference.Type{Name: TypeName, New: func(s inference.Spec) (inference.Provider, error) {
		o := DefaultProviderOptions()
		if s.Options != nil {
			var ok bool
			if o, ok = s.Options.(Options); !ok {
				return nil, fmt.Errorf("sim: options of type %T, want sim.Options", s.Options)
			}
		}
		o.Models = s.Models
		return NewProvider(s.Name, o), nil
	}})
}

// NewProvider returns a named in-process simulator.
func NewProvider(name string, opts Options) *Provider {
	return &Provider{Name: name, Engine: NewEngine(opts)}
}

// Chat implements inference.Provider.
func (p *Provider) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	if fail, status, retry := p.Engine.Fail(); fail {
		h := http.Header{}
		if retry > 0 {
			h.Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		}
		return inference.Result{}, inference.FromStatus(p.Name, status, "simulated failure", h)
	}
	var fnErr error
	rep, err := p.Engine.Generate(ctx, req.Messages, req.MaxTokens, func(tok string) error {
		fnErr = fn(inference.Delta{Text: tok})
		return fnErr
	})
	if fnErr != nil {
		return inference.Result{}, fnErr
	}
	if errors.Is(err, ErrDropped) {
		return inference.Result{}, &inference.Error{Kind: inference.KindStream, Provider: p.Name, Message: "connection closed mid-reply", Err: err}
	}
	if err != nil {
		return inference.Result{}, inference.Classify(ctx, p.Name, err)
	}
	return inference.Result{Usage: rep.Usage, FinishReason: rep.FinishReason, Model: req.Model}, nil
}

// Models implements inference.Provider.
func (p *Provider) Models(context.Context) ([]string, error) {
	return append([]string(nil), p.Engine.Options().Models...), nil
}
