package intent

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// fakeModel answers reply and records what it was asked.
type fakeModel struct {
	reply string
	err   error
	calls int
	opts  moltbot.ChatOptions
	msgs  []moltbot.Message
}

func (m *fakeModel) ask(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions) (string, error) {
	m.calls++
	m.opts, m.msgs = opts, msgs
	return m.reply, m.err
}

func withModel(t *testing.T) *Set {
	t.Helper()
	s, err := Parse(File, DefaultYAML)
	if err != nil {
		t.Fatal(err)
	}
	s.Settings.Model = "sim/tiny"
	return s
}

// ambiguous is a message the model-free stages are not confident of once
// the threshold is raised to 0.95 (unsure).
const ambiguous = "where is my parcel"

func unsure(s *Set) *Set { s.Settings.Threshold = 0.95; return s }

func TestModelStageOnlyWhenNotConfident(t *testing.T) {
	s := withModel(t)
	m := &fakeModel{reply: `{"intent":"refund"}`}
	if r := s.Classify(context.Background(), "我要退款", Options{Model: m.ask}); r.Stage != StageRules || m.calls != 0 {
		t.Fatalf("a rule's intent asked the model: %+v, %d calls", r, m.calls)
	}
	if r := s.Classify(context.Background(), "where is my parcel", Options{Model: m.ask}); r.Stage != StageNgram || m.calls != 0 {
		t.Fatalf("a confident classifier asked the model: %+v, %d calls", r, m.calls)
	}
	unsure(s)
	pre := s.Classify(context.Background(), ambiguous, Options{Stages: UseRules | UseNgram})
	if pre.Stage != StageFallback {
		t.Fatalf("%q is confident without the model (%+v): pick another", ambiguous, pre)
	}
	m.reply = `{"intent":"` + pre.Top[0].Intent + `"}`
	r := s.Classify(context.Background(), ambiguous, Options{Model: m.ask})
	if m.calls != 1 || r.Stage != StageModel || r.Intent != pre.Top[0].Intent || r.Low {
		t.Fatalf("got %+v after %d calls", r, m.calls)
	}
	// The request: the enum of the intents and the fallback, strict.
	f := m.opts.ResponseFormat
	if m.opts.Model != "sim/tiny" || f == nil || f.Type != moltbot.FormatJSONSchema || !f.Strict {
		t.Fatalf("options %+v", m.opts)
	}
	var sch struct {
		Properties struct {
			Intent struct {
				Enum []string `json:"enum"`
			} `json:"intent"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(f.Schema, &sch); err != nil {
		t.Fatal(err)
	}
	if want := append(slices.DeleteFunc(s.Names(), func(n string) bool { return n == "fallback" }), "fallback"); strings.Join(sch.Properties.Intent.Enum, ",") != strings.Join(want, ",") {
		t.Fatalf("enum %v, want %v", sch.Properties.Intent.Enum, want)
	}
	if !strings.Contains(m.msgs[0].Content, "- refund: the user wants their money back") || m.msgs[1].Content != ambiguous {
		t.Fatalf("messages %+v", m.msgs)
	}
}

func TestModelAnswerRefused(t *testing.T) {
	s := unsure(withModel(t))
	pre := s.Classify(context.Background(), ambiguous, Options{Stages: UseRules | UseNgram})
	notTop := ""
	for _, n := range s.Names() {
		in := false
		for _, c := range pre.Top {
			in = in || c.Intent == n
		}
		if !in {
			notTop = n
			break
		}
	}
	for _, c := range []struct{ name, reply, why string }{
		{"outside the enum", `{"intent":"lottery"}`, `refused: "lottery" is not in the enum`},
		{"not json", `refund`, `refused: "refund" is not {"intent": NAME}`},
		{"extra field", `{"intent":"refund","x":1}`, `is not {"intent": NAME}`},
		{"no intent", `{}`, `is not {"intent": NAME}`},
		{"outside the top 3", `{"intent":"` + notTop + `"}`, `is not among the classifier's top 3`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &fakeModel{reply: c.reply}
			r := s.Classify(context.Background(), ambiguous, Options{Model: m.ask})
			if m.calls != 1 || r.Stage != StageFallback || !r.Low || r.Intent != "fallback" || !strings.Contains(r.Model, c.why) {
				t.Fatalf("got %+v, want a fallback: %s", r, c.why)
			}
		})
	}
	m := &fakeModel{err: errors.New("no provider answers")}
	if r := s.Classify(context.Background(), ambiguous, Options{Model: m.ask}); r.Stage != StageFallback || !strings.Contains(r.Model, "no provider answers") {
		t.Fatalf("a model error: %+v", r)
	}
	m = &fakeModel{reply: `{"intent":"fallback"}`}
	if r := s.Classify(context.Background(), ambiguous, Options{Model: m.ask}); r.Stage != StageFallback || !r.Low {
		t.Fatalf("the model said fallback: %+v", r)
	}
	// Without settings.model the stage is off.
	s.Settings.Model = ""
	m = &fakeModel{reply: `{"intent":"refund"}`}
	if s.Classify(context.Background(), ambiguous, Options{Model: m.ask}); m.calls != 0 {
		t.Fatal("the model stage ran without settings.model")
	}
}

