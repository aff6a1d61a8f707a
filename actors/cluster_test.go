//go:build !race && !edge

// The in-process multi-node tests build without the race detector:
// protoactor-go's remote.Start calls grpclog.SetLoggerV2 (a global) on every
// start, a race between nodes that share a process. Production runs one node
// per process; the multi-process tests in cmd/moltbot run with -race.

package actors

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/inference"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
)

type tnode struct {
	rt    *Runtime
	cl    *cluster.Cluster
	store *storage.Memory
	met   *metrics.Registry
	dead  bool
}

func (n *tnode) kill() {
	// No leave, no handoff: the process is gone as far as others can tell.
	n.dead = true
	n.cl.Shutdown()
	n.rt.Shutdown(context.Background())
}

func startNode(t *testing.T, seed string, simOpts sim.Options) *tnode {
	t.Helper()
	return startNodeWith(t, nodeOpts{seed: seed, sim: simOpts})
}

// nodeOpts shape a test node: TLS credentials (name and files from a test
// CA), shared state.
type nodeOpts struct {
	seed    string
	sim     sim.Options
	creds   *cluster.Credentials
	shared  SharedState
	deliver Deliverer
	// provider, when set, serves the chain's model (sim/sim) instead of
	// the simulator.
	provider inference.Provider
	// tweak, when set, changes the runtime's config before it starts.
	tweak func(*Config)
}

func startNodeWith(t *testing.T, o nodeOpts) *tnode {
	t.Helper()
	store := storage.NewMemory()
	met := metrics.New("test")
	rpc := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	var p inference.Provider = sim.NewProvider("sim", o.sim)
	if o.provider != nil {
		p = o.provider
	}
	cfg := Config{Providers: []ProviderSpec{{Name: "sim", Provider: p, MaxInFlight: 64, Timeout: 10 * time.Second}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: store, Metrics: met, HealthInterval: time.Hour,
		RemoteAddr: rpc, Replicas: 2, IdleTimeout: time.Minute, RemoteTLS: o.creds, Shared: o.shared, SharedInterval: 500 * time.Millisecond,
		Deliver: o.deliver, DeliverBackoff: 5 * time.Millisecond}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var join []string
	if o.seed != "" {
		join = []string{o.seed}
	}
	name := ""
	if o.creds != nil {
		name = o.creds.Identity().Name
	}
	cl, err := cluster.Start(cluster.Config{Bind: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), Join: join, RPC: rt.Link().RemoteAddress(),
		HTTP: "127.0.0.1:0", Version: "test", Profile: "test", Name: name, Verify: rt.Link().VerifyPeer})
	if err != nil {
		t.Fatal(err)
	}
	rt.Link().Attach(cl)
	n := &tnode{rt: rt, cl: cl, store: store, met: met}
	t.Cleanup(func() {
		if !n.dead {
			n.cl.Shutdown()
			n.rt.Shutdown(context.Background())
		}
	})
	return n
}

func fastSimOpts() sim.Options { return sim.Options{Tokens: 6, Seed: 1} }

func startCluster(t *testing.T, size int) []*tnode {
	nodes := []*tnode{startNode(t, "", fastSimOpts())}
	for i := 1; i < size; i++ {
		nodes = append(nodes, startNode(t, nodes[0].cl.ID(), fastSimOpts()))
	}
	converge(t, nodes)
	return nodes
}

func live(nodes []*tnode) []*tnode {
	var out []*tnode
	for _, n := range nodes {
		if !n.dead {
			out = append(out, n)
		}
	}
	return out
}

func converge(t *testing.T, nodes []*tnode) {
	t.Helper()
	alive := live(nodes)
	testutil.Eventually(t, 15*time.Second, fmt.Sprintf("%d nodes converge", len(alive)), func() bool {
		for _, n := range alive {
			if n.rt.link.currentRing().Len() != len(alive) {
				return false
			}
		}
		return true
	})
}

func ownerNode(nodes []*tnode, tenant, id string) *tnode {
	for _, n := range live(nodes) {
		if n.rt.link.own.isOwner(tenant, id) {
			return n
		}
	}
	return nil
}

// A conversation driven through every node: each turn lands on the owner,
// every node reads the same history, and the replica holds the snapshot.
func TestClusterForwardingAndReplication(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprint(size, " nodes"), func(t *testing.T) { testForwarding(t, size) })
	}
}

