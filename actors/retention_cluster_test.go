//go:build !race && !edge

package actors

import (
	"fmt"
	"testing"

	"github.com/moltbot/moltbot"
)

// In a cluster exactly one node owns each conversation (so a sweep of
// every node's store acts on each once); a retention decision runs only on
// the owner, and its trim and delete reach the replicas.
func TestClusterRetention(t *testing.T) {
	nodes := startCluster(t, 3)
	var ids []string
	for i := 0; i < 6; i++ {
		c, err := nodes[i%3].rt.Create(ctx(t), "default", CreateOptions{System: "sys"})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ {
			if _, err := nodes[0].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("turn ", j)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		owners := 0
		var owner *tnode
		for _, n := range nodes {
			if RetentionOf(n.rt).Owns("default", id) {
				owners++
				owner = n
			}
		}
		if owners != 1 {
			t.Fatalf("%s has %d owners", id, owners)
		}
		got, err := owner.store.Get("default", id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n != owner {
				if err := RetentionOf(n.rt).Retain(ctx(t), "default", id, got.Version, 2); code(err) != moltbot.EMoved {
					t.Fatalf("a non-owner applied a decision: %v", err)
				}
			}
		}
		if err := RetentionOf(owner.rt).Retain(ctx(t), "default", id, got.Version, 2); err != nil {
			t.Fatal(err)
		}
		replica := nodes[0].rt.link.currentRing().Ranked("default/"+id, 2)[1]
		for _, n := range nodes {
			if n.cl.ID() != replica.ID {
				continue
			}
			s, err := n.store.Get("default", id)
			if err != nil || len(s.Messages) != 2 || s.Messages[0].Content != "turn 1" || s.Version != got.Version+1 {
				t.Fatalf("the replica holds %+v, %v", s, err)
			}
			if err := RetentionOf(owner.rt).Retain(ctx(t), "default", id, got.Version+1, -1); err != nil {
				t.Fatal(err)
			}
			if s, err := n.store.Get("default", id); err != nil || !s.Deleted {
				t.Fatalf("the replica holds %+v, %v after the delete; want a tombstone", s, err)
			}
		}
	}
	for i, n := range nodes {
		for _, id := range ids {
			if _, err := n.rt.Get(ctx(t), "default", id); code(err) != moltbot.ENotFound {
				t.Fatalf("node %d still serves %s: %v", i, id, err)
			}
		}
	}
}
