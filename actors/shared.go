package actors

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/cluster"
	"github.com/moltbot/moltbot/internal/metrics"
)

// SharedState is state every member holds a copy of (auth's keys, tenants
// and public signing keys). Merge must be idempotent and commutative (each
// record carries its own version); it runs on one goroutine.
type SharedState interface {
	// State returns the whole state.
	State() []byte
	// Merge applies a change or a whole state from another member.
	Merge(b []byte) (int, error)
}

// sharedLink carries SharedState between members over the authenticated
// RPC channel (never over gossip: only a member with a certificate may
// publish). A change goes to every member on the ring at once; a member
// that joins the ring gets the whole state; every interval the whole state
// goes to one member picked at random, which repairs whatever was lost.
type sharedLink struct {
	rt       *Runtime
	st       SharedState
	interval time.Duration
	outbox   chan []byte
	inbox    chan *pb.Shared
}

func newSharedLink(rt *Runtime, st SharedState, interval time.Duration) *sharedLink {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	return &sharedLink{rt: rt, st: st, interval: interval, outbox: make(chan []byte, 256), inbox: make(chan *pb.Shared, 64)}
}

// PublishShared sends a change of the shared state to every member, in the
// background. A member that misses it gets it at a full exchange.
func (rt *Runtime) PublishShared(b []byte) {
	if rt.shared == nil {
		return
	}
	select {
	case rt.shared.outbox <- b:
	default:
		rt.log.Warn("shared state: send queue full; the change spreads at the next full exchange")
	}
}

// received queues shared state from a member (the agent checked it is one)
// for the merge loop; it never blocks the agent.
func (l *sharedLink) received(from string, m *pb.Shared) {
	if l == nil {
		return
	}
	select {
	case l.inbox <- m:
	default:
		l.rt.met.Inc(metrics.SharedMerges, "dropped")
		l.rt.log.Warn("shared state: merge queue full; dropped (the next full exchange repairs it)", "from", from)
	}
}

func (l *sharedLink) mergeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-l.inbox:
			n, err := l.st.Merge(m.Data)
			switch {
			case err != nil:
				l.rt.met.Inc(metrics.SharedMerges, "refused")
				l.rt.log.Warn("shared state: merge", "err", err, "applied", n)
			case n > 0:
				l.rt.met.Inc(metrics.SharedMerges, "merged")
			default:
				l.rt.met.Inc(metrics.SharedMerges, "unchanged")
			}
		}
	}
}

func (l *sharedLink) sendLoop(ctx context.Context) {
	rt := l.rt
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	known := map[string]bool{}
	send := func(n cluster.Node, data []byte, full bool) {
		env := rt.envelope()
		env.Body = &pb.Envelope_Shared{Shared: &pb.Shared{Data: data, Full: full}}
		rt.system.Root.Send(agentPID(n), env)
	}
	others := func() []cluster.Node {
		var out []cluster.Node
		for _, n := range rt.currentRing().Nodes() {
			if n.ID != rt.place().ID() {
				out = append(out, n)
			}
		}
		return out
	}
	ringCh := rt.ringChanged()
	greet := func() {
		// Members new on the ring get the whole state (a join).
		now := map[string]bool{}
		var state []byte
		for _, n := range others() {
			now[n.ID] = true
			if !known[n.ID] {
				if state == nil {
					state = l.st.State()
				}
				send(n, state, true)
			}
		}
		known = now
	}
	greet()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-l.outbox:
			for _, n := range others() {
				send(n, b, false)
			}
		case <-ringCh:
			ringCh = rt.ringChanged()
			greet()
		case <-tick.C:
			if ns := others(); len(ns) > 0 {
				send(ns[rand.IntN(len(ns))], l.st.State(), true)
			}
		}
	}
}
