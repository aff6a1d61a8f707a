//go:build !race && !edge

package actors

import (
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/testutil"
)

// A reply waiting in the outbox moves with its conversation: the owner
// dies before it could deliver, and the next owner delivers it.
func TestClusterOutboxMovesWithTheConversation(t *testing.T) {
	down := &fakeChannel{fail: -1, err: flaky}
	up := &fakeChannel{}
	// The first node's channel is down; the others' work.
	nodes := []*tnode{startNodeWith(t, nodeOpts{sim: fastSimOpts(), deliver: down})}
	for i := 1; i < 3; i++ {
		nodes = append(nodes, startNodeWith(t, nodeOpts{seed: nodes[0].cl.ID(), sim: fastSimOpts(), deliver: up}))
	}
	converge(t, nodes)
	// A conversation the first node owns.
	var id string
	for i := 0; id == ""; i++ {
		c, err := nodes[1].rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ownerNode(nodes, "default", c.ID) == nodes[0] {
			id = c.ID
		}
		if i > 50 {
			t.Fatal("no conversation landed on the first node")
		}
	}
	res, err := nodes[2].rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "hi", ReplyTo: &moltbot.Destination{Channel: "toy", Address: "room"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "an attempt on the owner", func() bool {
		down.mu.Lock()
		defer down.mu.Unlock()
		return down.seen > 0
	})
	nodes[0].kill()
	converge(t, nodes)
	testutil.Eventually(t, 15*time.Second, "delivered by the next owner", func() bool { return len(up.delivered()) > 0 })
	if got := up.delivered()[0]; got != "room: "+res.Message.Content {
		t.Errorf("delivered %q", got)
	}
	testutil.Eventually(t, 10*time.Second, "the outbox emptied", func() bool {
		c, err := nodes[1].rt.Get(ctx(t), "default", id)
		return err == nil && len(c.Outbox) == 0
	})
}
