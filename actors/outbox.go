package actors

import (
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
	"github.com/moltbot/moltbot/cluster"
)

// Deliverer sends a conversation's message to a destination outside the
// request that made it: the channel adapters (conv.Deliverer).
type Deliverer = conv.Deliverer

// wakeOutboxes starts the conversations this node owns under ring (every
// stored one when ring is nil: alone) that have deliveries waiting, so
// that a reply recorded before a restart, or on a node that has died since,
// is delivered without waiting for its user to write again. It runs when
// the runtime starts alone, and after each ring change in a cluster (the
// rebalancing pass).
func wakeOutboxes(l *Link, ring *cluster.Ring) {
	if l.convs == nil {
		return
	}
	self := ""
	if ring != nil {
		self = l.place().ID()
	}
	var wake [][2]string
	scan := l.store.ForEach
	if hs, ok := l.store.(interface {
		ForEachHeader(fn func(c *moltbot.Conversation) bool) error
	}); ok {
		scan = hs.ForEachHeader // the outbox is in the header: no history read
	}
	err := scan(func(c *moltbot.Conversation) bool {
		if c.Deleted || !waiting(c.Outbox) {
			return true
		}
		if ring != nil {
			if n, ok := ring.Owner(c.Key()); !ok || n.ID != self {
				return true
			}
		}
		wake = append(wake, [2]string{c.Tenant, c.ID})
		return true
	})
	if err != nil {
		l.log.Warn("outbox: cannot read the store", "err", err)
	}
	for _, k := range wake {
		l.convs.Wake(k[0], k[1])
	}
	if len(wake) > 0 {
		l.log.Info("outbox: conversations with deliveries to make", "count", len(wake))
	}
}

func waiting(out []moltbot.Delivery) bool {
	for i := range out {
		if !out[i].Failed {
			return true
		}
	}
	return false
}
