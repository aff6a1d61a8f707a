package conv

import (
	"sync"
	"time"

	"github.com/moltbot/moltbot"
)

// Hub is this node's subscriptions to its conversations' events: each
// message stored (the user's, the reply), the tokens of a turn that starts
// while someone follows, and the end (the conversation deleted). It lives
// beside the actors, not in them: a conversation passivated and started
// again keeps its followers. Publishing never blocks an actor: a
// subscriber's function must only queue (it returns false to leave).
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
	now  func() time.Time
}

// Subscription is one follower of one conversation.
type Subscription struct {
	h       *Hub
	key     string
	fn      func(moltbot.Event) bool
	expires time.Time // zero: until removed
	done    chan struct{}
	end     error
}

// Done is closed when the subscription ends: removed, left (its function
// returned false), expired, or its conversation deleted (Err says why).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended (nil while it runs, or when removed).
func (s *Subscription) Err() error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.end
}

// Remove ends the subscription.
func (s *Subscription) Remove() { s.h.remove(s, nil) }

// Renew moves a leased subscription's end to until.
func (s *Subscription) Renew(until time.Time) {
	s.h.mu.Lock()
	s.expires = until
	s.h.mu.Unlock()
}

// Add subscribes fn to the conversation's events until removed, or until
// expires when it is not zero.
func (h *Hub) Add(tenant, id string, fn func(moltbot.Event) bool, expires time.Time) *Subscription {
	s := &Subscription{h: h, key: tenant + "/" + id, fn: fn, expires: expires, done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[*Subscription]struct{}{}
	}
	set := h.subs[s.key]
	if set == nil {
		set = map[*Subscription]struct{}{}
		h.subs[s.key] = set
	}
	set[s] = struct{}{}
	return s
}

// Following reports whether anyone follows the conversation.
func (h *Hub) Following(tenant, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[tenant+"/"+id]) > 0
}

// Count is the number of subscriptions.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.subs {
		n += len(set)
	}
	return n
}

func (h *Hub) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// publish gives ev to the conversation's followers.
func (h *Hub) publish(tenant, id string, ev moltbot.Event) {
	key := tenant + "/" + id
	h.mu.Lock()
	set := h.subs[key]
	if len(set) == 0 {
		h.mu.Unlock()
		return
	}
	now := h.clock()
	var live, expired []*Subscription
	for s := range set {
		if !s.expires.IsZero() && now.After(s.expires) {
			expired = append(expired, s)
		} else {
			live = append(live, s)
		}
	}
	h.mu.Unlock()
	for _, s := range expired {
		h.remove(s, moltbot.Errorf(moltbot.ETimeout, "the subscription's lease ran out"))
	}
	for _, s := range live {
		if !s.fn(ev) {
			h.remove(s, nil)
		}
	}
}

// Expire ends the subscriptions whose lease ran out.
func (h *Hub) Expire() {
	now := h.clock()
	h.mu.Lock()
	var expired []*Subscription
	for _, set := range h.subs {
		for s := range set {
			if !s.expires.IsZero() && now.After(s.expires) {
				expired = append(expired, s)
			}
		}
	}
	h.mu.Unlock()
	for _, s := range expired {
		h.remove(s, moltbot.Errorf(moltbot.ETimeout, "the subscription's lease ran out"))
	}
}

// close ends every subscription of the conversation with err, after giving
// them the error as their last event.
func (h *Hub) close(tenant, id string, err error) {
	key := tenant + "/" + id
	h.mu.Lock()
	set := h.subs[key]
	subs := make([]*Subscription, 0, len(set))
	for s := range set {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.fn(moltbot.Event{Kind: moltbot.EventError, Err: err})
		h.remove(s, err)
	}
}

func (h *Hub) remove(s *Subscription, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.subs[s.key]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.subs, s.key)
	}
	s.end = err
	close(s.done)
}
