package skills

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// box is a Toolbox of fakes: "weather" answers, "hang" waits for its
// deadline, "big" answers 100 KB.
type box struct {
	calls atomic.Int64
	args  []string
}

func (b *box) ServerTools(*moltbot.Bot) []moltbot.Tool {
	return []moltbot.Tool{{Name: "weather", Parameters: json.RawMessage(`{"type":"object"}`)}, {Name: "hang"}, {Name: "big"}}
}

func (b *box) CallTool(ctx context.Context, t *moltbot.Turn, name, args string) (string, moltbot.Usage, error) {
	b.calls.Add(1)
	b.args = append(b.args, args)
	switch name {
	case "hang":
		<-ctx.Done()
		return "", moltbot.Usage{}, ctx.Err()
	case "big":
		return strings.Repeat("é", 50<<10), moltbot.Usage{}, nil
	}
	return "sunny in " + args, moltbot.Usage{PromptTokens: 1, CompletionTokens: 1}, nil
}

// model is a fake next: reply(step, t) makes each step's completion, and
// it streams the completion's text and calls to fn.
type model struct {
	t     *moltbot.Turn
	steps []moltbot.Turn // what each step was asked (messages and options)
	reply func(step int, t *moltbot.Turn) *moltbot.Completion
}

func (m *model) next(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	m.steps = append(m.steps, moltbot.Turn{Messages: slices.Clone(m.t.Messages), Options: m.t.Options})
	c := m.reply(len(m.steps)-1, m.t)
	if c.Content != "" {
		if err := fn(moltbot.Chunk{Content: c.Content}); err != nil {
			return nil, err
		}
	}
	for i, call := range c.ToolCalls {
		if err := fn(moltbot.Chunk{ToolCall: &moltbot.ToolCallDelta{Index: i, ID: call.ID, Name: call.Name, Arguments: call.Arguments}}); err != nil {
			return nil, err
		}
	}
	c.Usage = moltbot.Usage{PromptTokens: 10, CompletionTokens: 5}
	return c, nil
}

func call(id, name, args string) *moltbot.Completion {
	return &moltbot.Completion{ToolCalls: []moltbot.ToolCall{{ID: id, Name: name, Arguments: args}}, FinishReason: "tool_calls"}
}

func newTurn(tools ...moltbot.Tool) *moltbot.Turn {
	return &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "weather in Paris?"}},
		Options: moltbot.ChatOptions{Tools: tools}, Visible: true}
}

type seen struct {
	text  strings.Builder
	calls []moltbot.ToolCallDelta
}

func (s *seen) fn(c moltbot.Chunk) error {
	s.text.WriteString(c.Content)
	if c.ToolCall != nil {
		s.calls = append(s.calls, *c.ToolCall)
	}
	return nil
}

// The model calls a server-side tool; the loop runs it, gives the model
// the call and its result, and the model's answer is the turn's, with the
// usage of both steps (and the tool's) summed; the client saw no call.
func TestLoopRunsServerTool(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if step == 0 {
			return call("c1", "weather", `{"city": "Paris"}`)
		}
		last := t.Messages[len(t.Messages)-1]
		return &moltbot.Completion{Content: "it is " + last.Parts[0].Content, FinishReason: "stop"}
	}}
	b := &box{}
	var s seen
	c, err := RunTools(context.Background(), tn, s.fn, b, ToolConfig{}, m.next)
	if err != nil {
		t.Fatal(err)
	}
	if c.Content != `it is sunny in {"city":"Paris"}` || len(c.ToolCalls) != 0 || c.FinishReason != "stop" {
		t.Errorf("completion %+v", c)
	}
	if c.Usage != (moltbot.Usage{PromptTokens: 21, CompletionTokens: 11}) {
		t.Errorf("usage %+v", c.Usage)
	}
	if s.text.String() != c.Content || len(s.calls) != 0 {
		t.Errorf("the client saw %q and %v", s.text.String(), s.calls)
	}
	if len(m.steps) != 2 || len(m.steps[0].Options.Tools) != 3 {
		t.Fatalf("steps %+v", m.steps)
	}
	got := m.steps[1].Messages
	if len(got) != 3 || got[1].Role != moltbot.RoleAssistant || got[1].Parts[0].Type != moltbot.PartToolCall || got[1].Parts[0].CallID != "c1" ||
		got[2].Role != moltbot.RoleTool || got[2].Parts[0].CallID != "c1" {
		t.Errorf("step 2's messages: %+v", got)
	}
	if len(tn.Messages) != 1 || tn.Options.Tools != nil {
		t.Errorf("the turn was not put back: %+v", tn)
	}
}

