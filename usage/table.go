// Package usage accounts what each tenant stores and admits the calls that
// would store more: a tenant's quotas on conversations and stored bytes
// (limits.max_conversations, limits.max_stored_bytes).
//
// The count is kept per space (a tenant's conversations live in its space)
// and is cheap to read on every call: nothing scans storage per request.
//
//   - Table holds, for every conversation this node stores, its size (the
//     snapshot's encoded bytes) and whether this node owns it; the owned
//     ones are summed per space. Store, a storage.Store wrapper, updates it
//     on every write and delete that succeeded (turns, replicas, hand-offs,
//     deletes, tombstones, the sweep of dead tenants), so it is exact for
//     what goes through it. A full recount (Begin, Saw, End) from the
//     retention sweep's scan fills it at start and repairs any drift;
//     writes during the recount win over what the scan read. Reown moves
//     the owned flags after a ring change without reading storage.
//   - Quotas admits a create or a turn from the space's total: this
//     node's owned count, the creations it admitted that have not finished,
//     and (in a cluster) every other node's owned count (Peers).
//   - Peers carries each node's owned totals to the others over the
//     cluster's shared-state channel: a record per node, published at most
//     every second when it changed, and in every full exchange.
//
// Alone, the count is exact and a create is reserved before it runs, so
// concurrent creates cannot pass the limit. In a cluster each conversation
// is counted by its owner only; another node's count arrives within about
// a second (Peers), so creates spread over several nodes in that second,
// or just after a ring change (until both nodes have re-owned), may pass
// a limit by what they made meanwhile.
package usage

import (
	"sync"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/storage"
)

// Totals is what a space holds: conversations and their stored bytes.
type Totals struct {
	Conversations int64 `json:"n"`
	Bytes         int64 `json:"b"`
}

func (t *Totals) add(o Totals, sign int64) {
	t.Conversations += sign * o.Conversations
	t.Bytes += sign * o.Bytes
}

// entry is one stored conversation as the table knows it.
type entry struct {
	size  int64
	owned bool
	gone  bool   // deleted during a recount: the scan must not bring it back
	gen   uint32 // the recount that last wrote or saw it
}

// space is one space's conversations and owned totals.
type space struct {
	ids     map[string]*entry
	owned   Totals
	pending int64 // creates admitted here and not finished
}

// Table is this node's account of stored conversations, per space. Its
// methods are safe for concurrent use.
type Table struct {
	owns func(space, id string) bool

	mu       sync.Mutex
	spaces   map[string]*space
	gen      uint32
	counting bool
	counted  bool // a full recount finished
	dirty    bool // owned totals changed since TakeDirty
}

// NewTable returns an empty table; owns says whether this node owns a
// conversation (nil: it owns all, as a node alone does).
func NewTable(owns func(space, id string) bool) *Table {
	if owns == nil {
		owns = func(string, string) bool { return true }
	}
	return &Table{owns: owns, spaces: map[string]*space{}}
}

var encodeBuf = sync.Pool{New: func() any { return new([]byte) }}

// Size is what c takes in storage: its encoded snapshot's bytes.
func Size(c *moltbot.Conversation) int64 {
	bp := encodeBuf.Get().(*[]byte)
	*bp = storage.Encode((*bp)[:0], c)
	n := int64(len(*bp))
	if cap(*bp) > 1<<20 {
		*bp = nil // do not pin a huge buffer
	}
	encodeBuf.Put(bp)
	return n
}

// spaceLocked returns the space sp, made if absent. The caller holds mu.
func (t *Table) spaceLocked(sp string) *space {
	s := t.spaces[sp]
	if s == nil {
		s = &space{ids: map[string]*entry{}}
		t.spaces[sp] = s
	}
	return s
}

// setLocked makes id of sp an entry of size and owned (or gone), keeping
// the owned totals. The caller holds mu.
func (t *Table) setLocked(sp, id string, size int64, owned, gone bool) {
	s := t.spaceLocked(sp)
	e := s.ids[id]
	if e == nil {
		if gone && !t.counting {
			return
		}
		e = &entry{}
		s.ids[id] = e
	}
	if e.owned && !e.gone {
		s.owned.add(Totals{1, e.size}, -1)
		t.dirty = true
	}
	e.size, e.owned, e.gone, e.gen = size, owned, gone, t.gen
	if owned && !gone {
		s.owned.add(Totals{1, size}, 1)
		t.dirty = true
	}
	if gone && !t.counting {
		delete(s.ids, id)
	}
	t.dropIfEmptyLocked(sp, s)
}

