package actors

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// recorder is the simulator with a record of the messages of every call.
type recorder struct {
	*sim.Provider
	mu    sync.Mutex
	calls [][]moltbot.Message
}

func newRecorder() *recorder {
	return &recorder{Provider: sim.NewProvider("sim", sim.Options{Tokens: 5, Seed: 1})}
}

func (r *recorder) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	r.mu.Lock()
	r.calls = append(r.calls, slices.Clone(req.Messages))
	r.mu.Unlock()
	return r.Provider.Chat(ctx, req, fn)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// since splits the calls after the first n into summary calls (their
// system prompt is the summary prompt) and the others.
func (r *recorder) since(n int) (summaries, chats [][]moltbot.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls[n:] {
		if len(c) > 0 && c[0].Content == DefaultSummaryPrompt {
			summaries = append(summaries, c)
		} else {
			chats = append(chats, c)
		}
	}
	return summaries, chats
}

// smallContext holds some eight turns of turnText.
func smallContext(c *Config) {
	c.MaxContextTokens = 600
	c.Summary.MaxTokens = 40
}

func turnText(i int) string {
	return fmt.Sprintf("turn %d: %s", i, strings.Repeat("tell me more about the rivers of the north ", 3))
}

// checkContext checks what the model got for the turn that made c's last
// reply: the system prompt, the summary's note when c has a summary, then
// c's messages from some point after the summary's to the last user
// message, in order.
func checkContext(t *testing.T, c *moltbot.Conversation, got []moltbot.Message) {
	t.Helper()
	if got[0].Role != moltbot.RoleSystem || got[0].Content != c.System {
		t.Fatalf("the context starts with %+v", got[0])
	}
	rest := got[1:]
	if c.Summary != nil {
		if rest[0].Role != moltbot.RoleSystem || !strings.HasSuffix(rest[0].Content, "\n"+c.Summary.Text) {
			t.Fatalf("no note of the summary %q: %+v", c.Summary.Text, rest[0])
		}
		rest = rest[1:]
	}
	if rest[0].Role != moltbot.RoleUser {
		t.Fatalf("the recent turns start with %s", rest[0].Role)
	}
	stored := c.Messages[:len(c.Messages)-1] // all but the reply
	from := len(stored) - len(rest)
	if c.Summary != nil && from < c.Summary.Messages {
		t.Fatalf("the context holds messages the summary covers: from %d, the summary covers %d", from, c.Summary.Messages)
	}
	for i, m := range rest {
		if m.Content != stored[from+i].Content || m.Role != stored[from+i].Role {
			t.Fatalf("context message %d is %q, stored %q", i, m.Content, stored[from+i].Content)
		}
	}
}

// When the history outgrows max_context_tokens, the oldest turns are
// summarized once; the summary is kept with the conversation and reused
// by the next turns; a second summary, when more turns fall out, folds the
// first one in. The stored history keeps every message.
func TestSummaryStandsForOldTurns(t *testing.T) {
	rec := newRecorder()
	e := start(t, []string{"sim/sim"}, []ProviderSpec{spec("sim", rec)}, smallContext)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	if err != nil {
		t.Fatal(err)
	}
	var made []*moltbot.Summary
	reused := 0
	for i := 0; len(made) < 2; i++ {
		if i == 40 {
			t.Fatalf("%d summaries in 40 turns", len(made))
		}
		n := rec.count()
		before := e.met.Get(metrics.SummaryTokens, "completion")
		res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: turnText(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sums, chats := rec.since(n)
		// The turn's usage (what the tenant is charged) includes the
		// summary made for it: the reply is 5 tokens.
		if want := 5 + int(e.met.Get(metrics.SummaryTokens, "completion")-before); res.Completion.Usage.CompletionTokens != want || (len(sums) == 1) != (want > 5) {
			t.Fatalf("turn %d: usage %+v, want %d completion tokens (%d summary calls)", i, res.Completion.Usage, want, len(sums))
		}
		got, err := e.rt.Get(ctx(t), "default", c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Messages) != 2*(i+1) || len(chats) != 1 || len(sums) > 1 {
			t.Fatalf("turn %d: %d messages stored, %d model calls, %d summary calls", i, len(got.Messages), len(chats), len(sums))
		}
		checkContext(t, got, chats[0])
		switch {
		case len(sums) == 1:
			var prev *moltbot.Summary
			if len(made) > 0 {
				prev = made[len(made)-1]
			}
			s := got.Summary
			if s == nil || prev != nil && s.Messages <= prev.Messages || s.Through != got.Messages[s.Messages-1].ID || s.Model != "sim/sim" {
				t.Fatalf("turn %d: summary %+v after %+v", i, s, prev)
			}
			asked := sums[0][1].Content
			if prev == nil && !strings.Contains(asked, "user: "+turnText(0)) {
				t.Errorf("the first summary was not asked of the first turn: %q", asked)
			}
			if prev != nil && !strings.HasPrefix(asked, "The summary so far:\n"+prev.Text+"\n") {
				t.Errorf("the second summary does not fold the first in: %q", asked)
			}
			made = append(made, s)
		case len(made) > 0:
			if !reflect.DeepEqual(got.Summary, made[len(made)-1]) {
				t.Fatalf("turn %d: the summary changed without a call: %+v", i, got.Summary)
			}
			reused++
		case got.Summary != nil:
			t.Fatalf("turn %d: a summary without a call", i)
		}
	}
	if reused == 0 {
		t.Error("no turn reused a summary")
	}
	if n := e.met.Get(metrics.ContextSummaries, "ok"); n != 2 || e.met.Get(metrics.ContextSummaries, "failed") != 0 ||
		e.met.Get(metrics.SummaryTokens, "prompt") == 0 || e.met.Get(metrics.SummaryTokens, "completion") == 0 {
		t.Errorf("metrics: %d summaries", n)
	}
}

// A summary model that fails never fails the turn: the oldest turns are
// dropped, as without summaries, and the failure is counted.
func TestSummaryFailureDropsTurns(t *testing.T) {
	rec := newRecorder()
	down := &fake{chat: fails(inference.KindUnavailable)}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{spec("sim", rec), spec("down", down)}, func(c *Config) {
		smallContext(c)
		c.Summary.Model = "down/m"
	})
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	for i := 0; e.met.Get(metrics.ContextTrimmed) == 0; i++ {
		if i == 40 {
			t.Fatal("nothing dropped in 40 turns")
		}
		n := rec.count()
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: turnText(i)}, nil); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		_, chats := rec.since(n)
		got, _ := e.rt.Get(ctx(t), "default", c.ID)
		if got.Summary != nil {
			t.Fatalf("a summary: %+v", got.Summary)
		}
		checkContext(t, got, chats[0])
	}
	if down.calls.Load() == 0 || e.met.Get(metrics.ContextSummaries, "failed") == 0 || e.met.Get(metrics.ContextSummaries, "ok") != 0 {
		t.Errorf("summary calls %d, failed %d", down.calls.Load(), e.met.Get(metrics.ContextSummaries, "failed"))
	}
}

