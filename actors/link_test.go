//go:build !edge

package actors

// Failure gaps of issue 11 in the cluster link, one test each: the remote
// stream sink, the agent before Attach, and the agent's bounds; and the
// yield to a conversation's taker. These run in one process without
// protoactor remote (a fake membership, a local agent), so they run with
// -race.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/testutil"
	"github.com/moltbot/moltbot/storage"
	"google.golang.org/protobuf/proto"
)

// fakePlace is a membership held by the test: self and other members, a
// ring the test sets, and a Changes channel it signals.
type fakePlace struct {
	self    cluster.Node
	changes chan struct{}

	mu      sync.Mutex
	members map[string]cluster.Node
	ring    *cluster.Ring
}

func newFakePlace(self cluster.Node, others ...cluster.Node) *fakePlace {
	p := &fakePlace{self: self, changes: make(chan struct{}, 1), members: map[string]cluster.Node{self.ID: self},
		ring: cluster.NewRing([]cluster.Node{self})}
	for _, o := range others {
		p.members[o.ID] = o
	}
	return p
}

func (p *fakePlace) ID() string               { return p.self.ID }
func (p *fakePlace) Changes() <-chan struct{} { return p.changes }
func (p *fakePlace) Ready() bool              { return true }
func (p *fakePlace) Proved(string)            {}
func (p *fakePlace) HasName(string) bool      { return false }

func (p *fakePlace) Ring() *cluster.Ring {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ring
}

func (p *fakePlace) Members() []cluster.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []cluster.Node
	for _, m := range p.members {
		out = append(out, m)
	}
	return out
}

func (p *fakePlace) Member(id string) (cluster.Node, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[id]
	return m, ok
}

// localNode is a member whose RPC address is this actor system's own: what
// is sent to it stays in the process.
func localNode(rt *Runtime, id string) cluster.Node {
	return cluster.Node{ID: id, Name: id, RPC: rt.system.Address(), State: "alive"}
}

// envelopes is an actor that hands every Envelope it gets to a channel.
type envelopes chan *pb.Envelope