func testForwarding(t *testing.T, size int) {
	nodes := startCluster(t, size)
	c, err := nodes[0].rt.Create(ctx(t), "default", CreateOptions{System: "sys"})
	if err != nil {
		t.Fatal(err)
	}
	owner := ownerNode(nodes, "default", c.ID)
	if c.Owner != owner.cl.ID() {
		t.Errorf("create reported owner %q, ring says %q", c.Owner, owner.cl.ID())
	}
	turns := 2 * size
	for i := 0; i < turns; i++ {
		n := nodes[i%size]
		var chunks []string
		res, err := n.rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("turn ", i), Options: moltbot.ChatOptions{}}, func(ch moltbot.Chunk) error {
			chunks = append(chunks, ch.Content)
			return nil
		})
		if err != nil {
			t.Fatalf("turn %d via node %d: %v", i, i%size, err)
		}
		if strings.Join(chunks, "") != res.Message.Content || len(chunks) != 6 || res.Message.Model != "sim/sim" {
			t.Fatalf("turn %d: chunks %q vs %q", i, chunks, res.Message.Content)
		}
	}
	for i, n := range nodes {
		got, err := n.rt.Get(ctx(t), "default", c.ID)
		if err != nil || len(got.Messages) != 2*turns || got.Owner != owner.cl.ID() || got.Messages[0].Content != "turn 0" {
			t.Fatalf("get via node %d: %+v %v", i, got, err)
		}
	}
	forwarded := uint64(0)
	for _, n := range nodes {
		forwarded += n.met.Sum(metrics.ForwardedTurns)
	}
	if forwarded != uint64(turns-2) {
		t.Errorf("%d turns forwarded, want %d (2 of %d arrive at the owner)", forwarded, turns-2, turns)
	}
	// The replica (rank 2) holds the acknowledged snapshot.
	rank := nodes[0].rt.link.currentRing().Ranked("default/"+c.ID, 2)
	for _, n := range nodes {
		if n.cl.ID() == rank[1].ID {
			s, err := n.store.Get("default", c.ID)
			if err != nil || len(s.Messages) != 2*turns {
				t.Fatalf("replica holds %v, %v", s, err)
			}
		}
		if n.cl.ID() != rank[0].ID && n.cl.ID() != rank[1].ID {
			if _, err := n.store.Get("default", c.ID); err == nil {
				t.Errorf("a node outside the replica set holds a copy")
			}
		}
	}
	// Deleting through a non-owner removes it everywhere.
	other := nodes[0]
	if other == owner {
		other = nodes[1]
	}
	if err := other.rt.Delete(ctx(t), "default", c.ID, ""); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if _, err := n.rt.Get(ctx(t), "default", c.ID); moltbot.ErrorCode(err) != moltbot.ENotFound {
			t.Fatalf("after delete, node %d: %v", i, err)
		}
	}
}

// The owner dies (no leave): its conversations are served by the next node,
// which already holds every acknowledged turn.
func TestClusterOwnerDeath(t *testing.T) {
	nodes := startCluster(t, 3)
	var ids []string
	acked := map[string]int{}
	for i := 0; i < 12; i++ {
		c, err := nodes[i%3].rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
		for j := 0; j < 2; j++ {
			if _, err := nodes[(i+j)%3].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: fmt.Sprint("m", j), Options: moltbot.ChatOptions{}}, nil); err != nil {
				t.Fatal(err)
			}
			acked[c.ID]++
		}
	}
	victim := nodes[1]
	victim.kill()
	converge(t, nodes)
	for _, id := range ids {
		for _, n := range live(nodes) {
			got, err := n.rt.Get(ctx(t), "default", id)
			if err != nil || len(got.Messages) != 2*acked[id] {
				t.Fatalf("%s via %s after the owner's death: %d messages, %v", id, n.cl.ID(), len(got.Messages), err)
			}
		}
		if _, err := live(nodes)[0].rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "after", Options: moltbot.ChatOptions{}}, nil); err != nil {
			t.Fatalf("turn after death: %v", err)
		}
	}
}

