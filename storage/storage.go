// Package storage keeps conversation snapshots: one value per conversation
// under the key conv/<space>/<id> (the space is the tenant id, or
// "<tenant>:<incarnation>" for a tenant made through the API; the Store
// methods call it tenant), in Pebble on disk (Open) or in memory for
// tests (NewMemory). Values are versioned: a format byte, then the
// conversation's own version, so a reader of an old format fails loudly.
// Every other record (auth's, the audit log's) lives in a Namespace
// (namespace.go), the one table of the key layout.
//
// A Put with sync set returns only after the write is durable (fsync of the
// WAL): acknowledged turns survive kill -9. Stores are safe for concurrent use.
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

// Store holds conversation snapshots.
type Store interface {
	// Get returns the stored conversation or ErrNotFound.
	Get(tenant, id string) (*moltbot.Conversation, error)
	// Put stores c, replacing what was there. With sync it is durable on return.
	Put(c *moltbot.Conversation, sync bool) error
	// Delete removes a conversation; deleting what is absent is not an error.
	Delete(tenant, id string, sync bool) error
	// PutIfNewer stores c only if its (epoch, version) is greater than that of
	// the stored copy (or none is stored): the fence that keeps a stale
	// owner's or a late replica write from replacing newer data. It returns
	// whether c was stored and the (epoch, version) now held.
	PutIfNewer(c *moltbot.Conversation, sync bool) (stored bool, epoch, version uint64, err error)
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

// putIfNewer is Store.PutIfNewer over a store's own read (ErrNotFound when
// nothing is stored) and write of c's key, called with that key's
// conditional writes serialised: the fence of both stores, once.
func putIfNewer(c *moltbot.Conversation, get func() (*moltbot.Conversation, error), put func() error) (stored bool, epoch, version uint64, err error) {
	old, err := get()
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return false, 0, 0, err
	case !Newer(c.Epoch, c.Version, old.Epoch, old.Version):
		return false, old.Epoch, old.Version, nil
	}
	if err := put(); err != nil {
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
