package auth

import (
	"slices"
	"strings"
	"time"
)

// Conversations is the node's conversation store, seen by the sweep of dead
// tenants' data (storage.Pebble and storage.Memory implement it).
type Conversations interface {
	// DeleteSpaces deletes every conversation whose space (the tenant part
	// of its key) dead reports true and returns how many went. dead is
	// called once per space, with no storage lock held.
	DeleteSpaces(dead func(space string) bool) (int, error)
}

// DefaultSweepEvery is how often the sweep runs besides after each change
// of a tenant (a late replica of a dead tenant's conversation is removed by
// the next one).
const DefaultSweepEvery = time.Hour

// DeadSpace reports whether a conversation space belongs to a tenant life
// that is over for good: an incarnation named dead by its id's replicated
// record (a deleted tenant's, or an earlier one's). A space of a live
// tenant, or one this node knows nothing about (a replica that arrived
// before its tenant's record, or the tenant of a config file line that was
// removed), is not dead: it stays, unreachable by anyone else.
func (s *Service) DeadSpace(space string) bool {
	id, inc, _ := strings.Cut(space, ":")
	if t, ok := s.Tenant(id); ok && t.Incarnation == inc {
		return false
	}
	rec := s.storedTenant(id)
	if rec == nil {
		return false
	}
	if rec.Deleted != 0 && rec.Incarnation == inc {
		return true
	}
	return slices.Contains(rec.Dead, inc)
}

// SweepConversations deletes this node's conversations of dead tenant
// lives now (every node sweeps its own store). It runs by itself after each
// tenant change and every SweepEvery when Config.Conversations is set.
func (s *Service) SweepConversations() (int, error) {
	if s.cfg.Conversations == nil {
		return 0, nil
	}
	n, err := s.cfg.Conversations.DeleteSpaces(s.DeadSpace)
	if n > 0 {
		s.log.Info("swept the conversations of deleted tenants", "conversations", n)
	}
	if err != nil {
		s.log.Error("sweeping the conversations of deleted tenants", "err", err)
	}
	return n, err
}

// kickSweep asks the sweeper for a run soon; it never blocks.
func (s *Service) kickSweep() {
	select {
	case s.sweepKick <- struct{}{}:
	default:
	}
}

// sweepLoop runs the sweep at start, on kicks and on a ticker, until Close.
func (s *Service) sweepLoop() {
	defer s.sweepWG.Done()
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		s.SweepConversations()
		select {
		case <-s.sweepStop:
			return
		case <-s.sweepKick:
		case <-t.C:
		}
	}
}