// A node joins: conversations it now owns are handed to it and keep their
// history; a node leaves gracefully: it hands its conversations off first.
func TestClusterJoinAndLeave(t *testing.T) {
	nodes := startCluster(t, 2)
	var ids []string
	for i := 0; i < 20; i++ {
		c, _ := nodes[0].rt.Create(ctx(t), "default", CreateOptions{})
		ids = append(ids, c.ID)
		if _, err := nodes[1].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "before the join", Options: moltbot.ChatOptions{}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	joiner := startNode(t, nodes[0].cl.ID(), fastSimOpts())
	nodes = append(nodes, joiner)
	converge(t, nodes)
	moved := 0
	for _, id := range ids {
		if joiner.rt.link.own.isOwner("default", id) {
			moved++
		}
		res, err := nodes[0].rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "after the join", Options: moltbot.ChatOptions{}}, nil)
		if err != nil || res.Version == 0 {
			t.Fatalf("%s after join: %v", id, err)
		}
		got, _ := joiner.rt.Get(ctx(t), "default", id)
		if len(got.Messages) != 4 || got.Messages[0].Content != "before the join" {
			t.Fatalf("%s after join: %+v", id, got.Messages)
		}
	}
	if moved == 0 {
		t.Fatal("no conversation moved to the new node: the test proved nothing")
	}
	// Graceful leave of the joiner.
	joiner.cl.Leave(time.Second)
	converge(t, []*tnode{nodes[0], nodes[1]})
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	joiner.rt.link.rebal.wait(wctx)
	cancel()
	joiner.kill()
	for _, id := range ids {
		got, err := nodes[1].rt.Get(ctx(t), "default", id)
		if err != nil || len(got.Messages) != 4 {
			t.Fatalf("%s after the leave: %v %v", id, got, err)
		}
	}
	handoffs := joiner.met.Sum(metrics.Handoffs) + nodes[0].met.Sum(metrics.Handoffs) + nodes[1].met.Sum(metrics.Handoffs)
	if handoffs == 0 {
		t.Error("no handoff counted")
	}
}

// The owner dies while a forwarded turn waits for its first token: the
// origin retries on the new owner with the same turn id, and the
// conversation holds the user message once.
func TestClusterOwnerDiesMidTurn(t *testing.T) {
	slow := sim.Options{Tokens: 4, Seed: 1, TTFT: 2 * time.Second}
	nodes := []*tnode{startNode(t, "", slow)}
	for i := 0; i < 2; i++ {
		nodes = append(nodes, startNode(t, nodes[0].cl.ID(), slow))
	}
	converge(t, nodes)
	// A conversation owned by node 1, driven from node 0.
	var id string
	for i := 0; ; i++ {
		c, err := nodes[0].rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if nodes[1].rt.link.own.isOwner("default", c.ID) {
			id = c.ID
			break
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var res *TurnResult
	var err error
	go func() {
		defer wg.Done()
		res, err = nodes[0].rt.Turn(ctx(t), "default", id, moltbot.TurnInput{Content: "are you there?", Options: moltbot.ChatOptions{}}, nil)
	}()
	testutil.Eventually(t, 5*time.Second, "turn running on the owner", func() bool { return nodes[1].rt.Status().Providers[0].InFlight == 1 })
	nodes[1].kill()
	wg.Wait()
	if err != nil {
		t.Fatalf("turn after the owner died: %v", err)
	}
	got, gerr := nodes[0].rt.Get(ctx(t), "default", id)
	if gerr != nil {
		t.Fatal(gerr)
	}
	users := 0
	for _, m := range got.Messages {
		if m.Role == moltbot.RoleUser {
			users++
		}
	}
	if users != 1 || len(got.Messages) != 2 || got.Messages[1].Content != res.Message.Content {
		t.Fatalf("after retry: %+v", got.Messages)
	}
}

// A message from a node of another protocol version is refused with an
// answer, and the receiver keeps working.
func TestClusterRefusesOtherProtocol(t *testing.T) {
	nodes := startCluster(t, 2)
	env := nodes[0].rt.link.envelope()
	env.Protocol = cluster.Protocol + 1
	env.Body = &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: "default", Id: "x"}}
	ring := nodes[0].rt.link.currentRing()
	var other cluster.Node
	for _, n := range ring.Nodes() {
		if n.ID != nodes[0].cl.ID() {
			other = n
		}
	}
	r, err := nodes[0].rt.link.request(other, env, 2*time.Second)
	if err != nil || r.GetConvReply().GetError() == nil || !strings.Contains(r.GetConvReply().GetError().Message, "incompatible") {
		t.Fatalf("reply %v %v", r, err)
	}
	// An envelope without a body (a newer node's unknown message).
	empty := nodes[0].rt.link.envelope()
	if r, err := nodes[0].rt.link.request(other, empty, 2*time.Second); err != nil || r.GetConvReply().GetError() == nil {
		t.Fatalf("empty envelope: %v %v", r, err)
	}
	if _, err := nodes[1].rt.Create(ctx(t), "default", CreateOptions{}); err != nil {
		t.Fatalf("the receiver stopped working: %v", err)
	}
}
