package actors

import (
	"sync"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/cluster"
)

// ownership says which node owns a conversation: the ring's owner, unless
// this node relinquished the conversation to a member its ring does not
// show yet (yields).
type ownership struct {
	l      *Link
	yields sync.Map // conversation key -> yielded: handed to another member
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

// ownerOf returns the owner of a conversation and whether it is this node.
// Before the node has joined, nothing is anyone's: callers answer "retry".
func (o *ownership) ownerOf(tenant, id string) (cluster.Node, bool) {
	l := o.l
	if !l.clustered() {
		return cluster.Node{}, true
	}
	if !l.place().Ready() {
		return cluster.Node{}, false
	}
	key := tenant + "/" + id
	n, ok := l.currentRing().Owner(key)
	if !ok {
		return cluster.Node{}, false // we left the ring: nothing is ours
	}
	self := l.place().ID()
	if n.ID == self {
		if to, ok := o.yieldedTo(key); ok {
			return to, false
		}
	}
	return n, n.ID == self
}

// yieldedTo returns the member a conversation was relinquished to (at its
// acquire) while this node's ring has not caught up with it: the member is
// alive but not on this node's ring yet, and the record is fresh. Without
// it, a node whose ring does not show the taker would take the
// conversation back from a copy older than the taker's, and both would
// acknowledge turns that only one history keeps. Once the taker is on the
// ring, the ring decides again.
func (o *ownership) yieldedTo(key string) (cluster.Node, bool) {
	l := o.l
	v, ok := o.yields.Load(key)
	if !ok {
		return cluster.Node{}, false
	}
	y := v.(yielded)
	if l.now().Sub(y.at) < yieldTTL && !l.currentRing().Has(y.to) {
		if m, ok := l.place().Member(y.to); ok && m.State == "alive" && m.ID != l.place().ID() {
			return m, true
		}
	}
	o.yields.CompareAndDelete(key, v)
	return cluster.Node{}, false
}

// relinquished records that member to took conversation key over: from now
// on its requests go there, even while this node's ring has not caught up.
func (o *ownership) relinquished(key, to string) {
	o.yields.Store(key, yielded{to: to, at: o.l.now()})
}

// handedBack forgets a yield when the member it went to (from) hands the
// conversation back: that member's ring says it is ours again.
func (o *ownership) handedBack(key, from string) {
	if v, ok := o.yields.Load(key); ok && v.(yielded).to == from {
		o.yields.CompareAndDelete(key, v)
	}
}

// isOwner reports whether this node owns the conversation now.
func (o *ownership) isOwner(tenant, id string) bool {
	_, self := o.ownerOf(tenant, id)
	return self
}

// others returns up to n ranked nodes for a conversation, without this node.
func (o *ownership) others(tenant, id string, n int) []cluster.Node {
	var out []cluster.Node
	for _, node := range o.l.currentRing().Ranked(tenant+"/"+id, n) {
		if node.ID != o.l.place().ID() {
			out = append(out, node)
		}
	}
	return out
}

// noOwner is the error when this node cannot place a conversation: it has
// not joined yet, or it is leaving.
func (o *ownership) noOwner() error {
	if !o.l.place().Ready() {
		return notJoined()
	}
	return &moltbot.Error{Code: moltbot.EShutdown, Message: "this node is leaving the cluster; retry on another", RetryAfter: time.Second}
}

func notJoined() error {
	return &moltbot.Error{Code: moltbot.EShutdown, Message: "this node is still joining the cluster; retry", RetryAfter: time.Second, Err: errOwnerGone}
}

// withOwner names this node the owner of a conversation it served (cluster
// mode; the owner is not stored).
func (o *ownership) withOwner(c *moltbot.Conversation, err error) (*moltbot.Conversation, error) {
	if c != nil && o.l.clustered() {
		c.Owner = o.l.place().ID()
	}
	return c, err
}
