package actors

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/moltbot/moltbot"
)

// switchStage answers every turn ("from the stage") unless it idles.
type switchStage struct {
	idle  atomic.Bool
	calls atomic.Int64
}

func (s *switchStage) Idle() bool { return s.idle.Load() }

func (s *switchStage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	s.calls.Add(1)
	return &moltbot.Completion{Content: "from the stage", FinishReason: "stop"}, nil
}

// A stage that idles is passed by (the skills stage of a workspace with no
// skills): the turn goes to the model, the stage is not asked; once it
// has work again, it answers.
func TestIdleStagePassedBy(t *testing.T) {
	st := &switchStage{}
	st.idle.Store(true)
	e := start(t, []string{"a/m"}, []ProviderSpec{spec("a", &fake{chat: echo})}, func(c *Config) { c.Before = []BeforeModel{st} })
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Content != "echo: x " || st.calls.Load() != 0 {
		t.Fatalf("%+v %v, %d calls", comp, err, st.calls.Load())
	}
	st.idle.Store(false)
	comp, err = e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Content != "from the stage" || st.calls.Load() != 1 {
		t.Fatalf("%+v %v, %d calls", comp, err, st.calls.Load())
	}
}

// statefulStage is an idle stage that keeps state under "flow": it
// answers only the turns of a conversation that holds its state.
type statefulStage struct{ switchStage }

func (s *statefulStage) StateName() string { return "flow" }

func (s *statefulStage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	s.calls.Add(1)
	if err := t.SetState("flow", nil); err != nil {
		return nil, err
	}
	return &moltbot.Completion{Content: "from the stage", FinishReason: "stop"}, nil
}

// An idle stage still runs on a turn whose conversation holds its state
// (a flow begun before a reload took the flows away), and only then.
func TestIdleStatefulStageRunsForItsState(t *testing.T) {
	st := &statefulStage{}
	st.idle.Store(true)
	p := &pipeline{before: []BeforeModel{st}}
	with := &moltbot.Turn{Conversation: "c", State: moltbot.StageState{"flow": []byte("x")}}
	other := &moltbot.Turn{Conversation: "c", State: moltbot.StageState{"handoff": []byte("x")}}
	if p.idle(with) || idle(st, with) {
		t.Error("idle for a turn that holds its state")
	}
	if !p.idle(other) || !p.idle(&moltbot.Turn{}) {
		t.Error("not idle for a turn without its state")
	}
	comp, err := p.Chat(ctx(t), with, nil)
	if err != nil || comp.Content != "from the stage" || st.calls.Load() != 1 || !with.StateChanged() {
		t.Fatalf("%+v %v", comp, err)
	}
}

// wrapStage answers around the model ("from around") unless it idles.
type wrapStage struct{ switchStage }

func (s *wrapStage) AroundModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc,
	next func(context.Context, moltbot.StreamFunc) (*moltbot.Completion, error)) (*moltbot.Completion, error) {
	s.calls.Add(1)
	return &moltbot.Completion{Content: "from around", FinishReason: "stop"}, nil
}

// A stage around the model that idles (the tool loop of a node without
// server-side tools) is passed by the same way.
func TestIdleAroundStagePassedBy(t *testing.T) {
	st := &wrapStage{}
	st.idle.Store(true)
	e := start(t, []string{"a/m"}, []ProviderSpec{spec("a", &fake{chat: echo})}, func(c *Config) { c.Around = []AroundModel{st} })
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Content != "echo: x " || st.calls.Load() != 0 {
		t.Fatalf("%+v %v, %d calls", comp, err, st.calls.Load())
	}
	st.idle.Store(false)
	comp, err = e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Content != "from around" || st.calls.Load() != 1 {
		t.Fatalf("%+v %v, %d calls", comp, err, st.calls.Load())
	}
}

// busyAfter is an after-model stage that is no Idler: it always runs.
type busyAfter struct{}

func (busyAfter) AfterModel(context.Context, *moltbot.Turn, *moltbot.Completion) error { return nil }

// idleStateless (Runtime.Complete's way past the stages, no Turn built)
// says what idle says of a stateless turn, for every kind of stage, idle
// or not, and for a stage that is no Idler.
func TestIdleStatelessAgrees(t *testing.T) {
	for i := range 1 << 4 {
		b, w, o := &switchStage{}, &wrapStage{}, &wrapStage{}
		b.idle.Store(i&1 == 0)
		w.idle.Store(i&2 == 0)
		o.idle.Store(i&4 == 0)
		p := &pipeline{before: []BeforeModel{b}, wrap: []AroundModel{w}, outer: []AroundModel{o}}
		if i&8 != 0 {
			p.after = []AfterModel{busyAfter{}}
		}
		if got, want := p.idleStateless(), p.idle(&moltbot.Turn{}); got != want || got != (i == 0) {
			t.Errorf("stages %04b: idleStateless %v, idle %v", i, got, want)
		}
	}
	if !(&pipeline{}).idleStateless() {
		t.Error("a pipeline with no stages is not idle")
	}
}
