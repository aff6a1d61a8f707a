// Package storage keeps conversations: under the key conv/<space>/<id> (the
// space is the tenant id, or "<tenant>:<incarnation>" for a tenant made
// through the API; the Store methods call it tenant) a header, and beside
// it one record per message and the large payloads apart (layout.go), in
// Pebble on disk (Open) or in memory for tests (NewMemory). A write puts
// the header and the messages that changed: a turn writes bytes in
// proportion to the turn. Records are versioned (a format byte) so a
// reader of an unknown format fails loudly; the whole snapshots of older
// builds still load (migration on read). A whole conversation also
// travels between nodes as one snapshot (Encode, Decode: codec.go).
// Every other record (auth's, the audit log's) lives in a Namespace
// (namespace.go), the one table of the key layout.
//
// A Put with sync set returns only after the write is durable (fsync of the
// WAL): acknowledged turns survive kill -9. A Put is one batch: all of it
// is stored, or none. Stores are safe for concurrent use.
package storage

import (
	"errors"
	"sync"

	"github.com/moltbot/moltbot"
)

// ErrNotFound is returned by Get for a conversation that is not stored.
var ErrNotFound = errors.New("storage: conversation not found")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("storage: closed")

// Store holds conversations.
type Store interface {
	// Get returns the stored conversation (large payloads loaded too) or ErrNotFound.
	Get(tenant, id string) (*moltbot.Conversation, error)
	// Put stores c, replacing what was there. It writes what changed:
	// the header and the messages not stored as c has them (a turn: the
	// new ones). With sync it is durable on return.
	Put(c *moltbot.Conversation, sync bool) error
	// Delete removes a conversation; deleting what is absent is not an error.
	Delete(tenant, id string, sync bool) error
	// PutIfNewer stores c only if its (epoch, version) is greater than that of
	// the stored copy (or none is stored): the fence that keeps a stale
	// owner's or a late replica write from replacing newer data. It returns
	// whether c was stored and the (epoch, version) now held.
	PutIfNewer(c *moltbot.Conversation, sync bool) (stored bool, epoch, version uint64, err error)
	// BumpEpoch is how a new owner takes a conversation over: in one step
	// it reads the stored copy and writes it back with its epoch raised to
	// max(its epoch, floor)+1, and returns what it wrote (ErrNotFound when
	// nothing is stored). A replica write of the former owner that lands
	// meanwhile is in the copy, or comes after and is fenced off by the
	// new epoch: a read, then a write, would lose it.
	BumpEpoch(tenant, id string, floor uint64, sync bool) (*moltbot.Conversation, error)
	// Count returns how many conversations are stored.
	Count() (int, error)
	// ForEach calls fn with each stored conversation (tombstones included)
	// until fn returns false.
	ForEach(fn func(c *moltbot.Conversation) bool) error
	// Close flushes and releases the store.
	Close() error
}

// Key returns the store key of a conversation: conv/<space>/<id>.
func Key(tenant, id string) []byte {
	b := make([]byte, 0, len(convPrefix)+len(tenant)+1+len(id))
	b = append(b, convPrefix...)
	b = append(b, tenant...)
	b = append(b, '/')
	return append(b, id...)
}

const convPrefix = "conv/"

// ValidID is moltbot.ValidID, the rule for the spaces and ids of keys
// (actors still calls it here).
func ValidID(s string) bool { return moltbot.ValidID(s) }

// Newer reports whether (e1, v1) is after (e2, v2): the order of a
// conversation's copies, epoch (the owner's term) first.
func Newer(e1, v1, e2, v2 uint64) bool {
	return e1 > e2 || e1 == e2 && v1 > v2
}

// putIfNewer is Store.PutIfNewer over what a store holds under c's key
// (read under that key's write lock) and its write of c: the fence of
// both stores, once. Only the header is read.
func putIfNewer(c *moltbot.Conversation, old held, err error, put func(old held) error) (stored bool, epoch, version uint64, _ error) {
	if err != nil {
		return false, 0, 0, err
	}
	if e, v := old.stamp(); old.found && !Newer(c.Epoch, c.Version, e, v) {
		return false, e, v, nil
	}
	if err := put(old); err != nil {
		return false, 0, 0, err
	}
	return true, c.Epoch, c.Version, nil
}

// keyLocks serialises read-compare-write per key (striped).
type keyLocks [64]sync.Mutex

func (k *keyLocks) lock(tenant, id string) *sync.Mutex {
	h := uint32(2166136261)
	for _, s := range [2]string{tenant, id} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * 16777619
		}
	}
	m := &k[h%uint32(len(k))]
	m.Lock()
	return m
}
