//go:build !edge

package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"google.golang.org/protobuf/proto"
)

// onePeer is a membership of one other member.
type onePeer struct{ m cluster.Node }

func (p onePeer) ID() string                            { return "self" }
func (p onePeer) Ring() *cluster.Ring                   { return cluster.NewRing(nil) }
func (p onePeer) Changes() <-chan struct{}              { return nil }
func (p onePeer) Members() []cluster.Node               { return []cluster.Node{p.m} }
func (p onePeer) Ready() bool                           { return true }
func (p onePeer) Proved(string)                         {}
func (p onePeer) HasName(name string) bool              { return name == p.m.Name }
func (p onePeer) Member(id string) (cluster.Node, bool) { return p.m, id == p.m.ID }

func guardFixture() (*guardedStream, string) {
	l := &Link{system: actor.NewActorSystem(), met: metrics.New("test")}
	l.placement.Store(&placeRef{onePeer{cluster.Node{ID: "peer:7946", Name: "peer", RPC: "127.0.0.1:9", State: "alive"}}})
	l.guard = &rpcGuard{l: l, tls: true}
	return &guardedStream{g: l.guard, name: "peer"}, l.system.Address()
}

// The guard accepts what a member sends and refuses every malformed batch
// without panicking, whatever the bytes.
func FuzzGuard(f *testing.F) {
	s, self := guardFixture()
	env, _ := proto.Marshal(&pb.Envelope{Protocol: cluster.Protocol, FromNode: "peer:7946", ReplyAddress: "127.0.0.1:9", ReplyId: "sink$1",
		Body: &pb.Envelope_Turn{Turn: &pb.TurnRequest{Tenant: "t", Id: "c", Content: "hi"}}})
	good := &remote.MessageBatch{TypeNames: []string{envelopeType}, Targets: []*actor.PID{actor.NewPID(self, agentName)},
		Senders: []*actor.PID{actor.NewPID("127.0.0.1:9", "future$a")}, Envelopes: []*remote.MessageEnvelope{{MessageData: env, Sender: 1}}}
	if r := s.checkBatch(good); r != nil {
		f.Fatalf("a member's turn refused: %v", r)
	}
	b, _ := proto.Marshal(good)
	f.Add(b)
	bad := proto.Clone(good).(*remote.MessageBatch)
	bad.Envelopes[0].Target = 7
	b, _ = proto.Marshal(bad)
	f.Add(b)
	f.Add([]byte{0x0a, 0x02, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var mb remote.MessageBatch
		if proto.Unmarshal(data, &mb) != nil {
			return
		}
		fresh := &guardedStream{g: s.g, name: s.name}
		_ = fresh.checkBatch(&mb)
		for _, e := range mb.Envelopes {
			if e != nil {
				_, _ = peekEnvelope(e.MessageData)
			}
		}
	})
}

// peekEnvelope reads exactly what proto.Unmarshal reads of the header.
func FuzzPeekEnvelope(f *testing.F) {
	b, _ := proto.Marshal(&pb.Envelope{Protocol: 2, FromNode: "a:1", ReplyAddress: "b:2", ReplyId: "sink$x", RequestId: 9,
		Body: &pb.Envelope_Shared{Shared: &pb.Shared{Data: []byte("z")}}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := peekEnvelope(data)
		var env pb.Envelope
		perr := proto.Unmarshal(data, &env)
		if perr != nil {
			return // peek may accept bytes whose body is malformed: the receiver refuses those
		}
		if err != nil {
			t.Fatalf("peek refused a valid envelope: %v", err)
		}
		if string(h.from) != env.FromNode || string(h.replyAddress) != env.ReplyAddress || string(h.replyID) != env.ReplyId {
			t.Fatalf("peek %+v, proto %q %q %q", h, env.FromNode, env.ReplyAddress, env.ReplyId)
		}
	})
}

func BenchmarkGuardCheckBatch(b *testing.B) {
	s, self := guardFixture()
	env, _ := proto.Marshal(&pb.Envelope{Protocol: cluster.Protocol, FromNode: "peer:7946", Body: &pb.Envelope_Chunk{Chunk: &pb.TurnChunk{Content: "hello", Served: "sim/sim"}}})
	batch := &remote.MessageBatch{TypeNames: []string{envelopeType}, Targets: []*actor.PID{actor.NewPID(self, "sink$1")}}
	for i := 0; i < 16; i++ {
		batch.Envelopes = append(batch.Envelopes, &remote.MessageEnvelope{MessageData: env})
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := s.checkBatch(batch); r != nil {
			b.Fatal(r)
		}
	}
}