func (ch envelopes) Receive(c actor.Context) {
	if env, ok := c.Message().(*pb.Envelope); ok {
		ch <- env
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

// A forwarded turn writes its chunks through the same guard as a local one:
// once forwardTurn has returned (the caller gave up, the owner left), a
// chunk the sink is still handling can no longer reach the caller's
// response; forwardTurn waits for a write in progress instead.
func TestForwardedTurnSinkIsGuarded(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	rt := e.rt
	owner := localNode(rt, "owner")
	place := newFakePlace(localNode(rt, "self"), owner) // the owner is a member, not on the ring
	rt.Link().Attach(place)
	// The owner's agent is the test: it learns the sink from the turn.
	turns := make(envelopes, 4)
	if _, err := rt.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return turns }), agentName); err != nil {
		t.Fatal(err)
	}

	returned := make(chan struct{})
	writing := make(chan struct{})
	release := make(chan struct{})
	wrote := make(chan struct{})
	var late atomic.Bool
	var calls atomic.Int64
	fn := func(moltbot.Chunk) error {
		first := calls.Add(1) == 1
		if first {
			close(writing)
			<-release // a slow client
		}
		select {
		case <-returned:
			late.Store(true) // the caller was told the turn is over
		default:
		}
		if first {
			close(wrote)
		}
		return nil
	}
	go func() {
		defer close(returned)
		rt.link.fwd.forwardTurn(context.Background(), owner, "default", "c", "t1", moltbot.TurnInput{Content: "hi"}, fn, func() {})
	}()
	turn := recv(t, turns, "forwarded turn")
	if turn.GetTurn() == nil {
		t.Fatalf("the owner got %v", turn)
	}
	sink := actor.NewPID(turn.ReplyAddress, turn.ReplyId)
	chunk := &pb.Envelope{Protocol: cluster.Protocol, FromNode: owner.ID, Body: &pb.Envelope_Chunk{Chunk: &pb.TurnChunk{Content: "late", Served: "sim/sim"}}}
	rt.system.Root.Send(sink, chunk)
	recv(t, writing, "chunk write")
	rt.system.Root.Send(sink, chunk) // queued behind the slow write

	// The owner leaves the ring: forwardTurn gives up while the sink writes.
	// (Signaled until forwardTurn returns: it may not watch the ring yet
	// when the first change comes.)
	go func() {
		for {
			select {
			case place.changes <- struct{}{}:
			case <-returned:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	// Before the fix forwardTurn returned here at once, while the write
	// went on; with the guard it waits for the write. A bounded wait for
	// the wrong outcome, then the write ends.
	select {
	case <-returned:
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	recv(t, wrote, "the slow write's end")
	recv(t, returned, "forwardTurn's return")
	if late.Load() {
		t.Fatal("the sink wrote to the caller after forwardTurn returned")
	}
}

func helloFrom(id string) *pb.Envelope {
	return &pb.Envelope{Protocol: cluster.Protocol, FromNode: id, Body: &pb.Envelope_Hello{Hello: &pb.Hello{}}}
}

func spawnAgent(t *testing.T, rt *Runtime) *actor.PID {
	t.Helper()
	pid, err := rt.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &agent{l: rt.link} }), agentName)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// Remote serves before Attach gives the runtime its membership (a node that
// is joining is proved by its peers meanwhile). The RPC guard refuses what
// arrives then instead of dereferencing a nil membership.
func TestGuardBeforeAttach(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	rt := e.rt
	rt.link.guard = &rpcGuard{l: rt.link}
	data, err := proto.Marshal(helloFrom("peer"))
	if err != nil {
		t.Fatal(err)
	}
	b := &remote.MessageBatch{TypeNames: []string{envelopeType}, Targets: []*actor.PID{actor.NewPID(rt.system.Address(), agentName)},
		Envelopes: []*remote.MessageEnvelope{{MessageData: data}}}
	r := (&guardedStream{g: rt.link.guard}).checkBatch(b)
	if r == nil || r.reason != "not_ready" {
		t.Fatalf("a batch before Attach: %v", r)
	}
}

// The agent serves while Attach runs: no data race on the membership (run
// with -race), what comes before is refused and counted, and members are
// answered once it is attached.
func TestAgentWhileAttaching(t *testing.T) {
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, nil)
	rt := e.rt
	rt.link.guard = &rpcGuard{l: rt.link}
	pid := spawnAgent(t, rt)
	rt.system.Root.Send(pid, helloFrom("peer"))
	testutil.Eventually(t, 5*time.Second, "a message before Attach refused", func() bool {
		return e.met.Get(metrics.ClusterRefused, "not_ready") == 1
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			rt.system.Root.Send(pid, helloFrom("peer"))
		}
	}()
	rt.Link().Attach(newFakePlace(localNode(rt, "self"), localNode(rt, "peer")))
	wg.Wait()
	r, err := rt.system.Root.RequestFuture(pid, helloFrom("peer"), 5*time.Second).Result()
	if env, ok := r.(*pb.Envelope); err != nil || !ok || env.GetHelloReply() == nil || env.FromNode != "self" {
		t.Fatalf("hello after Attach: %v %v", r, err)
	}
}

func TestWorkPoolShares(t *testing.T) {
	for _, tc := range []struct {
		limit, alone, other int // slots one member gets alone, then another
	}{
		{1, 1, 0},
		{2, 2, 0},
		{4, 3, 1},
		{8, 6, 2},
		{1024, 768, 256},
	} {
		p := newWorkPool("test", tc.limit)
		a, b := 0, 0
		for p.acquire("a") {
			a++
		}
		for p.acquire("b") {
			b++
		}
		if a != tc.alone || b != tc.other || p.inUse() != a+b {
			t.Errorf("limit %d: a got %d, b %d (in use %d); want %d, %d", tc.limit, a, b, p.inUse(), tc.alone, tc.other)
		}
		p.release("a")
		if !p.acquire("b") && tc.other > 0 {
			t.Errorf("limit %d: a released a slot and b cannot take it", tc.limit)
		}
	}
}

