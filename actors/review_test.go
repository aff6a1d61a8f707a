//go:build !edge

package actors

// Findings of the review of the seam, subscriptions and the outbox, one
// test each (in one process, with -race).

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/testutil"
)

// A node's sinks (and futures) are named by a counter of its actor system.
// Other members address them by RPC address and id, and keep doing so for
// a while (a forwarded turn streams to its sink for minutes, a follower's
// lease lives 30 s unrenewed). A node that restarts keeps its address, so
// its ids must not start again where its previous life's did: a chunk, a
// result or a followed conversation's events meant for the old sink would
// reach a new one, of another request and maybe another tenant.
func TestReviewSinkIDsDifferAcrossLives(t *testing.T) {
	sinkID := func() string {
		e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
		defer e.rt.Shutdown(context.Background())
		return e.rt.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor { return make(envelopes) }), "sink").Id
	}
	if a, b := sinkID(), sinkID(); a == b {
		t.Fatalf("two lives of a node name their first sink alike (%s): a member still streaming to the first one's reaches the second", a)
	}
}

// A member's subscription lease is kept by its sink: a Subscribe for
// another conversation with the same sink (a sink id of the member's
// former life, or a member's own mistake) must follow that conversation,
// not renew the old lease and keep sending the old conversation's events
// (another tenant's) to the new follower.
func TestReviewSubscribeLeaseIsForItsConversation(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	rt := e.rt
	self, m := localNode(rt, "self"), localNode(rt, "m1")
	rt.Link().Attach(newFakePlace(self, m))
	agentAt := spawnAgent(t, rt)
	x, err := rt.Create(ctx(t), "a", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := rt.Create(ctx(t), "b", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs := make(envelopes, 256)
	sink := rt.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor { return evs }), "sink")
	subscribe := func(tenant, id string) {
		rt.system.Root.Send(agentAt, &pb.Envelope{Protocol: cluster.Protocol, FromNode: m.ID, ReplyAddress: sink.Address, ReplyId: sink.Id,
			Body: &pb.Envelope_Subscribe{Subscribe: &pb.Subscribe{Tenant: tenant, Id: id, LeaseMs: followLease.Milliseconds()}}})
	}
	subscribed := func(what string) {
		t.Helper()
		if ev := recv(t, evs, what).GetConvEvent(); moltbot.EventKind(ev.GetKind()) != moltbot.EventSubscribed {
			t.Fatalf("%s: got %v", what, ev)
		}
	}
	subscribe("a", x.ID)
	subscribed("subscribed to a's conversation")
	subscribe("b", y.ID)
	subscribed("subscribed to b's conversation with the same sink")

	if _, err := rt.Turn(ctx(t), "a", x.ID, moltbot.TurnInput{Content: "secret of tenant a"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Turn(ctx(t), "b", y.ID, moltbot.TurnInput{Content: "hello from b"}, nil); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case env := <-evs:
			msg := env.GetConvEvent().GetMessage()
			switch msg.GetContent() {
			case "secret of tenant a":
				t.Fatal("the follower of b's conversation got a message of a's")
			case "hello from b":
				return
			}
		case <-timeout:
			t.Fatal("the follower of b's conversation got none of its messages")
		}
	}
}

// A reply's id is its turn's id and ":a"; an external id is the client's
// (or a channel's) and may end in ":a" too, so a later user message can
// carry the id of an earlier reply. The outbox delivers the reply it
// recorded, not the user's message that took its id.
func TestReviewOutboxDeliversTheReplyNotAUserMessageOfItsID(t *testing.T) {
	ch := &fakeChannel{fail: 1, err: flaky}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = ch, 500*time.Millisecond
	})
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ExternalID: "ev1",
		ReplyTo: &moltbot.Destination{Channel: "toy", Address: "chat"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Before the retry: a message whose external id makes its id the reply's.
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "the user's own words", ExternalID: "ev1:a"}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the reply delivered", func() bool { return len(ch.delivered()) == 1 })
	if got, want := ch.delivered()[0], "chat: "+res.Message.Content; got != want {
		t.Fatalf("delivered %q, want the reply %q", got, want)
	}
}

// A delivery refused for good is kept, marked failed, to be seen; but each
// one stays in the conversation's header for good, which every later turn
// writes again: a destination that refuses every reply must not make a
// conversation's outbox (and each turn's write) grow without bound.
func TestReviewFailedDeliveriesBounded(t *testing.T) {
	ch := &fakeChannel{fail: -1, err: moltbot.Errorf(moltbot.EForbidden, "the bot was removed from the chat")}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = ch, time.Millisecond
	})
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const turns = 40
	for i := 0; i < turns; i++ {
		if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("m", i),
			ReplyTo: &moltbot.Destination{Channel: "toy", Address: "gone"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "every delivery tried", func() bool {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return ch.seen == turns
	})
	testutil.Eventually(t, 10*time.Second, "every delivery given up", func() bool {
		got, _ := e.rt.Get(ctx(t), "default", c.ID)
		return got != nil && !waiting(got.Outbox)
	})
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Outbox) > 16 { // conv.maxFailedDeliveries
		t.Fatalf("the outbox keeps %d failed deliveries (of %d turns)", len(got.Outbox), turns)
	}
	if last := got.Outbox[len(got.Outbox)-1]; last.Message != got.Messages[len(got.Messages)-1].ID {
		t.Errorf("the newest failure is not kept: %+v", last)
	}
}

