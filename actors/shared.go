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
	link     *Link
	st       SharedState
	interval time.Duration
	outbox   chan []byte
	inbox    chan *pb.Shared
}

func newSharedLink(l *Link, st SharedState, interval time.Duration) *sharedLink {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	return &sharedLink{link: l, st: st, interval: interval, outbox: make(chan []byte, 256), inbox: make(chan *pb.Shared, 64)}
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
		l.link.met.Inc(metrics.SharedMerges, "dropped")
		l.link.log.Warn("shared state: merge queue full; dropped (the next full exchange repairs it)", "from", from)
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
				l.link.met.Inc(metrics.SharedMerges, "refused")
				l.link.log.Warn("shared state: merge", "err", err, "applied", n)
			case n > 0:
				l.link.met.Inc(metrics.SharedMerges, "merged")
			default:
				l.link.met.Inc(metrics.SharedMerges, "unchanged")
			}
		}
	}
}

func (l *sharedLink) sendLoop(ctx context.Context) {
	link := l.link
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	known := map[string]bool{}
	send := func(n cluster.Node, data []byte, full bool) {
		env := link.envelope()
		env.Body = &pb.Envelope_Shared{Shared: &pb.Shared{Data: data, Full: full}}
		link.system.Root.Send(agentPID(n), env)
	}
	others := func() []cluster.Node {
		var out []cluster.Node
		for _, n := range link.currentRing().Nodes() {
			if n.ID != link.place().ID() {
				out = append(out, n)
			}
		}
		return out
	}
	ringCh := link.ringChanged()
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
			ringCh = link.ringChanged()
			greet()
		case <-tick.C:
			if ns := others(); len(ns) > 0 {
				send(ns[rand.IntN(len(ns))], l.st.State(), true)
			}
		}
	}
}