// The out-of-scope examples (an intent named as the fallback) count for
// a bot whatever intents it names; only a confident out-of-scope
// classification skips the model.
func TestFallbackExamples(t *testing.T) {
	s := withModel(t)
	oos := "what should I eat tonight" // a training example of fallback
	m := &fakeModel{reply: `{"intent":"refund"}`}
	for _, allowed := range []Allowed{nil, {"refund", "order_status"}} {
		r := s.Classify(context.Background(), oos, Options{Allowed: allowed, Model: m.ask})
		if r.Intent != "fallback" || r.Stage != StageFallback || !r.Low || m.calls != 0 || len(r.Top) == 0 || r.Top[0].Intent != "fallback" {
			t.Fatalf("bot %v: %+v after %d model calls", allowed, r, m.calls)
		}
	}
	// Unsure (a threshold of 0.95): the model is asked, and its answer,
	// among the classifier's top 3, is taken.
	unsure(s)
	r := s.Classify(context.Background(), oos, Options{Model: m.ask})
	if m.calls != 1 || r.Stage != StageModel || r.Intent != "refund" {
		t.Fatalf("%+v after %d model calls", r, m.calls)
	}
}

func TestStageNotes(t *testing.T) {
	s := unsure(withModel(t))
	st := NewStage(nil)
	turn := func(text string, bot *moltbot.Bot, model moltbot.ModelFunc) *moltbot.Turn {
		tr := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: text}}, Bot: bot, Model: model}
		if c, err := st.BeforeModel(context.Background(), tr, nil); c != nil || err != nil {
			t.Fatalf("the stage answered: %v, %v", c, err)
		}
		if tr.Notes != nil {
			t.Fatalf("classified before a stage asked: %v", tr.Notes)
		}
		tr.Resolve(context.Background(), "intent")
		return tr
	}
	if !st.Idle() || turn("我要退款", nil, nil).Notes != nil {
		t.Fatal("a stage without intents noted something")
	}
	st.Swap(s)
	tr := turn("我要退款", nil, nil)
	if n := tr.Notes; n["intent"] != "refund" || n["intent.confidence"] != "1.00" || n["intent.stage"] != "rules" || n["intent.low"] != "" || !Confident(context.Background(), tr, "refund") {
		t.Fatalf("notes %v", n)
	}
	asked := 0
	model := func(ctx context.Context, msgs []moltbot.Message, opts moltbot.ChatOptions, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
		asked++
		return &moltbot.Completion{Content: `{"intent":"lottery"}`}, nil
	}
	tr = turn(ambiguous, nil, model)
	if n := tr.Notes; asked != 1 || n["intent"] != "fallback" || n["intent.stage"] != "fallback" || n["intent.low"] != "true" || Confident(context.Background(), tr, "fallback") {
		t.Fatalf("notes %v after %d model calls", n, asked)
	}
	// Put off until asked, and classified once: a turn nobody asks about
	// costs no classification and no model call.
	lazy := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: ambiguous}}, Model: model}
	st.BeforeModel(context.Background(), lazy, nil)
	if asked != 1 || lazy.Notes != nil {
		t.Fatalf("before a stage asked: %d model calls, notes %v", asked, lazy.Notes)
	}
	if lazy.NoteOf(context.Background(), "kb.hit"); asked != 1 || lazy.Notes != nil {
		t.Fatalf("another stage's note classified the turn: %d model calls, notes %v", asked, lazy.Notes)
	}
	if Confident(context.Background(), lazy, "refund") || lazy.NoteOf(context.Background(), "intent.low") != "true" || asked != 2 {
		t.Fatalf("asked twice: %d model calls, notes %v", asked, lazy.Notes)
	}
	// Inside a flow the model is not asked (the flow takes the message).
	inFlow := &moltbot.Turn{Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: ambiguous}}, Model: model,
		State: moltbot.StageState{"flow": []byte(`{}`)}}
	st.BeforeModel(context.Background(), inFlow, nil)
	inFlow.Resolve(context.Background(), "")
	if asked != 2 || inFlow.Notes["intent.stage"] != "fallback" {
		t.Fatalf("inside a flow: %d model calls, notes %v", asked, inFlow.Notes)
	}
	// A bot's intents narrow the cascade.
	tr = turn("我要退款", &moltbot.Bot{Name: "b", Intents: []string{"order_status"}}, nil)
	if tr.Notes["intent"] == "refund" {
		t.Fatalf("a bot without refund: %v", tr.Notes)
	}
}
