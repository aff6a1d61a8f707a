package storage

import (
	"sort"
	"strings"
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
	return s.putLocked(c, sync)
}

func (s *Memory) putLocked(c *moltbot.Conversation, sync bool) error {
	if err := s.writableLocked(); err != nil {
		return err
	}
	s.Puts++
	if sync {
		s.SyncPuts++
	}
	s.m[string(Key(c.Tenant, c.ID))] = Encode(nil, c)
	return nil
}

// writableLocked is the error of a write now: closed, or the injected Fail.
func (s *Memory) writableLocked() error {
	if s.closed {
		return ErrClosed
	}
	return s.Fail
}

// PutIfNewer implements Store. The check and the write are one step, as
// Pebble's per-key lock makes them.
func (s *Memory) PutIfNewer(c *moltbot.Conversation, sync bool) (bool, uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return putIfNewer(c, func() (*moltbot.Conversation, error) {
		b, ok := s.m[string(Key(c.Tenant, c.ID))]
		if !ok {
			return nil, ErrNotFound
		}
		return Decode(b)
	}, func() error { return s.putLocked(c, sync) })
}

// Health reports ErrClosed after Close (see Pebble.Health).
func (s *Memory) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Delete implements Store.
func (s *Memory) Delete(tenant, id string, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	delete(s.m, string(Key(tenant, id)))
	return nil
}

// Count implements Store.
func (s *Memory) Count() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.m {
		if strings.HasPrefix(k, convPrefix) {
			n++
		}
	}
	return n, nil
}

// ForEach implements Store.
func (s *Memory) ForEach(fn func(c *moltbot.Conversation) bool) error {
	s.mu.Lock()
	vals := make([][]byte, 0, len(s.m))
	for k, v := range s.m {
		if strings.HasPrefix(k, convPrefix) {
			vals = append(vals, v)
		}
	}
	s.mu.Unlock()
	for _, v := range vals {
		c, err := Decode(v)
		if err != nil {
			continue
		}
		if !fn(c) {
			break
		}
	}
	return nil
}

// Close implements Store.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Len is how many records the store holds, of every namespace and
// conversations (tests check that nothing was written elsewhere).
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// SetFail sets the injected failure under the lock.
func (s *Memory) SetFail(err error) {
	s.mu.Lock()
	s.Fail = err
	s.mu.Unlock()
}

// Namespace implements Namespaces.
func (s *Memory) Namespace(ns Namespace) KV { return space{s, ns} }

func (s *Memory) getRaw(key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return append([]byte(nil), v...), ok, nil
}

func (s *Memory) putRaw(key string, val []byte, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.m[key] = append([]byte(nil), val...)
	return nil
}

func (s *Memory) deleteRaw(key string, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *Memory) scanRaw(prefix string, fn func(key string, val []byte) bool) error {
	s.mu.Lock()
	var keys []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = append([]byte(nil), s.m[k]...)
	}
	s.mu.Unlock()
	for i, k := range keys {
		if !fn(k, vals[i]) {
			break
		}
	}
	return nil
}

// DeleteSpaces implements the sweep of Pebble.DeleteSpaces.
func (s *Memory) DeleteSpaces(dead func(space string) bool) (int, error) {
	s.mu.Lock()
	spaces := map[string]bool{}
	for k := range s.m {
		if rest, ok := strings.CutPrefix(k, convPrefix); ok {
			if sp, _, ok := strings.Cut(rest, "/"); ok {
				spaces[sp] = false
			}
		}
	}
	s.mu.Unlock()
	for sp := range spaces {
		spaces[sp] = dead(sp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return 0, err
	}
	n := 0
	for k := range s.m {
		if rest, ok := strings.CutPrefix(k, convPrefix); ok {
			if sp, _, ok := strings.Cut(rest, "/"); ok && spaces[sp] {
				delete(s.m, k)
				n++
			}
		}
	}
	return n, nil
}

// GetRaw and ScanRaw read whole keys of the test store, for tests that
// look at what was written where (gateway's security test reads the audit
// log and the key records this way). Code reaches records through
// Namespace; Pebble has no such door.
func (s *Memory) GetRaw(key string) ([]byte, bool, error) { return s.getRaw(key) }

// ScanRaw: see GetRaw.
func (s *Memory) ScanRaw(prefix string, fn func(key string, val []byte) bool) error {
	return s.scanRaw(prefix, fn)
}