// A model that keeps calling tools is stopped after MaxSteps rounds: it is
// asked once more without the server's tools, and that is the answer.
func TestLoopStepLimit(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if len(t.Options.Tools) == 0 {
			return &moltbot.Completion{Content: "final", FinishReason: "stop"}
		}
		return call(fmt.Sprint("c", step), "weather", `{}`)
	}}
	b := &box{}
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{MaxSteps: 3}, m.next)
	if err != nil || c.Content != "final" {
		t.Fatalf("%+v %v", c, err)
	}
	if b.calls.Load() != 3 || len(m.steps) != 4 {
		t.Errorf("%d tool calls, %d steps", b.calls.Load(), len(m.steps))
	}
	if n := len(m.steps[3].Messages); n != 1+3*2 {
		t.Errorf("the final step had %d messages", n)
	}
}

// The token budget stops the rounds the same way.
func TestLoopTokenLimit(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if len(t.Options.Tools) == 0 {
			return &moltbot.Completion{Content: "final", FinishReason: "stop"}
		}
		return call(fmt.Sprint("c", step), "weather", `{}`)
	}}
	b := &box{}
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{MaxSteps: 10, MaxTokens: 30}, m.next)
	if err != nil || c.Content != "final" || b.calls.Load() != 2 {
		t.Fatalf("%+v %v, %d calls", c, err, b.calls.Load())
	}
}

// A reply that calls a client's tool goes to the client as it is, less
// the server's calls of a mixed reply, renumbered from 0; nothing runs.
func TestLoopClientToolEndsIt(t *testing.T) {
	tn := newTurn(moltbot.Tool{Name: "lookup"})
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		return &moltbot.Completion{ToolCalls: []moltbot.ToolCall{{ID: "a", Name: "weather", Arguments: "{}"}, {ID: "b", Name: "lookup", Arguments: "{}"}},
			FinishReason: "tool_calls"}
	}}
	b := &box{}
	var s seen
	c, err := RunTools(context.Background(), tn, s.fn, b, ToolConfig{}, m.next)
	if err != nil || len(c.ToolCalls) != 1 || c.ToolCalls[0].Name != "lookup" || c.FinishReason != "tool_calls" {
		t.Fatalf("%+v %v", c, err)
	}
	if b.calls.Load() != 0 || len(s.calls) != 1 || s.calls[0].Index != 0 || s.calls[0].Name != "lookup" {
		t.Errorf("%d calls run; the client saw %+v", b.calls.Load(), s.calls)
	}
	if len(m.steps[0].Options.Tools) != 4 || m.steps[0].Options.Tools[0].Name != "lookup" {
		t.Errorf("offered %+v", m.steps[0].Options.Tools)
	}
}

// A client's tool of a server tool's name shadows it; tool_choice none
// offers nothing more.
func TestLoopShadowAndNone(t *testing.T) {
	tn := newTurn(moltbot.Tool{Name: "weather"})
	m := &model{t: tn, reply: func(int, *moltbot.Turn) *moltbot.Completion { return call("a", "weather", "{}") }}
	b := &box{}
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{}, m.next)
	if err != nil || len(c.ToolCalls) != 1 || b.calls.Load() != 0 || len(m.steps[0].Options.Tools) != 3 {
		t.Fatalf("%+v %v %d %+v", c, err, b.calls.Load(), m.steps[0].Options.Tools)
	}
	tn = newTurn()
	tn.Options.ToolChoice = &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}
	m = &model{t: tn, reply: func(int, *moltbot.Turn) *moltbot.Completion { return &moltbot.Completion{Content: "x"} }}
	if _, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{}, m.next); err != nil || len(m.steps[0].Options.Tools) != 0 {
		t.Fatalf("%v %+v", err, m.steps[0].Options)
	}
}

// Arguments that are not a JSON object, a tool that hangs, a result too
// long: each is a result the model reads, and the turn goes on.
func TestLoopBadCalls(t *testing.T) {
	tn := newTurn()
	var results []string
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if step == 0 {
			return &moltbot.Completion{ToolCalls: []moltbot.ToolCall{{ID: "1", Name: "weather", Arguments: "[1,2]"},
				{ID: "2", Name: "hang", Arguments: ""}, {ID: "3", Name: "big", Arguments: "{}"}}, FinishReason: "tool_calls"}
		}
		for _, m := range t.Messages[2:] {
			results = append(results, m.Parts[0].Content)
		}
		return &moltbot.Completion{Content: "done"}
	}}
	b := &box{}
	start := time.Now()
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{CallTimeout: 50 * time.Millisecond, MaxResult: 1000}, m.next)
	if err != nil || c.Content != "done" || len(results) != 3 {
		t.Fatalf("%+v %v %q", c, err, results)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	if results[0] != "error: arguments are not a JSON object" || !strings.Contains(results[1], "hang did not answer within 50ms") ||
		len(results[2]) > 1000 || !strings.Contains(results[2], "[cut: 936 of 102400 bytes shown]") {
		t.Errorf("results %q", results)
	}
	if b.calls.Load() != 2 || b.args[0] != "{}" {
		t.Errorf("%d calls %q", b.calls.Load(), b.args)
	}
}

