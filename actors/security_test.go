//go:build !race && !edge

// Attacks on the cluster RPC port (in-process nodes: see cluster_test.go for
// why these build without -race). Each names the finding of issue #10 it
// guards; before the RPC guard, the panicking ones crashed the test binary.

package actors

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// attacker speaks protoactor's wire protocol to a node's RPC port directly.
type attacker struct {
	t      *testing.T
	addr   string
	dial   grpc.DialOption
	conn   *grpc.ClientConn
	stream remote.Remoting_ReceiveClient
}

func newAttacker(t *testing.T, addr string, dial grpc.DialOption) *attacker {
	t.Helper()
	if dial == nil {
		dial = grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	conn, err := grpc.Dial(addr, dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &attacker{t: t, addr: addr, dial: dial, conn: conn}
}

// open starts a Receive stream as protoactor's endpoint writer does.
func (a *attacker) open() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.t.Cleanup(cancel)
	s, err := remote.NewRemotingClient(a.conn).Receive(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
		ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{SystemId: "evil", Address: "127.0.0.1:1"}}}}}); err != nil {
		return err
	}
	if _, err := s.Recv(); err != nil {
		return err
	}
	a.stream = s
	return nil
}

// send sends one batch on a fresh stream and returns how the node ended
// the stream: PermissionDenied for a refusal. A batch that is not refused
// leaves the stream open, and send then returns the stream's deadline
// error (5 s): absence of a refusal is never inferred from a short wait.
func (a *attacker) send(b *remote.MessageBatch) error {
	if err := a.open(); err != nil {
		return err
	}
	if err := a.stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: b}}); err != nil {
		return err
	}
	_, err := a.stream.Recv()
	return err
}

// accepted sends b on a fresh stream, then a batch of an unknown type that
// n refuses. It returns nil when that refusal is counted and ends the
// stream: the stream carried on after b, so b was accepted. (Before: b was
// taken as accepted when nothing came back within 500 ms.)
func (a *attacker) accepted(n *tnode, b *remote.MessageBatch) error {
	before := refusedFor(n, "type")
	if err := a.open(); err != nil {
		return err
	}
	probe := batch(actor.NewPID(a.addr, agentName), "evil.Unknown", nil)
	for _, m := range []*remote.MessageBatch{b, probe} {
		if err := a.stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: m}}); err != nil {
			return err
		}
	}
	_, err := a.stream.Recv()
	if status.Code(err) != codes.PermissionDenied {
		return fmt.Errorf("the stream ended with %v, not the probe's refusal", err)
	}
	if refusedFor(n, "type") != before+1 {
		return fmt.Errorf("the batch ended the stream before the probe: %v", err)
	}
	return nil
}

