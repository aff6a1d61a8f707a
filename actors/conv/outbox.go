package conv

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// The durable outbox: a reply that must reach a destination outside the
// request that asked for it (a channel's chat) is recorded in the
// conversation (Conversation.Outbox) in the same synced write as the reply
// itself, so it survives a restart and moves with the conversation to its
// next owner (the snapshot carries it). The conversation's actor delivers
// it through the Deliverer, off its goroutine, retries with backoff, and
// removes it once delivered (again a synced write). Delivery is at least
// once: a node that dies between a delivery and the write that records it
// leaves it to be delivered again; receivers key messages by their id.

// Deliverer sends a conversation's message to a destination (the channel
// adapters, wired in cmd). Declared here, where it is called.
type Deliverer interface {
	Deliver(ctx context.Context, space, conversation string, to moltbot.Destination, m moltbot.Message) error
}

const (
	deliverTimeout      = 30 * time.Second
	maxDeliveryAttempts = 20
	maxDeliveryBackoff  = 5 * time.Minute
	// deliveryRetryBusy is how soon a delivery is tried again when every
	// delivery slot of the node is taken.
	deliveryRetryBusy = 100 * time.Millisecond
	// maxFailedDeliveries is how many given-up deliveries a conversation
	// keeps to be seen (the newest): the outbox is in the header, which
	// every turn writes again.
	maxFailedDeliveries = 16
)

// outbox is a conversation actor's delivery state (not persisted: what is
// in flight, and the timer of the next attempt).
type outbox struct {
	inFlight map[string]bool
	timer    *time.Timer
}

// deliveryDone comes from a delivery's goroutine.
type deliveryDone struct {
	key string
	err error
}

// outboxWake comes from the outbox's timer: a delivery is due.
type outboxWake struct{}

// wakeMsg, from the manager, starts a conversation so that it delivers what
// waits in its outbox (after a restart, or when it moved here).
type wakeMsg struct{ tenant, id string }

func (m *wakeMsg) route() (string, string) { return m.tenant, m.id }
func (m *wakeMsg) fail(error)              {}

// Wake starts a conversation's actor so that it delivers its outbox.
func (m *Manager) Wake(tenant, id string) {
	m.d.root.Send(m.pid, &wakeMsg{tenant: tenant, id: id})
}

func deliveryKey(d *moltbot.Delivery) string {
	return d.Message + "\x00" + d.To.Channel + "\x00" + d.To.Address
}

// pending reports whether deliveries wait that this node can make: the
// actor stays in memory for them.
func (o *outbox) pending(a *conversation) bool {
	if a.conv == nil || a.d.deliver == nil {
		return false
	}
	for i := range a.conv.Outbox {
		if !a.conv.Outbox[i].Failed {
			return true
		}
	}
	return false
}

// stop disarms the timer (the actor stops).
func (o *outbox) stop() {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
}

// backoff is the wait before attempt n+1 after n failed ones.
func (d *deps) backoff(n int) time.Duration {
	base := d.deliverBase
	if base <= 0 {
		base = time.Second
	}
	return min(base<<min(n-1, 20), maxDeliveryBackoff)
}

// pump starts the deliveries that are due and arms the timer for the next.
func (o *outbox) pump(a *conversation, c actor.Context) {
	if a.conv == nil || a.d.deliver == nil || a.own.moved() || len(a.conv.Outbox) == 0 {
		return
	}
	if o.inFlight == nil {
		o.inFlight = map[string]bool{}
	}
	now := time.Now().UnixMilli()
	next, changed := int64(0), false
	self, root, d := c.Self(), a.d.root, a.d
	// One destination gets its messages in order: a delivery waits while an
	// earlier one to the same place is in flight or waiting to be retried
	// (a given-up one does not hold the rest).
	var busy map[moltbot.Destination]bool
	for i := range a.conv.Outbox {
		dl := &a.conv.Outbox[i]
		key := deliveryKey(dl)
		if dl.Failed || busy[dl.To] {
			continue
		}
		if busy == nil {
			busy = map[moltbot.Destination]bool{}
		}
		busy[dl.To] = true
		if o.inFlight[key] {
			continue
		}
		if dl.NextAt > now {
			if next == 0 || dl.NextAt < next {
				next = dl.NextAt
			}
			continue
		}
		msg, ok := findMessage(a.conv, dl.Message)
		if !ok {
			dl.Failed, dl.LastError, changed = true, "the message is no longer stored", true
			d.met.Inc(metrics.OutboxDeliveries, "failed")
			delete(busy, dl.To) // given up: it holds nothing back
			continue
		}
		select {
		case d.deliverSlots <- struct{}{}:
		default:
			if at := now + deliveryRetryBusy.Milliseconds(); next == 0 || at < next {
				next = at
			}
			continue
		}
		if !d.startDelivery() {
			<-d.deliverSlots // the node is stopping: it waits in the outbox
			continue
		}
		o.inFlight[key] = true
		to, space, id := dl.To, a.tenant, a.id
		go func() {
			defer d.deliveries.Done()
			defer func() { <-d.deliverSlots }()
			ctx, cancel := context.WithTimeout(d.base, deliverTimeout)
			defer cancel()
			err := safeDeliver(ctx, d.deliver, space, id, to, msg)
			root.Send(self, &deliveryDone{key: key, err: err})
		}()
	}
	if changed {
		o.save(a)
	}
	o.stop()
	if next > 0 {
		o.timer = time.AfterFunc(time.Until(time.UnixMilli(next)), func() { root.Send(self, &outboxWake{}) })
	}
}

