package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// agent is the actor that receives every envelope from other nodes
// (agentName). It holds no state: what it serves runs on goroutines
// bounded per kind (remotework.go).
type agent struct{ l *Link }

// Receive never blocks: what takes time (a turn, a conversation request, a
// replica write, a fetch) runs on a goroutine bounded per kind (RemoteWork);
// past the bound the sender is answered busy at once.
func (a *agent) Receive(c actor.Context) {
	env, ok := c.Message().(*pb.Envelope)
	if !ok {
		return
	}
	l := a.l
	place := l.place()
	if place == nil {
		// Remote serves before Attach: nobody is a member yet. The RPC
		// guard refuses such batches; this holds for any other way in.
		l.guard.refused(refuse("not_ready", "a message from %q before this node joined", env.FromNode), env.FromNode)
		return
	}
	sender := c.Sender()
	reply := func(r *pb.Envelope) {
		if sender != nil {
			r.Protocol, r.FromNode = cluster.Protocol, place.ID()
			l.system.Root.Send(sender, r)
		}
	}
	// Only current members are served, and they get replies only at their
	// own address (the RPC guard checked both for messages from the
	// network; this holds for any other way in).
	if _, err := a.allowed(env); err != nil {
		var r *refusal
		if errors.As(err, &r) {
			l.guard.refused(r, env.FromNode)
		}
		return
	}
	if env.Protocol != cluster.Protocol || env.Body == nil {
		l.log.Warn("refused a message from a node of another version", "from", env.FromNode, "protocol", env.Protocol)
		reply(&pb.Envelope{Body: &pb.Envelope_ConvReply{ConvReply: &pb.ConvReply{Error: &pb.Error{Code: moltbot.EUnavailable,
			Message: fmt.Sprintf("incompatible cluster protocol %d (this node speaks %d)", env.Protocol, cluster.Protocol)}}}})
		return
	}
	from := env.FromNode
	// serve runs work on a goroutine holding a slot of pool, or answers
	// busy at once.
	serve := func(pool *workPool, work func(), refused func(*pb.Error)) {
		if !pool.acquire(from) {
			refused(a.busy(pool, from))
			return
		}
		go func() {
			defer pool.release(from)
			work()
		}()
	}
	convBusy := func(e *pb.Error) {
		reply(&pb.Envelope{Body: &pb.Envelope_ConvReply{ConvReply: &pb.ConvReply{Error: e}}})
	}
	switch b := env.Body.(type) {
	case *pb.Envelope_Turn:
		if !ephemeral(env.ReplyId, sinkPrefix) {
			l.guard.refused(refuse("target", "a turn whose replies go to actor %q", env.ReplyId), env.FromNode)
			return
		}
		serve(l.work.turns, func() { a.serveTurn(env, b.Turn) }, func(e *pb.Error) {
			l.system.Root.Send(actor.NewPID(env.ReplyAddress, env.ReplyId), &pb.Envelope{Protocol: cluster.Protocol, FromNode: place.ID(),
				Body: &pb.Envelope_Result{Result: &pb.TurnResult{Error: e}}})
		})
	case *pb.Envelope_Subscribe:
		if !ephemeral(env.ReplyId, sinkPrefix) {
			l.guard.refused(refuse("target", "a subscription whose events go to actor %q", env.ReplyId), env.FromNode)
			return
		}
		a.serveSubscribe(env, b.Subscribe)
	case *pb.Envelope_Cancel:
		l.convs.Cancel(b.Cancel.Tenant, b.Cancel.Id, b.Cancel.TurnId)
	case *pb.Envelope_Conv:
		serve(l.work.conv, func() { reply(&pb.Envelope{Body: &pb.Envelope_ConvReply{ConvReply: a.serveConv(b.Conv)}}) }, convBusy)
	case *pb.Envelope_Replicate:
		serve(l.work.replicate, func() {
			reply(&pb.Envelope{Body: &pb.Envelope_ReplicateAck{ReplicateAck: a.serveReplicate(env.FromNode, b.Replicate)}})
		}, convBusy)
	case *pb.Envelope_Fetch:
		serve(l.work.fetch, func() {
			reply(&pb.Envelope{Body: &pb.Envelope_FetchReply{FetchReply: a.serveFetch(env.FromNode, b.Fetch)}})
		}, convBusy)
	case *pb.Envelope_Hello:
		// The guard checked the caller's certificate names this member.
		place.Proved(env.FromNode)
		reply(&pb.Envelope{Body: &pb.Envelope_HelloReply{HelloReply: &pb.HelloReply{Name: l.nodeName}}})
	case *pb.Envelope_Shared:
		l.shared.received(env.FromNode, b.Shared)
	default:
		l.guard.refused(refuse("type", "member %s sent a %T to the agent", env.FromNode, b), env.FromNode)
	}
}

