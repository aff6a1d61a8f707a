//go:build !race && !edge

package actors

import (
	"context"
	"sync"
	"testing"

	"github.com/moltbot/moltbot"
)

// botSeer is a stage that records the bot of each turn it sees.
type botSeer struct {
	mu   sync.Mutex
	seen []string
}

func (b *botSeer) BeforeModel(_ context.Context, t *moltbot.Turn, _ moltbot.StreamFunc) (*moltbot.Completion, error) {
	name := "-"
	if t.Bot != nil {
		name = t.Bot.Name
	}
	b.mu.Lock()
	b.seen = append(b.seen, name)
	b.mu.Unlock()
	return nil, nil
}

func (b *botSeer) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return ""
	}
	return b.seen[len(b.seen)-1]
}

type fixedBots map[string]*moltbot.Bot

func (f fixedBots) Bot(tenant, name string) *moltbot.Bot {
	if b := f[name]; b != nil && b.Tenant == tenant {
		return b
	}
	return nil
}

// A conversation created with a bot on any node records it at its owner;
// every node reads it, its turns run as the bot wherever they arrive, and
// it keeps its bot when its owner dies and another takes it.
func TestClusterConversationKeepsItsBot(t *testing.T) {
	bots := fixedBots{"support": {Name: "support", Tenant: "default", Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}}}
	seers := []*botSeer{{}, {}, {}}
	var nodes []*tnode
	for i := range seers {
		seed := ""
		if i > 0 {
			seed = nodes[0].cl.ID()
		}
		seer := seers[i]
		nodes = append(nodes, startNodeWith(t, nodeOpts{seed: seed, sim: fastSimOpts(), tweak: func(c *Config) {
			c.Bots, c.Before = bots, []BeforeModel{seer}
		}}))
	}
	converge(t, nodes)
	var ids []string
	for i := 0; i < 6; i++ {
		c, err := nodes[i%3].rt.Create(ctx(t), "default", CreateOptions{Bot: "support"})
		if err != nil || c.Bot != "support" {
			t.Fatalf("create via node %d: %+v %v", i%3, c, err)
		}
		ids = append(ids, c.ID)
	}
	turn := func(n *tnode, id string) {
		t.Helper()
		if _, err := n.rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "hi"}, nil); err != nil {
			t.Fatalf("turn of %s via %s: %v", id, n.cl.ID(), err)
		}
		owner := ownerNode(nodes, "default", id)
		for i, o := range nodes {
			if o == owner && seers[i].last() != "support" {
				t.Fatalf("the owner of %s ran a turn of bot %q", id, seers[i].last())
			}
		}
	}
	for i, id := range ids {
		turn(nodes[(i+1)%3], id)
		for j, n := range nodes {
			if got, err := n.rt.Get(ctx(t), "default", id); err != nil || got.Bot != "support" {
				t.Fatalf("%s via node %d: %+v %v", id, j, got, err)
			}
		}
	}
	victim := ownerNode(nodes, "default", ids[0])
	victim.kill()
	converge(t, nodes)
	for _, id := range ids {
		for _, n := range live(nodes) {
			if got, err := n.rt.Get(ctx(t), "default", id); err != nil || got.Bot != "support" {
				t.Fatalf("%s via %s after the owner's death: %+v %v", id, n.cl.ID(), got, err)
			}
		}
		turn(live(nodes)[0], id)
	}
	// A conversation whose bot is gone from the config: its turns are refused.
	if _, err := live(nodes)[0].rt.Create(ctx(t), "default", CreateOptions{ID: "orphan", Bot: "gone"}); err != nil {
		t.Fatal(err)
	}
	_, err := live(nodes)[0].rt.Turn(ctx(t), "default", "orphan", moltbot.TurnInput{Content: "hi"}, nil)
	if moltbot.ErrorCode(err) != moltbot.EForbidden {
		t.Fatalf("a turn of a bot not configured: %v", err)
	}
}