func envBytes(t *testing.T, env *pb.Envelope) []byte {
	b, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batch is one message of type typ to target.
func batch(target *actor.PID, typ string, data []byte) *remote.MessageBatch {
	return &remote.MessageBatch{TypeNames: []string{typ}, Targets: []*actor.PID{target},
		Envelopes: []*remote.MessageEnvelope{{Target: 0, TypeId: 0, MessageData: data}}}
}

func refusedFor(n *tnode, reason string) uint64 { return n.met.Get(metrics.ClusterRefused, reason) }

// serving checks the node still does its work after an attack.
func serving(t *testing.T, nodes []*tnode, what string) {
	t.Helper()
	for i, n := range nodes {
		c, err := n.rt.Create(ctx(t), "default", CreateOptions{})
		if err != nil {
			t.Fatalf("after %s, node %d cannot create: %v", what, i, err)
		}
		if _, err := nodes[(i+1)%len(nodes)].rt.Turn(ctx(t), "default", c.ID, moltbot.TurnInput{Content: "still there?", Options: moltbot.ChatOptions{}}, nil); err != nil {
			t.Fatalf("after %s, a turn through node %d fails: %v", what, (i+1)%len(nodes), err)
		}
	}
}

// The RPC port of a cluster without TLS (loopback): hostile messages are
// refused and counted, and never crash or stop the node.
func TestClusterRPCRefusesHostileMessages(t *testing.T) {
	nodes := startCluster(t, 2)
	victim, member := nodes[0], nodes[1]
	addr := victim.rt.Link().RemoteAddress()
	a := newAttacker(t, addr, nil)
	agent := actor.NewPID(addr, agentName)

	// Unary ListProcesses panicked inside protoactor's endpoint reader.
	_, err := remote.NewRemotingClient(a.conn).ListProcesses(context.Background(), &remote.ListProcessesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("ListProcesses: %v", err)
	}
	// Out-of-range target, sender and type indices panicked too.
	stolen := victim.store
	valid := envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: member.cl.ID(), Body: &pb.Envelope_Hello{Hello: &pb.Hello{}}})
	for name, b := range map[string]*remote.MessageBatch{
		"target index": {TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{{Target: 5, MessageData: valid}}},
		"sender index": {TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{{Sender: 3, MessageData: valid}}},
		"type index":   {TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{{TypeId: 9, MessageData: valid}}},
		"neg target":   {TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{{Target: -1, MessageData: valid}}},
		"nil target":   {TypeNames: []string{envelopeType}, Targets: []*actor.PID{nil}, Envelopes: []*remote.MessageEnvelope{{MessageData: valid}}},
		"unknown type": batch(agent, "evil.Unknown", valid),
		"json":         {TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{{SerializerId: 1, MessageData: []byte("{}")}}},
		"garbage":      batch(agent, envelopeType, []byte{0xff, 0xff, 0xff}),
	} {
		if err := a.send(b); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: the node answered %v", name, err)
		}
	}
	if refusedFor(victim, "malformed") < 5 || refusedFor(victim, "type") < 2 || refusedFor(victim, "method") != 1 {
		t.Errorf("refusals not counted: malformed %d, type %d, method %d", refusedFor(victim, "malformed"), refusedFor(victim, "type"), refusedFor(victim, "method"))
	}
	serving(t, nodes, "malformed batches")

	// System messages to named actors: actor.Stop to the conversations
	// manager used to stop the node's serving (while /readyz said ready).
	for _, target := range []string{"conversations", "providers", "providers/sim"} {
		for _, m := range []proto.Message{&actor.Stop{}, &actor.PoisonPill{}} {
			if err := a.send(batch(actor.NewPID(addr, target), string(proto.MessageName(m)), nil)); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%T to %s: %v", m, target, err)
			}
		}
	}
	// An envelope to a named actor other than the agent.
	if err := a.send(batch(actor.NewPID(addr, "conversations"), envelopeType, valid)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("envelope to the manager: %v", err)
	}
	serving(t, nodes, "system messages")

	// A relay: a message for another host, which protoactor would forward.
	if err := a.send(batch(actor.NewPID(member.rt.Link().RemoteAddress(), agentName), envelopeType, valid)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("relay: %v", err)
	}

	// Envelopes from a non-member: read, forge, delete.
	snap := storage.Encode(nil, &moltbot.Conversation{Tenant: "acme", ID: "forged", Version: 99, Epoch: 99, Created: 1, Updated: 1,
		Messages: []moltbot.Message{{Role: moltbot.RoleUser, Content: "planted"}}})
	for name, env := range map[string]*pb.Envelope{
		"replicate": {Protocol: cluster.Protocol, FromNode: "10.6.6.6:7946", Body: &pb.Envelope_Replicate{Replicate: &pb.Replicate{Snapshot: snap}}},
		"fetch":     {Protocol: cluster.Protocol, FromNode: "", Body: &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: "default", Id: "x"}}},
		"delete":    {Protocol: cluster.Protocol, FromNode: "evil", Body: &pb.Envelope_Conv{Conv: &pb.ConvRequest{Op: pb.ConvRequest_DELETE, Tenant: "default", Id: "x"}}},
		"shared":    {Protocol: cluster.Protocol, FromNode: "evil", Body: &pb.Envelope_Shared{Shared: &pb.Shared{Data: []byte(`[]`)}}},
	} {
		if err := a.send(batch(agent, envelopeType, envBytes(t, env))); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s from a non-member: %v", name, err)
		}
	}
	if _, err := stolen.Get("acme", "forged"); err == nil {
		t.Fatal("a non-member planted a conversation")
	}
	if refusedFor(victim, "not_member") < 4 {
		t.Errorf("non-member refusals counted %d", refusedFor(victim, "not_member"))
	}

	// A member's id with replies to an address the sender picks: the victim
	// would dial out to it.
	evilReply := &pb.Envelope{Protocol: cluster.Protocol, FromNode: member.cl.ID(), ReplyAddress: "10.6.6.6:4000", ReplyId: "sink$1",
		Body: &pb.Envelope_Turn{Turn: &pb.TurnRequest{Tenant: "default", Id: "x", Content: "hi"}}}
	if err := a.send(batch(agent, envelopeType, envBytes(t, evilReply))); status.Code(err) != codes.PermissionDenied {
		t.Errorf("foreign reply address: %v", err)
	}
	withSender := batch(agent, envelopeType, valid)
	withSender.Senders = []*actor.PID{actor.NewPID("10.6.6.6:4000", "future$1")}
	withSender.Envelopes[0].Sender = 1
	if err := a.send(withSender); status.Code(err) != codes.PermissionDenied {
		t.Errorf("foreign sender address: %v", err)
	}
	// A stream that changes its identity halfway.
	two := &remote.MessageBatch{TypeNames: []string{envelopeType}, Targets: []*actor.PID{agent}, Envelopes: []*remote.MessageEnvelope{
		{MessageData: valid},
		{MessageData: envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: victim.cl.ID(), Body: &pb.Envelope_Hello{Hello: &pb.Hello{}}})}}}
	if err := a.send(two); status.Code(err) != codes.PermissionDenied {
		t.Errorf("two identities on one stream: %v", err)
	}
	if refusedFor(victim, "reply_address") < 2 || refusedFor(victim, "identity") < 1 {
		t.Errorf("reply address refusals %d, identity %d", refusedFor(victim, "reply_address"), refusedFor(victim, "identity"))
	}
	serving(t, nodes, "forged envelopes")

	// Answers to this node's own requests. A pending request to the member:
	victim.rt.link.futures.Store("future$pending", member.cl.ID())
	defer victim.rt.link.futures.Delete("future$pending")
	pending := actor.NewPID(addr, "future$pending")
	dead := string(proto.MessageName(&actor.DeadLetterResponse{}))
	// A dead-letter reply naming a sender made the node dial it (and keep a
	// goroutine per address for good).
	dl := batch(pending, dead, nil)
	dl.Senders = []*actor.PID{actor.NewPID("10.6.6.6:29999", "x")}
	dl.Envelopes[0].Sender = 1
	if err := a.send(dl); status.Code(err) != codes.PermissionDenied {
		t.Errorf("dead letter naming a sender: %v", err)
	}
	// A dead letter or an answer from anyone but the node asked fails
	// another member's request.
	if err := a.send(batch(pending, dead, nil)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("dead letter from an unidentified stream: %v", err)
	}
	asVictim := envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: victim.cl.ID(), Body: &pb.Envelope_FetchReply{FetchReply: &pb.FetchReply{}}})
	if err := a.send(batch(pending, envelopeType, asVictim)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("an answer to a request made to another node: %v", err)
	}
	// A late answer (its request gave up) is dropped, not refused: the
	// stream carries on.
	late := envBytes(t, &pb.Envelope{Protocol: cluster.Protocol, FromNode: member.cl.ID(), Body: &pb.Envelope_FetchReply{FetchReply: &pb.FetchReply{}}})
	if err := a.accepted(victim, batch(actor.NewPID(addr, "future$gone"), envelopeType, late)); err != nil {
		t.Errorf("a late answer ended the stream: %v", err)
	}
	if refusedFor(victim, "late_reply") != 1 {
		t.Errorf("late replies counted %d", refusedFor(victim, "late_reply"))
	}
	// Only message batches after one connect request: protoactor logs an
	// ERROR line for each of the others.
	for name, m := range map[string]*remote.RemoteMessage{
		"client connection": {MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
			ConnectionType: &remote.ConnectRequest_ClientConnection{ClientConnection: &remote.ClientConnection{}}}}},
		"second connect": {MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
			ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{}}}}},
		"disconnect": {MessageType: &remote.RemoteMessage_DisconnectRequest{DisconnectRequest: &remote.DisconnectRequest{}}},
	} {
		if err := a.open(); err != nil {
			t.Fatal(err)
		}
		a.stream.Send(m)
		if _, err := a.stream.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v", name, err)
		}
	}
	serving(t, nodes, "forged answers")
}