// serveTurn runs a forwarded turn here (the owner) and streams to the sink.
func (a *agent) serveTurn(env *pb.Envelope, t *pb.TurnRequest) {
	l := a.l
	sink := actor.NewPID(env.ReplyAddress, env.ReplyId)
	self := l.place().ID()
	ctx, cancel := context.WithTimeout(l.life.base, l.requestTimeout)
	if t.DeadlineUnixMs > 0 {
		ctx2, cancel2 := context.WithDeadline(ctx, time.UnixMilli(t.DeadlineUnixMs))
		defer cancel2()
		ctx = ctx2
	}
	defer cancel()
	// The client's word with the output cache, from the node that took
	// the request; what the cache did goes back with each chunk and the
	// result.
	cc := &moltbot.CacheControl{Mode: moltbot.CacheMode(min(t.CacheMode, uint32(moltbot.CacheBypass)))}
	ctx = moltbot.WithCacheControl(ctx, cc)
	var fn moltbot.StreamFunc
	if t.Visible {
		fn = func(ch moltbot.Chunk) error {
			l.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_Chunk{Chunk: &pb.TurnChunk{
				Content: ch.Content, Served: ch.Served.String(), Failovers: int32(ch.Failovers), ToolCall: toPBDelta(ch.ToolCall), Cache: cc.Code()}}})
			return nil
		}
	}
	if moltbot.ValidRequestID(t.RequestId) {
		ctx = moltbot.WithRequestID(ctx, t.RequestId)
	}
	in := moltbot.TurnInput{Content: t.Content, Parts: fromPBParts(t.Parts), ToolResults: fromPBParts(t.ToolResults),
		Options: fromPBOptions(t.Options), AsUser: t.AsUser}
	if t.ReplyChannel != "" {
		in.ReplyTo = &moltbot.Destination{Channel: t.ReplyChannel, Address: t.ReplyAddress}
	}
	if len(t.Handoff) > 0 {
		var op moltbot.HandoffOp
		if len(t.Handoff) > 2*moltbot.MaxHandoffText || json.Unmarshal(t.Handoff, &op) != nil {
			l.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_Result{Result: &pb.TurnResult{
				Error: toPBError(moltbot.Errorf(moltbot.EInvalid, "a forwarded hand-off operation that is not one"))}}})
			return
		}
		in.Handoff = &op
	}
	res, err := l.convs.Turn(ctx, t.Tenant, t.Id, t.TurnId, in, fn)
	switch moltbot.ErrorCode(err) {
	case moltbot.EUnavailable, moltbot.ETimeout, moltbot.EInternal, moltbot.EBusy:
		if err != nil {
			// The node that took the request logs it too; this line, on the
			// owner, carries the same request id.
			l.log.WarnContext(ctx, "forwarded turn failed", "conversation", t.Tenant+"/"+t.Id, "from", env.FromNode, "code", moltbot.ErrorCode(err), "err", err)
		}
	}
	out := &pb.TurnResult{Error: toPBError(err), Cache: cc.Code()}
	if res != nil {
		out.Version, out.Replayed = res.Version, res.Replayed
		out.Message = toPBMessage(&res.Message)
		out.Completion = toPBCompletion(res.Completion)
	}
	l.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_Result{Result: out}})
}

