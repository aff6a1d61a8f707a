package actors

// Findings of the review of the seam, subscriptions and the outbox, one
// test each (in one process, with -race).

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
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
