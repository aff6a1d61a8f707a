package actors

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Following a conversation: the owner's hub (conv.Hub) gives its events to
// local followers; a follower on another node holds a lease at the owner,
// renewed while it follows, its events sent to a sink on the follower's
// node. When the ring moves the conversation, the follower follows it to
// its new owner (events during the move may be missed: a follower that
// must not miss a message reads the conversation again).

const (
	// followLease is how long a remote subscription lives unrenewed; the
	// follower renews it every third of that.
	followLease = 30 * time.Second
	// maxFollowers bounds the remote subscriptions a node serves, in all
	// and per member: a member cannot make this node hold without bound.
	maxFollowers          = 4096
	maxFollowersPerMember = 1024
	// followAnswer is how long a follower waits for the owner's first
	// answer before it gives up (EUnavailable).
	followAnswer = 5 * time.Second
)

// Subscribe calls fn with each event of a conversation (messages stored,
// tokens of turns, then an error that ends it: the conversation deleted)
// until ctx ends. fn is called on another goroutine and must not block: it
// should only queue. It returns nil when ctx ends, or why it could not
// follow (ENotFound, ...).
func (rt *Runtime) Subscribe(ctx context.Context, tenant, id string, fn func(moltbot.Event)) error {
	if err := rt.life.open(); err != nil {
		return err
	}
	if err := validIDs(tenant, id); err != nil {
		return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	l := rt.link
	for attempt := 0; ; attempt++ {
		ring := l.ringChanged()
		owner, self := l.own.ownerOf(tenant, id)
		var err error
		switch {
		case self:
			err = l.follow.local(ctx, ring, tenant, id, fn)
		case owner.ID == "":
			err = errMovedOn
			select {
			case <-ctx.Done():
			case <-time.After(retryPause(attempt)):
			}
		default:
			err = l.follow.remote(ctx, ring, owner, tenant, id, fn)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != errMovedOn {
			return err
		}
		if attempt > 0 {
			// Members may disagree on the owner for a moment: do not spin.
			select {
			case <-ctx.Done():
			case <-ring:
			case <-time.After(retryPause(attempt)):
			}
		}
	}
}

// errMovedOn: the ring changed; find the owner again.
var errMovedOn = fmt.Errorf("actors: the conversation's owner changed")

// followLocal follows a conversation this node owns until ctx ends, it
// ends (deleted), or the ring changes (errMovedOn when it is no longer ours).
func (f *followers) local(ctx context.Context, ring <-chan struct{}, tenant, id string, fn func(moltbot.Event)) error {
	l := f.l
	if _, err := l.convs.Get(ctx, tenant, id); err != nil {
		return err
	}
	sub := l.convs.Hub().Add(tenant, id, func(ev moltbot.Event) bool { fn(ev); return true }, time.Time{})
	defer sub.Remove()
	fn(moltbot.Event{Kind: moltbot.EventSubscribed})
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return sub.Err()
		case <-ring:
			if !l.clustered() {
				ring = nil
				continue
			}
			if _, self := l.own.ownerOf(tenant, id); !self {
				return errMovedOn
			}
			ring = l.ringChanged()
		}
	}
}

// followRemote follows a conversation through its owner, renewing the lease.
func (f *followers) remote(ctx context.Context, ring <-chan struct{}, owner cluster.Node, tenant, id string, fn func(moltbot.Event)) error {
	l := f.l
	ended, answered := make(chan error, 1), make(chan struct{})
	sink := l.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
		return &followSink{fn: fn, ended: ended, answered: answered, owner: owner.ID, l: l}
	}), strings.TrimSuffix(sinkPrefix, "$"))
	defer l.system.Root.Stop(sink)
	ask := func(lease time.Duration) {
		env := l.envelope()
		env.ReplyAddress, env.ReplyId = sink.Address, sink.Id
		env.Body = &pb.Envelope_Subscribe{Subscribe: &pb.Subscribe{Tenant: tenant, Id: id, LeaseMs: lease.Milliseconds()}}
		l.system.Root.Send(agentPID(owner), env)
	}
	ask(followLease)
	defer ask(0)
	renew := time.NewTicker(followLease / 3)
	defer renew.Stop()
	silent := time.NewTimer(followAnswer)
	defer silent.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-answered:
			answered = nil
			silent.Stop()
		case <-silent.C:
			return &moltbot.Error{Code: moltbot.EUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("node %s, the conversation's owner, did not answer the subscription", owner.ID)}
		case err := <-ended:
			if moltbot.ErrorCode(err) == moltbot.EMoved {
				return errMovedOn
			}
			return err
		case <-renew.C:
			ask(followLease)
		case <-ring:
			ring = l.ringChanged()
			if now, self := l.own.ownerOf(tenant, id); self || now.ID != owner.ID {
				return errMovedOn
			}
		}
	}
}

// followSink receives a followed conversation's events from its owner.
type followSink struct {
	fn       func(moltbot.Event)
	ended    chan error
	answered chan struct{} // closed at the owner's first answer
	owner    string
	l        *Link
	done     bool
}

