package conv

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// copies is where one conversation's copies go, and whether this node still
// serves it: the local store (synced; fenced by the epoch in a cluster), the
// replicas, and a new owner when the ring moves the conversation away. It
// belongs to the conversation actor and runs on its goroutine, except for
// the replication goroutines it starts.
type copies struct {
	a          *conversation // whose copies: its deps, tenant and id
	handingOff bool          // the ring moved it away (or a newer owner fenced us): handing it to the new owner
	handoffDue bool          // hand off once the running turn ends
}

// moved reports whether requests must go elsewhere: the ring gives the
// conversation to another node, or it is being handed over.
func (o *copies) moved() bool {
	return o.a.d.cluster.Clustered() && (o.handingOff || !o.a.d.cluster.IsOwner(o.a.tenant, o.a.id))
}

// persist stores c, synced. In a cluster the write is fenced: if a newer
// owner's epoch reached this node's store, this node is no longer the owner
// and must not write (it hands off, and the caller hears "moved").
func (o *copies) persist(c *moltbot.Conversation) error {
	t0 := time.Now()
	var err error
	if o.a.d.cluster.Clustered() {
		var stored bool
		if stored, _, _, err = o.a.d.store.PutIfNewer(c, true); err == nil && !stored {
			o.handingOff = true
			o.a.d.met.Inc(metrics.SnapshotWrites, "fenced")
			return Moved()
		}
	} else {
		err = o.a.d.store.Put(c, true)
	}
	o.a.d.met.Observe(metrics.SnapshotDuration, time.Since(t0))
	if err != nil {
		o.a.d.met.Inc(metrics.SnapshotWrites, "error")
		o.a.d.log.Error("snapshot write failed", "conversation", o.a.tenant+"/"+o.a.id, "err", err)
		return &moltbot.Error{Code: moltbot.EUnavailable, Message: "could not save the conversation", Err: err}
	}
	o.a.d.met.Inc(metrics.SnapshotWrites, "ok")
	return nil
}

// activate, as the owner, makes sure this node serves the newest copy: it
// asks the other holders for theirs, keeps the newest, and starts a new
// epoch so that a former owner's late writes are fenced off at the replicas.
// The epoch is raised in the store in one step with reading what it holds
// (Store.BumpEpoch): a former owner's turn replicated here while Acquire
// waited is in the copy this node serves, or is refused as stale. (Writing
// the copy read before Acquire over it lost that turn, which its client
// had seen acknowledged: TestActivateKeepsReplicaWrites.)
func (o *copies) activate(local *moltbot.Conversation) *moltbot.Conversation {
	d := o.a.d
	cl := d.cluster
	if !cl.IsOwner(o.a.tenant, o.a.id) {
		return local
	}
	var floor uint64
	if local != nil {
		floor = local.Epoch
	}
	if f := cl.Acquire(o.a.tenant, o.a.id); f != nil {
		floor = max(floor, f.Epoch)
		if local == nil || storage.Newer(f.Epoch, f.Version, local.Epoch, local.Version) {
			local = f
		}
		if _, _, _, err := d.store.PutIfNewer(f, true); err != nil {
			d.log.Error("snapshot write failed", "conversation", f.Key(), "err", err)
		}
	}
	c, err := d.store.BumpEpoch(o.a.tenant, o.a.id, floor, true)
	switch {
	case err == nil:
		local = c
	case local == nil:
		return nil // nothing stored, nothing acquired
	default:
		if !errors.Is(err, storage.ErrNotFound) {
			d.log.Error("snapshot write failed", "conversation", local.Key(), "err", err)
		}
		local.Epoch = floor + 1
	}
	d.log.Debug("conversation activated as its owner", "conversation", local.Key(), "epoch", local.Epoch, "version", local.Version)
	snap, targets := copyConv(local), cl.ReplicaTargets(o.a.tenant, o.a.id)
	go cl.Replicate(snap, targets, false)
	return local
}

// replicated runs done after c, as it is now, reached the replicas (at once
// when alone). done gets ErrStale when a newer owner fenced us off.
func (o *copies) replicated(c *moltbot.Conversation, done func(error)) {
	if !o.a.d.cluster.Clustered() {
		done(nil)
		return
	}
	snap, targets, cl := copyConv(c), o.a.d.cluster.ReplicaTargets(o.a.tenant, o.a.id), o.a.d.cluster
	go func() { done(cl.Replicate(snap, targets, false)) }()
}

// handoff sends c to its new owner (and replicas), then tells the actor
// self (handedOff), which stops; requests meanwhile are told it moved.
func (o *copies) handoff(c *moltbot.Conversation, self *actor.PID) {
	o.handingOff, o.handoffDue = true, false
	snap, targets, d := copyConv(c), o.a.d.cluster.ReplicaTargets(o.a.tenant, o.a.id), o.a.d
	go func() {
		if err := d.cluster.Replicate(snap, targets, true); err == nil && len(targets) > 0 {
			d.met.Inc(metrics.Handoffs, "sent")
		}
		d.root.Send(self, &handedOff{})
	}()
}
