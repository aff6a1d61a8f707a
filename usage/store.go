package usage

import (
	"errors"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/storage"
)

// Store is a storage.Store that tells its Table of every write and delete
// that succeeded. Hand it to the runtime (and to auth's sweep of dead
// tenants) instead of the store it wraps. A write method that a later
// Store gains passes through the embedded store uncounted until it is
// added here; the next recount repairs the table meanwhile.
type Store struct {
	storage.Store
	T *Table
}

// NewStore wraps s, accounting into t.
func NewStore(s storage.Store, t *Table) *Store { return &Store{Store: s, T: t} }

// Put implements storage.Store.
func (s *Store) Put(c *moltbot.Conversation, sync bool) error {
	if err := s.Store.Put(c, sync); err != nil {
		return err
	}
	s.T.Put(c)
	return nil
}

// PutIfNewer implements storage.Store.
func (s *Store) PutIfNewer(c *moltbot.Conversation, sync bool) (bool, uint64, uint64, error) {
	stored, epoch, version, err := s.Store.PutIfNewer(c, sync)
	if err == nil && stored {
		s.T.Put(c)
	}
	return stored, epoch, version, err
}

// BumpEpoch implements storage.Store.
func (s *Store) BumpEpoch(tenant, id string, floor uint64, sync bool) (*moltbot.Conversation, error) {
	c, err := s.Store.BumpEpoch(tenant, id, floor, sync)
	if err == nil {
		s.T.Put(c)
	}
	return c, err
}

// ForEachHeader passes through to the wrapped store's, or its ForEach.
func (s *Store) ForEachHeader(fn func(c *moltbot.Conversation) bool) error {
	if hs, ok := s.Store.(interface {
		ForEachHeader(fn func(c *moltbot.Conversation) bool) error
	}); ok {
		return hs.ForEachHeader(fn)
	}
	return s.Store.ForEach(fn)
}

// Delete implements storage.Store.
func (s *Store) Delete(tenant, id string, sync bool) error {
	if err := s.Store.Delete(tenant, id, sync); err != nil {
		return err
	}
	s.T.Remove(tenant, id)
	return nil
}

// DeleteSpaces deletes every conversation of the spaces dead reports true
// (auth's sweep of dead tenants; the wrapped store must have it).
func (s *Store) DeleteSpaces(dead func(space string) bool) (int, error) {
	ds, ok := s.Store.(interface {
		DeleteSpaces(dead func(space string) bool) (int, error)
	})
	if !ok {
		return 0, errors.New("usage: the store cannot delete spaces")
	}
	n, err := ds.DeleteSpaces(dead)
	s.T.RemoveSpaces(dead)
	return n, err
}
