package conv

import (
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// raceCluster owns every conversation; its Acquire finds no other copy,
// but while it waits the former owner's last turn is replicated into this
// node's store (what serveReplicate does, concurrently with the actor).
type raceCluster struct {
	store    storage.Store
	late     *moltbot.Conversation
	mu       sync.Mutex
	replicas []*moltbot.Conversation
}

func (c *raceCluster) Clustered() bool                                             { return true }
func (c *raceCluster) IsOwner(string, string) bool                                 { return true }
func (c *raceCluster) ReplicaTargets(string, string) []cluster.Node                { return nil }
func (c *raceCluster) Replicate(*moltbot.Conversation, []cluster.Node, bool) error { return nil }
func (c *raceCluster) Acquire(string, string) *moltbot.Conversation {
	if c.late != nil {
		if stored, _, _, err := c.store.PutIfNewer(c.late, true); err != nil || !stored {
			panic("the former owner's replica write was refused before the takeover")
		}
	}
	return nil
}

func turnConv(epoch, version uint64, turns int) *moltbot.Conversation {
	c := &moltbot.Conversation{Tenant: "t", ID: "c", Epoch: epoch, Version: version}
	for i := range turns {
		c.Messages = append(c.Messages,
			moltbot.Message{ID: "u" + string(rune('0'+i)), Role: moltbot.RoleUser, Content: "q"},
			moltbot.Message{ID: "u" + string(rune('0'+i)) + ":a", Role: moltbot.RoleAssistant, Content: "a"})
	}
	return c
}

// A new owner that read its local copy, then waited for the other holders
// (Acquire), must serve the turn the former owner replicated to it
// meanwhile (acknowledged to its client), and fence the former owner's
// later writes off. It wrote the copy it had read over that turn.
func TestActivateKeepsReplicaWrites(t *testing.T) {
	store := storage.NewMemory()
	before := turnConv(3, 4, 2)
	if err := store.Put(before, true); err != nil {
		t.Fatal(err)
	}
	late := turnConv(3, 5, 3) // the former owner's acknowledged third turn
	cl := &raceCluster{store: store, late: late}
	d := &deps{store: store, cluster: cl, met: metrics.New("test"), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a := &conversation{d: d, tenant: "t", id: "c"}
	a.own.a = a
	local, err := store.Get("t", "c")
	if err != nil {
		t.Fatal(err)
	}
	got := a.own.activate(local)
	if got == nil || len(got.Messages) != 6 || got.Version != 5 || got.Epoch != 4 {
		t.Fatalf("serving %d messages at epoch %d version %d, want the former owner's 6 at epoch 4 version 5", len(got.Messages), got.Epoch, got.Version)
	}
	held, err := store.Get("t", "c")
	if err != nil || len(held.Messages) != 6 || held.Epoch != 4 {
		t.Fatalf("the store holds %v (err %v), want the acknowledged turn at the new epoch", held, err)
	}
	// The former owner's next write is fenced off by the new epoch.
	if stored, _, _, _ := store.PutIfNewer(turnConv(3, 6, 4), true); stored {
		t.Fatal("a write of the former epoch was taken after the takeover")
	}
}

// Nothing stored and nothing acquired: nothing to serve.
func TestActivateNothing(t *testing.T) {
	store := storage.NewMemory()
	d := &deps{store: store, cluster: &raceCluster{store: store}, met: metrics.New("test"), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a := &conversation{d: d, tenant: "t", id: "c"}
	a.own.a = a
	if got := a.own.activate(nil); got != nil {
		t.Fatalf("activated %+v from nothing", got)
	}
}
