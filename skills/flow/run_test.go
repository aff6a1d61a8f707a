package flow

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// fakeSkills answers order-status: orders ending in 1 have shipped.
type fakeSkills struct{ calls []string }

func (f *fakeSkills) Call(ctx context.Context, t *moltbot.Turn, skill, input string) (string, moltbot.Usage, error) {
	f.calls = append(f.calls, skill+"("+input+")")
	if input == "000000" {
		return "", moltbot.Usage{}, errors.New("the order service is down")
	}
	if strings.HasSuffix(input, "1") {
		return "shipped on Monday", moltbot.Usage{PromptTokens: 1}, nil
	}
	return "packing", moltbot.Usage{}, nil
}

// conversation carries the stage state from turn to turn, as the
// conversation actor does.
type conversation struct {
	state   moltbot.StageState
	prompts []string
}

func (c *conversation) say(t *testing.T, s *Stage, text string) (*moltbot.Completion, *Step) {
	t.Helper()
	turn := &moltbot.Turn{Space: "default", Conversation: "c", State: c.state,
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: text}},
		Model: func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
			c.prompts = append(c.prompts, msgs[len(msgs)-1].Content)
			return &moltbot.Completion{Content: "A refund is on its way.", Usage: moltbot.Usage{PromptTokens: 5, CompletionTokens: 6}}, nil
		}}
	comp, step, err := s.Run(context.Background(), turn)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	if turn.StateChanged() {
		c.state = turn.State
	}
	return comp, step
}

func refundStage(t *testing.T, sk Skills) *Stage {
	t.Helper()
	src, err := os.ReadFile("testdata/refund.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("skills/flows/refund.yaml", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStage(sk, nil)
	s.Swap(&Set{Flows: []*Flow{f}})
	return s
}

func TestRunRefund(t *testing.T) {
	sk := &fakeSkills{}
	s := refundStage(t, sk)
	var c conversation
	if comp, _ := c.say(t, s, "hello"); comp != nil || c.state != nil {
		t.Fatalf("no trigger: %+v", comp)
	}
	comp, step := c.say(t, s, "I want a refund")
	if comp == nil || comp.Content != "What is your order number? (6 digits)" || step.Waiting != "ask" || comp.Served.String() != "flow/refund" {
		t.Fatalf("%+v %+v", comp, step)
	}
	// The validator rejects, then accepts.
	if comp, step = c.say(t, s, "it is abc"); comp.Content != "That is not an order number: 6 digits, please." || step.Waiting != "ask" {
		t.Fatalf("retry: %+v %+v", comp, step)
	}
	comp, step = c.say(t, s, "sure: 123451")
	if comp == nil || comp.Content != "Refund for order 123451 started. A refund is on its way." || step.Waiting != "" || c.state[StateName] != nil {
		t.Fatalf("done: %+v %+v %q", comp, step, c.state)
	}
	if strings.Join(step.Nodes, " ") != "ask status gate note done" || comp.Usage.PromptTokens != 6 || comp.Usage.CompletionTokens != 6 {
		t.Errorf("%v %+v", step.Nodes, comp.Usage)
	}
	if len(c.prompts) != 1 || c.prompts[0] != "Write one sentence about refunding order 123451 (shipped on Monday)." {
		t.Errorf("the llm node's prompt: %q", c.prompts)
	}
	if len(sk.calls) != 1 || sk.calls[0] != "order-status(123451)" {
		t.Errorf("skill calls %q", sk.calls)
	}
	// A trigger's named group fills the slot: no question.
	comp, step = c.say(t, s, "refund order 123452")
	if comp.Content != "Order 123452 has not shipped yet: nothing to refund." || strings.Join(step.Nodes, " ") != "start ask status gate sorry" {
		t.Fatalf("%+v %v", comp, step.Nodes)
	}
	// The branch's vip port: a hand-off, marked with the conversation.
	comp, step = c.say(t, s, "refund order 923452")
	if comp.Content != "Order 923452 goes to a person." || !step.Handoff || c.state[HandoffState] == nil {
		t.Fatalf("%+v %+v %q", comp, step, c.state)
	}
	// Retries spent: the fail port.
	c.state = nil
	c.say(t, s, "退款")
	c.say(t, s, "no")
	if comp, step = c.say(t, s, "still no"); comp.Content != "Without an order number I cannot help; ask again any time." || step.Waiting != "" {
		t.Fatalf("fail port: %+v %+v", comp, step)
	}
	// A skill that fails without an error port fails the turn, and the
	// flow stays where it was.
	c.say(t, s, "refund")
	before := c.state[StateName]
	turn := &moltbot.Turn{Conversation: "c", State: c.state, Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "000000"}}}
	if _, _, err := s.Run(context.Background(), turn); err == nil || !strings.Contains(err.Error(), `flow "refund", node "status" (skill): the order service is down`) {
		t.Fatalf("a failing skill: %v", err)
	}
	if string(c.state[StateName]) != string(before) {
		t.Error("the state changed")
	}
}

