package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Placement is the membership the runtime routes by (a *cluster.Cluster).
type Placement interface {
	ID() string
	Ring() *cluster.Ring
	Changes() <-chan struct{}
	Members() []cluster.Node
	// Ready: joined, so the ring is the cluster's and not just this node.
	Ready() bool
	// Proved: member id proved its identity by calling this node (a Hello).
	Proved(id string)
	// Member returns a current member by id (alive, leaving, or just left).
	Member(id string) (cluster.Node, bool)
	// HasName reports whether a current member carries a certificate name.
	HasName(name string) bool
}

func notJoined() error {
	return &moltbot.Error{Code: moltbot.EShutdown, Message: "this node is still joining the cluster; retry", RetryAfter: time.Second, Err: errOwnerGone}
}

// ClusterStatus is the membership for /v1/admin/cluster.
type ClusterStatus struct {
	Self     string         `json:"self"`
	Replicas int            `json:"replicas"`
	Members  []cluster.Node `json:"members"`
}

// Cluster reports the membership, or nil when the node runs alone.
func (rt *Runtime) Cluster() *ClusterStatus {
	if !rt.clustered() {
		return nil
	}
	return &ClusterStatus{Self: rt.place().ID(), Replicas: rt.replicas, Members: rt.place().Members()}
}

// WaitHandoff waits until this node holds no conversation in memory and the
// rebalancing pass is over (a leaving node), or ctx ends.
func (rt *Runtime) WaitHandoff(ctx context.Context) {
	for rt.convs.Active() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	rt.WaitRebalance(ctx)
}

// agentName is the well-known actor that receives every Envelope from other
// nodes.
const agentName = "moltbot"

var (
	// errOwnerGone: the owner left or died before answering.
	errOwnerGone = errors.New("actors: the owner node went away during the request")
	// errWrongReplier: another node answered a request than the one asked.
	errWrongReplier = errors.New("actors: answered by another node")
)

// startRemote serves protoactor remote on addr (host:port): mutual TLS
// when creds are given, every message checked by the guard (guard.go).
func (rt *Runtime) startRemote(addr, advertise string, creds *cluster.Credentials) (err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("actors: remote address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("actors: remote address %q: bad port", addr)
	}
	// Remote.Start panics when it cannot listen: check first, and recover.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("actors: cannot listen for cluster RPC on %s: %w", addr, err)
	}
	ln.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("actors: start cluster RPC on %s: %v", addr, r)
		}
	}()
	rt.guard = &rpcGuard{rt: rt, tls: creds != nil}
	server := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(rt.guard.unary),
		grpc.ChainStreamInterceptor(rt.guard.stream),
		grpc.ConnectionTimeout(5 * time.Second),
		grpc.MaxConcurrentStreams(16),
		grpc.MaxRecvMsgSize(maxRPCMessage),
	}
	dial := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRPCMessage))}
	if creds != nil {
		server = append(server, grpc.Creds(creds))
		dial = append(dial, grpc.WithTransportCredentials(creds))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	opts := []remote.ConfigOption{remote.WithServerOptions(server...), remote.WithDialOptions(dial...)}
	if advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(net.JoinHostPort(advertise, port)))
	}
	// protoactor joins host and port with a bare colon: an IPv6 host needs
	// its brackets.
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	rt.remote = remote.NewRemote(rt.system, remote.Configure(host, p, opts...))
	rt.remote.Start()
	return nil
}

// maxRPCMessage bounds one message batch between nodes (a snapshot, or
// the shared state in a full exchange).
const maxRPCMessage = 16 << 20

// RemoteAddress is the protoactor address of this node ("" when alone).
func (rt *Runtime) RemoteAddress() string {
	if rt.remote == nil {
		return ""
	}
	return rt.system.Address()
}

