package actors

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// events collects a follower's events.
type events struct {
	mu   sync.Mutex
	list []moltbot.Event
	got  chan struct{}
}

func newEvents() *events { return &events{got: make(chan struct{}, 1024)} }

func (e *events) add(ev moltbot.Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
	e.got <- struct{}{}
}

// until waits for an event that ok accepts.
func (e *events) until(t *testing.T, what string, ok func(moltbot.Event) bool) moltbot.Event {
	t.Helper()
	return e.untilFrom(t, 0, what, ok)
}

// len is how many events came.
func (e *events) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.list)
}

// untilFrom waits for an event at index from or later that ok accepts (ok
// is called with e locked).
func (e *events) untilFrom(t *testing.T, from int, what string, ok func(moltbot.Event) bool) moltbot.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for seen := from; ; {
		e.mu.Lock()
		for ; seen < len(e.list); seen++ {
			if ok(e.list[seen]) {
				ev := e.list[seen]
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.got:
		case <-timeout:
			var kinds []string
			e.mu.Lock()
			for _, ev := range e.list {
				k := fmt.Sprint(ev.Kind)
				if ev.Err != nil {
					k += ":" + ev.Err.Error()
				}
				kinds = append(kinds, k)
			}
			e.mu.Unlock()
			t.Fatalf("no %s among %d events: %v", what, seen, kinds)
		}
	}
}

func isMessage(role moltbot.Role) func(moltbot.Event) bool {
	return func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventMessage && ev.Message.Role == role
	}
}

// A follower sees each message stored and the tokens of a turn, and hears
// of the conversation's deletion, which ends it.
func TestSubscribeFollowsAConversation(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs := newEvents()
	ended := make(chan error, 1)
	go func() { ended <- e.rt.Subscribe(ctx(t), "default", c.ID, evs.add) }()
	evs.until(t, "subscribed", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventSubscribed })

	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hello"}, func(moltbot.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if u := evs.until(t, "the user message", isMessage(moltbot.RoleUser)); u.Message.Content != "hello" {
		t.Errorf("user message %+v", u.Message)
	}
	evs.until(t, "a token", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventToken && ev.Served.String() == "sim/sim" })
	if a := evs.until(t, "the reply", isMessage(moltbot.RoleAssistant)); a.Message.Content != res.Message.Content {
		t.Errorf("reply %q, the turn's %q", a.Message.Content, res.Message.Content)
	}
	if err := e.rt.Delete(ctx(t), "default", c.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; code(err) != moltbot.ENotFound {
		t.Fatalf("after delete: %v", err)
	}
	evs.until(t, "the end", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventError })
	if n := e.rt.convs.Hub().Count(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}

// Following a conversation that does not exist fails at once; a follower
// whose context ends leaves nothing behind.
func TestSubscribeMissingAndCanceled(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	if err := e.rt.Subscribe(ctx(t), "default", "nope", func(moltbot.Event) {}); code(err) != moltbot.ENotFound {
		t.Fatalf("missing: %v", err)
	}
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	cctx, cancel := context.WithCancel(ctx(t))
	evs := newEvents()
	ended := make(chan error, 1)
	go func() { ended <- e.rt.Subscribe(cctx, "default", c.ID, evs.add) }()
	evs.until(t, "subscribed", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventSubscribed })
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("canceled: %v", err)
	}
	if n := e.rt.convs.Hub().Count(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
}
