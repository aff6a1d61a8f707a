package handoff

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Entry is one conversation in the queue index: what `handoff list`
// shows. The conversation's own state is the truth; an entry is its
// latest known view, replaced by one of a higher epoch, or of the same
// epoch and a later Updated (last writer wins). An entry whose owner is
// the bot again is a tombstone, kept a while so that an older record
// arriving late from a peer does not bring the conversation back.
type Entry struct {
	Space        string `json:"space"`
	Conversation string `json:"conversation"`
	Owner        string `json:"owner"`
	Epoch        uint64 `json:"epoch"`
	Agent        string `json:"agent,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Since        int64  `json:"since,omitempty"`
	Deadline     int64  `json:"deadline,omitempty"`
	// Last is the user's last message (cut to MaxLast bytes).
	Last    string `json:"last,omitempty"`
	Updated int64  `json:"updated"`
}

// Limits of the index: an entry's last message, the entries kept (the
// oldest tombstones go first, then the oldest entries), how long a
// tombstone stays.
const (
	MaxLast       = 512
	MaxEntries    = 4096
	tombstoneLife = 10 * time.Minute
	maxMerge      = 8 << 20
)

func (e *Entry) key() string { return e.Space + "/" + e.Conversation }

// newer reports whether e replaces cur.
func (e *Entry) newer(cur *Entry) bool {
	return e.Epoch > cur.Epoch || e.Epoch == cur.Epoch && e.Updated > cur.Updated
}

// Index is the queue across the cluster: a node's local changes go out
// through Publish (a SharedMux part, tag 0x02) and the peers' come in
// through Merge; State is the whole index, for the periodic exchange.
// Safe for concurrent use.
type Index struct {
	mu sync.RWMutex
	m  map[string]*Entry
	// Publish sends a change (one entry, JSON) to the cluster; nil: none.
	Publish func([]byte)
	// Added, when set, is called (without the index's lock) after an
	// entry took its place, local or a peer's: the node starts the
	// queue's timer at the first one (a node that never hands off runs
	// none).
	Added func()
	now   func() time.Time
	store Store
}

// Store keeps the index across restarts (storage's handoff namespace).
type Store interface {
	Put(key string, val []byte) error
	Delete(key string) error
	Scan(fn func(key string, val []byte) bool) error
}

// Load reads the entries st holds and keeps every later change there.
// Call it before the index is used.
func (x *Index) Load(st Store) error {
	var bad []string
	err := st.Scan(func(key string, val []byte) bool {
		var e Entry
		if json.Unmarshal(val, &e) != nil || e.key() != key || !e.valid() {
			bad = append(bad, key)
			return true
		}
		x.m[key] = &e
		return true
	})
	for _, k := range bad {
		_ = st.Delete(k)
	}
	x.store = st
	return err
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{m: map[string]*Entry{}, now: time.Now} }

// Len is how many entries the index holds (tombstones of released
// conversations too).
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}

// Put records e (a local change) and publishes it when it won.
func (x *Index) Put(e Entry) {
	if len(e.Last) > MaxLast {
		e.Last = cut(e.Last, MaxLast)
	}
	if e.Updated == 0 {
		e.Updated = x.now().UnixMilli()
	}
	x.mu.RLock()
	if cur, ok := x.m[e.key()]; ok && cur.Epoch == e.Epoch && cur.Updated >= e.Updated {
		e.Updated = cur.Updated + 1 // this node's later change of the same epoch (the same millisecond)
	}
	x.mu.RUnlock()
	if x.put(&e, true) && x.Publish != nil {
		b, _ := json.Marshal([]*Entry{&e})
		x.Publish(b)
	}
}

// put records e when it is newer than what the index holds; persist
// keeps it in the store too (a local change: a peer's comes back from the
// peer's exchange when this node joins again, and is not written here, so
// a full state from a peer costs no synced writes).
func (x *Index) put(e *Entry, persist bool) bool {
	if !x.putLocked(e, persist) {
		return false
	}
	if x.Added != nil {
		x.Added()
	}
	return true
}

func (x *Index) putLocked(e *Entry, persist bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, ok := x.m[e.key()]; ok && !e.newer(cur) {
		return false
	}
	x.m[e.key()] = e
	if persist && x.store != nil {
		b, _ := json.Marshal(e)
		_ = x.store.Put(e.key(), b) // a view: a lost write is rebuilt by the conversation's next change
	}
	if len(x.m) > MaxEntries {
		x.pruneLocked()
	}
	return true
}

// pruneLocked drops old tombstones, then the oldest entries, to
// MaxEntries.
func (x *Index) pruneLocked() {
	old := x.now().Add(-tombstoneLife).UnixMilli()
	for k, e := range x.m {
		if e.Owner == OwnerBot && e.Updated < old {
			x.drop(k)
		}
	}
	if len(x.m) <= MaxEntries {
		return
	}
	all := make([]*Entry, 0, len(x.m))
	for _, e := range x.m {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Updated < all[j].Updated })
	for _, e := range all[:len(all)-MaxEntries] {
		x.drop(e.key())
	}
}

func (x *Index) drop(k string) {
	delete(x.m, k)
	if x.store != nil {
		_ = x.store.Delete(k)
	}
}

// valid reports whether e is a sane entry (from a peer, or storage).
func (e *Entry) valid() bool {
	return e.Space != "" && e.Conversation != "" && len(e.Space)+len(e.Conversation) <= 512 && len(e.Last) <= MaxLast &&
		(e.Owner == OwnerBot || e.Owner == OwnerQueue || e.Owner == OwnerAgent) && len(e.Agent) <= 256 && len(e.Reason) <= 64
}

// Get returns the entry of a conversation.
func (x *Index) Get(space, conversation string) (Entry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.m[space+"/"+conversation]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// List is the queued and agent-owned conversations of space, the
// longest waiting first.
func (x *Index) List(space string) []Entry {
	x.mu.RLock()
	out := []Entry{}
	for _, e := range x.m {
		if e.Space == space && e.Owner != OwnerBot {
			out = append(out, *e)
		}
	}
	x.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Since != out[j].Since {
			return out[i].Since < out[j].Since
		}
		return out[i].Conversation < out[j].Conversation
	})
	return out
}

// Expired is the queued conversations (every space) whose deadline is
// before now.
func (x *Index) Expired(now time.Time) []Entry {
	ms := now.UnixMilli()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Entry
	for _, e := range x.m {
		if e.Owner == OwnerQueue && e.Deadline > 0 && e.Deadline <= ms {
			out = append(out, *e)
		}
	}
	return out
}

// State is the whole index (actors.SharedState), tombstones included.
func (x *Index) State() []byte {
	x.mu.Lock()
	x.pruneLocked()
	all := make([]*Entry, 0, len(x.m))
	for _, e := range x.m {
		all = append(all, e)
	}
	x.mu.Unlock()
	b, _ := json.Marshal(all)
	return b
}

// Merge takes entries from a peer (a change or a whole state): each
// replaces what the index holds when it is newer. It returns how many did.
func (x *Index) Merge(b []byte) (int, error) {
	if len(b) > maxMerge {
		return 0, fmt.Errorf("handoff: index record of %d bytes (at most %d)", len(b), maxMerge)
	}
	var in []*Entry
	if err := json.Unmarshal(b, &in); err != nil {
		return 0, fmt.Errorf("handoff: index record: %w", err)
	}
	n := 0
	for _, e := range in {
		if e == nil || !e.valid() {
			continue
		}
		if x.put(e, false) {
			n++
		}
	}
	return n, nil
}

// cut returns s cut to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// Counts is how many conversations of every space wait in the queue and
// how many an agent has.
func (x *Index) Counts() (queued, agent int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.m {
		switch e.Owner {
		case OwnerQueue:
			queued++
		case OwnerAgent:
			agent++
		}
	}
	return queued, agent
}

// Idle is the conversations (every space) an agent has whose entry has
// not changed (no relayed message, no reply) since before now-d.
func (x *Index) Idle(now time.Time, d time.Duration) []Entry {
	if d <= 0 {
		return nil
	}
	ms := now.Add(-d).UnixMilli()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Entry
	for _, e := range x.m {
		if e.Owner == OwnerAgent && e.Updated <= ms {
			out = append(out, *e)
		}
	}
	return out
}