// Attach starts routing by p: conversations are served by their owner.
// With TLS, peers' certificate names are checked against p from now on.
func (rt *Runtime) Attach(p Placement) {
	// The ring first: whoever sees the placement finds a ring too.
	rt.ring.Store(p.Ring())
	if rt.creds != nil {
		if peers, ok := p.(cluster.Peers); ok {
			rt.creds.SetPeers(peers)
		}
	}
	if !rt.placement.CompareAndSwap(nil, &placeRef{p}) {
		panic("actors: Attach called twice")
	}
	close(rt.attached)
	rt.wg.Add(1)
	go rt.watchRing()
	if rt.shared != nil {
		rt.wg.Add(2)
		go func() { defer rt.wg.Done(); rt.shared.sendLoop(rt.base) }()
		go func() { defer rt.wg.Done(); rt.shared.mergeLoop(rt.base) }()
	}
}

// VerifyPeer proves a member's RPC identity (cluster.Config.Verify): a Hello
// over RPC, whose TLS handshake checks that the member's certificate names
// it, answered by the member's agent.
func (rt *Runtime) VerifyPeer(ctx context.Context, n cluster.Node) error {
	select {
	case <-rt.attached:
	case <-ctx.Done():
		return ctx.Err()
	}
	env := rt.envelope()
	env.Body = &pb.Envelope_Hello{Hello: &pb.Hello{Name: rt.nodeName}}
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		// A protoactor future with no time left would wait forever.
		return context.DeadlineExceeded
	}
	start := time.Now()
	r, err := rt.request(n, env, timeout)
	if err != nil {
		// Only a refuted identity takes a member off the ring; a member
		// that does not answer may be busy or cut off, and stays.
		if rt.creds != nil {
			if why := rt.creds.RefusedSince(n.RPC, start); why != nil {
				return fmt.Errorf("%w: %v", cluster.ErrIdentity, why)
			}
		}
		if errors.Is(err, errWrongReplier) {
			return fmt.Errorf("%w: %v", cluster.ErrIdentity, err)
		}
		return err
	}
	h := r.GetHelloReply()
	if h == nil {
		if e := r.GetConvReply().GetError(); e != nil {
			return fmt.Errorf("node %s: %s", n.ID, e.Message)
		}
		return fmt.Errorf("node %s: unexpected answer to hello", n.ID)
	}
	if h.Name != n.Name {
		return fmt.Errorf("%w: node %s says it is %q, its metadata says %q", cluster.ErrIdentity, n.ID, h.Name, n.Name)
	}
	return nil
}

// placeRef boxes a Placement for an atomic pointer.
type placeRef struct{ Placement }

// place returns the membership, or nil before Attach. Set once, never
// cleared: a caller that saw clustered() may call place() freely.
func (rt *Runtime) place() Placement {
	if p := rt.placement.Load(); p != nil {
		return p.Placement
	}
	return nil
}

func (rt *Runtime) clustered() bool { return rt.placement.Load() != nil }

// ringChanged returns a channel closed at the next ring change.
func (rt *Runtime) ringChanged() <-chan struct{} {
	rt.ringMu.Lock()
	defer rt.ringMu.Unlock()
	return rt.ringCh
}

func (rt *Runtime) currentRing() *cluster.Ring { return rt.ring.Load() }

func (rt *Runtime) watchRing() {
	defer rt.wg.Done()
	prev := rt.currentRing()
	for {
		select {
		case <-rt.base.Done():
			return
		case <-rt.place().Changes():
		}
		ring := rt.place().Ring()
		rt.ring.Store(ring)
		rt.ringMu.Lock()
		close(rt.ringCh)
		rt.ringCh = make(chan struct{})
		rt.ringMu.Unlock()
		rt.convs.RingChanged()
		rt.startRebalance(prev, ring)
		prev = ring
	}
}

