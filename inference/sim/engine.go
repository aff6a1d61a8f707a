// Package sim is moltbot's simulated model: deterministic text for a seed and
// a prompt, with configurable time to first token, inter-token latency, extra
// latency and error rate. It runs in-process (Provider, provider type "sim")
// or as an HTTP server that speaks the Ollama API, the OpenAI API and
// Anthropic's Messages API (Server, `moltbot sim`). Every text reply starts
// with "[simulated]" and every HTTP answer carries the header
// X-Moltbot-Simulated, so it is never mistaken for a real model.
//
// Beyond text it does what a capable model does, deterministically, so
// that every provider type runs end to end in tests with no model: it calls
// tools when a request offers them (arguments made from their JSON
// Schemas), answers a tool's result by quoting it, writes JSON that holds
// to a requested schema, counts and mentions the images it was shown, and
// embeds text (seeded unit vectors). reply.go decides what a reply is,
// schema.go makes values for a JSON Schema, embed.go makes vectors; each
// wire has its file (ollama.go, openai.go, anthropic.go).
package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

	// EmbedModels are embedding models listed beside Models (/api/tags,
	// /v1/models). Any name embeds; a name that contains "embed" is an
	// embedding model (it has the capability "embedding" and no other, and
	// refuses chat).
	EmbedModels []string
	// ContextLength is the context window /api/show and /api/ps report for
	// a chat model (0: DefaultContextLength).
	ContextLength int
	// Capabilities, when it names a model, replaces that model's default
	// capabilities (see Capabilities), and the simulator holds requests to
	// them as Ollama does: tools offered to a model without "tools", or
	// images shown to one without "vision", are refused with a 400.
	Capabilities map[string][]string
}

// DefaultContextLength is a chat model's context window unless
// Options.ContextLength says otherwise.
const DefaultContextLength = 8192

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

// Tokens with their leading space, and with a final period, made once, at
// the first reply (not at start: a node links the simulator whether or not
// its config names one; docs/DESIGN.md, "What a linked package may do at
// start").
var tokens = sync.OnceValue(func() (t *[2][len(vocab)]string) {
	t = new([2][len(vocab)]string)
	for i, w := range vocab {
		t[0][i] = " " + w
		t[1][i] = " " + w + "."
	}
	return t
})

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
	h := promptHash(o.Seed, msgs)
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
	p := pacer{ctx: ctx, o: o}
	defer p.stop()
	if err := p.start(); err != nil {
		return Reply{}, err
	}
	for i := skip; i < n; i++ {
		if err := p.next(); err != nil {
			return Reply{}, err
		}
		if err := fn(token(h, i, n)); err != nil {
			return Reply{}, err
		}
		p.sent++
	}
	return Reply{Usage: moltbot.Usage{PromptTokens: inference.EstimateTokens(msgs), CompletionTokens: p.sent}, FinishReason: finish}, nil
}

// promptHash seeds a reply: the seed and the last user message's text.
func promptHash(seed int64, msgs []moltbot.Message) uint64 {
	h := uint64(14695981039346656037) ^ uint64(seed)
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == moltbot.RoleUser {
			return hashString(h, msgs[i].Content)
		}
	}
	return h
}

// pacer spaces out the pieces of a reply as the options say (the first
// after Latency+TTFT, the next ones ITL apart) and injects the stall and
// drop faults, which count the pieces sent. It lives on its caller's stack:
// the plain path allocates nothing unless it has to wait.
type pacer struct {
	ctx  context.Context
	o    *Options
	t    *time.Timer
	sent int
}

func (p *pacer) wait(d time.Duration) error {
	if d <= 0 {
		return p.ctx.Err()
	}
	if p.t == nil {
		p.t = time.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	select {
	case <-p.ctx.Done():
		p.t.Stop()
		return p.ctx.Err()
	case <-p.t.C:
		return nil
	}
}

// start waits for the first piece (Latency + TTFT).
func (p *pacer) start() error { return p.wait(p.o.Latency + p.o.TTFT) }

// next waits until the next piece may go out (ITL after the first), or
// fails as a fault says: a stall holds until ctx ends, a drop is ErrDropped.
func (p *pacer) next() error {
	if p.sent > 0 {
		if err := p.wait(p.o.ITL); err != nil {
			return err
		}
	}
	if p.o.StallAfter > 0 && p.sent == p.o.StallAfter {
		<-p.ctx.Done()
		return p.ctx.Err()
	}
	if p.o.DropAfter > 0 && p.sent == p.o.DropAfter {
		return ErrDropped
	}
	return nil
}

func (p *pacer) stop() {
	if p.t != nil {
		p.t.Stop()
	}
}

// token is the i-th of n tokens of the reply seeded by h.
func token(h uint64, i, n int) string {
	switch {
	case i == 0:
		return Label
	case i == n-1:
		return tokens()[1][splitmix(h+uint64(i))%uint64(len(vocab))]
	}
	return tokens()[0][splitmix(h+uint64(i))%uint64(len(vocab))]
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

// Chat implements inference.Provider: Respond's reply (text, tool calls or
// JSON, as the request asks), after the injected failures. A request the
// simulator refuses is an error of kind bad_request, status 400.
func (p *Provider) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	if err := p.fail(); err != nil {
		return inference.Result{}, err
	}
	var fnErr error
	rep, err := p.Engine.Respond(ctx, req, func(d inference.Delta) error {
		fnErr = fn(d)
		return fnErr
	})
	if fnErr != nil {
		return inference.Result{}, fnErr
	}
	if errors.Is(err, ErrDropped) {
		return inference.Result{}, &inference.Error{Kind: inference.KindStream, Provider: p.Name, Message: "connection closed mid-reply", Err: err}
	}
	if err != nil {
		return inference.Result{}, p.badRequest(ctx, err)
	}
	return inference.Result{Usage: rep.Usage, FinishReason: rep.FinishReason, Model: req.Model}, nil
}

// fail is the injected failure of the next call, or nil.
func (p *Provider) fail() error {
	if fail, status, retry := p.Engine.Fail(); fail {
		h := http.Header{}
		if retry > 0 {
			h.Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		}
		return inference.FromStatus(p.Name, status, "simulated failure", h)
	}
	return nil
}

// badRequest is err as the provider reports it: a refused request is
// bad_request (400); anything else is classified.
func (p *Provider) badRequest(ctx context.Context, err error) error {
	var re *RequestError
	if errors.As(err, &re) {
		return &inference.Error{Kind: inference.KindBadRequest, Provider: p.Name, Status: http.StatusBadRequest, Message: re.Msg}
	}
	return inference.Classify(ctx, p.Name, err)
}

// Models implements inference.Provider: the chat models, then the
// embedding models.
func (p *Provider) Models(context.Context) ([]string, error) {
	o := p.Engine.Options()
	return append(append([]string(nil), o.Models...), o.EmbedModels...), nil
}