// A turn whose time for tools is spent runs no more of them.
func TestLoopTimeLimit(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if len(t.Options.Tools) == 0 {
			return &moltbot.Completion{Content: "final"}
		}
		return call("h", "hang", "{}")
	}}
	b := &box{}
	start := time.Now()
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b,
		ToolConfig{MaxSteps: 100, Timeout: 100 * time.Millisecond, CallTimeout: time.Minute}, m.next)
	if err != nil || c.Content != "final" || time.Since(start) > 3*time.Second {
		t.Fatalf("%+v %v after %s", c, err, time.Since(start))
	}
}

func TestParseArgs(t *testing.T) {
	for _, c := range []struct{ in, out, err string }{
		{"", "{}", ""}, {"  ", "{}", ""}, {`{"a": 1}`, `{"a":1}`, ""}, {`{"q":"<&>"}`, `{"q":"<&>"}`, ""},
		{"[]", "", "not a JSON object"}, {"null", "", "not a JSON object"}, {`"x"`, "", "not a JSON object"},
		{`{"a":`, "", "not a JSON object"}, {`{} {}`, "", "not a JSON object"}, {strings.Repeat(" ", 10) + "{}", "{}", ""},
	} {
		out, err := ParseArgs(c.in, 1000)
		if out != c.out || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseArgs(%q) = %q, %v", c.in, out, err)
		}
	}
	if _, err := ParseArgs(`{"a":"`+strings.Repeat("x", 2000)+`"}`, 1000); err == nil {
		t.Error("no error for long arguments")
	}
}

// FuzzParseArgs: whatever a model writes as arguments, ParseArgs gives a
// JSON object or an error, never a panic.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":[1,{"b":null}]}`, "[1]", `{"a":"\u00e9"}`, "\xff", `{"a":1}x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseArgs(s, 4096)
		if err != nil {
			return
		}
		var o map[string]any
		if json.Unmarshal([]byte(out), &o) != nil || o == nil {
			t.Fatalf("ParseArgs(%q) = %q, not an object", s, out)
		}
	})
}

// A chain whose models call no tools is asked without the server's
// tools: the turn is answered as if there were none.
func TestLoopModelWithoutTools(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(int, *moltbot.Turn) *moltbot.Completion { return &moltbot.Completion{Content: "plain"} }}
	next := func(ctx context.Context, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		if len(tn.Options.Tools) > 0 {
			return nil, &moltbot.Error{Code: moltbot.EInvalid, Param: "tools", Message: "no model can serve this request"}
		}
		return m.next(ctx, fn)
	}
	b := &box{}
	c, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{}, next)
	if err != nil || c.Content != "plain" || b.calls.Load() != 0 {
		t.Fatalf("%+v %v", c, err)
	}
	// The client's own tools: its error stands.
	tn = newTurn(moltbot.Tool{Name: "lookup"})
	if _, err := RunTools(context.Background(), tn, func(moltbot.Chunk) error { return nil }, b, ToolConfig{}, next); err == nil {
		t.Fatal("no error")
	}
}

// One reply with a hundred calls runs maxCallsPerStep of them; the rest
// get an error result the model reads, and the turn goes on.
func TestLoopCallsPerStep(t *testing.T) {
	tn := newTurn()
	m := &model{t: tn, reply: func(step int, t *moltbot.Turn) *moltbot.Completion {
		if step == 0 {
			c := &moltbot.Completion{FinishReason: "tool_calls"}
			for i := range 100 {
				c.ToolCalls = append(c.ToolCalls, moltbot.ToolCall{ID: fmt.Sprint("c", i), Name: "weather", Arguments: "{}"})
			}
			return c
		}
		return &moltbot.Completion{Content: "done", FinishReason: "stop"}
	}}
	b := &box{}
	var s seen
	c, err := RunTools(context.Background(), tn, s.fn, b, ToolConfig{}, m.next)
	if err != nil || c.Content != "done" {
		t.Fatalf("%+v %v", c, err)
	}
	if n := b.calls.Load(); n != maxCallsPerStep {
		t.Errorf("%d calls run, want %d", n, maxCallsPerStep)
	}
	got := m.steps[1].Messages
	if last := got[len(got)-1]; !strings.Contains(last.Parts[0].Content, "not run") {
		t.Errorf("the last result: %+v", last)
	}
}