// ownerOf returns the owner of a conversation and whether it is this node.
// Before the node has joined, nothing is anyone's: callers answer "retry".
func (rt *Runtime) ownerOf(tenant, id string) (cluster.Node, bool) {
	if !rt.clustered() {
		return cluster.Node{}, true
	}
	if !rt.place().Ready() {
		return cluster.Node{}, false
	}
	key := tenant + "/" + id
	n, ok := rt.currentRing().Owner(key)
	if !ok {
		return cluster.Node{}, false // we left the ring: nothing is ours
	}
	self := rt.place().ID()
	if n.ID == self {
		if to, ok := rt.yieldedTo(key); ok {
			return to, false
		}
	}
	return n, n.ID == self
}

// yieldTTL is how long a node defers to the member that took a
// conversation over from it, whatever its own ring says meanwhile (the
// taker's ring already had it as the owner; this node's catches up within a
// few gossip rounds).
const yieldTTL = 10 * time.Second

type yielded struct {
	to string
	at time.Time
}

// yieldedTo returns the member a conversation was relinquished to (at its
// acquire) while this node's ring has not caught up with it: the member is
// alive but not on this node's ring yet, and the record is fresh. Without
// it, a node whose ring does not show the taker would take the
// conversation back from a copy older than the taker's, and both would
// acknowledge turns that only one history keeps. Once the taker is on the
// ring, the ring decides again.
func (rt *Runtime) yieldedTo(key string) (cluster.Node, bool) {
	v, ok := rt.yields.Load(key)
	if !ok {
		return cluster.Node{}, false
	}
	y := v.(yielded)
	if rt.now().Sub(y.at) < yieldTTL && !rt.currentRing().Has(y.to) {
		if m, ok := rt.place().Member(y.to); ok && m.State == "alive" && m.ID != rt.place().ID() {
			return m, true
		}
	}
	rt.yields.CompareAndDelete(key, v)
	return cluster.Node{}, false
}

// isOwner reports whether this node owns the conversation now.
func (rt *Runtime) isOwner(tenant, id string) bool {
	_, self := rt.ownerOf(tenant, id)
	return self
}

// holders returns up to n ranked nodes for a conversation, without this node.
func (rt *Runtime) others(tenant, id string, n int) []cluster.Node {
	var out []cluster.Node
	for _, node := range rt.currentRing().Ranked(tenant+"/"+id, n) {
		if node.ID != rt.place().ID() {
			out = append(out, node)
		}
	}
	return out
}

func agentPID(n cluster.Node) *actor.PID { return actor.NewPID(n.RPC, agentName) }

func (rt *Runtime) envelope() *pb.Envelope {
	return &pb.Envelope{Protocol: cluster.Protocol, FromNode: rt.place().ID()}
}

// request sends env to node's agent and waits for one reply envelope,
// which must come from that node.
func (rt *Runtime) request(node cluster.Node, env *pb.Envelope, timeout time.Duration) (*pb.Envelope, error) {
	// The future is known to the RPC guard with the node asked before the
	// request leaves: only that node may answer it.
	f := actor.NewFuture(rt.system, timeout)
	rt.futures.Store(f.PID().Id, node.ID)
	defer rt.futures.Delete(f.PID().Id)
	rt.system.Root.RequestWithCustomSender(agentPID(node), env, f.PID())
	res, err := f.Result()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.ID, err)
	}
	reply, ok := res.(*pb.Envelope)
	if !ok {
		return nil, fmt.Errorf("node %s: unexpected reply %T", node.ID, res)
	}
	if reply.FromNode != node.ID {
		rt.met.Inc(metrics.ClusterRefused, "identity")
		return nil, fmt.Errorf("node %s: the reply came from %q: %w", node.ID, reply.FromNode, errWrongReplier)
	}
	return reply, nil
}

// ---- errors on the wire ----

func toPBError(err error) *pb.Error {
	if err == nil {
		return nil
	}
	if errors.Is(err, conv.ErrMoved) || errors.Is(err, conv.ErrStale) {
		return &pb.Error{Code: "moved", Message: moltbot.ErrorMessage(err)}
	}
	var e *moltbot.Error
	if errors.As(err, &e) {
		return &pb.Error{Code: e.Code, Message: e.Error(), Param: e.Param, RetryAfterMs: e.RetryAfter.Milliseconds()}
	}
	return &pb.Error{Code: moltbot.EInternal, Message: err.Error()}
}

