package actors

// Failure gaps of issue 11, one test each: a provider restarting after a
// panic, a conversation that panics. The cluster link's are in
// link_test.go.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// within runs f and fails t if it has not returned after d (a stall).
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	out := make(chan T, 1)
	go func() { out <- f() }()
	select {
	case v := <-out:
		return v
	case <-time.After(d):
		t.Fatalf("%s: no answer within %v", what, d)
		panic("unreachable")
	}
}

type completion struct {
	comp *moltbot.Completion
	err  error
}

// A provider that panicked is skipped while it restarts (its backoff), not
// waited for: the next call fails over at once. Before, the call sat in the
// suspended mailbox for the whole backoff.
func TestRestartingProviderIsSkipped(t *testing.T) {
	var n atomic.Int64
	flaky := &fake{chat: func(ctx context.Context, req *inference.Request, fn inference.DeltaFunc) (inference.Result, error) {
		if n.Add(1) == 1 {
			panic("boom")
		}
		return echo(ctx, req, fn)
	}}
	clock := newFakeClock()
	e := start(t, []string{"flaky/m", "sim/sim"}, []ProviderSpec{spec("flaky", flaky), simSpec()}, func(c *Config) {
		c.RestartBackoff = 20 * time.Second
		c.clock = clock.Now
	})
	msgs := []moltbot.Message{{Role: moltbot.RoleUser, Content: "x"}}
	complete := func(model string) completion {
		return within(t, 5*time.Second, "a call while the provider restarts", func() completion {
			comp, err := e.rt.Complete(ctx(t), msgs, moltbot.ChatOptions{Model: model}, nil)
			return completion{comp, err}
		})
	}
	if r := complete(""); r.err != nil || r.comp.Served.String() != "sim/sim" {
		t.Fatalf("the panicking call was not rerouted: %+v %v", r.comp, r.err)
	}
	testutil.Eventually(t, 5*time.Second, "restart counted", func() bool { return e.met.Get(metrics.ActorRestarts, "provider") == 1 })

	// Within the backoff (the clock has not moved): skipped, not waited for.
	r := complete("")
	if r.err != nil || r.comp.Served.String() != "sim/sim" || r.comp.Failovers != 1 {
		t.Fatalf("during the backoff: %+v %v", r.comp, r.err)
	}
	if got := e.met.Get(metrics.Failovers, "flaky/m", "sim/sim", "restarting"); got != 1 {
		t.Errorf("failovers{reason=restarting} = %d, want 1", got)
	}
	if flaky.calls.Load() != 1 {
		t.Errorf("the restarting provider was asked %d times", flaky.calls.Load())
	}
	// Asked for by name (nothing to skip to), the call reaches the actor,
	// which answers busy at once with the time left.
	r = complete("flaky/m")
	var me *moltbot.Error
	if !errors.As(r.err, &me) || me.Code != moltbot.EBusy || !strings.Contains(me.Message, "restarting") || me.RetryAfter != 20*time.Second {
		t.Fatalf("the restarting provider by name: %v (%+v), want busy, retry after the backoff left", r.err, me)
	}

	// Once the backoff is over it serves again.
	clock.Advance(20 * time.Second)
	if r := complete(""); r.err != nil || r.comp.Served.String() != "flaky/m" || r.comp.Failovers != 0 {
		t.Fatalf("after the backoff: %+v %v", r.comp, r.err)
	}
}

// panicStore panics in Put when when(c) holds: a bug in the conversation
// actor's own code path, on demand.
type panicStore struct {
	*storage.Memory
	when func(c *moltbot.Conversation) bool
}

func (s *panicStore) Put(c *moltbot.Conversation, sync bool) error {
	if s.when(c) {
		panic("test: the store exploded")
	}
	return s.Memory.Put(c, sync)
}

func last(c *moltbot.Conversation) moltbot.Message {
	if len(c.Messages) == 0 {
		return moltbot.Message{}
	}
	return c.Messages[len(c.Messages)-1]
}

func crashOn(c *moltbot.Conversation) bool {
	m := last(c)
	return c.System == "crash" || // create
		m.Role == moltbot.RoleUser && m.Content == "crash" || // the user message
		m.Role == moltbot.RoleAssistant && strings.Contains(m.Content, "crash-reply") // the reply
}

func startCrashing(t *testing.T, tweak func(*Config)) *env {
	return start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: echo})}, func(c *Config) {
		c.Store = &panicStore{Memory: c.Store.(*storage.Memory), when: crashOn}
		if tweak != nil {
			tweak(c)
		}
	})
}

// The request whose handling made a conversation actor panic is answered
// at once (an internal error, retriable), and the conversation serves
// again after its restart. Before, the caller waited until it gave up.
func TestCrashedRequestIsAnswered(t *testing.T) {
	e := startCrashing(t, nil)
	for _, tc := range []struct {
		name string
		do   func(id string) error
	}{
		{"create", func(string) error {
			_, err := e.rt.Create(ctx(t), "default", CreateOptions{System: "crash"})
			return err
		}},
		{"storing the user message", func(id string) error {
			_, err := e.rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "crash", Options: moltbot.ChatOptions{}}, nil)
			return err
		}},
		{"storing the reply", func(id string) error {
			_, err := e.rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "crash-reply", Options: moltbot.ChatOptions{}}, func(moltbot.Chunk) error { return nil })
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			restarts := e.met.Get(metrics.ActorRestarts, "conversation")
			err = within(t, 5*time.Second, "the crashed request", func() error { return tc.do(c.ID) })
			if code(err) != moltbot.EInternal || !strings.Contains(err.Error(), "crashed") {
				t.Fatalf("the crashed request: %v", err)
			}
			testutil.Eventually(t, 5*time.Second, "restart counted", func() bool {
				return e.met.Get(metrics.ActorRestarts, "conversation") == restarts+1
			})
			if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "still there?", Options: moltbot.ChatOptions{}}, nil); err != nil {
				t.Fatalf("after the restart: %v", err)
			}
		})
	}
}

// A conversation restarted after a panic is passivated again when idle.
// Before, its count of handled messages started again at 0 and never
// matched the manager's count, so it stayed in memory for good.
func TestRestartedConversationPassivates(t *testing.T) {
	e := startCrashing(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "crash", Options: moltbot.ChatOptions{}}, nil) // its answer is the test above's business
	testutil.Eventually(t, 5*time.Second, "restart counted", func() bool { return e.met.Get(metrics.ActorRestarts, "conversation") == 1 })
	testutil.Eventually(t, 5*time.Second, "the restarted conversation passivated", func() bool { return e.rt.ActiveConversations() == 0 })
	if got, err := e.rt.Get(ctx(t), "default", c.ID); err != nil || len(got.Messages) != 0 {
		t.Fatalf("after reactivation: %+v %v", got, err)
	}
}
