package storage

import (
	"sync"

	"github.com/moltbot/moltbot"
)

// Memory is an in-memory Store for tests. It stores encoded snapshots, so
// tests exercise the same codec as disk. Fail, when set, is returned by Put
// and Delete to inject faults.
type Memory struct {
	mu     sync.Mutex
	m      map[string][]byte
	closed bool
	Fail   error
	// Puts counts Put calls, SyncPuts those with sync set.
	Puts, SyncPuts int
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{m: map[string][]byte{}} }

// Get implements Store.
func (s *Memory) Get(tenant, id string) (*moltbot.Conversation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	b, ok := s.m[string(Key(tenant, id))]
	if !ok {
		return nil, ErrNotFound
	}
	return Decode(b)
}

// Put implements Store.
func (s *Memory) Put(c *moltbot.Conversation, sync bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.Fail != nil {
		return s.Fail
	}
	s.Puts++
	if sync {
		s.SyncPuts++
	}
	s.m[string(Key(c.Tenant, c.ID))] = Encode(nil, c)
	return nil
}

// Delete implements Store.
func (s *Memory) Delete(tenant, id string, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.Fail != nil {
		return s.Fail
	}
	delete(s.m, string(Key(tenant, id)))
	return nil
}

// Count implements Store.
func (s *Memory) Count() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), nil
}

// Close implements Store.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// SetFail sets the injected failure under the lock.
func (s *Memory) SetFail(err error) {
	s.mu.Lock()
	s.Fail = err
	s.mu.Unlock()
}
