package actors

import (
	"fmt"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/pb"
	"github.com/moltbot/moltbot/internal/metrics"
	"github.com/moltbot/moltbot/internal/slots"
)

// RemoteWork bounds the work other nodes may start on this one at once,
// per kind of envelope the agent serves on a goroutine of its own. Past a
// bound the sender is answered "busy" at once (a retriable error with
// Retry-After) and the refusal is counted in
// moltbot_cluster_rpc_busy_total{kind}: the agent's mailbox never waits.
// One member may hold at most three quarters of a kind's slots, so that a
// flood from one member leaves room for the others.
type RemoteWork struct {
	Turns     int // forwarded turns running here (each holds a goroutine for the turn)
	Conv      int // create, get, delete of a conversation
	Replicate int // snapshots being stored (a synced write each)
	Fetch     int // copies asked for by a new owner (an acquire waits for the running turn)
}

// DefaultRemoteWork is sized for a small device: a goroutine is a few KB.
func DefaultRemoteWork() RemoteWork {
	return RemoteWork{Turns: 1024, Conv: 256, Replicate: 256, Fetch: 64}
}

func (w *RemoteWork) ensureDefaults() {
	d := DefaultRemoteWork()
	if w.Turns <= 0 {
		w.Turns = d.Turns
	}
	if w.Conv <= 0 {
		w.Conv = d.Conv
	}
	if w.Replicate <= 0 {
		w.Replicate = d.Replicate
	}
	if w.Fetch <= 0 {
		w.Fetch = d.Fetch
	}
}

// remotePools are the agent's bounds, one per kind.
type remotePools struct {
	turns, conv, replicate, fetch *workPool
}

func newRemotePools(w RemoteWork) remotePools {
	return remotePools{turns: newWorkPool("turn", w.Turns), conv: newWorkPool("conv", w.Conv),
		replicate: newWorkPool("replicate", w.Replicate), fetch: newWorkPool("fetch", w.Fetch)}
}

// gauges exports how many of each kind run (a node with cluster RPC).
func (p remotePools) gauges(met *metrics.Registry) {
	for _, wp := range []*workPool{p.turns, p.conv, p.replicate, p.fetch} {
		met.Gauge(fmt.Sprintf(`moltbot_cluster_rpc_work{kind=%q}`, wp.kind), func() float64 { return float64(wp.inUse()) })
	}
}

// workPool counts the goroutines serving one kind of envelope, in all and
// per member. acquire never waits.
type workPool struct {
	kind      string
	limit     int
	perMember int
	slots     slots.Counter

	logMu   sync.Mutex
	lastLog time.Time
}

func newWorkPool(kind string, limit int) *workPool {
	return &workPool{kind: kind, limit: limit, perMember: max(limit-limit/4, 1)}
}

// acquire takes a slot for member; false when the kind is full or the
// member holds its share. A true must be paired with release.
func (p *workPool) acquire(member string) bool { return p.slots.Acquire(member, p.perMember, p.limit) }

func (p *workPool) release(member string) { p.slots.Release(member) }

func (p *workPool) inUse() int { return p.slots.Held() }

// busyRetryAfter is the Retry-After of a busy answer.
const busyRetryAfter = time.Second

// isBusy reports whether a reply is the agent's busy answer.
func isBusy(r *pb.Envelope) bool {
	return r.GetConvReply().GetError().GetCode() == moltbot.EBusy
}