func (s *followSink) Receive(c actor.Context) {
	env, ok := c.Message().(*pb.Envelope)
	if !ok || s.done {
		return
	}
	if env.FromNode != s.owner {
		s.l.guard.refused(refuse("identity", "a conversation event from %q, not the owner %s", env.FromNode, s.owner), env.FromNode)
		return
	}
	b, ok := env.Body.(*pb.Envelope_ConvEvent)
	if !ok {
		return
	}
	ev := fromPBEvent(b.ConvEvent)
	if s.answered != nil {
		close(s.answered)
		s.answered = nil
	}
	if ev.Kind == moltbot.EventError {
		s.done = true
		s.ended <- ev.Err
		if moltbot.ErrorCode(ev.Err) == moltbot.EMoved {
			return // the follower finds the new owner; this is not news to fn
		}
	}
	s.fn(ev)
}

// followers follow conversations for this node (local, remote) and serve
// the remote subscriptions of other members, by sink.
type followers struct {
	l         *Link
	mu        sync.Mutex
	subs      map[string]*remoteFollower // sink address/id -> subscription
	perMember map[string]int
}

type remoteFollower struct {
	member     string
	tenant, id string
	stop       func()
	renew      func(until time.Time)
}

// serveSubscribe adds, renews or ends a member's subscription.
func (a *agent) serveSubscribe(env *pb.Envelope, s *pb.Subscribe) {
	l := a.l
	sink := actor.NewPID(env.ReplyAddress, env.ReplyId)
	key := sink.Address + "/" + sink.Id
	f := &l.follow
	self := l.place().ID()
	send := func(ev *pb.ConvEvent) {
		l.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_ConvEvent{ConvEvent: ev}})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs, f.perMember = map[string]*remoteFollower{}, map[string]int{}
	}
	old := f.subs[key]
	if s.LeaseMs <= 0 || old != nil && old.member != env.FromNode {
		if old != nil && old.member == env.FromNode {
			old.stop()
		}
		return
	}
	until := time.Now().Add(min(time.Duration(s.LeaseMs)*time.Millisecond, 2*followLease))
	if old != nil {
		if old.tenant == s.Tenant && old.id == s.Id {
			old.renew(until)
			return
		}
		// The sink follows another conversation now (a sink id of the
		// member's former life): the old lease ends, unheard.
		old.stop()
		delete(f.subs, key)
	}
	l.convs.Hub().Expire() // leases of followers that went away
	if validIDs(s.Tenant, s.Id) != nil {
		send(&pb.ConvEvent{Kind: int32(moltbot.EventError), Error: toPBError(moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", s.Id))})
		return
	}
	if _, owner := l.own.ownerOf(s.Tenant, s.Id); !owner {
		send(&pb.ConvEvent{Kind: int32(moltbot.EventError), Error: toPBError(moltbot.Errorf(moltbot.EMoved, "this node does not own the conversation"))})
		return
	}
	if len(f.subs) >= maxFollowers || f.perMember[env.FromNode] >= maxFollowersPerMember {
		l.met.Inc(metrics.ClusterBusy, "follow")
		send(&pb.ConvEvent{Kind: int32(moltbot.EventError), Error: toPBError(&moltbot.Error{Code: moltbot.EBusy, RetryAfter: time.Second,
			Message: "the conversation's owner follows too many conversations for other nodes; retry"})})
		return
	}
	sub := l.convs.Hub().Add(s.Tenant, s.Id, func(ev moltbot.Event) bool {
		send(toPBEvent(ev))
		return true
	}, until)
	member := env.FromNode
	rf := &remoteFollower{member: member, tenant: s.Tenant, id: s.Id, renew: sub.Renew}
	rf.stop = func() { sub.Remove() }
	f.subs[key] = rf
	f.perMember[member]++
	send(&pb.ConvEvent{Kind: int32(moltbot.EventSubscribed)})
	go func() {
		<-sub.Done()
		if err := sub.Err(); err != nil {
			send(&pb.ConvEvent{Kind: int32(moltbot.EventError), Error: toPBError(err)})
		}
		f.mu.Lock()
		if f.subs[key] == rf {
			delete(f.subs, key)
		}
		if f.perMember[member]--; f.perMember[member] <= 0 {
			delete(f.perMember, member)
		}
		f.mu.Unlock()
	}()
}

func toPBEvent(ev moltbot.Event) *pb.ConvEvent {
	out := &pb.ConvEvent{Kind: int32(ev.Kind), Text: ev.Text, Failovers: int32(ev.Failovers), Error: toPBError(ev.Err), ToolCall: toPBDelta(ev.ToolCall)}
	if !ev.Served.IsZero() {
		out.Served = ev.Served.String()
	}
	if ev.Message != nil {
		out.Message = toPBMessage(ev.Message)
	}
	return out
}

func fromPBEvent(e *pb.ConvEvent) moltbot.Event {
	ev := moltbot.Event{Kind: moltbot.EventKind(e.Kind), Text: e.Text, Failovers: int(e.Failovers), ToolCall: fromPBDelta(e.ToolCall)}
	if e.Served != "" {
		ev.Served, _ = moltbot.ParseModelRef(e.Served)
	}
	if e.Message != nil {
		m := fromPBMessage(e.Message)
		ev.Message = &m
	}
	if e.Error != nil {
		ev.Err = fromPBError(e.Error)
	}
	return ev
}
