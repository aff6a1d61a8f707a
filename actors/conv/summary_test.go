package conv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// models is a fake Models: it answers text, or fails with err, and
// records what it was asked.
type models struct {
	text  string
	err   error
	asked [][]moltbot.Message
	opts  []moltbot.ChatOptions
}

func (f *models) Chat(_ context.Context, chain []moltbot.ModelRef, msgs []moltbot.Message, opts moltbot.ChatOptions, _ moltbot.StreamFunc, _ bool) (*moltbot.Completion, error) {
	f.asked, f.opts = append(f.asked, msgs), append(f.opts, opts)
	if f.err != nil {
		return nil, f.err
	}
	return &moltbot.Completion{Content: f.text, Served: chain[0]}, nil
}

func summaryDeps(maxContext int, m Models) *deps {
	return &deps{maxContext: maxContext, summary: SummaryConfig{MaxTokens: 20, Prompt: "summarize"}, models: m,
		met: metrics.New("test"), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// history is n turns of a user message and a reply, 10 tokens each, with ids.
func history(n int) *moltbot.Conversation {
	c := &moltbot.Conversation{Tenant: "t", ID: "c"}
	for i := 0; i < n; i++ {
		u, a := msg(moltbot.RoleUser, 10), msg(moltbot.RoleAssistant, 10)
		u.ID, a.ID = fmt.Sprint("u", i), fmt.Sprint("u", i, ":a")
		c.Messages = append(c.Messages, u, a)
	}
	c.Messages = c.Messages[:2*n-1] // the turn to answer: its user message is last
	return c
}

// A history that fits asks no summary; one that does not hands the
// oldest turns to a summary, keeps the recent ones (half the room, so that
// the next turns fit again) and starts them with a user message.
func TestPlanContext(t *testing.T) {
	d := summaryDeps(1000, &models{})
	c := history(5) // 90 tokens
	if p := planContext(d, c, 100); len(p.fold) != 0 || p.dropped != 0 || roles(p.msgs) != "uauauauau" {
		t.Fatalf("fits: %q fold %d", roles(p.msgs), len(p.fold))
	}
	// Room beside a summary of 20 tokens (and its note's prefix): 70 - 20 - 22 = 28; half is 14: the last message.
	p := planContext(d, c, 70)
	if len(p.fold) != 8 || p.upto != 8 || p.through != "u3:a" || p.gap != 0 || roles(p.recent) != "u" || p.prev != nil {
		t.Fatalf("fold %d upto %d through %q gap %d recent %q", len(p.fold), p.upto, p.through, p.gap, roles(p.recent))
	}
	// Its fallback: the turns that fit, as without summaries.
	if want, dropped, _ := buildContext("", c.Messages, 70); roles(p.msgs) != roles(want) || p.dropped != dropped {
		t.Errorf("fallback %q, want %q", roles(p.msgs), roles(want))
	}
	// Off: dropped, nothing to summarize.
	d.summary.Off = true
	if p := planContext(d, c, 70); len(p.fold) != 0 || p.dropped == 0 {
		t.Errorf("off: fold %d dropped %d", len(p.fold), p.dropped)
	}
	d.summary.Off = false

	// A summary in place covers its messages: the rest fits beside it.
	c.Summary = &moltbot.Summary{Text: "earlier", Messages: 6, Through: "u2:a"}
	p = planContext(d, c, 70)
	if len(p.fold) != 0 || p.dropped != 0 || roles(p.msgs) != "suau" || p.msgs[0].Content != notePrefix+"earlier" {
		t.Fatalf("reused: %q fold %d %+v", roles(p.msgs), len(p.fold), p.msgs[0])
	}
	// A summary of another history (its last message is not the one it names) is not used.
	c.Summary.Through = "elsewhere"
	if p := planContext(d, c, 70); len(p.fold) == 0 || p.prev != nil || p.upto != 8 {
		t.Errorf("a stale summary was used: fold %d prev %v", len(p.fold), p.prev)
	}
	// More turns fall out: the next summary folds the previous one in.
	c.Summary.Through = "u2:a"
	c = &moltbot.Conversation{Messages: append(history(8).Messages, moltbot.Message{}), Summary: c.Summary}
	c.Messages = c.Messages[:15]
	p = planContext(d, c, 70)
	if p.prev != c.Summary || p.upto != 14 || p.fold[0].ID != "u3" || roles(p.recent) != "u" {
		t.Errorf("second: prev %v upto %d first %q recent %q", p.prev, p.upto, p.fold[0].ID, roles(p.recent))
	}
}

// A tool call and its result are never split: not between the summary and
// the recent turns, nor between two summary calls when one cannot take
// the whole fold.
func TestPlanContextTools(t *testing.T) {
	d := summaryDeps(1000, &models{})
	u := func(id string) moltbot.Message { m := msg(moltbot.RoleUser, 10); m.ID = id; return m }
	call := moltbot.Message{ID: "u1:a", Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c1", Name: "f", Arguments: "{}"}}}
	res := moltbot.Message{ID: "u2:0", Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "c1", Content: strings.Repeat("r", 40)}}}
	ans := msg(moltbot.RoleAssistant, 10)
	ans.ID = "u2:a"
	long := msg(moltbot.RoleUser, 100)
	long.ID = "u0"
	c := &moltbot.Conversation{Messages: []moltbot.Message{long, ans, u("u1"), call, res, ans, u("u3")}}
	// Half the room for recent turns (125 - 20 - 22 = 83) holds the result,
	// the reply and the last message, not the call: they all go to the summary.
	p := planContext(d, c, 125)
	if roles(p.fold) != "uauata" || roles(p.recent) != "u" {
		t.Fatalf("fold %q recent %q", roles(p.fold), roles(p.recent))
	}
	// One call takes whole turns: room for the first turn and the call,
	// not its result, takes the first turn.
	fold := []moltbot.Message{u("u0"), ans, u("u1"), call, res, ans}
	if n := chunk(fold, 64); n != 2 {
		t.Errorf("chunk took %q", roles(fold[:n]))
	}
	// A message too long for a call counts for half of it (its line is
	// cut): never skipped.
	if n := chunk([]moltbot.Message{long, ans}, 64); n != 2 {
		t.Errorf("chunk took %d", n)
	}
}

// A summary made: the context is the system prompt, its note and the
// recent turns; counted. A summary that fails: the plan's context, the
// oldest turns dropped; counted; the turn goes on.
func TestSummarize(t *testing.T) {
	m := &models{text: "  they spoke of rivers  "}
	d := summaryDeps(1000, m)
	c := history(5)
	c.System = "be brief"
	p := planContext(d, c, 80)
	if len(p.fold) == 0 {
		t.Fatal("nothing to summarize")
	}
	chain := []moltbot.ModelRef{{Provider: "p", Model: "m"}}
	msgs, s, dropped := p.summarize(context.Background(), d, chain, "t/c")
	if s == nil || s.Text != "they spoke of rivers" || s.Messages != p.upto || s.Through != p.through || s.Model != "p/m" || s.Created == 0 {
		t.Fatalf("summary %+v", s)
	}
	if roles(msgs) != "ss"+roles(p.recent) || msgs[0].Content != "be brief" || msgs[1].Content != notePrefix+s.Text || dropped != p.gap {
		t.Errorf("context %q %+v dropped %d", roles(msgs), msgs[:2], dropped)
	}
	asked := m.asked[0]
	if len(asked) != 2 || asked[0].Content != "summarize" || !strings.HasPrefix(asked[1].Content, "The conversation:\nuser: xxxx") ||
		strings.Count(asked[1].Content, "\n") != 1+len(p.fold) || m.opts[0].MaxTokens != 20 {
		t.Errorf("asked %+v %+v", asked, m.opts[0])
	}
	if d.met.Get(metrics.ContextSummaries, "ok") != 1 || d.met.Get(metrics.SummaryTokens, "completion") == 0 {
		t.Error("not counted")
	}
	// The next one starts from it.
	c.Summary = s
	c.Messages = append(history(9).Messages, c.Messages[len(c.Messages)-1])[:17]
	if p := planContext(d, c, 80); p.prev != s || len(p.fold) == 0 {
		t.Fatalf("prev %v fold %d", p.prev, len(p.fold))
	} else if p.summarize(context.Background(), d, chain, "t/c"); !strings.HasPrefix(m.asked[1][1].Content, "The summary so far:\nthey spoke of rivers\n\nThe conversation that follows it:\n") {
		t.Errorf("second summary asked %q", m.asked[1][1].Content)
	}

	for _, fail := range []*models{{err: errors.New("down")}, {text: " "}} {
		d := summaryDeps(1000, fail)
		p := planContext(d, history(5), 80)
		msgs, s, dropped := p.summarize(context.Background(), d, chain, "t/c")
		if s != nil || roles(msgs) != roles(p.msgs) || dropped != p.dropped || dropped == 0 || d.met.Get(metrics.ContextSummaries, "failed") != 1 {
			t.Errorf("failed summary: %+v %q dropped %d", s, roles(msgs), dropped)
		}
	}
}

// The transcript names tool calls, results and images, and cuts a long
// line at a rune.
func TestTranscript(t *testing.T) {
	fold := []moltbot.Message{
		{Role: moltbot.RoleUser, Content: "look", Parts: []moltbot.Part{{Type: moltbot.PartText, Text: "look"}, {Type: moltbot.PartImage, MIME: "image/png"}}},
		{Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "c1", Name: "weather", Arguments: `{"city":"Oslo"}`}}},
		{Role: moltbot.RoleTool, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "c1", Content: "rain"}}},
		{Role: moltbot.RoleAssistant, Content: strings.Repeat("é", 30)},
	}
	got := transcript(nil, fold, 50)
	want := "The conversation:\nuser: look [an image]\nassistant: [calls weather({\"city\":\"Oslo\"})]\ntool: [result of the call c1: rain]\n" +
		"assistant: " + strings.Repeat("é", 19) + " [...]\n"
	if got != want {
		t.Errorf("%q", got)
	}
	if got := transcript(&moltbot.Summary{Text: "before"}, fold[:1], 50); got != "The summary so far:\nbefore\n\nThe conversation that follows it:\nuser: look [an image]\n" {
		t.Errorf("%q", got)
	}
}