// The agent serves other nodes' turns, conversation requests, replicas and
// fetches on goroutines bounded per kind (and per member: one member gets at
// most three quarters); past a bound the sender is answered busy at once,
// retriable, and the refusal is counted. Before, every envelope started a
// goroutine, without bound.
func TestAgentBoundsRemoteWork(t *testing.T) {
	release := make(chan struct{})
	e := start(t, []string{"p/m"}, []ProviderSpec{spec("p", &fake{chat: blocking(release)})}, func(c *Config) {
		c.RemoteWork = RemoteWork{Turns: 4, Conv: 2, Replicate: 2, Fetch: 2}
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	rt := e.rt
	self, a, b := localNode(rt, "self"), localNode(rt, "a"), localNode(rt, "b")
	rt.Link().Attach(newFakePlace(self, a, b))
	agentAt := spawnAgent(t, rt)
	var ids []string
	for range 5 {
		c, err := rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	turnID := 0
	turn := func(from cluster.Node, id string) envelopes {
		results := make(envelopes, 1)
		sink := rt.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor { return results }), "sink")
		turnID++
		rt.system.Root.Send(agentAt, &pb.Envelope{Protocol: cluster.Protocol, FromNode: from.ID, ReplyAddress: sink.Address, ReplyId: sink.Id,
			Body: &pb.Envelope_Turn{Turn: &pb.TurnRequest{Tenant: "default", Id: id, TurnId: fmt.Sprint("r", turnID), Content: "hi",
				DeadlineUnixMs: time.Now().Add(time.Minute).UnixMilli()}}})
		return results
	}
	busyResult := func(results envelopes, what string) {
		t.Helper()
		r := recv(t, results, what).GetResult()
		if r.GetError().GetCode() != moltbot.EBusy || r.GetError().GetRetryAfterMs() != 1000 {
			t.Fatalf("%s: %v, want busy with a retry after", what, r)
		}
	}
	inFlight := func() int64 { return rt.Status().Providers[0].InFlight }

	var running []envelopes
	for _, id := range ids[:3] {
		running = append(running, turn(a, id))
	}
	testutil.Eventually(t, 5*time.Second, "member a's three turns running", func() bool { return inFlight() == 3 })
	busyResult(turn(a, ids[3]), "a's fourth turn (three quarters of 4 is its share)")
	running = append(running, turn(b, ids[4]))
	testutil.Eventually(t, 5*time.Second, "member b's turn running", func() bool { return inFlight() == 4 })
	busyResult(turn(b, ids[3]), "a fifth turn (the bound is 4)")
	if n := e.met.Get(metrics.ClusterBusy, "turn"); n != 2 {
		t.Errorf("busy{kind=turn} = %d, want 2", n)
	}
	close(release)
	for i, results := range running {
		if r := recv(t, results, "an admitted turn's result").GetResult(); r.GetError() != nil {
			t.Fatalf("admitted turn %d: %v", i, r.GetError())
		}
	}
	testutil.Eventually(t, 5*time.Second, "turn slots released", func() bool { return rt.link.work.turns.inUse() == 0 })
	if r := recv(t, turn(a, ids[3]), "a turn after the others ended").GetResult(); r.GetError() != nil {
		t.Fatalf("a turn after the others ended: %v", r.GetError())
	}

	// The other kinds answer busy to the requester at once.
	snap := storage.Encode(nil, &moltbot.Conversation{Tenant: "default", ID: "r1", Version: 1, Epoch: 1})
	for _, tc := range []struct {
		pool *workPool
		body *pb.Envelope
		ok   func(*pb.Envelope) bool
	}{
		{rt.link.work.conv, &pb.Envelope{Body: &pb.Envelope_Conv{Conv: &pb.ConvRequest{Op: pb.ConvRequest_GET, Tenant: "default", Id: ids[0]}}},
			func(r *pb.Envelope) bool { return r.GetConvReply() != nil && r.GetConvReply().Error == nil }},
		{rt.link.work.replicate, &pb.Envelope{Body: &pb.Envelope_Replicate{Replicate: &pb.Replicate{Snapshot: snap}}},
			func(r *pb.Envelope) bool { return r.GetReplicateAck().GetOk() }},
		{rt.link.work.fetch, &pb.Envelope{Body: &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: "default", Id: ids[0]}}},
			func(r *pb.Envelope) bool { return r.GetFetchReply().GetFound() }},
	} {
		t.Run(tc.pool.kind, func(t *testing.T) {
			held := 0
			for tc.pool.acquire("b") {
				held++
			}
			req := proto.Clone(tc.body).(*pb.Envelope)
			req.Protocol, req.FromNode = cluster.Protocol, a.ID
			r, err := rt.link.request(self, req, 5*time.Second)
			if err != nil || !isBusy(r) || r.GetConvReply().GetError().GetRetryAfterMs() != 1000 {
				t.Fatalf("with the pool full: %v %v", r, err)
			}
			if n := e.met.Get(metrics.ClusterBusy, tc.pool.kind); n != 1 {
				t.Errorf("busy{kind=%s} = %d", tc.pool.kind, n)
			}
			// A patient requester (replication, acquiring a copy) asks
			// again, and is served once a slot frees up.
			got := make(chan *pb.Envelope, 1)
			go func() {
				r, _ := rt.link.requestPatient(self, req, 5*time.Second)
				got <- r
			}()
			testutil.Eventually(t, 5*time.Second, "the patient request refused", func() bool { return e.met.Get(metrics.ClusterBusy, tc.pool.kind) >= 2 })
			for range held {
				tc.pool.release("b")
			}
			if r := recv(t, got, "the patient request's answer"); !tc.ok(r) {
				t.Fatalf("once a slot is free: %v", r)
			}
		})
	}
}

