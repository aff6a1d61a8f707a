package usage

import (
	"fmt"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// Limits returns a tenant's quotas (0: unlimited).
type Limits func(tenant string) (maxConversations, maxStoredBytes int64)

// Quotas admits the calls that store data for a tenant (the chat service's
// creates and turns) against its quotas and its space's usage. Its methods
// are safe for concurrent use.
type Quotas struct {
	t      *Table
	peers  *Peers // nil: alone
	limits Limits
	met    *metrics.Registry
}

// NewQuotas admits by limits against t and, in a cluster, peers' counts.
func NewQuotas(t *Table, peers *Peers, limits Limits, met *metrics.Registry) *Quotas {
	if met == nil {
		met = metrics.New("")
	}
	return &Quotas{t: t, peers: peers, limits: limits, met: met}
}

// Usage is a space's totals: this node's owned conversations and pending
// creates, and every other node's last published count.
func (q *Quotas) Usage(space string) Totals {
	u := q.t.Owned(space)
	if q.peers != nil {
		u.add(q.peers.Totals(space), 1)
	}
	return u
}

// AdmitCreate admits a new conversation of p's tenant: refused (EQuota)
// when the tenant has max_conversations already, or is at its stored
// bytes. Admitted, the create is counted until release is called (once
// the create returned, whatever its outcome; the store counts it then).
func (q *Quotas) AdmitCreate(p *moltbot.Principal) (release func(), err error) {
	maxConv, maxBytes := q.limits(p.Tenant)
	if maxConv <= 0 && maxBytes <= 0 {
		return func() {}, nil
	}
	// Reserve first, then look: two creates racing for the last slot
	// see each other.
	q.t.reserve(p.Space, 1)
	release = func() { q.t.reserve(p.Space, -1) }
	u := q.Usage(p.Space)
	if err := q.check(p, u, maxConv, maxBytes, 1); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// AdmitTurn admits a turn of p's tenant: refused (EQuota) when its stored
// bytes are at max_stored_bytes. A tenant over max_conversations may go on
// talking in the conversations it has.
func (q *Quotas) AdmitTurn(p *moltbot.Principal) error {
	_, maxBytes := q.limits(p.Tenant)
	if maxBytes <= 0 {
		return nil
	}
	return q.check(p, q.Usage(p.Space), 0, maxBytes, 0)
}

// check refuses when u is past a limit; reserved creates are in u.
// An end user (a user-bound caller) hears that the quota is spent, not
// the tenant's totals: they are every user's.
func (q *Quotas) check(p *moltbot.Principal, u Totals, maxConv, maxBytes, reserved int64) error {
	if maxConv > 0 && u.Conversations > maxConv {
		q.met.Inc(metrics.QuotaRefused, "max_conversations")
		if p.UserBound {
			return &moltbot.Error{Code: moltbot.EQuota, Message: fmt.Sprintf(
				"tenant %q keeps as many conversations as it may (limits.max_conversations)", p.Tenant)}
		}
		return &moltbot.Error{Code: moltbot.EQuota, Message: fmt.Sprintf(
			"tenant %q has %d conversations and may keep %d (limits.max_conversations): delete some, or raise the limit",
			p.Tenant, u.Conversations-reserved, maxConv)}
	}
	if maxBytes > 0 && u.Bytes >= maxBytes {
		q.met.Inc(metrics.QuotaRefused, "max_stored_bytes")
		if p.UserBound {
			return &moltbot.Error{Code: moltbot.EQuota, Message: fmt.Sprintf(
				"tenant %q stores as much as it may (limits.max_stored_bytes)", p.Tenant)}
		}
		return &moltbot.Error{Code: moltbot.EQuota, Message: fmt.Sprintf(
			"tenant %q stores %d bytes and may store %d (limits.max_stored_bytes): delete conversations, or raise the limit",
			p.Tenant, u.Bytes, maxBytes)}
	}
	return nil
}
