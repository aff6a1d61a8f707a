package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
)

// forwarding runs the runtime's conversation calls on the conversation's
// owner: here (the conversations of this node), or forwarded to the owner's
// agent. A request whose owner moves or goes away under it follows the
// conversation for routeRetryWindow; a turn only until a token reached the
// caller, always with the same turn id.
type forwarding struct{ l *Link }

// conv runs a conversation operation on its owner: here (local), or
// forwarded as req. A "moved" answer (the ring changed under us) is
// retried a few times.
func (f *forwarding) conv(ctx context.Context, tenant, id string, local func() (*moltbot.Conversation, error), req *pb.ConvRequest) (*moltbot.Conversation, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		owner, self := f.l.own.ownerOf(tenant, id)
		var c *moltbot.Conversation
		var err error
		switch {
		case self:
			c, err = local()
		case owner.ID == "":
			err = f.l.own.noOwner()
		default:
			c, err = f.forwardConv(owner, req)
		}
		if err == nil || !retriable(err) || !retryMore(start, attempt) || ctx.Err() != nil {
			return c, err
		}
		time.Sleep(retryPause(attempt))
	}
}

// turn runs turn turnID on the conversation's owner (see Runtime.Turn),
// retried on a new owner while no token reached fn.
func (f *forwarding) turn(ctx context.Context, tenant, id, turnID string, in moltbot.TurnInput, fn moltbot.StreamFunc) (*TurnResult, error) {
	var streamed atomic.Bool
	wrapped := fn
	if fn != nil {
		wrapped = func(c moltbot.Chunk) error {
			streamed.Store(true)
			return fn(c)
		}
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		owner, self := f.l.own.ownerOf(tenant, id)
		var res *TurnResult
		var err error
		switch {
		case self:
			res, err = f.l.convs.Turn(ctx, tenant, id, turnID, in, wrapped)
		case owner.ID == "":
			err = f.l.own.noOwner()
		default:
			res, err = f.forwardTurn(ctx, owner, tenant, id, turnID, in, wrapped, func() { streamed.Store(true) })
		}
		if err == nil || !retriable(err) || streamed.Load() || !retryMore(start, attempt) || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(retryPause(attempt))
	}
}

// routeRetryWindow is how long a request keeps following a conversation
// whose owner changes under it (a join, a leave, a death: the members'
// rings agree again within a few gossip rounds). Past it, the client gets
// a retriable 503.
const routeRetryWindow = 3 * time.Second

func retryMore(start time.Time, attempt int) bool {
	return attempt < 3 || time.Since(start) < routeRetryWindow
}

// retryPause backs off 20, 40, 80, 160 ms, then 200 ms.
func retryPause(attempt int) time.Duration {
	return min(time.Duration(20<<min(attempt, 4))*time.Millisecond, 200*time.Millisecond)
}

// turnSink receives a forwarded turn's chunks and result, from the owner
// it forwarded to only. fn is the caller's callback behind its guard:
// once forwardTurn returns, a chunk still arriving reaches nobody.
type turnSink struct {
	cc    *moltbot.CacheControl // the request's, or nil
	fn    moltbot.StreamFunc
	done  chan *pb.TurnResult
	mark  func()
	owner string
	l     *Link
}

func (s *turnSink) Receive(c actor.Context) {
	env, ok := c.Message().(*pb.Envelope)
	if !ok {
		return
	}
	if env.FromNode != s.owner {
		s.l.guard.refused(refuse("identity", "a turn chunk from %q, not the owner %s", env.FromNode, s.owner), env.FromNode)
		return
	}
	switch b := env.Body.(type) {
	case *pb.Envelope_Chunk:
		s.mark()
		if s.cc != nil {
			s.cc.SetCode(b.Chunk.Cache) // before the first token reaches the edge
		}
		ref, _ := moltbot.ParseModelRef(b.Chunk.Served)
		_ = s.fn(moltbot.Chunk{Content: b.Chunk.Content, ToolCall: fromPBDelta(b.Chunk.ToolCall), Served: ref, Failovers: int(b.Chunk.Failovers)})
	case *pb.Envelope_Result:
		s.done <- b.Result
		c.Stop(c.Self())
	}
}

