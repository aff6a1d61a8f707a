package conv

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot"
)

// ErrChanged: a retention operation found the conversation at another
// version than the one it was decided (and archived) on; nothing changed.
var ErrChanged = errors.New("actors: the conversation changed since it was read")

// retainMsg is a retention sweep's operation on one conversation, applied
// only if the conversation is still at version: drop < 0 deletes it (a
// delete as a client's, tombstone and replicas included), drop > 0 removes
// its drop oldest messages (the system prompt is a field of its own and
// stays). The sweep archived exactly that version first.
type retainMsg struct {
	tenant, id string
	version    uint64
	drop       int
	reply      chan error // buffered (1)
	answered   atomic.Bool
}

func (m *retainMsg) route() (string, string) { return m.tenant, m.id }

func (m *retainMsg) answer(err error) {
	if !m.answered.Swap(true) {
		m.reply <- err
	}
}

func (m *retainMsg) fail(err error) { m.answer(err) }

// Retain applies a retention sweep's decision to a conversation of this
// node, if it is still at version: drop < 0 deletes it, drop > 0 removes
// its drop oldest messages. ErrChanged (wrapped) when it is at another
// version; the "moved" error when another node owns it.
func (m *Manager) Retain(ctx context.Context, tenant, id string, version uint64, drop int) error {
	msg := &retainMsg{tenant: tenant, id: id, version: version, drop: drop, reply: make(chan error, 1)}
	m.d.root.Send(m.pid, msg)
	select {
	case err := <-msg.reply:
		return err
	case <-ctx.Done():
		return CtxError(ctx)
	}
}

// apply runs m on the conversation actor a (its Receive calls it). A
// running or waiting turn makes it skip (changed): the next sweep decides
// again on what the turn leaves.
func (m *retainMsg) apply(a *conversation, c actor.Context) {
	switch {
	case a.own.moved():
		m.answer(Moved())
		a.release(c)
		return
	case a.loadErr != nil:
		m.answer(a.loadErr)
		return
	case a.conv == nil:
		m.answer(a.notFound())
		a.release(c)
		return
	case a.conv.Version != m.version || a.running != nil || len(a.queue) > 0 || m.drop == 0 || m.drop >= len(a.conv.Messages):
		m.answer(&moltbot.Error{Code: moltbot.EConflict, Message: "the conversation changed; retention skips it this time", Err: ErrChanged})
		return
	case m.drop > 0 && waitsFor(a.conv, a.conv.Messages[:m.drop]):
		// A reply to drop still waits in the outbox: dropped, it would
		// never be delivered. A later sweep trims it.
		m.answer(&moltbot.Error{Code: moltbot.EConflict, Message: "a message to drop waits for delivery; retention skips it this time", Err: ErrChanged})
		return
	case m.drop < 0:
		dm := &deleteMsg{tenant: m.tenant, id: m.id, reply: m.reply}
		m.answered.Store(true) // dm answers on m.reply, a crash included
		a.current = dm
		a.delete(c, dm)
		return
	}
	old, summary := a.conv.Messages, a.conv.Summary
	a.conv.Messages = append([]moltbot.Message(nil), old[m.drop:]...)
	// A summary holds what the oldest messages said: it goes with them
	// (the next turn that does not fit summarizes what is left).
	a.conv.Summary = nil
	a.conv.Version++
	if err := a.own.persist(a.conv); err != nil {
		a.conv.Messages, a.conv.Summary = old, summary
		a.conv.Version--
		m.answer(err)
		return
	}
	a.own.replicated(a.conv, func(err error) { m.answer(errNil(err)) })
}
