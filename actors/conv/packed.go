package conv

import (
	"fmt"
	"sync"
	"unique"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/moltbot/moltbot/storage"
)

// An idle conversation actor keeps its conversation packed: the bytes of
// its snapshot (storage.Encode) without its tenant and id (the actor's
// own) and system prompt (interned, in conversation.system), where the
// working form is a moltbot.Conversation, its messages (136 bytes each
// before their text), and a string for every text. For a conversation of
// one short turn that is about 220 bytes instead of 850, the largest part
// of what an active conversation costs besides the actor itself. The
// actor unpacks it when a message arrives and packs it again once nothing
// is in progress: a decode and an encode a turn, within the noise for a
// short conversation, about 150 µs at a hundred messages
// (BenchmarkTurnPacked). It is still in memory, still owned, still served
// without a store read: only its form changes.
//
// Nothing in progress means: no turn running or waiting, no relinquish
// waiting for one, nothing in the outbox (its deliveries change entries
// in place and its timer refers to them), not handing off. Everything
// the actor hands to a goroutine is a copy (copyConv, the turn's
// messages), so no goroutine holds the unpacked form the actor drops.

// packScratch holds the buffers pack encodes into before it copies the
// bytes to a slice of their exact size.
var packScratch = sync.Pool{New: func() any { return new([]byte) }}

// unpack makes a.conv the working form of the packed conversation, if it
// is packed. Its own encoding reads back, so an error is a bug: the actor
// panics (and restarts from its snapshot in the store).
func unpack(a *conversation) {
	if a.packed == nil {
		return
	}
	c, err := storage.Decode(a.packed)
	if err != nil {
		panic(fmt.Sprintf("conversation %s/%s: packed form unreadable: %v", a.tenant, a.id, err))
	}
	c.Tenant, c.ID, c.System = a.tenant, a.id, a.system.Value()
	a.conv, a.packed = c, nil
}

// pack keeps the conversation packed if nothing is in progress. (pack and
// unpack are functions: the conversation has its 15 methods.)
func pack(a *conversation) {
	if a.conv == nil || a.d.unpacked || a.running != nil || len(a.queue) > 0 || len(a.yield) > 0 ||
		len(a.conv.Outbox) > 0 || a.own.handingOff || a.own.handoffDue {
		return
	}
	// The tenant and id are the actor's; the system prompt is interned:
	// the conversations of one bot, or of one client, share theirs.
	a.system = unique.Make(a.conv.System)
	a.conv.Tenant, a.conv.ID, a.conv.System = "", "", ""
	buf := packScratch.Get().(*[]byte)
	b := storage.Encode((*buf)[:0], a.conv)
	a.packed = append(make([]byte, 0, len(b)), b...)
	if cap(b) <= 64<<10 { // a huge conversation's buffer is not kept
		*buf = b
		packScratch.Put(buf)
	}
	a.conv = nil
}

// unpacks reports whether m needs the conversation: everything but the
// messages that stop the actor.
func unpacks(m any) bool {
	switch m.(type) {
	case *actor.Stopping, *actor.Stopped, *actor.Restarting:
		return false
	}
	return true
}