// The agent's own checks hold for anything that reaches it: only members,
// turns stream only to sinks, and a sink takes chunks from its owner only.
func TestClusterAgentServesMembersOnly(t *testing.T) {
	nodes := startCluster(t, 2)
	n0, n1 := nodes[0], nodes[1]
	stranger := cluster.Node{ID: n0.cl.ID(), RPC: n0.rt.Link().RemoteAddress()}
	env := &pb.Envelope{Protocol: cluster.Protocol, FromNode: "nobody", Body: &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: "default", Id: "x"}}}
	if _, err := n1.rt.system.Root.RequestFuture(agentPID(stranger), env, 300*time.Millisecond).Result(); err == nil {
		t.Fatal("the agent answered a non-member")
	}
	// A turn whose replies would go to the member's agent, not a sink.
	before := refusedFor(n0, "target")
	turn := n1.rt.link.envelope()
	turn.ReplyAddress, turn.ReplyId = n1.rt.Link().RemoteAddress(), agentName
	turn.Body = &pb.Envelope_Turn{Turn: &pb.TurnRequest{Tenant: "default", Id: "x", Content: "hi"}}
	n1.rt.system.Root.Send(agentPID(stranger), turn)
	testutil.Eventually(t, 5*time.Second, "turn to a non-sink refused", func() bool { return refusedFor(n0, "target") > before })
	// A reply that claims to come from another node than the one asked.
	other := cluster.Node{ID: "someone-else", RPC: n0.rt.Link().RemoteAddress()}
	hello := n1.rt.link.envelope()
	hello.Body = &pb.Envelope_Hello{Hello: &pb.Hello{}}
	before = refusedFor(n1, "identity")
	if _, err := n1.rt.link.request(other, hello, time.Second); err == nil {
		t.Fatal("a reply from another node was accepted")
	}
	if refusedFor(n1, "identity") <= before {
		t.Fatal("the answer of a node other than the one asked was not refused at the port")
	}
	serving(t, nodes, "agent checks")
}

