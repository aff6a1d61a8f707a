//go:build !race && !edge

package actors

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/moltbot/moltbot"
)

// countStage keeps a count with the conversation and answers with it.
type countStage struct{}

func (countStage) BeforeModel(ctx context.Context, t *moltbot.Turn, fn moltbot.StreamFunc) (*moltbot.Completion, error) {
	n, _ := strconv.Atoi(string(t.StateOf("count")))
	n++
	if err := t.SetState("count", []byte(strconv.Itoa(n))); err != nil {
		return nil, err
	}
	return &moltbot.Completion{Content: fmt.Sprint("count ", n), FinishReason: "stop"}, nil
}

// A stage's state moves with its conversation in a cluster: turns that
// arrive at any node count on at the owner, the replicas hold the state
// with the snapshot, and after the owner dies the next one counts on.
func TestClusterStageStateMoves(t *testing.T) {
	withCount := func(c *Config) { c.Before = []BeforeModel{countStage{}} }
	nodes := []*tnode{startNodeWith(t, nodeOpts{sim: fastSimOpts(), tweak: withCount})}
	for range 2 {
		nodes = append(nodes, startNodeWith(t, nodeOpts{seed: nodes[0].cl.ID(), sim: fastSimOpts(), tweak: withCount}))
	}
	converge(t, nodes)
	c, err := nodes[0].rt.Create(ctx(t), "default", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		res, err := nodes[i%3].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "again"}, nil)
		if err != nil || res.Message.Content != fmt.Sprint("count ", i+1) {
			t.Fatalf("turn %d via node %d: %+v %v", i, i%3, res, err)
		}
	}
	owner := ownerNode(nodes, "default", c.ID)
	rank := nodes[0].rt.link.currentRing().Ranked("default/"+c.ID, 2)
	for _, n := range nodes {
		if n.cl.ID() == rank[1].ID {
			s, err := n.store.Get("default", c.ID)
			if err != nil || string(s.State["count"]) != "4" {
				t.Fatalf("the replica holds %+v %v", s, err)
			}
		}
	}
	owner.kill()
	converge(t, nodes)
	res, err := live(nodes)[0].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "after"}, nil)
	if err != nil || res.Message.Content != "count 5" {
		t.Fatalf("after the owner's death: %+v %v", res, err)
	}
}
