package actors

import (
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// replication is the cluster as a conversation sees it (conv.Cluster):
// whether this node owns it, the newest copy when it becomes the owner, and
// its copies on the replicas. Acquire and Replicate block (they wait for
// other nodes): conversations call them from goroutines, or from Started.
type replication struct{ l *Link }

// Clustered reports whether the node routes by a membership (attached).
func (p *replication) Clustered() bool { return p.l.clustered() }

// IsOwner reports whether this node owns the conversation now.
func (p *replication) IsOwner(tenant, id string) bool { return p.l.own.isOwner(tenant, id) }

// Replicate copies c to the other replicas of its conversation (the next
// replicas-1 ranked nodes), or with handoff to its owner and replicas. It
// waits for their acks; conv.ErrStale means another node owns it with a newer
// epoch. Unreachable replicas are logged and skipped: the ring drops dead
// nodes, and rebalancing copies to whoever replaces them.
func (p *replication) Replicate(c *moltbot.Conversation, targets []cluster.Node, handoff bool) error {
	l := p.l
	if len(targets) == 0 {
		return nil
	}
	snap := storage.Encode(nil, c)
	type res struct {
		node cluster.Node
		env  *pb.Envelope
		err  error
	}
	out := make(chan res, len(targets))
	for _, n := range targets {
		go func() {
			env := l.envelope()
			env.Body = &pb.Envelope_Replicate{Replicate: &pb.Replicate{Snapshot: snap, Handoff: handoff}}
			r, err := l.requestPatient(n, env, 3*time.Second)
			out <- res{n, r, err}
		}()
	}
	var stale error
	for range targets {
		r := <-out
		ack := r.env.GetReplicateAck()
		switch {
		case r.err != nil:
			l.met.Inc(metrics.ReplicationWrites, "error")
			l.log.Warn("replication failed", "conversation", c.Key(), "node", r.node.ID, "err", r.err)
		case isBusy(r.env):
			l.met.Inc(metrics.ReplicationWrites, "busy")
			l.log.Warn("replica too busy to take a snapshot", "conversation", c.Key(), "node", r.node.ID)
		case ack == nil:
			l.met.Inc(metrics.ReplicationWrites, "error")
		case ack.Ok:
			l.met.Inc(metrics.ReplicationWrites, "ok")
		case ack.Reason == "stale":
			l.met.Inc(metrics.ReplicationWrites, "stale")
			stale = conv.ErrStale
		default:
			l.met.Inc(metrics.ReplicationWrites, "error")
			l.log.Warn("replica refused a snapshot", "conversation", c.Key(), "node", r.node.ID, "reason", ack.Reason)
		}
	}
	return stale
}

// ReplicaTargets are the nodes that should hold copies besides this owner.
func (p *replication) ReplicaTargets(tenant, id string) []cluster.Node {
	return p.l.own.others(tenant, id, p.l.replicas)
}

// Acquire, as the conversation's new owner, asks the nodes that may hold or
// serve it (the replicas+1 ranked, without this node) to stop serving it
// and send their copy, and returns the newest, or nil.
func (p *replication) Acquire(tenant, id string) *moltbot.Conversation {
	l := p.l
	nodes := l.own.others(tenant, id, l.replicas+1)
	out := make(chan *moltbot.Conversation, len(nodes))
	for _, n := range nodes {
		go func() {
			env := l.envelope()
			env.Body = &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: tenant, Id: id, Acquire: true}}
			r, err := l.requestPatient(n, env, l.requestTimeout+time.Second)
			var c *moltbot.Conversation
			switch {
			case err == nil && r.GetFetchReply().GetFound():
				c, _ = storage.Decode(r.GetFetchReply().Snapshot)
			case err == nil && isBusy(r):
				l.log.Warn("a holder stayed too busy to send its copy", "conversation", tenant+"/"+id, "node", n.ID)
			}
			out <- c
		}()
	}
	var best *moltbot.Conversation
	for range nodes {
		if c := <-out; c != nil && (best == nil || storage.Newer(c.Epoch, c.Version, best.Epoch, best.Version)) {
			best = c
		}
	}
	return best
}
