package usage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot"
)

// SharedState is state every cluster member holds (actors.SharedState):
// auth's records, which Peers carries its own beside.
type SharedState interface {
	State() []byte
	Merge(b []byte) (int, error)
}

// wireUsage is the kind of a node's usage record in the shared state
// ("usage/<node>"), beside auth's keys/, tenants/ and jwks/.
const wireUsage = "usage/"

// Bounds of a record from another node.
const (
	maxNodeLen     = 256
	maxSpaces      = 1 << 20
	maxRecordValue = 1 << 50
)

// record is one shared-state record, as auth writes them: kind and id, value.
type record struct {
	K string          `json:"k"`
	V json.RawMessage `json:"v"`
}

// nodeUsage is what one node owns, per space. Boot tells a node's lives
// apart; Seq orders the records of one life.
type nodeUsage struct {
	Node   string            `json:"node"`
	Boot   uint64            `json:"boot"`
	Seq    uint64            `json:"seq"`
	Spaces map[string]Totals `json:"spaces"`
}

// Peers holds what the other members of a cluster own, per space, and
// publishes this node's own totals to them, over the cluster's shared
// state: it is the SharedState the runtime carries, wrapping auth's
// (inner), whose records it passes through untouched. Each node sends its
// record when its totals changed (at most every Run period), and with
// every full exchange; a node off the ring counts for nothing. Its methods
// are safe for concurrent use; Merge runs on one goroutine.
type Peers struct {
	self  string
	boot  uint64
	t     *Table
	alive func(node string) bool
	inner SharedState

	mu    sync.Mutex
	seq   uint64
	nodes map[string]*nodeUsage
}

// NewPeers returns the usage of the members other than self (this node's
// cluster id), whose own totals are t's; alive reports whether a member is
// on the ring; inner is the rest of the shared state (nil: none).
func NewPeers(self string, t *Table, alive func(node string) bool, inner SharedState) *Peers {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Peers{self: self, boot: binary.LittleEndian.Uint64(b[:]), t: t, alive: alive, inner: inner, nodes: map[string]*nodeUsage{}}
}

// Totals sums what the live other members own of a space.
func (p *Peers) Totals(space string) Totals {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sum Totals
	for id, n := range p.nodes {
		if id != p.self && p.alive(id) {
			sum.add(n.Spaces[space], 1)
		}
	}
	return sum
}

// own returns this node's record, as a shared-state change.
func (p *Peers) own() []byte {
	p.mu.Lock()
	p.seq++
	u := nodeUsage{Node: p.self, Boot: p.boot, Seq: p.seq, Spaces: p.t.Snapshot()}
	p.mu.Unlock()
	v, _ := json.Marshal(&u)
	b, _ := json.Marshal([]record{{K: wireUsage + p.self, V: v}})
	return b
}

// State implements SharedState: inner's records and this node's.
func (p *Peers) State() []byte {
	var recs []json.RawMessage
	if p.inner != nil {
		_ = json.Unmarshal(p.inner.State(), &recs)
	}
	var mine []json.RawMessage
	_ = json.Unmarshal(p.own(), &mine)
	b, _ := json.Marshal(append(recs, mine...))
	return b
}

// Merge implements SharedState: usage records here, the rest to inner.
func (p *Peers) Merge(b []byte) (int, error) {
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return 0, fmt.Errorf("usage: merge: %w", err)
	}
	var rest []record
	n := 0
	var errs []error
	for _, r := range recs {
		if !strings.HasPrefix(r.K, wireUsage) {
			rest = append(rest, r)
			continue
		}
		ok, err := p.mergeOne(strings.TrimPrefix(r.K, wireUsage), r.V)
		if err != nil {
			errs = append(errs, err)
		} else if ok {
			n++
		}
	}
	if len(rest) > 0 && p.inner != nil {
		rb, _ := json.Marshal(rest)
		k, err := p.inner.Merge(rb)
		n += k
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// mergeOne keeps another node's record if it is sane and newer than the
// one held (a new Boot always is: the node restarted).
func (p *Peers) mergeOne(node string, v []byte) (bool, error) {
	var u nodeUsage
	if err := json.Unmarshal(v, &u); err != nil || u.Node != node || node == "" || len(node) > maxNodeLen || len(u.Spaces) > maxSpaces {
		return false, fmt.Errorf("usage: bad usage record of %.80q", node)
	}
	for sp, t := range u.Spaces {
		if !moltbot.ValidID(sp) || t.Conversations < 0 || t.Bytes < 0 || t.Conversations > maxRecordValue || t.Bytes > maxRecordValue {
			return false, fmt.Errorf("usage: usage record of %.80q: bad space %.80q", node, sp)
		}
	}
	if node == p.self {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.nodes[node]; old != nil && old.Boot == u.Boot && old.Seq >= u.Seq {
		return false, nil
	}
	p.nodes[node] = &u
	return true, nil
}

// prune forgets the records of members no longer on the ring.
func (p *Peers) prune() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.nodes {
		if !p.alive(id) {
			delete(p.nodes, id)
		}
	}
}

// ReownEvery is how often Run re-owns the table even without a ring
// change: ownership also moves when the node has joined (it owns nothing
// before) and when a yield to another member expires, and neither changes
// the ring.
const ReownEvery = 10 * time.Second

// Run publishes this node's totals when they changed, checking every
// period, and re-owns the table's conversations at every ownership change
// (changed returns a channel closed at the next one) and every
// ReownEvery, until ctx ends.
func (p *Peers) Run(ctx context.Context, publish func([]byte), period time.Duration, changed func() <-chan struct{}) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	reown := time.NewTicker(ReownEvery)
	defer reown.Stop()
	ch := changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ch = changed()
			p.t.Reown()
		case <-reown.C:
			p.t.Reown()
		case <-tick.C:
			p.prune()
		}
		if p.t.TakeDirty() {
			publish(p.own())
		}
	}
}