// A retention trim drops the oldest messages; a reply still waiting in the
// outbox must not be among them, or its delivery is lost ("the message is
// no longer stored"). The trim waits for a later sweep instead.
func TestReviewRetentionKeepsMessagesWaitingForDelivery(t *testing.T) {
	ch := &fakeChannel{fail: 2, err: flaky}
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) {
		c.Deliver, c.DeliverBackoff = ch, 300*time.Millisecond
	})
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "first", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "chat"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "second"}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := e.rt.Get(ctx(t), "default", c.ID)
	if !waiting(got.Outbox) {
		t.Fatalf("the reply is not waiting: %+v", got.Outbox)
	}
	err = RetentionOf(e.rt).Retain(ctx(t), "default", c.ID, got.Version, 2) // the first turn
	if err != nil && !errors.Is(err, ErrChanged) {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the outbox settled", func() bool {
		got, _ := e.rt.Get(ctx(t), "default", c.ID)
		return got != nil && !waiting(got.Outbox)
	})
	got, _ = e.rt.Get(ctx(t), "default", c.ID)
	if len(got.Outbox) != 0 {
		t.Fatalf("the waiting reply was trimmed away and given up: %+v", got.Outbox)
	}
	if d := ch.delivered(); len(d) != 1 || d[0] != "chat: "+res.Message.Content {
		t.Fatalf("delivered %q", d)
	}
}

// Shutdown "ends every goroutine the runtime started and waits for them":
// a delivery in flight too, or the channel adapters, stopped after the
// runtime, are called after they were stopped.
func TestReviewShutdownWaitsForDeliveries(t *testing.T) {
	started, returned := make(chan struct{}), make(chan struct{})
	dl := deliverFunc(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // an adapter that takes a moment to give up
		close(returned)
		return ctx.Err()
	})
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) { c.Deliver = dl })
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "a"}}, nil); err != nil {
		t.Fatal(err)
	}
	recv(t, started, "a delivery")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.rt.Shutdown(sctx)
	select {
	case <-returned:
	default:
		<-returned
		t.Fatal("Shutdown returned while a delivery was still running")
	}
}

type deliverFunc func(ctx context.Context) error

func (f deliverFunc) Deliver(ctx context.Context, _, _ string, _ moltbot.Destination, _ moltbot.Message) error {
	return f(ctx)
}

// afterFails is an AfterModel stage that fails every turn.
type afterFails struct{}

func (afterFails) AfterModel(context.Context, *moltbot.Turn, *moltbot.Completion) error {
	return moltbot.Errorf(moltbot.EInternal, "the post-processing failed")
}

// An AfterModel stage that fails a streamed turn fails it after the client
// saw the whole reply: the conversation holds what the user saw, marked
// incomplete, as when a model fails mid-reply (else the next turn's context
// lacks a reply the user read, and a retry asks the model again).
func TestReviewFailedAfterStageKeepsTheTextShown(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) { c.After = []AfterModel{afterFails{}} })
	c, err := e.rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var shown string
	_, err = e.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "hi"}, func(ch moltbot.Chunk) error {
		shown += ch.Content
		return nil
	})
	if code(err) != moltbot.EInternal || shown == "" {
		t.Fatalf("turn: %v, shown %q", err, shown)
	}
	got, err := e.rt.Get(ctx(t), "default", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Messages); n != 2 || got.Messages[1].Content != shown || !got.Messages[1].Incomplete {
		t.Fatalf("the user saw %q; the conversation holds %+v", shown, got.Messages)
	}
}

// A follower whose conversation's owner never answers (its agent is gone,
// the network drops the request) must hear so, not wait for as long as
// its caller does: chat.Subscribe returns only once the follower is in
// place, so an HTTP follower would get no answer at all.
func TestReviewFollowerOfASilentOwnerGivesUp(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	rt := e.rt
	self, owner := localNode(rt, "self"), localNode(rt, "owner")
	place := newFakePlace(self, owner)
	place.ring = cluster.NewRing([]cluster.Node{owner}) // the owner of everything, with no agent to answer
	rt.Link().Attach(place)
	ended := make(chan error, 1)
	go func() { ended <- rt.Subscribe(ctx(t), "default", "c", func(moltbot.Event) {}) }()
	select {
	case err := <-ended:
		if code(err) != moltbot.EUnavailable {
			t.Fatalf("want unavailable, got %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the follower still waits for an owner that never answered")
	}
}