// Summaries off: what does not fit is dropped, and no model is asked for
// a summary.
func TestSummaryOff(t *testing.T) {
	rec := newRecorder()
	e := start(t, []string{"sim/sim"}, []ProviderSpec{spec("sim", rec)}, func(c *Config) {
		smallContext(c)
		c.Summary.Off = true
	})
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	for i := 0; e.met.Get(metrics.ContextTrimmed) == 0; i++ {
		if i == 40 {
			t.Fatal("nothing dropped in 40 turns")
		}
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: turnText(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if sums, _ := rec.since(0); len(sums) != 0 {
		t.Errorf("%d summary calls", len(sums))
	}
}

// A summary model that names no configured provider is refused at start.
func TestSummaryModelChecked(t *testing.T) {
	_, err := New(Config{Providers: []ProviderSpec{simSpec()}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: storage.NewMemory(), Summary: SummaryConfig{Model: "nope/m"}})
	if err == nil || !strings.Contains(err.Error(), `no provider "nope"`) {
		t.Errorf("%v", err)
	}
}

// summarized runs turns of conversation id through rt until it holds a
// summary, and returns it.
func summarized(t *testing.T, rt *Runtime, id string) *moltbot.Conversation {
	t.Helper()
	for i := 0; i < 40; i++ {
		if _, err := rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: turnText(i)}, nil); err != nil {
			t.Fatal(err)
		}
		if c, err := rt.Get(ctx(t), "default", id); err != nil || c.Summary != nil {
			return c
		}
	}
	t.Fatal("no summary in 40 turns")
	return nil
}

// A summary is on disk like a message: after a restart the next turn
// reuses it, and no model is asked for it again.
func TestSummarySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Runtime, *recorder, *storage.Pebble) {
		store, err := storage.Open(dir, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		cfg := Config{Providers: []ProviderSpec{spec("sim", rec)}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
			Store: store, HealthInterval: time.Hour}
		smallContext(&cfg)
		rt, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rt, rec, store
	}
	rt1, _, store1 := open()
	c, err := rt1.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	if err != nil {
		t.Fatal(err)
	}
	before := summarized(t, rt1, c.ID)
	rt1.Shutdown(context.Background())
	store1.Close()

	rt, rec, store := open()
	defer store.Close()
	defer rt.Shutdown(context.Background())
	after, err := rt.Get(ctx(t), "default", c.ID)
	if err != nil || !reflect.DeepEqual(after.Summary, before.Summary) {
		t.Fatalf("after a restart: %+v (%v), before %+v", after.Summary, err, before.Summary)
	}
	if _, err := rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "and then?"}, nil); err != nil {
		t.Fatal(err)
	}
	sums, chats := rec.since(0)
	got, _ := rt.Get(ctx(t), "default", c.ID)
	if len(sums) != 0 || len(chats) != 1 || !reflect.DeepEqual(got.Summary, before.Summary) {
		t.Fatalf("%d summary calls; summary %+v", len(sums), got.Summary)
	}
	checkContext(t, got, chats[0])
}

// Retention's trim removes the oldest messages, and the summary that holds
// what they said goes with them; the next turn that does not fit makes
// a summary of what is left.
func TestRetentionTrimDropsTheSummary(t *testing.T) {
	rec := newRecorder()
	e := start(t, []string{"sim/sim"}, []ProviderSpec{spec("sim", rec)}, smallContext)
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
	got := summarized(t, e.rt, c.ID)
	if err := RetentionOf(e.rt).Retain(ctx(t), "default", c.ID, got.Version, 2); err != nil {
		t.Fatal(err)
	}
	for _, cv := range []func() (*moltbot.Conversation, error){
		func() (*moltbot.Conversation, error) { return e.rt.Get(ctx(t), "default", c.ID) },
		func() (*moltbot.Conversation, error) { return e.store.Get("default", c.ID) },
	} {
		if trimmed, err := cv(); err != nil || trimmed.Summary != nil || len(trimmed.Messages) != len(got.Messages)-2 {
			t.Fatalf("after the trim: %+v %v", trimmed, err)
		}
	}
	n := rec.count()
	again := summarized(t, e.rt, c.ID)
	if sums, _ := rec.since(n); len(sums) != 1 || again.Summary.Through != again.Messages[again.Summary.Messages-1].ID {
		t.Fatalf("%d summary calls after the trim; %+v", len(sums), again.Summary)
	}
}