func fromPBError(e *pb.Error) error {
	if e == nil {
		return nil
	}
	if e.Code == "moved" {
		return conv.Moved()
	}
	return &moltbot.Error{Code: e.Code, Message: e.Message, Param: e.Param, RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond}
}

func retriable(err error) bool {
	return errors.Is(err, conv.ErrMoved) || errors.Is(err, errOwnerGone)
}

// ---- the agent: receives every envelope from other nodes ----

type agent struct{ rt *Runtime }

// Receive never blocks: what takes time (a turn, a conversation request, a
// replica write, a fetch) runs on a goroutine bounded per kind (RemoteWork);
// past the bound the sender is answered busy at once.
func (a *agent) Receive(c actor.Context) {
	env, ok := c.Message().(*pb.Envelope)
	if !ok {
		return
	}
	rt := a.rt
	place := rt.place()
	if place == nil {
		// Remote serves before Attach: nobody is a member yet. The RPC
		// guard refuses such batches; this holds for any other way in.
		rt.guard.refused(refuse("not_ready", "a message from %q before this node joined", env.FromNode), env.FromNode)
		return
	}
	sender := c.Sender()
	reply := func(r *pb.Envelope) {
		if sender != nil {
			r.Protocol, r.FromNode = cluster.Protocol, place.ID()
			rt.system.Root.Send(sender, r)
		}
	}
	// Only current members are served, and they get replies only at their
	// own address (the RPC guard checked both for messages from the
	// network; this holds for any other way in).
	if _, err := rt.agentAllowed(env); err != nil {
		var r *refusal
		if errors.As(err, &r) {
			rt.guard.refused(r, env.FromNode)
		}
		return
	}
	if env.Protocol != cluster.Protocol || env.Body == nil {
		rt.log.Warn("refused a message from a node of another version", "from", env.FromNode, "protocol", env.Protocol)
		reply(&pb.Envelope{Body: &pb.Envelope_ConvReply{ConvReply: &pb.ConvReply{Error: &pb.Error{Code: moltbot.EUnavailable,
			Message: fmt.Sprintf("incompatible cluster protocol %d (this node speaks %d)", env.Protocol, cluster.Protocol)}}}})
		return
	}
	from := env.FromNode
	// serve runs work on a goroutine holding a slot of pool, or answers
	// busy at once.
	serve := func(pool *workPool, work func(), refused func(*pb.Error)) {
		if !pool.acquire(from) {
			refused(rt.busy(pool, from))
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
			rt.guard.refused(refuse("target", "a turn whose replies go to actor %q", env.ReplyId), env.FromNode)
			return
		}
		serve(rt.work.turns, func() { rt.serveTurn(env, b.Turn) }, func(e *pb.Error) {
			rt.system.Root.Send(actor.NewPID(env.ReplyAddress, env.ReplyId), &pb.Envelope{Protocol: cluster.Protocol, FromNode: place.ID(),
				Body: &pb.Envelope_Result{Result: &pb.TurnResult{Error: e}}})
		})
	case *pb.Envelope_Cancel:
		rt.convs.Cancel(b.Cancel.Tenant, b.Cancel.Id, b.Cancel.TurnId)
	case *pb.Envelope_Conv:
		serve(rt.work.conv, func() { reply(&pb.Envelope{Body: &pb.Envelope_ConvReply{ConvReply: rt.serveConv(b.Conv)}}) }, convBusy)
	case *pb.Envelope_Replicate:
		serve(rt.work.replicate, func() {
			reply(&pb.Envelope{Body: &pb.Envelope_ReplicateAck{ReplicateAck: rt.serveReplicate(env.FromNode, b.Replicate)}})
		}, convBusy)
	case *pb.Envelope_Fetch:
		serve(rt.work.fetch, func() {
			reply(&pb.Envelope{Body: &pb.Envelope_FetchReply{FetchReply: rt.serveFetch(env.FromNode, b.Fetch)}})
		}, convBusy)
	case *pb.Envelope_Hello:
		// The guard checked the caller's certificate names this member.
		place.Proved(env.FromNode)
		reply(&pb.Envelope{Body: &pb.Envelope_HelloReply{HelloReply: &pb.HelloReply{Name: rt.nodeName}}})
	case *pb.Envelope_Shared:
		rt.shared.received(env.FromNode, b.Shared)
	default:
		rt.guard.refused(refuse("type", "member %s sent a %T to the agent", env.FromNode, b), env.FromNode)
	}
}

