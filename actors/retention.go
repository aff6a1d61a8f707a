package actors

import (
	"context"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/actors/conv"
)

// ErrChanged: a retention operation found the conversation changed since
// it was read (conv.ErrChanged); nothing was done.
var ErrChanged = conv.ErrChanged

// Retention is what the retention sweep and the usage accounting need of
// the runtime besides its calls: whether this node owns a conversation
// (each node sweeps and accounts only its own, so a conversation is swept
// once in a cluster), a conditional delete or trim on the owner, and the
// ring's changes. A type of its own so that Runtime and Link keep their
// size; make it with RetentionOf.
type Retention struct{ rt *Runtime }

// RetentionOf returns rt's retention operations.
func RetentionOf(rt *Runtime) Retention { return Retention{rt: rt} }

// Owns reports whether this node owns the conversation now: always when
// alone, never before it joined its cluster.
func (r Retention) Owns(space, id string) bool { return r.rt.link.own.isOwner(space, id) }

// Retain applies a retention decision taken on version of a conversation
// this node owns, only if it is still at that version: drop < 0 deletes
// it (a replicated tombstone, as Delete), drop > 0 removes its drop oldest
// messages (the system prompt stays), written and replicated before it
// returns. An error wrapping ErrChanged when the conversation changed (or a
// turn is running), EMoved when this node does not own it; nothing is
// forwarded: the owner's own sweep decides there.
func (r Retention) Retain(ctx context.Context, space, id string, version uint64, drop int) error {
	if err := r.rt.life.open(); err != nil {
		return err
	}
	if err := validIDs(space, id); err != nil {
		return moltbot.Errorf(moltbot.ENotFound, "conversation %q not found", id)
	}
	if !r.Owns(space, id) {
		return conv.Moved()
	}
	return r.rt.convs.Retain(ctx, space, id, version, drop)
}

// OwnershipChanged returns a channel closed at the next change of the
// ring (never, alone): which conversations this node owns may differ
// after it.
func (r Retention) OwnershipChanged() <-chan struct{} { return r.rt.link.ringChanged() }