func (a *agent) serveConv(r *pb.ConvRequest) *pb.ConvReply {
	l := a.l
	ctx, cancel := context.WithTimeout(l.life.base, 10*time.Second)
	defer cancel()
	var c *moltbot.Conversation
	var err error
	// (The snapshot does not carry the owner: the reply names it.)
	switch r.Op {
	case pb.ConvRequest_CREATE:
		c, err = l.convs.Create(ctx, r.Tenant, moltbot.NewConversation{ID: r.Id, System: r.System, Model: r.Model, User: r.User, Bot: r.Bot})
	case pb.ConvRequest_GET:
		c, err = l.convs.Get(ctx, r.Tenant, r.Id)
	case pb.ConvRequest_DELETE:
		err = l.convs.Delete(ctx, r.Tenant, r.Id, r.User) // user: the one it must belong to
	}
	out := &pb.ConvReply{Error: toPBError(err), Owner: l.place().ID()}
	if c != nil {
		out.Snapshot = storage.Encode(nil, c)
	}
	return out
}

// serveReplicate stores a replica (or a handed-off conversation) if newer.
func (a *agent) serveReplicate(from string, r *pb.Replicate) *pb.ReplicateAck {
	l := a.l
	c, err := storage.Decode(r.Snapshot)
	if err != nil {
		return &pb.ReplicateAck{Reason: "corrupt snapshot: " + err.Error()}
	}
	if r.Handoff {
		// Handed back by the member this node yielded it to: that member's
		// ring says it is ours again.
		l.own.handedBack(c.Key(), from)
	}
	stored, epoch, version, err := l.store.PutIfNewer(c, true)
	if err != nil {
		return &pb.ReplicateAck{Reason: err.Error()}
	}
	if !stored && storage.Newer(epoch, 0, c.Epoch, 0) {
		// A newer epoch is here: the sender is a stale owner.
		return &pb.ReplicateAck{Reason: "stale", Epoch: epoch, Version: version}
	}
	if r.Handoff {
		l.met.Inc(metrics.Handoffs, "received")
	}
	return &pb.ReplicateAck{Ok: true, Epoch: epoch, Version: version}
}

func (a *agent) serveFetch(from string, f *pb.Fetch) *pb.FetchReply {
	l := a.l
	if f.Acquire {
		// Another node takes the conversation over: from now on requests
		// for it go there (even if this node's ring has not caught up), and
		// it stops serving here first, so that the copy we answer with is
		// the last one.
		l.own.relinquished(f.Tenant+"/"+f.Id, from)
		done := l.convs.Relinquish(f.Tenant, f.Id)
		select {
		case <-done:
		case <-time.After(l.requestTimeout):
			l.log.Warn("a conversation did not stop in time for its new owner", "conversation", f.Tenant+"/"+f.Id)
		}
	}
	c, err := l.store.Get(f.Tenant, f.Id)
	if err != nil {
		return &pb.FetchReply{}
	}
	return &pb.FetchReply{Found: true, Snapshot: storage.Encode(nil, c)}
}

// allowed is the agent's own check (the guard has already run for
// messages from the network): a current member, replies to its own address.
func (a *agent) allowed(env *pb.Envelope) (cluster.Node, error) {
	m, ok := a.l.place().Member(env.FromNode)
	if !ok {
		return m, refuse("not_member", "%q is not a current member", env.FromNode)
	}
	if env.ReplyAddress != "" && env.ReplyAddress != m.RPC {
		return m, refuse("reply_address", "member %s asked for replies at %q, not its own RPC address %q", env.FromNode, env.ReplyAddress, m.RPC)
	}
	return m, nil
}

// busy counts and logs (at most once a second per kind) a refusal, and
// returns the error the sender gets.
func (a *agent) busy(p *workPool, member string) *pb.Error {
	a.l.met.Inc(metrics.ClusterBusy, p.kind)
	total, mine := p.slots.Held(), p.slots.HeldBy(member)
	p.logMu.Lock()
	quiet := time.Since(p.lastLog) < maxRefusalLogHz
	if !quiet {
		p.lastLog = time.Now()
	}
	p.logMu.Unlock()
	if !quiet {
		a.l.log.Warn("cluster RPC: busy, refused work from a member", "kind", p.kind, "member", member,
			"member_holds", mine, "in_use", total, "limit", p.limit)
	}
	return &pb.Error{Code: moltbot.EBusy, RetryAfterMs: busyRetryAfter.Milliseconds(),
		Message: fmt.Sprintf("node %s is busy: %d of %d %s requests from other nodes running; retry", a.l.place().ID(), total, p.limit, p.kind)}
}