// serveTurn runs a forwarded turn here (the owner) and streams to the sink.
func (rt *Runtime) serveTurn(env *pb.Envelope, t *pb.TurnRequest) {
	sink := actor.NewPID(env.ReplyAddress, env.ReplyId)
	self := rt.place().ID()
	ctx, cancel := context.WithTimeout(rt.base, rt.requestTimeout)
	if t.DeadlineUnixMs > 0 {
		ctx2, cancel2 := context.WithDeadline(ctx, time.UnixMilli(t.DeadlineUnixMs))
		defer cancel2()
		ctx = ctx2
	}
	defer cancel()
	var fn moltbot.StreamFunc
	if t.Visible {
		fn = func(ch moltbot.Chunk) error {
			rt.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_Chunk{Chunk: &pb.TurnChunk{
				Content: ch.Content, Served: ch.Served.String(), Failovers: int32(ch.Failovers)}}})
			return nil
		}
	}
	res, err := rt.localTurn(ctx, t.Tenant, t.Id, t.TurnId, t.Content, fromPBOptions(t.Options), fn)
	out := &pb.TurnResult{Error: toPBError(err)}
	if res != nil {
		out.Version = res.Version
		out.Message = toPBMessage(&res.Message)
		out.Completion = toPBCompletion(res.Completion)
	}
	rt.system.Root.Send(sink, &pb.Envelope{Protocol: cluster.Protocol, FromNode: self, Body: &pb.Envelope_Result{Result: out}})
}

func (rt *Runtime) serveConv(r *pb.ConvRequest) *pb.ConvReply {
	ctx, cancel := context.WithTimeout(rt.base, 10*time.Second)
	defer cancel()
	var c *moltbot.Conversation
	var err error
	switch r.Op {
	case pb.ConvRequest_CREATE:
		c, err = rt.localCreate(ctx, r.Tenant, CreateOptions{ID: r.Id, System: r.System, Model: r.Model})
	case pb.ConvRequest_GET:
		c, err = rt.localGet(ctx, r.Tenant, r.Id)
	case pb.ConvRequest_DELETE:
		err = rt.localDelete(ctx, r.Tenant, r.Id)
	}
	out := &pb.ConvReply{Error: toPBError(err), Owner: rt.place().ID()}
	if c != nil {
		out.Snapshot = storage.Encode(nil, c)
	}
	return out
}

// serveReplicate stores a replica (or a handed-off conversation) if newer.
func (rt *Runtime) serveReplicate(from string, r *pb.Replicate) *pb.ReplicateAck {
	c, err := storage.Decode(r.Snapshot)
	if err != nil {
		return &pb.ReplicateAck{Reason: "corrupt snapshot: " + err.Error()}
	}
	if r.Handoff {
		// Handed back by the member this node yielded it to: that member's
		// ring says it is ours again.
		if v, ok := rt.yields.Load(c.Key()); ok && v.(yielded).to == from {
			rt.yields.CompareAndDelete(c.Key(), v)
		}
	}
	stored, epoch, version, err := rt.store.PutIfNewer(c, true)
	if err != nil {
		return &pb.ReplicateAck{Reason: err.Error()}
	}
	if !stored && storage.Newer(epoch, 0, c.Epoch, 0) {
		// A newer epoch is here: the sender is a stale owner.
		return &pb.ReplicateAck{Reason: "stale", Epoch: epoch, Version: version}
	}
	if r.Handoff {
		rt.met.Inc(metrics.Handoffs, "received")
	}
	return &pb.ReplicateAck{Ok: true, Epoch: epoch, Version: version}
}

