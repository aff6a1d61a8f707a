package skills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// The server-side tool loop: a turn-pipeline stage around the model
// (actors.AroundModel) that offers the server-side tools (JavaScript
// skills that say tool:, MCP servers' tools) to the model beside the
// client's own, runs the calls the model makes of them, gives it their
// results and asks again, until it answers without calling one, calls a
// client's tool (that reply goes to the client, as without the loop), or
// a limit is reached (steps, tokens, time): then it asks the model once
// more without the server-side tools, for a final answer from what it
// has. The intermediate messages live in the turn only; the conversation
// stores the user's message and the final reply (docs/DESIGN.md).

// ToolConfig bounds the tool loop of a turn.
type ToolConfig struct {
	// MaxSteps is the most rounds of server-side tool calls in a turn
	// (default 4).
	MaxSteps int
	// MaxTokens bounds the tokens (prompt and completion, summed over the
	// turn's model calls) after which no more tools run (0: no bound).
	MaxTokens int
	// Timeout bounds the wall time of the tool rounds (default 60s).
	Timeout time.Duration
	// CallTimeout bounds one tool call (default 10s).
	CallTimeout time.Duration
	// MaxResult bounds a tool's result given to the model, in bytes
	// (default 64 KiB): a longer one is cut and says so.
	MaxResult int
}