// safeDeliver calls the deliverer; a panic in it is a failed delivery.
func safeDeliver(ctx context.Context, dl Deliverer, space, id string, to moltbot.Destination, m moltbot.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = moltbot.Errorf(moltbot.EInternal, "the deliverer of channel %q panicked: %v", to.Channel, p)
		}
	}()
	return dl.Deliver(ctx, space, id, to, m)
}

// done records a delivery's outcome, then pumps again.
func (o *outbox) done(a *conversation, c actor.Context, m *deliveryDone) {
	delete(o.inFlight, m.key)
	if a.conv == nil {
		return
	}
	i := -1
	for j := range a.conv.Outbox {
		if deliveryKey(&a.conv.Outbox[j]) == m.key {
			i = j
			break
		}
	}
	if i < 0 {
		return
	}
	dl := &a.conv.Outbox[i]
	switch code := moltbot.ErrorCode(m.err); {
	case m.err == nil:
		a.d.met.Inc(metrics.OutboxDeliveries, "ok")
		a.conv.Outbox = append(a.conv.Outbox[:i:i], a.conv.Outbox[i+1:]...)
	default:
		dl.Attempts++
		dl.LastError = moltbot.ErrorMessage(m.err)
		if code == moltbot.EInvalid || code == moltbot.ENotFound || code == moltbot.EForbidden || dl.Attempts >= maxDeliveryAttempts {
			// Refused for good (the destination is gone or will never take
			// it), or tried long enough: kept, to be seen, not tried again.
			dl.Failed = true
			a.d.met.Inc(metrics.OutboxDeliveries, "failed")
			a.d.log.Warn("outbox: delivery given up", "conversation", a.tenant+"/"+a.id, "channel", dl.To.Channel,
				"message", dl.Message, "attempts", dl.Attempts, "err", dl.LastError)
		} else {
			dl.NextAt = time.Now().Add(a.d.backoff(dl.Attempts)).UnixMilli()
			a.d.met.Inc(metrics.OutboxDeliveries, "retry")
		}
	}
	if len(a.conv.Outbox) == 0 {
		a.conv.Outbox = nil
	}
	o.save(a)
	o.pump(a, c)
}

// save persists and replicates an outbox change. A failed write leaves
// the change in memory: at worst a delivery is made again (at least once).
func (o *outbox) save(a *conversation) {
	dropOldFailures(a.conv)
	a.conv.Version++
	if err := a.own.persist(a.conv); err != nil {
		a.d.log.Warn("outbox: could not record a delivery", "conversation", a.tenant+"/"+a.id, "err", err)
		return
	}
	a.own.replicated(a.conv, func(error) {})
}

// findMessage returns the message of conversation c with id. What is
// delivered is never a user's message: a user message whose external id
// ends in ":a" has the id of an earlier reply.
func findMessage(c *moltbot.Conversation, id string) (moltbot.Message, bool) {
	if i := messageIndex(c.Messages, id); i >= 0 {
		return c.Messages[i], true
	}
	return moltbot.Message{}, false
}

func messageIndex(msgs []moltbot.Message, id string) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].ID == id && msgs[i].Role != moltbot.RoleUser {
			return i
		}
	}
	return -1
}

// waitsFor reports whether a delivery that is not given up waits for one
// of msgs.
func waitsFor(c *moltbot.Conversation, msgs []moltbot.Message) bool {
	for i := range c.Outbox {
		if !c.Outbox[i].Failed && messageIndex(msgs, c.Outbox[i].Message) >= 0 {
			return true
		}
	}
	return false
}

// dropOldFailures keeps the newest maxFailedDeliveries given-up deliveries.
func dropOldFailures(c *moltbot.Conversation) {
	failed := 0
	for i := range c.Outbox {
		if c.Outbox[i].Failed {
			failed++
		}
	}
	if failed <= maxFailedDeliveries {
		return
	}
	out := c.Outbox[:0:0]
	for _, d := range c.Outbox {
		if d.Failed && failed > maxFailedDeliveries {
			failed--
			continue
		}
		out = append(out, d)
	}
	c.Outbox = out
}

// startDelivery counts a delivery about to start; false once the node
// stops delivering (StopDeliveries).
func (d *deps) startDelivery() bool {
	d.deliverMu.Lock()
	defer d.deliverMu.Unlock()
	if d.deliverStopped {
		return false
	}
	d.deliveries.Add(1)
	return true
}

// StopDeliveries starts no delivery from now on and waits for those in
// flight (their contexts end with Base), or for ctx.
func (m *Manager) StopDeliveries(ctx context.Context) {
	d := m.d
	d.deliverMu.Lock()
	d.deliverStopped = true
	d.deliverMu.Unlock()
	done := make(chan struct{})
	go func() {
		d.deliveries.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// enqueue records that the message id goes to `to` (before the write that
// stores the message).
func enqueue(c *moltbot.Conversation, id string, to moltbot.Destination) {
	c.Outbox = append(c.Outbox, moltbot.Delivery{Message: id, To: to})
}
