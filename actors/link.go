package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/storage"
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

// Link is the cluster link: what a node does with the other nodes. It
// serves protoactor remote behind the RPC guard (guard.go), answers other
// nodes through its agent (agent.go), sends each conversation request to
// the conversation's owner (forward.go, by ownership: owner.go), copies
// conversations to replicas and new owners (replicate.go, rebalance.go)
// and carries the state every member holds (shared.go). It is the only
// part of the runtime that knows cluster.Ring and the pb envelopes.
//
// Alone, or before Attach, it holds no membership: every conversation is
// this node's and the agent refuses everything.
type Link struct {
	system         *actor.ActorSystem
	convs          *conv.Manager // set by New, before Attach
	store          storage.Store
	met            *metrics.Registry
	log            *slog.Logger
	life           *lifetime
	requestTimeout time.Duration
	now            func() time.Time // yields
	replicas       int

	// placement is nil until Attach (alone, or not attached yet): the
	// agent and the RPC guard serve as soon as remote starts, before the
	// membership exists, so it is read atomically (place()).
	placement atomic.Pointer[placeRef]
	remote    remoteServer // protoactor remote (remote_rpc.go); nil alone
	ring      atomic.Pointer[cluster.Ring]
	ringMu    sync.Mutex
	ringCh    chan struct{}
	attached  chan struct{}
	creds     *cluster.Credentials
	nodeName  string
	futures   sync.Map // pending requests to other nodes: future id -> the node asked

	guard  *rpcGuard
	shared *sharedLink
	work   remotePools
	own    ownership
	fwd    forwarding
	repl   replication
	rebal  rebalancer
	follow followers // remote subscriptions served here (subscribe.go)
}

func newLink(system *actor.ActorSystem, life *lifetime, cfg Config) *Link {
	l := &Link{system: system, store: cfg.Store, met: cfg.Metrics, log: cfg.Logger, life: life, requestTimeout: cfg.RequestTimeout,
		now: cfg.clock, replicas: max(cfg.Replicas, 1), ringCh: make(chan struct{}), attached: make(chan struct{}),
		creds: cfg.RemoteTLS, work: newRemotePools(cfg.RemoteWork)}
	l.own.l, l.fwd.l, l.repl.l, l.rebal.l, l.follow.l = l, l, l, l, l
	if l.creds != nil {
		l.nodeName = l.creds.Identity().Name
		met := l.met
		l.creds.OnRefuse(func(reason string) { met.Inc(metrics.ClusterRefused, reason) })
	}
	if cfg.Shared != nil {
		l.shared = newSharedLink(l, cfg.Shared, cfg.SharedInterval)
	}
	return l
}

// RemoteAddress is the protoactor address of this node ("" when alone).
func (l *Link) RemoteAddress() string {
	if l.remote == nil {
		return ""
	}
	return l.system.Address()
}

// Attach starts routing by p: conversations are served by their owner.
// With TLS, peers' certificate names are checked against p from now on.
func (l *Link) Attach(p Placement) {
	// The ring first: whoever sees the placement finds a ring too.
	l.ring.Store(p.Ring())
	if l.creds != nil {
		if peers, ok := p.(cluster.Peers); ok {
			l.creds.SetPeers(peers)
		}
	}
	if !l.placement.CompareAndSwap(nil, &placeRef{p}) {
		panic("actors: Attach called twice")
	}
	close(l.attached)
	l.life.wg.Add(1)
	go l.watchRing()
	if l.shared != nil {
		l.life.wg.Add(2)
		go func() { defer l.life.wg.Done(); l.shared.sendLoop(l.life.base) }()
		go func() { defer l.life.wg.Done(); l.shared.mergeLoop(l.life.base) }()
	}
}

// VerifyPeer proves a member's RPC identity (cluster.Config.Verify): a Hello
// over RPC, whose TLS handshake checks that the member's certificate names
// it, answered by the member's agent.
func (l *Link) VerifyPeer(ctx context.Context, n cluster.Node) error {
	select {
	case <-l.attached:
	case <-ctx.Done():
		return ctx.Err()
	}
	env := l.envelope()
	env.Body = &pb.Envelope_Hello{Hello: &pb.Hello{Name: l.nodeName}}
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		// A protoactor future with no time left would wait forever.
		return context.DeadlineExceeded
	}
	start := time.Now()
	r, err := l.request(n, env, timeout)
	if err != nil {
		// Only a refuted identity takes a member off the ring; a member
		// that does not answer may be busy or cut off, and stays.
		if l.creds != nil {
			if why := l.creds.RefusedSince(n.RPC, start); why != nil {
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

// PublishShared sends a change of the shared state to every member, in the
// background. A member that misses it gets it at a full exchange.
func (l *Link) PublishShared(b []byte) {
	if l.shared == nil {
		return
	}
	select {
	case l.shared.outbox <- b:
	default:
		l.log.Warn("shared state: send queue full; the change spreads at the next full exchange")
	}
}

// WaitHandoff waits until this node holds no conversation in memory and the
// rebalancing pass is over (a leaving node), or ctx ends.
func (l *Link) WaitHandoff(ctx context.Context) {
	for l.convs.Active() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.rebal.wait(ctx)
}

// remoteServer is the running RPC server (a *remote.Remote).
type remoteServer interface{ Shutdown(graceful bool) }

// placeRef boxes a Placement for an atomic pointer.
type placeRef struct{ Placement }

// place returns the membership, or nil before Attach. Set once, never
// cleared: a caller that saw clustered() may call place() freely.
func (l *Link) place() Placement {
	if p := l.placement.Load(); p != nil {
		return p.Placement
	}
	return nil
}

func (l *Link) clustered() bool { return l.placement.Load() != nil }

// ringChanged returns a channel closed at the next ring change.
func (l *Link) ringChanged() <-chan struct{} {
	l.ringMu.Lock()
	defer l.ringMu.Unlock()
	return l.ringCh
}

func (l *Link) currentRing() *cluster.Ring { return l.ring.Load() }

func (l *Link) watchRing() {
	defer l.life.wg.Done()
	prev := l.currentRing()
	for {
		select {
		case <-l.life.base.Done():
			return
		case <-l.place().Changes():
		}
		ring := l.place().Ring()
		l.ring.Store(ring)
		l.ringMu.Lock()
		close(l.ringCh)
		l.ringCh = make(chan struct{})
		l.ringMu.Unlock()
		l.convs.RingChanged()
		l.rebal.start(prev, ring)
		prev = ring
	}
}