// A node that relinquished a conversation to a member its ring does not
// show yet (the member just joined; gossip has not reached this node)
// routes that conversation to the member instead of taking it back from
// its older copy; once its ring shows the member, or the record is stale,
// or the member is gone, its ring decides again. (Seen in the rolling
// restart: two owners each acknowledged turns at the same epoch, and one
// history lost them.)
func TestYieldedConversationGoesToItsTaker(t *testing.T) {
	clock := newFakeClock()
	e := start(t, []string{"sim/sim"}, []ProviderSpec{simSpec()}, func(c *Config) { c.clock = clock.Now })
	rt := e.rt
	taker := localNode(rt, "taker")
	place := newFakePlace(localNode(rt, "self"), taker) // on the membership, not on this node's ring
	rt.Link().Attach(place)
	setRing := func(nodes ...cluster.Node) {
		place.mu.Lock()
		place.ring = cluster.NewRing(nodes)
		place.mu.Unlock()
		rt.link.ring.Store(place.Ring())
	}
	// A conversation the two-node ring gives to this node.
	both := cluster.NewRing([]cluster.Node{place.self, taker})
	id := ""
	for i := 0; id == ""; i++ {
		if o, _ := both.Owner(fmt.Sprintf("default/c%d", i)); o.ID == "self" {
			id = fmt.Sprintf("c%d", i)
		}
	}
	if _, self := rt.link.own.ownerOf("default", id); !self {
		t.Fatal("alone on its ring, the node does not own the conversation")
	}
	(&agent{l: rt.link}).serveFetch("taker", &pb.Fetch{Tenant: "default", Id: id, Acquire: true})
	if owner, self := rt.link.own.ownerOf("default", id); self || owner.ID != "taker" {
		t.Fatalf("after relinquishing to a member its ring lacks: owner %q self %v", owner.ID, self)
	}
	if _, self := rt.link.own.ownerOf("default", id+"x"); !self {
		t.Fatal("another conversation was yielded too")
	}
	// The ring catches up: it shows the taker and still gives the
	// conversation here, and it decides.
	setRing(place.self, taker)
	if _, self := rt.link.own.ownerOf("default", id); !self {
		t.Fatal("the ring shows the taker and gives the conversation here, but the yield still wins")
	}
	// A stale yield, or one to a member that is gone, no longer holds.
	setRing(place.self)
	(&agent{l: rt.link}).serveFetch("taker", &pb.Fetch{Tenant: "default", Id: "s", Acquire: true})
	if _, self := rt.link.own.ownerOf("default", "s"); self {
		t.Fatal("a fresh yield did not hold")
	}
	clock.Advance(yieldTTL)
	if _, self := rt.link.own.ownerOf("default", "s"); !self {
		t.Fatal("a stale yield still holds")
	}
	(&agent{l: rt.link}).serveFetch("taker", &pb.Fetch{Tenant: "default", Id: "g", Acquire: true})
	place.mu.Lock()
	delete(place.members, "taker")
	place.mu.Unlock()
	if _, self := rt.link.own.ownerOf("default", "g"); !self {
		t.Fatal("a yield to a member that is gone still holds")
	}
}