func (rt *Runtime) serveFetch(from string, f *pb.Fetch) *pb.FetchReply {
	if f.Acquire {
		// Another node takes the conversation over: from now on requests
		// for it go there (even if this node's ring has not caught up), and
		// it stops serving here first, so that the copy we answer with is
		// the last one.
		rt.yields.Store(f.Tenant+"/"+f.Id, yielded{to: from, at: rt.now()})
		done := rt.convs.Relinquish(f.Tenant, f.Id)
		select {
		case <-done:
		case <-time.After(rt.requestTimeout):
			rt.log.Warn("a conversation did not stop in time for its new owner", "conversation", f.Tenant+"/"+f.Id)
		}
	}
	c, err := rt.store.Get(f.Tenant, f.Id)
	if err != nil {
		return &pb.FetchReply{}
	}
	return &pb.FetchReply{Found: true, Snapshot: storage.Encode(nil, c)}
}

// ---- replication and fetch (blocking: call from goroutines) ----

// replicate copies c to the other replicas of its conversation (the next
// replicas-1 ranked nodes), or with handoff to its owner and replicas. It
// waits for their acks; errStale means another node owns it with a newer
// epoch. Unreachable replicas are logged and skipped: the ring drops dead
// nodes, and rebalancing copies to whoever replaces them.
func (rt *Runtime) replicate(c *moltbot.Conversation, targets []cluster.Node, handoff bool) error {
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
			env := rt.envelope()
			env.Body = &pb.Envelope_Replicate{Replicate: &pb.Replicate{Snapshot: snap, Handoff: handoff}}
			r, err := rt.requestPatient(n, env, 3*time.Second)
			out <- res{n, r, err}
		}()
	}
	var stale error
	for range targets {
		r := <-out
		ack := r.env.GetReplicateAck()
		switch {
		case r.err != nil:
			rt.met.Inc(metrics.ReplicationWrites, "error")
			rt.log.Warn("replication failed", "conversation", c.Key(), "node", r.node.ID, "err", r.err)
		case isBusy(r.env):
			rt.met.Inc(metrics.ReplicationWrites, "busy")
			rt.log.Warn("replica too busy to take a snapshot", "conversation", c.Key(), "node", r.node.ID)
		case ack == nil:
			rt.met.Inc(metrics.ReplicationWrites, "error")
		case ack.Ok:
			rt.met.Inc(metrics.ReplicationWrites, "ok")
		case ack.Reason == "stale":
			rt.met.Inc(metrics.ReplicationWrites, "stale")
			stale = conv.ErrStale
		default:
			rt.met.Inc(metrics.ReplicationWrites, "error")
			rt.log.Warn("replica refused a snapshot", "conversation", c.Key(), "node", r.node.ID, "reason", ack.Reason)
		}
	}
	return stale
}

// replicas are the nodes that should hold copies besides this owner.
func (rt *Runtime) replicaTargets(tenant, id string) []cluster.Node {
	return rt.others(tenant, id, rt.replicas)
}

