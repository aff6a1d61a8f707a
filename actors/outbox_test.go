package actors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
)

// fakeChannel is a Deliverer: it fails the first `fail` attempts with err,
// then takes every message.
type fakeChannel struct {
	mu   sync.Mutex
	fail int
	err  error
	got  []string // "address: content"
	ids  []string
	seen int // attempts
}

func (f *fakeChannel) Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen++
	if f.fail != 0 {
		if f.fail > 0 {
			f.fail--
		}
		return f.err
	}
	f.got = append(f.got, to.Address+": "+m.Content)
	f.ids = append(f.ids, m.ID)
	return nil
}

func (f *fakeChannel) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

var flaky = &moltbot.Error{Code: moltbot.EUnavailable, Message: "the chat platform answered 502"}

// A reply sent to a destination is recorded in the outbox with the reply,
// retried with backoff through transient failures, then removed; the
// conversation is not passivated while it waits.
func TestOutboxDeliversWithRetries(t *testing.T) {
	ch := &fakeChannel{fail: 2, err: flaky}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff, c.IdleTimeout = ch, 5*time.Millisecond, 5*time.Millisecond
	})
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "chat-7"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the reply delivered", func() bool { return len(ch.delivered()) == 1 })
	if got := ch.delivered()[0]; got != "chat-7: "+res.Message.Content {
		t.Errorf("delivered %q", got)
	}
	testutil.Eventually(t, 10*time.Second, "the outbox emptied", func() bool {
		got, err := e.rt.Get(ctx(t), "default", c.ID)
		return err == nil && len(got.Outbox) == 0
	})
	if stored, _ := e.store.Get("default", c.ID); len(stored.Outbox) != 0 {
		t.Errorf("stored outbox %+v", stored.Outbox)
	}
	if ok, retry := e.met.Sum(metrics.OutboxDeliveries), ch.seen; ok != 3 || retry != 3 {
		t.Errorf("deliveries counted %d, attempts %d; want 3 and 3", ok, retry)
	}
}

// What waits in an outbox is delivered after a restart, with no request:
// the node wakes the conversations that have deliveries to make.
func TestOutboxSurvivesRestart(t *testing.T) {
	down := &fakeChannel{fail: -1, err: flaky}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = down, time.Hour // one attempt, then a long wait
	})
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "a"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the first attempt recorded", func() bool {
		got, _ := e.store.Get("default", c.ID)
		return got != nil && len(got.Outbox) == 1 && got.Outbox[0].Attempts == 1
	})
	stored, _ := e.store.Get("default", c.ID)
	if d := stored.Outbox[0]; d.Message != res.Message.ID || d.LastError == "" || d.NextAt == 0 || d.Failed {
		t.Fatalf("recorded %+v", d)
	}
	e.rt.Shutdown(context.Background())

	up := &fakeChannel{}
	rt2, err := New(Config{Providers: []ProviderSpec{simSpec()}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: e.store, Metrics: metrics.New("test"), HealthInterval: time.Hour, Deliver: up, DeliverBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Shutdown(context.Background())
	// Its next attempt is due in an hour: the new node honours that...
	time.Sleep(20 * time.Millisecond)
	if n := len(up.delivered()); n != 0 {
		t.Fatalf("delivered before it was due: %d", n)
	}
	// ...unless it is due now.
	stored.Outbox[0].NextAt = 0
	stored.Version++
	e.store.Put(stored, true)
	rt3, err := New(Config{Providers: []ProviderSpec{simSpec()}, Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}},
		Store: e.store, Metrics: metrics.New("test"), HealthInterval: time.Hour, Deliver: up, DeliverBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rt3.Shutdown(context.Background())
	testutil.Eventually(t, 10*time.Second, "delivered after the restart", func() bool { return len(up.delivered()) == 1 })
}

// A destination that refuses for good (not found) is given up at once and
// kept in the outbox, marked failed.
func TestOutboxGivesUp(t *testing.T) {
	ch := &fakeChannel{fail: -1, err: moltbot.Errorf(moltbot.ENotFound, "no such chat")}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = ch, time.Millisecond
	})
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "gone"}}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the delivery given up", func() bool {
		got, _ := e.rt.Get(ctx(t), "default", c.ID)
		return got != nil && len(got.Outbox) == 1 && got.Outbox[0].Failed
	})
	time.Sleep(20 * time.Millisecond)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.seen != 1 {
		t.Errorf("%d attempts after a permanent refusal", ch.seen)
	}
}

// One destination gets a conversation's replies in the order they were
// made, the second waiting while the first is retried.
func TestOutboxKeepsOrderPerDestination(t *testing.T) {
	ch := &fakeChannel{fail: 3, err: flaky}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = ch, time.Millisecond
	})
	c, _ := e.rt.Create(ctx(t), "default", CreateOptions{})
	room := &moltbot.Destination{Channel: "toy", Address: "room"}
	var want []string
	for _, text := range []string{"one", "two", "three"} {
		res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: text, ReplyTo: room}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Message.ID)
	}
	testutil.Eventually(t, 10*time.Second, "three deliveries", func() bool { return len(ch.delivered()) == 3 })
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i := range want {
		if ch.ids[i] != want[i] {
			t.Fatalf("delivered in the order %v, made in %v", ch.ids, want)
		}
	}
}