func (t *Table) dropIfEmptyLocked(sp string, s *space) {
	if len(s.ids) == 0 && s.pending == 0 {
		delete(t.spaces, sp)
	}
}

// Put records a stored conversation (a tombstone removes it).
func (t *Table) Put(c *moltbot.Conversation) {
	if c.Deleted {
		t.Remove(c.Tenant, c.ID)
		return
	}
	size, owned := Size(c), t.owns(c.Tenant, c.ID)
	t.mu.Lock()
	t.setLocked(c.Tenant, c.ID, size, owned, false)
	t.mu.Unlock()
}

// Remove records that a conversation is no longer stored.
func (t *Table) Remove(sp, id string) {
	t.mu.Lock()
	t.setLocked(sp, id, 0, false, true)
	t.mu.Unlock()
}

// RemoveSpaces forgets every space dead reports true (their conversations
// were deleted at once).
func (t *Table) RemoveSpaces(dead func(space string) bool) {
	t.mu.Lock()
	var spaces []string
	for sp := range t.spaces {
		spaces = append(spaces, sp)
	}
	t.mu.Unlock()
	for _, sp := range spaces {
		if !dead(sp) { // outside mu: dead may read storage
			continue
		}
		t.mu.Lock()
		if s := t.spaces[sp]; s != nil {
			for id := range s.ids {
				t.setLocked(sp, id, 0, false, true)
			}
		}
		t.mu.Unlock()
	}
}

// Begin starts a full recount: Saw each stored conversation, read after
// Begin returned, then End. Writes meanwhile win over what the scan read.
func (t *Table) Begin() {
	t.mu.Lock()
	t.gen++
	t.counting = true
	t.mu.Unlock()
}

// Saw records a conversation the recount's scan read (tombstones are
// skipped), unless a write since Begin already told about it.
func (t *Table) Saw(c *moltbot.Conversation) {
	if c.Deleted {
		return
	}
	size, owned := Size(c), t.owns(c.Tenant, c.ID)
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.spaces[c.Tenant]; s != nil {
		if e := s.ids[c.ID]; e != nil && e.gen == t.gen {
			return
		}
	}
	t.setLocked(c.Tenant, c.ID, size, owned, false)
}

// End ends a recount. complete: the scan read everything, so what it did
// not see and nobody wrote since Begin is gone.
func (t *Table) End(complete bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counting = false
	for sp, s := range t.spaces {
		for id, e := range s.ids {
			if e.gone || complete && e.gen != t.gen {
				t.setLocked(sp, id, 0, false, true)
			}
		}
		t.dropIfEmptyLocked(sp, s)
	}
	if complete {
		t.counted = true
	}
}

// Counted reports whether a full recount has finished: before, the table
// holds only what was written since the node started.
func (t *Table) Counted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counted
}

// Reown asks owns again for every conversation (after a ring change).
func (t *Table) Reown() {
	type key struct{ sp, id string }
	t.mu.Lock()
	var keys []key
	for sp, s := range t.spaces {
		for id := range s.ids {
			keys = append(keys, key{sp, id})
		}
	}
	t.mu.Unlock()
	for _, k := range keys {
		owned := t.owns(k.sp, k.id) // outside mu: it reads the ring
		t.mu.Lock()
		if s := t.spaces[k.sp]; s != nil {
			if e := s.ids[k.id]; e != nil && !e.gone && e.owned != owned {
				t.setLocked(k.sp, k.id, e.size, owned, false)
			}
		}
		t.mu.Unlock()
	}
}

// Owned returns this node's owned totals of a space, with the creates
// admitted here that have not finished counted as conversations.
func (t *Table) Owned(sp string) Totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.spaces[sp]
	if s == nil {
		return Totals{}
	}
	o := s.owned
	o.Conversations += s.pending
	return o
}

// reserve adds a pending create to sp.
func (t *Table) reserve(sp string, n int64) {
	t.mu.Lock()
	s := t.spaceLocked(sp)
	s.pending += n
	t.dropIfEmptyLocked(sp, s)
	t.mu.Unlock()
}

// Snapshot returns the owned totals of every space that has any.
func (t *Table) Snapshot() map[string]Totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]Totals, len(t.spaces))
	for sp, s := range t.spaces {
		if s.owned != (Totals{}) {
			out[sp] = s.owned
		}
	}
	return out
}

// TakeDirty reports whether the owned totals changed since the last call.
func (t *Table) TakeDirty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.dirty
	t.dirty = false
	return d
}