// acquire, as the conversation's new owner, asks the nodes that may hold or
// serve it (the replicas+1 ranked, without this node) to stop serving it
// and send their copy, and returns the newest, or nil.
func (rt *Runtime) acquire(tenant, id string) *moltbot.Conversation {
	nodes := rt.others(tenant, id, rt.replicas+1)
	out := make(chan *moltbot.Conversation, len(nodes))
	for _, n := range nodes {
		go func() {
			env := rt.envelope()
			env.Body = &pb.Envelope_Fetch{Fetch: &pb.Fetch{Tenant: tenant, Id: id, Acquire: true}}
			r, err := rt.requestPatient(n, env, rt.requestTimeout+time.Second)
			var c *moltbot.Conversation
			switch {
			case err == nil && r.GetFetchReply().GetFound():
				c, _ = storage.Decode(r.GetFetchReply().Snapshot)
			case err == nil && isBusy(r):
				rt.log.Warn("a holder stayed too busy to send its copy", "conversation", tenant+"/"+id, "node", n.ID)
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

// ---- forwarding: the node a request arrived at, to the owner ----

// turnSink receives a forwarded turn's chunks and result, from the owner
// it forwarded to only. fn is the caller's callback behind its guard:
// once forwardTurn returns, a chunk still arriving reaches nobody.
type turnSink struct {
	fn    moltbot.StreamFunc
	done  chan *pb.TurnResult
	mark  func()
	owner string
	rt    *Runtime
}

func (s *turnSink) Receive(c actor.Context) {
	env, ok := c.Message().(*pb.Envelope)
	if !ok {
		return
	}
	if env.FromNode != s.owner {
		s.rt.guard.refused(refuse("identity", "a turn chunk from %q, not the owner %s", env.FromNode, s.owner), env.FromNode)
		return
	}
	switch b := env.Body.(type) {
	case *pb.Envelope_Chunk:
		s.mark()
		ref, _ := moltbot.ParseModelRef(b.Chunk.Served)
		_ = s.fn(moltbot.Chunk{Content: b.Chunk.Content, Served: ref, Failovers: int(b.Chunk.Failovers)})
	case *pb.Envelope_Result:
		s.done <- b.Result
		c.Stop(c.Self())
	}
}

func (rt *Runtime) forwardTurn(ctx context.Context, owner cluster.Node, tenant, id, turnID, content string, opts moltbot.ChatOptions, fn moltbot.StreamFunc, streamed func()) (*TurnResult, error) {
	rt.met.Inc(metrics.ForwardedTurns)
	done := make(chan *pb.TurnResult, 1)
	visible := fn != nil
	if fn == nil {
		fn = func(moltbot.Chunk) error { return nil }
	}
	// As in localTurn: the sink writes through a guard closed before this
	// returns (waiting for a write in progress), so a late chunk can never
	// reach a finished response.
	g := conv.NewGuard(fn)
	defer g.Close()
	sink := rt.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
		return &turnSink{fn: g.Call, done: done, mark: streamed, owner: owner.ID, rt: rt}
	}), strings.TrimSuffix(sinkPrefix, "$"))
	env := rt.envelope()
	env.ReplyAddress, env.ReplyId = sink.Address, sink.Id
	deadline := time.Now().Add(rt.requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	env.Body = &pb.Envelope_Turn{Turn: &pb.TurnRequest{Tenant: tenant, Id: id, TurnId: turnID, Content: content,
		Options: toPBOptions(opts), Visible: visible, DeadlineUnixMs: deadline.UnixMilli()}}
	rt.system.Root.Send(agentPID(owner), env)
	timer := time.NewTimer(time.Until(deadline) + 5*time.Second)
	defer timer.Stop()
	ringCh := rt.ringChanged()
	for {
		select {
		case r := <-done:
			res, err := fromPBResult(r)
			if moltbot.ErrorCode(err) == moltbot.EShutdown {
				// The owner is stopping: to us that is the owner going away.
				err = &moltbot.Error{Code: moltbot.EShutdown, Message: fmt.Sprintf("node %s, the conversation's owner, is shutting down; retry", owner.ID),
					RetryAfter: time.Second, Err: errOwnerGone}
			}
			return res, err
		case <-ringCh:
			ringCh = rt.ringChanged()
			if !rt.currentRing().Has(owner.ID) {
				rt.system.Root.Stop(sink)
				return nil, &moltbot.Error{Code: moltbot.EShutdown, Message: fmt.Sprintf("node %s, the conversation's owner, went away during the turn; retry", owner.ID),
					RetryAfter: time.Second, Err: errOwnerGone}
			}
		case <-ctx.Done():
			c := rt.envelope()
			c.Body = &pb.Envelope_Cancel{Cancel: &pb.Cancel{Tenant: tenant, Id: id, TurnId: turnID}}
			rt.system.Root.Send(agentPID(owner), c)
			select {
			case r := <-done:
				return fromPBResult(r)
			case <-time.After(conv.AbandonGrace):
				rt.system.Root.Stop(sink)
				return nil, conv.CtxError(ctx)
			}
		case <-timer.C:
			rt.system.Root.Stop(sink)
			return nil, &moltbot.Error{Code: moltbot.ETimeout, Message: fmt.Sprintf("node %s, the conversation's owner, did not answer", owner.ID)}
		}
	}
}

func (rt *Runtime) forwardConv(owner cluster.Node, req *pb.ConvRequest) (*moltbot.Conversation, error) {
	env := rt.envelope()
	env.Body = &pb.Envelope_Conv{Conv: req}
	r, err := rt.request(owner, env, 10*time.Second)
	if err != nil {
		if !rt.currentRing().Has(owner.ID) {
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

// ---- conversions ----

func toPBOptions(o moltbot.ChatOptions) *pb.Options {
	return &pb.Options{Model: o.Model, MaxTokens: int32(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed}
}

func fromPBOptions(o *pb.Options) moltbot.ChatOptions {
	if o == nil {
		return moltbot.ChatOptions{}
	}
	return moltbot.ChatOptions{Model: o.Model, MaxTokens: int(o.MaxTokens), Temperature: o.Temperature, TopP: o.TopP, Stop: o.Stop, Seed: o.Seed}
}

func toPBMessage(m *moltbot.Message) *pb.Message {
	return &pb.Message{Role: string(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete, Id: m.ID}
}

func toPBCompletion(c *moltbot.Completion) *pb.Completion {
	if c == nil {
		return nil
	}
	return &pb.Completion{Content: c.Content, Served: c.Served.String(), Usage: &pb.Usage{PromptTokens: int32(c.Usage.PromptTokens),
		CompletionTokens: int32(c.Usage.CompletionTokens)}, FinishReason: c.FinishReason, Failovers: int32(c.Failovers), TtftUs: c.TTFT.Microseconds()}
}

func fromPBResult(r *pb.TurnResult) (*TurnResult, error) {
	if r.Error != nil {
		return nil, fromPBError(r.Error)
	}
	out := &TurnResult{Version: r.Version}
	if m := r.Message; m != nil {
		out.Message = moltbot.Message{ID: m.Id, Role: moltbot.Role(m.Role), Content: m.Content, Model: m.Model, Created: m.Created, Incomplete: m.Incomplete}
	}
	if c := r.Completion; c != nil {
		ref, _ := moltbot.ParseModelRef(c.Served)
		out.Completion = &moltbot.Completion{Content: c.Content, Served: ref, FinishReason: c.FinishReason, Failovers: int(c.Failovers),
			TTFT: time.Duration(c.TtftUs) * time.Microsecond}
		if c.Usage != nil {
			out.Completion.Usage = moltbot.Usage{PromptTokens: int(c.Usage.PromptTokens), CompletionTokens: int(c.Usage.CompletionTokens)}
		}
	}
	return out, nil
}

// convLink is the cluster as the conversations see it (conv.Cluster).
type convLink struct{ rt *Runtime }

func (l convLink) Clustered() bool                                 { return l.rt.clustered() }
func (l convLink) IsOwner(tenant, id string) bool                  { return l.rt.isOwner(tenant, id) }
func (l convLink) Acquire(tenant, id string) *moltbot.Conversation { return l.rt.acquire(tenant, id) }
func (l convLink) ReplicaTargets(tenant, id string) []cluster.Node {
	return l.rt.replicaTargets(tenant, id)
}
func (l convLink) Replicate(c *moltbot.Conversation, targets []cluster.Node, handoff bool) error {
	return l.rt.replicate(c, targets, handoff)
}
