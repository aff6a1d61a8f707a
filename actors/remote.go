package actors

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
)

// agentName is the well-known actor that receives every Envelope from other
// nodes.
const agentName = "moltbot"

// maxRPCMessage bounds one message batch between nodes (a snapshot, or
// the shared state in a full exchange).
const maxRPCMessage = 16 << 20

var (
	// errOwnerGone: the owner left or died before answering.
	errOwnerGone = errors.New("actors: the owner node went away during the request")
	// errWrongReplier: another node answered a request than the one asked.
	errWrongReplier = errors.New("actors: answered by another node")
)

func agentPID(n cluster.Node) *actor.PID { return actor.NewPID(n.RPC, agentName) }

func (l *Link) envelope() *pb.Envelope {
	return &pb.Envelope{Protocol: cluster.Protocol, FromNode: l.place().ID()}
}

// request sends env to node's agent and waits for one reply envelope,
// which must come from that node.
func (l *Link) request(node cluster.Node, env *pb.Envelope, timeout time.Duration) (*pb.Envelope, error) {
	// The future is known to the RPC guard with the node asked before the
	// request leaves: only that node may answer it.
	f := actor.NewFuture(l.system, timeout)
	l.futures.Store(f.PID().Id, node.ID)
	defer l.futures.Delete(f.PID().Id)
	l.system.Root.RequestWithCustomSender(agentPID(node), env, f.PID())
	res, err := f.Result()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	reply, ok := res.(*pb.Envelope)
	if !ok {
		return nil, fmt.Errorf("node %s: unexpected reply %T", node.ID, res)
	}
	if reply.FromNode != node.ID {
		l.met.Inc(metrics.ClusterRefused, "identity")
		return nil, fmt.Errorf("node %s: the reply came from %q: %w", node.ID, reply.FromNode, errWrongReplier)
	}
	return reply, nil
}

// requestPatient is request, asked again while the node answers busy (with
// the route retry's pauses), until timeout. For node-to-node work that a
// client does not wait on directly (replication, acquiring a copy): a busy
// replica should still get the snapshot. The last answer is returned.
func (l *Link) requestPatient(node cluster.Node, env *pb.Envelope, timeout time.Duration) (*pb.Envelope, error) {
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		// (never a negative timeout: a future given one waits forever)
		r, err := l.request(node, env, max(time.Until(deadline), time.Millisecond))
		if err != nil || !isBusy(r) {
			return r, err
		}
		pause := retryPause(attempt)
		if time.Until(deadline) <= pause {
			return r, nil
		}
		select {
		case <-time.After(pause):
		case <-l.life.base.Done():
			return r, nil
		}
	}
}
