package actors

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/failover"
	"github.com/moltbot/moltbot/internal/testutil"
)

var withImage = []moltbot.Message{{Role: moltbot.RoleUser, Content: "what is this?", Parts: []moltbot.Part{
	{Type: moltbot.PartText, Text: "what is this?"}, {Type: moltbot.PartImage, MIME: "image/png", Data: []byte("\x89PNG")}}}}

// A model that lacks what a request needs (an image, tools) is passed
// over for one that has it, without a failover counted against it; when
// no model of the chain can serve the request, a 400 says why, and no
// model is asked.
func TestCapabilitiesSkip(t *testing.T) {
	text, vision := &fake{chat: echo}, &fake{chat: echo}
	a, b := spec("a", text), spec("b", vision)
	a.Caps = map[string]moltbot.Capabilities{"m": {Known: true, Tools: true}}
	b.Caps = map[string]moltbot.Capabilities{"m": {Known: true, Vision: true}}
	e := start(t, []string{"a/m", "b/m"}, []ProviderSpec{a, b}, nil)

	comp, err := e.rt.Complete(ctx(t), withImage, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Served.String() != "b/m" || comp.Failovers != 0 {
		t.Fatalf("%+v %v", comp, err)
	}
	comp, err = e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f"}}}, nil)
	if err != nil || comp.Served.String() != "a/m" {
		t.Fatalf("%+v %v", comp, err)
	}
	// Tools offered but turned off need no tools.
	comp, err = e.rt.Complete(ctx(t), withImage, moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f"}}, ToolChoice: &moltbot.ToolChoice{Mode: moltbot.ToolChoiceNone}}, nil)
	if err != nil || comp.Served.String() != "b/m" {
		t.Fatalf("%+v %v", comp, err)
	}
	calls := text.calls.Load() + vision.calls.Load()
	_, err = e.rt.Complete(ctx(t), withImage, moltbot.ChatOptions{Tools: []moltbot.Tool{{Name: "f"}}}, nil)
	var me *moltbot.Error
	if !errors.As(err, &me) || me.Code != moltbot.EInvalid || me.Param != "tools" || me.Message != "no model can serve this request: a/m lacks vision; b/m lacks tools (capabilities come from the provider's capabilities: in the config, or from the server)" {
		t.Fatalf("%#v", err)
	}
	if text.calls.Load()+vision.calls.Load() != calls {
		t.Fatal("a model was asked")
	}
	// A model asked for by name is held to its capabilities too.
	if _, err := e.rt.Complete(ctx(t), withImage, moltbot.ChatOptions{Model: "a/m"}, nil); code(err) != moltbot.EInvalid {
		t.Fatalf("%v", err)
	}
}

// describer is a fake provider that says what its models can do, as
// Ollama's /api/show does, and loads models as Ollama does: the first
// call of a model not in memory waits for it.
type describer struct {
	fake
	caps    map[string]moltbot.Capabilities
	loadFor time.Duration
	loads   atomic.Int64
	loaded  []string
	inMem   atomic.Bool
}

// Chat loads the model first when it is not in memory, as Ollama does.
func (d *describer) Chat(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
	if d.loadFor > 0 && !d.inMem.Load() {
		if err := d.Load(ctx, req.Model); err != nil {
			return inference.Result{}, err
		}
	}
	return d.fake.Chat(ctx, req, fn)
}

func (d *describer) Describe(_ context.Context, model string) (moltbot.Capabilities, error) {
	c, ok := d.caps[model]
	if !ok {
		return c, &inference.Error{Kind: inference.KindModelNotFound, Provider: "d", Message: "not found"}
	}
	return c, nil
}

func (d *describer) Loaded(context.Context) ([]string, error) { return d.loaded, nil }

func (d *describer) Load(ctx context.Context, model string) error {
	d.loads.Add(1)
	select {
	case <-time.After(d.loadFor):
		d.inMem.Store(true)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Capabilities learned from the server steer failover like configured ones.
func TestCapabilitiesLearned(t *testing.T) {
	d := &describer{fake: fake{chat: echo}, caps: map[string]moltbot.Capabilities{"m": {Known: true, Tools: true}}}
	e := start(t, []string{"d/m", "b/m"}, []ProviderSpec{spec("d", d), spec("b", &fake{chat: echo})}, func(c *Config) { c.HealthInterval = time.Hour })
	testutil.Eventually(t, 5*time.Second, "described", func() bool { return e.rt.providers.Get("d").Caps("m").Known })
	comp, err := e.rt.Complete(ctx(t), withImage, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Served.String() != "b/m" {
		t.Fatalf("%+v %v", comp, err)
	}
}

// A model that must be loaded first (Ollama on a small device) is given
// the time to load: its first token is timed from the load's end, so
// the load neither fails the request over nor counts against the
// model's breaker.
func TestColdModelNotFailedOver(t *testing.T) {
	d := &describer{fake: fake{chat: echo}, loadFor: 300 * time.Millisecond}
	e := start(t, []string{"d/m", "b/m"}, []ProviderSpec{spec("d", d), spec("b", &fake{chat: echo})}, func(c *Config) {
		c.Failover = failover.DefaultConfig()
		c.Failover.Latency = 100 * time.Millisecond
		c.HealthInterval = time.Hour
	})
	testutil.Eventually(t, 5*time.Second, "preloaded", func() bool { return d.loads.Load() > 0 && !e.rt.providers.Get("d").Cold("m") })
	// Unloaded again (keep_alive passed), and so seen by a health check:
	// the next call loads it first.
	d.inMem.Store(false)
	e.rt.providers.Get("d").SetLoaded(nil)
	comp, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil)
	if err != nil || comp.Served.String() != "d/m" || comp.Failovers != 0 {
		t.Fatalf("%+v %v", comp, err)
	}
	if d.loads.Load() != 2 {
		t.Fatalf("%d loads", d.loads.Load())
	}
	if st := e.rt.policy.Breaker("d", "m").Stats(time.Now()); st.State != failover.Closed || st.ErrorRate != 0 || st.P95 >= 100*time.Millisecond {
		t.Fatalf("the load was held against the model: %+v", st)
	}
	// Warm now: no load.
	if _, err := e.rt.Complete(ctx(t), oneMsg, moltbot.ChatOptions{}, nil); err != nil || d.loads.Load() != 2 {
		t.Fatalf("%v, %d loads", err, d.loads.Load())
	}
}