func (f *forwarding) forwardTurn(ctx context.Context, owner cluster.Node, tenant, id, turnID string, in moltbot.TurnInput, fn moltbot.StreamFunc, streamed func()) (*TurnResult, error) {
	l := f.l
	l.met.Inc(metrics.ForwardedTurns)
	done := make(chan *pb.TurnResult, 1)
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	// As in a local turn (conv.Manager.Turn): the sink writes through a
	// guard closed before this returns (waiting for a write in progress), so
	// a late chunk can never reach a finished response.
	g := conv.NewGuard(fn)
	defer g.Close()
	sink := l.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
		return &turnSink{cc: moltbot.CacheControlOf(ctx), fn: g.Call, done: done, mark: streamed, owner: owner.ID, l: l}
	}), strings.TrimSuffix(sinkPrefix, "$"))
	env := l.envelope()
	env.ReplyAddress, env.ReplyId = sink.Address, sink.Id
	deadline := time.Now().Add(l.requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	tr := &pb.TurnRequest{Tenant: tenant, Id: id, TurnId: turnID, Content: in.Content, Parts: toPBParts(in.Parts), ToolResults: toPBParts(in.ToolResults),
		Options: toPBOptions(in.Options), Visible: visible, DeadlineUnixMs: deadline.UnixMilli(), RequestId: moltbot.RequestID(ctx)}
	if in.ReplyTo != nil {
		tr.ReplyChannel, tr.ReplyAddress = in.ReplyTo.Channel, in.ReplyTo.Address
	}
	tr.AsUser = in.AsUser
	if in.Handoff != nil {
		tr.Handoff, _ = json.Marshal(in.Handoff)
	}
	if cc := moltbot.CacheControlOf(ctx); cc != nil {
		tr.CacheMode = uint32(cc.Mode)
	}
	env.Body = &pb.Envelope_Turn{Turn: tr}
	l.system.Root.Send(agentPID(owner), env)
	timer := time.NewTimer(time.Until(deadline) + 5*time.Second)
	defer timer.Stop()
	ringCh := l.ringChanged()
	for {
		select {
		case r := <-done:
			if cc := moltbot.CacheControlOf(ctx); cc != nil {
				cc.SetCode(r.Cache)
			}
			res, err := fromPBResult(r)
			if moltbot.ErrorCode(err) == moltbot.EShutdown {
				// The owner is stopping: to us that is the owner going away.
				err = &moltbot.Error{Code: moltbot.EShutdown, Message: fmt.Sprintf("node %s, the conversation's owner, is shutting down; retry", owner.ID),
					RetryAfter: time.Second, Err: errOwnerGone}
			}
			return res, err
		case <-ringCh:
			ringCh = l.ringChanged()
			if !l.currentRing().Has(owner.ID) {
				l.system.Root.Stop(sink)
				return nil, &moltbot.Error{Code: moltbot.EShutdown, Message: fmt.Sprintf("node %s, the conversation's owner, went away during the turn; retry", owner.ID),
					RetryAfter: time.Second, Err: errOwnerGone}
			}
		case <-ctx.Done():
			c := l.envelope()
			c.Body = &pb.Envelope_Cancel{Cancel: &pb.Cancel{Tenant: tenant, Id: id, TurnId: turnID}}
			l.system.Root.Send(agentPID(owner), c)
			select {
			case r := <-done:
				return fromPBResult(r)
			case <-time.After(conv.AbandonGrace):
				l.system.Root.Stop(sink)
				return nil, conv.CtxError(ctx)
			}
		case <-timer.C:
			l.system.Root.Stop(sink)
			return nil, &moltbot.Error{Code: moltbot.ETimeout, Message: fmt.Sprintf("node %s, the conversation's owner, did not answer", owner.ID)}
		}
	}
}

func (f *forwarding) forwardConv(owner cluster.Node, req *pb.ConvRequest) (*moltbot.Conversation, error) {
	l := f.l
	env := l.envelope()
	env.Body = &pb.Envelope_Conv{Conv: req}
	r, err := l.request(owner, env, 10*time.Second)
	if err != nil {
		if !l.currentRing().Has(owner.ID) {
			return nil, &moltbot.Error{Code: moltbot.EShutdown, Message: "the conversation's owner went away; retry", RetryAfter: time.Second, Err: errOwnerGone}
		}
		return nil, &moltbot.Error{Code: moltbot.EUnavailable, Message: fmt.Sprintf("node %s, the conversation's owner, did not answer", owner.ID), Err: err}
	}
	cr := r.GetConvReply()
	if cr == nil {
		return nil, moltbot.Errorf(moltbot.EInternal, "unexpected reply from %s", owner.ID)
	}
	if cr.Error != nil {
		err := fromPBError(cr.Error)
		if moltbot.ErrorCode(err) == moltbot.EShutdown {
			err = &moltbot.Error{Code: moltbot.EShutdown, Message: "the conversation's owner is shutting down; retry", RetryAfter: time.Second, Err: errOwnerGone}
		}
		return nil, err
	}
	if len(cr.Snapshot) == 0 {
		return nil, nil
	}
	c, err := storage.Decode(cr.Snapshot)
	if c != nil {
		c.Owner = cr.Owner
	}
	return c, err
}