func (c *ToolConfig) ensureDefaults() {
	if c.MaxSteps <= 0 {
		c.MaxSteps = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.MaxResult <= 0 {
		c.MaxResult = 64 << 10
	}
}

// Toolbox is what the loop offers and calls.
type Toolbox interface {
	// ServerTools are the tools offered (nil: none; the loop passes the
	// turn to the model untouched).
	ServerTools(bot *moltbot.Bot) []moltbot.Tool
	// CallTool runs a tool with args (a JSON object) within ctx: its
	// result, and the tokens of the model calls it made (a JavaScript
	// tool's callModel).
	CallTool(ctx context.Context, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error)
}

// ParseArgs checks a tool call's arguments as a model wrote them: a JSON
// object (empty or blank: {}), at most max bytes. It returns them
// compacted.
func ParseArgs(args string, max int) (string, error) {
	if strings.TrimSpace(args) == "" {
		return "{}", nil
	}
	if len(args) > max {
		return "", fmt.Errorf("arguments are longer than %d bytes", max)
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal([]byte(args), &o); err != nil || o == nil {
		return "", errors.New("arguments are not a JSON object")
	}
	var b strings.Builder
	b.Grow(len(args))
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return "", errors.New("arguments are not a JSON object")
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// maxCallsPerStep bounds the server-side calls run for one reply: the
// rest get an error result ("not run").
const maxCallsPerStep = 16

// callGrace is the time a tool's runner gets past the tool's deadline to
// say it stopped it.
const callGrace = time.Second

// maxArgs bounds a tool call's arguments.
const maxArgs = 64 << 10

// RunTools runs the turn through the tool loop: next asks the model (the
// stages after this one, then the router) for t's messages and options,
// which RunTools sets for each step and puts back before it returns.
func RunTools(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc, box Toolbox, cfg ToolConfig,
	next func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	cfg.ensureDefaults()
	orig := t.Options
	if orig.ToolChoice != nil && orig.ToolChoice.Mode == moltbot.ToolChoiceNone {
		return next(ctx, fn) // the client asked for no tool call
	}
	server := map[string]bool{}
	offered := slices.Clip(orig.Tools)
	for _, st := range box.ServerTools(t.Bot) { // a bot's turn: its skills' and servers' tools

		if slices.ContainsFunc(orig.Tools, func(c moltbot.Tool) bool { return c.Name == st.Name }) {
			continue // the client's tool of that name is the one offered
		}
		server[st.Name] = true
		offered = append(offered, st)
	}
	if len(server) == 0 {
		return next(ctx, fn)
	}
	origMsgs := t.Messages
	defer func() { t.Messages, t.Options = origMsgs, orig }()
	msgs := slices.Clip(origMsgs)

	opts := orig
	opts.Tools = offered
	deadline := time.Now().Add(cfg.Timeout)
	var usage moltbot.Usage
	var text strings.Builder // what the client saw of every step
	var ttft time.Duration
	for step := 0; ; step++ {
		final := step >= cfg.MaxSteps || (cfg.MaxTokens > 0 && usage.Total() >= cfg.MaxTokens) || !time.Now().Before(deadline)
		if final {
			opts.Tools = orig.Tools
			opts.ToolChoice = orig.ToolChoice
			if c := opts.ToolChoice; len(opts.Tools) == 0 || (c != nil && c.Mode == moltbot.ToolChoiceFunction && server[c.Name]) {
				opts.ToolChoice = nil
			}
		}
		t.Messages, t.Options = msgs, opts
		f := &stepFilter{fn: fn, server: server}
		c, err := next(ctx, f.chunk)
		var me *moltbot.Error
		if step == 0 && len(orig.Tools) == 0 && errors.As(err, &me) && me.Code == moltbot.EInvalid && me.Param == "tools" {
			// No model of the chain calls tools: the turn as if there
			// were none (it was refused before any token was streamed).
			t.Messages, t.Options = origMsgs, orig
			return next(ctx, fn)
		}
		if c != nil {
			usage.PromptTokens += c.Usage.PromptTokens
			usage.CompletionTokens += c.Usage.CompletionTokens
			if step == 0 {
				ttft = c.TTFT
			}
		}
		if err != nil || c == nil {
			if c != nil {
				c.Usage, c.TTFT = usage, ttft
				c.Content = text.String() + c.Content
			}
			return c, err
		}
		var own, theirs []moltbot.ToolCall
		for _, call := range c.ToolCalls {
			switch {
			case !server[call.Name]:
				theirs = append(theirs, call)
			case !final:
				own = append(own, call)
			} // a server tool called though not offered (the final step): dropped
		}
		if len(own) == 0 || len(theirs) > 0 {
			// The answer, or a call of the client's tools (the server's
			// calls of a mixed reply are dropped: the client cannot answer
			// them, and the model asks again after the client's results).
			c.ToolCalls = theirs
			if len(theirs) == 0 && c.FinishReason == "tool_calls" {
				c.FinishReason = "stop"
			}
			c.Usage, c.TTFT = usage, ttft
			c.Content = text.String() + c.Content
			return c, nil
		}
		text.WriteString(c.Content)
		// The assistant's calls, then each result, in order.
		asst := moltbot.Message{Role: moltbot.RoleAssistant, Content: c.Content}
		if c.Content != "" {
			asst.Parts = append(asst.Parts, moltbot.Part{Type: moltbot.PartText, Text: c.Content})
		}
		for _, call := range own {
			asst.Parts = append(asst.Parts, moltbot.Part{Type: moltbot.PartToolCall, CallID: call.ID, Name: call.Name, Arguments: call.Arguments})
		}
		msgs = append(msgs, asst)
		for i, call := range own {
			if i >= maxCallsPerStep {
				// One reply cannot hold a worker for a hundred calls.
				msgs = append(msgs, moltbot.Message{Role: moltbot.RoleTool,
					Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: call.ID, Name: call.Name,
						Content: fmt.Sprintf("error: not run: at most %d tool calls a step", maxCallsPerStep)}}})
				continue
			}
			res, u := runCall(ctx, t, box, cfg, deadline, call)
			usage.PromptTokens += u.PromptTokens
			usage.CompletionTokens += u.CompletionTokens
			msgs = append(msgs, moltbot.Message{Role: moltbot.RoleTool,
				Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: call.ID, Name: call.Name, Content: res}}})
		}
		if opts.ToolChoice != nil && opts.ToolChoice.Mode != moltbot.ToolChoiceAuto {
			opts.ToolChoice = nil // required, or a function: done once
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// runCall runs one server-side call: its result, or the error the model
// reads instead ("error: ..."), bounded by the call's and the loop's time.
func runCall(ctx context.Context, t *moltbot.Turn, box Toolbox, cfg ToolConfig, deadline time.Time, call moltbot.ToolCall) (string, moltbot.Usage) {
	args, err := ParseArgs(call.Arguments, maxArgs)
	if err != nil {
		return "error: " + err.Error(), moltbot.Usage{}
	}
	d := min(cfg.CallTimeout, time.Until(deadline))
	if d <= 0 {
		return fmt.Sprintf("error: not run: the turn's time for tools (%s) is spent", cfg.Timeout), moltbot.Usage{}
	}
	// A second more for the worker's answer: the tool itself is stopped
	// at d (CallTool), the worker killed at d plus the second.
	cctx, cancel := context.WithTimeout(ctx, d+callGrace)
	defer cancel()
	res, u, err := box.CallTool(cctx, t, call.Name, args)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return fmt.Sprintf("error: tool %s did not answer within %s", call.Name, d.Round(time.Millisecond)), u
		}
		res = "error: " + err.Error()
	}
	return cutText(res, cfg.MaxResult), u
}

// cutText bounds s at n bytes, a note saying so included.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := max(n-64, 0) // room for the note: the whole is at most n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("\n[cut: %d of %d bytes shown]", i, len(s))
}

// stepFilter passes a step's stream on to the client: its text, and the
// pieces of calls of the client's tools (renumbered from 0, as the reply
// the client gets holds them alone); the server's calls stay here.
type stepFilter struct {
	fn     moltbot.StreamFunc
	server map[string]bool
	index  map[int]int // the model's call index -> the client's, or -1
}

func (f *stepFilter) chunk(c moltbot.Chunk) error {
	if c.ToolCall == nil {
		return f.fn(c)
	}
	if f.index == nil {
		f.index = map[int]int{}
	}
	i, ok := f.index[c.ToolCall.Index]
	if !ok {
		i = -1
		if !f.server[c.ToolCall.Name] {
			n := 0
			for _, v := range f.index {
				if v >= 0 {
					n++
				}
			}
			i = n
		}
		f.index[c.ToolCall.Index] = i
	}
	if i < 0 {
		return nil
	}
	d := *c.ToolCall
	d.Index = i
	c.ToolCall = &d
	return f.fn(c)
}