// A conversation finishes a flow on the version it began, after a reload
// changed the flow or took it away (the state holds the source).
func TestRunVersionKept(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	var c conversation
	c.say(t, s, "refund please")
	var st state
	if err := json.Unmarshal(c.state[StateName], &st); err != nil || st.Node != "ask" || st.Source == "" {
		t.Fatalf("%+v %v", st, err)
	}
	v2, err := Parse("skills/flows/refund.yaml", []byte("flow: refund\nnodes:\n  - {id: start, type: trigger, with: {keywords: [refund]}}\n  - {id: r, type: reply, with: {text: v2}}\nedges: [[start, r]]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Swap(&Set{Flows: []*Flow{v2}})
	if comp, _ := c.say(t, s, "123452"); comp.Content != "Order 123452 has not shipped yet: nothing to refund." {
		t.Fatalf("after the reload: %+v", comp)
	}
	if comp, _ := c.say(t, s, "refund"); comp.Content != "v2" {
		t.Fatalf("a new start takes the new version: %+v", comp)
	}
	// No flows at all: the stage idles, and still finishes a begun flow.
	s = refundStage(t, &fakeSkills{})
	c.state = nil
	c.say(t, s, "refund")
	s.Swap(nil)
	if !s.Idle() {
		t.Fatal("not idle without flows")
	}
	if comp, _ := c.say(t, s, "123451"); comp == nil || !strings.HasPrefix(comp.Content, "Refund for order 123451 started.") {
		t.Fatalf("without flows: %+v", comp)
	}
}

// A stateless completion has no conversation to keep a flow's place in:
// a message that would start a flow goes to the model, unanswered here
// and without an error (an OpenAI client's "refund" is not refused).
func TestRunStateless(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	turn := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "refund"}}}
	if comp, step, err := s.Run(context.Background(), turn); comp != nil || step != nil || err != nil {
		t.Fatalf("a stateless turn was taken by a flow: %+v %+v %v", comp, step, err)
	}
	turn.Space, turn.Conversation = "t", "c"
	if comp, _, err := s.Run(context.Background(), turn); comp == nil || err != nil {
		t.Fatalf("the same message in a conversation: %+v %v", comp, err)
	}
}

// A graph that loops without waiting for the user fails its turn.
func TestRunLoop(t *testing.T) {
	f, err := Parse("loop.yaml", []byte("flow: loop\nnodes:\n  - {id: t, type: trigger, with: {keywords: [go]}}\n  - {id: b, type: branch, with: {cases: [{when: 'input', port: again}]}}\nedges: [[t, b], [b.again, b]]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStage(nil, nil)
	s.Swap(&Set{Flows: []*Flow{f}})
	turn := &moltbot.Turn{Conversation: "c", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "go"}}}
	if _, _, err := s.Run(context.Background(), turn); err == nil || !strings.Contains(err.Error(), "does it loop?") {
		t.Fatalf("%v", err)
	}
}

// A corrupt state is dropped, not a crash: the conversation goes on.
func TestRunBadState(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	for _, raw := range []string{"{", `{"flow":"refund","version":"x","source":"flow: ["}`} {
		turn := &moltbot.Turn{Conversation: "c", State: moltbot.StageState{StateName: []byte(raw)},
			Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "hello"}}}
		comp, _, err := s.Run(context.Background(), turn)
		if err != nil || comp != nil || !turn.StateChanged() || turn.State[StateName] != nil {
			t.Errorf("%s: %+v %v %q", raw, comp, err, turn.State)
		}
	}
}

