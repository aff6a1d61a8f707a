//go:build !race && !edge

package actors

import (
	"reflect"
	"testing"

	"github.com/moltbot/moltbot"
)

// A summary moves with its conversation: the owner dies, and the next
// owner's turn reuses the summary its replica holds, without a model
// asked for it again.
func TestClusterSummaryMovesWithTheConversation(t *testing.T) {
	recs := []*recorder{newRecorder(), newRecorder()}
	nodes := []*tnode{startNodeWith(t, nodeOpts{provider: recs[0], tweak: smallContext})}
	nodes = append(nodes, startNodeWith(t, nodeOpts{seed: nodes[0].cl.ID(), provider: recs[1], tweak: smallContext}))
	converge(t, nodes)
	// A conversation the first node owns, its turns forwarded from the second.
	var id string
	for i := 0; id == ""; i++ {
		c, err := nodes[1].rt.Create(ctx(t), "default", CreateOptions{System: "be brief"})
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
	before := summarized(t, nodes[1].rt, id)
	if sums, _ := recs[0].since(0); len(sums) != 1 {
		t.Fatalf("the owner made %d summaries", len(sums))
	}
	nodes[0].kill()
	converge(t, nodes)

	after, err := nodes[1].rt.Get(ctx(t), "default", id)
	if err != nil || !reflect.DeepEqual(after.Summary, before.Summary) {
		t.Fatalf("on the next owner: %+v (%v), before %+v", after.Summary, err, before.Summary)
	}
	n := recs[1].count()
	if _, err := nodes[1].rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "and then?"}, nil); err != nil {
		t.Fatal(err)
	}
	sums, chats := recs[1].since(n)
	got, _ := nodes[1].rt.Get(ctx(t), "default", id)
	if len(sums) != 0 || len(chats) != 1 || !reflect.DeepEqual(got.Summary, before.Summary) {
		t.Fatalf("%d summary calls on the next owner; summary %+v", len(sums), got.Summary)
	}
	checkContext(t, got, chats[0])
}
