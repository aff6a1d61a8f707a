//go:build !race && !edge

package actors

import (
	"testing"

	"github.com/moltbot/moltbot"
)

// A follower on a node that does not own the conversation gets its events
// from the owner, follows it to its next owner when the owner dies, and
// hears of its deletion.
func TestClusterSubscribeFollowsTheOwner(t *testing.T) {
	nodes := startCluster(t, 3)
	c, err := nodes[0].rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := ownerNode(nodes, "default", c.ID)
	var follower, other *tnode
	for _, n := range nodes {
		switch {
		case n == owner:
		case follower == nil:
			follower = n
		default:
			other = n
		}
	}
	evs := newEvents()
	ended := make(chan error, 1)
	go func() { ended <- follower.rt.Subscribe(ctx(t), "default", c.ID, evs.add) }()
	evs.until(t, "subscribed", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventSubscribed })

	res, err := other.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "through a third node"}, func(moltbot.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	evs.until(t, "the user message", func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventMessage && ev.Message.Content == "through a third node"
	})
	evs.until(t, "a token", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventToken })
	evs.until(t, "the reply", func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventMessage && ev.Message.Role == moltbot.RoleAssistant && ev.Message.Content == res.Message.Content
	})

	// The owner dies: the follower finds the next one.
	seen := evs.len()
	owner.kill()
	converge(t, nodes)
	evs.untilFrom(t, seen, "subscribed again", func(ev moltbot.Event) bool { return ev.Kind == moltbot.EventSubscribed })
	if _, err := other.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "after the death"}, nil); err != nil {
		t.Fatal(err)
	}
	evs.until(t, "a message after the move", func(ev moltbot.Event) bool {
		return ev.Kind == moltbot.EventMessage && ev.Message.Content == "after the death"
	})
	if err := other.rt.Delete(ctx(t), "default", c.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; code(err) != moltbot.ENotFound {
		t.Fatalf("after delete: %v", err)
	}
}