// shared is a grow-only set: the simplest mergeable state.
type setState struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *setState) add(v string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[v] = true
	return []byte(v)
}

func (s *setState) State() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for v := range s.m {
		out = append(out, v)
	}
	return []byte(strings.Join(out, "\n"))
}

func (s *setState) Merge(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range strings.Split(string(b), "\n") {
		if v != "" && !s.m[v] {
			s.m[v] = true
			n++
		}
	}
	return n, nil
}

func (s *setState) has(v string) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.m[v] }

// Shared state travels over RPC between members: a change reaches every
// member; a member that joins later gets the whole state; a non-member's
// state is refused.
func TestClusterSharedState(t *testing.T) {
	sa, sb, sc := &setState{m: map[string]bool{}}, &setState{m: map[string]bool{}}, &setState{m: map[string]bool{}}
	a := startNodeWith(t, nodeOpts{sim: fastSimOpts(), shared: sa})
	b := startNodeWith(t, nodeOpts{seed: a.cl.ID(), sim: fastSimOpts(), shared: sb})
	converge(t, []*tnode{a, b})
	a.rt.Link().PublishShared(sa.add("from-a"))
	b.rt.Link().PublishShared(sb.add("from-b"))
	testutil.Eventually(t, 5*time.Second, "changes delivered", func() bool { return sb.has("from-a") && sa.has("from-b") })
	c := startNodeWith(t, nodeOpts{seed: b.cl.ID(), sim: fastSimOpts(), shared: sc})
	converge(t, []*tnode{a, b, c})
	testutil.Eventually(t, 10*time.Second, "state at join", func() bool { return sc.has("from-a") && sc.has("from-b") })
	c.rt.Link().PublishShared(sc.add("from-c"))
	testutil.Eventually(t, 5*time.Second, "newcomer's change", func() bool { return sa.has("from-c") && sb.has("from-c") })
	// A change lost on the way is repaired by the periodic full exchange.
	sa.add("only-a")
	testutil.Eventually(t, 10*time.Second, "full exchange repairs", func() bool { return sb.has("only-a") && sc.has("only-a") })
	// A non-member's shared state is refused at the port.
	atk := newAttacker(t, a.rt.Link().RemoteAddress(), nil)
	env := &pb.Envelope{Protocol: cluster.Protocol, FromNode: "intruder", Body: &pb.Envelope_Shared{Shared: &pb.Shared{Data: []byte("operator-key")}}}
	if err := atk.send(batch(actor.NewPID(a.rt.Link().RemoteAddress(), agentName), envelopeType, envBytes(t, env))); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("shared state from a non-member: %v", err)
	}
	if sa.has("operator-key") {
		t.Fatal("a non-member's record was merged")
	}
}