// BenchmarkStageNoMatch is the stage's cost for a turn of a conversation
// in no flow whose message no trigger takes (what flows add to every
// other turn of a node that has some).
func BenchmarkStageNoMatch(b *testing.B) {
	src, err := os.ReadFile("testdata/refund.yaml")
	if err != nil {
		b.Fatal(err)
	}
	f, err := Parse("refund.yaml", src, nil)
	if err != nil {
		b.Fatal(err)
	}
	s := NewStage(nil, nil)
	s.Swap(&Set{Flows: []*Flow{f}})
	t := &moltbot.Turn{Conversation: "c", Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "what is the weather like today?"}}}
	b.ReportAllocs()
	for b.Loop() {
		if c, err := s.BeforeModel(context.Background(), t, nil); c != nil || err != nil {
			b.Fatal(c, err)
		}
	}
}

// A turn that only hands the model its tools' results neither starts a
// flow nor answers a waiting collect.
func TestRunToolResultsOnly(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	var c conversation
	c.say(t, s, "refund")
	turn := &moltbot.Turn{Conversation: "c", State: c.state, Messages: []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "123451"}, {Role: moltbot.RoleAssistant}, {Role: moltbot.RoleTool, Content: "42"}}}
	if comp, step, err := s.Run(context.Background(), turn); comp != nil || step != nil || err != nil || turn.StateChanged() {
		t.Fatalf("%+v %+v %v", comp, step, err)
	}
}

// A bot's turns start only the flows the bot names among its skills; a
// turn of no bot starts any.
func TestRunBot(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	turn := func(b *moltbot.Bot) *moltbot.Turn {
		return &moltbot.Turn{Space: "t", Conversation: "c", Bot: b,
			Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "refund"}}}
	}
	if comp, _, err := s.Run(context.Background(), turn(&moltbot.Bot{Name: "sales", Skills: []string{"other"}})); comp != nil || err != nil {
		t.Fatalf("a bot that does not name the flow started it: %+v %v", comp, err)
	}
	if comp, _, err := s.Run(context.Background(), turn(&moltbot.Bot{Name: "support", Skills: []string{"refund"}})); comp == nil || err != nil {
		t.Fatalf("a bot that names the flow: %+v %v", comp, err)
	}
	if comp, _, err := s.Run(context.Background(), turn(nil)); comp == nil || err != nil {
		t.Fatalf("no bot: %+v %v", comp, err)
	}
}

// A flow whose state would pass what a conversation keeps ends, saying
// so, instead of failing this turn and every later one at the same node.
func TestRunStateTooLarge(t *testing.T) {
	s := refundStage(t, &fakeSkills{})
	turn := &moltbot.Turn{Space: "t", Conversation: "c",
		State:    moltbot.StageState{"other": make([]byte, moltbot.MaxStageState-100)},
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "refund"}}}
	comp, _, err := s.Run(context.Background(), turn)
	if err != nil || comp == nil || !strings.Contains(comp.Content, "flow ended") {
		t.Fatalf("%+v %v", comp, err)
	}
	if turn.StateOf(StateName) != nil {
		t.Errorf("the flow's state was kept: %q", turn.StateOf(StateName))
	}
	if v := capVar(strings.Repeat("é", maxVar)); len(v) > maxVar || !utf8.ValidString(v) {
		t.Errorf("capVar: %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
}

// TestIntentTrigger: a trigger with intent: fires when the turn's notes
// say that intent was recognized with confidence, not when it was low.
func TestIntentTrigger(t *testing.T) {
	f, err := Parse("skills/flows/r.yaml", []byte("flow: r\nnodes:\n  - {id: t, type: trigger, with: {intent: refund}}\n  - {id: done, type: reply, with: {text: refund flow}}\nedges: [[t, done]]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Triggers()[0].Patterns(); len(got) != 1 || got[0] != "intent:refund" {
		t.Fatalf("patterns %v", got)
	}
	s := NewStage(nil, nil)
	s.Swap(&Set{Flows: []*Flow{f}})
	run := func(notes map[string]string) *moltbot.Completion {
		turn := &moltbot.Turn{Space: "default", Conversation: "c", Notes: notes,
			Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "money back please"}}}
		c, _, err := s.Run(context.Background(), turn)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := run(map[string]string{"intent": "refund", "intent.stage": "ngram"}); c == nil || c.Content != "refund flow" {
		t.Fatalf("a confident refund: %+v", c)
	}
	for _, notes := range []map[string]string{nil, {"intent": "order_status"}, {"intent": "refund", "intent.low": "true"}} {
		if c := run(notes); c != nil {
			t.Fatalf("notes %v started the flow: %+v", notes, c)
		}
	}
}
