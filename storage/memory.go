package storage

import (
	"bytes"
	"sort"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
)

// Memory is an in-memory Store for tests. It keeps conversations in the
// layout Pebble does (layout.go), so tests exercise the same records. Fail,
// when set, is returned by Put and Delete to inject faults.
type Memory struct {
	mu sync.Mutex
	m  map[string][]byte // every namespace's records
	// convs are the conversations: key -> its records by the key's
	// suffix ("" the header, "\x00m<index>", "\x00b<ref>").
	convs  map[string]map[string][]byte
	closed bool
	Fail   error
	// Puts counts Put calls, SyncPuts those with sync set.
	Puts, SyncPuts int
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{m: map[string][]byte{}, convs: map[string]map[string][]byte{}}
}

// splitKey cuts a conversation record's key into the conversation's key
// and the record's suffix.
func splitKey(key []byte) (conv, suffix string) {
	if i := bytes.IndexByte(key, recordSep); i >= 0 {
		return string(key[:i]), string(key[i:])
	}
	return string(key), ""
}

// memView reads the conversations; used under the store's lock.
type memView struct{ s *Memory }

func (v memView) get(key []byte) ([]byte, bool, error) {
	conv, suffix := splitKey(key)
	val, ok := v.s.convs[conv][suffix]
	return val, ok, nil
}

// scan: lo and hi are within one conversation's records.
func (v memView) scan(lo, hi []byte, fn func(key, val []byte) bool) error {
	conv, _ := splitKey(lo)
	recs := v.s.convs[conv]
	keys := make([]string, 0, len(recs))
	for suffix := range recs {
		if k := conv + suffix; k >= string(lo) && k < string(hi) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), recs[k[len(conv):]]) {
			break
		}
	}
	return nil
}

// memBatch collects a Put's writes, applied together.
type memBatch struct{ ops []func(s *Memory) }

func (b *memBatch) set(key, val []byte) error {
	conv, suffix := splitKey(key)
	val = bytes.Clone(val)
	b.ops = append(b.ops, func(s *Memory) {
		if s.convs[conv] == nil {
			s.convs[conv] = map[string][]byte{}
		}
		s.convs[conv][suffix] = val
	})
	return nil
}

func (b *memBatch) deleteRange(lo, hi []byte) error {
	conv, _ := splitKey(lo)
	b.ops = append(b.ops, func(s *Memory) {
		for suffix := range s.convs[conv] {
			if k := conv + suffix; k >= string(lo) && k < string(hi) {
				delete(s.convs[conv], suffix)
			}
		}
		if len(s.convs[conv]) == 0 {
			delete(s.convs, conv)
		}
	})
	return nil
}

// Get implements Store.
func (s *Memory) Get(tenant, id string) (*moltbot.Conversation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return loadConv(memView{s}, Key(tenant, id))
}

// BumpEpoch implements Store (one step under the store's lock).
func (s *Memory) BumpEpoch(tenant, id string, floor uint64, sync bool) (*moltbot.Conversation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	c, err := loadConv(memView{s}, Key(tenant, id))
	if err != nil {
		return nil, err
	}
	old, err := readHeld(memView{s}, Key(tenant, id))
	if err != nil {
		return nil, err
	}
	c.Epoch = max(c.Epoch, floor) + 1
	if err := s.putLocked(c, sync, old); err != nil {
		return nil, err
	}
	return c, nil
}

// Put implements Store.
func (s *Memory) Put(c *moltbot.Conversation, sync bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := readHeld(memView{s}, Key(c.Tenant, c.ID))
	if err != nil {
		old = held{found: true, whole: true}
	}
	return s.putLocked(c, sync, old)
}

func (s *Memory) putLocked(c *moltbot.Conversation, sync bool, old held) error {
	if err := s.writableLocked(); err != nil {
		return err
	}
	s.Puts++
	if sync {
		s.SyncPuts++
	}
	b := &memBatch{}
	if err := writeConv(memView{s}, b, c, old); err != nil {
		return err
	}
	for _, op := range b.ops {
		op(s)
	}
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
	if s.closed {
		return false, 0, 0, ErrClosed
	}
	old, err := readHeld(memView{s}, Key(c.Tenant, c.ID))
	return putIfNewer(c, old, err, func(old held) error { return s.putLocked(c, sync, old) })
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
	delete(s.convs, string(Key(tenant, id)))
	return nil
}

// Count implements Store.
func (s *Memory) Count() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, recs := range s.convs {
		if _, ok := recs[""]; ok {
			n++
		}
	}
	return n, nil
}

// ForEach implements Store.
func (s *Memory) ForEach(fn func(c *moltbot.Conversation) bool) error {
	s.mu.Lock()
	var convs []*moltbot.Conversation
	for key := range s.convs {
		if c, err := loadConv(memView{s}, []byte(key)); err == nil {
			convs = append(convs, c)
		}
	}
	s.mu.Unlock()
	for _, c := range convs {
		if !fn(c) {
			break
		}
	}
	return nil
}

// ForEachHeader is ForEach (the in-memory store reads no disk).
func (s *Memory) ForEachHeader(fn func(c *moltbot.Conversation) bool) error { return s.ForEach(fn) }

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
	n := len(s.m)
	for _, recs := range s.convs {
		n += len(recs)
	}
	return n
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
	for k := range s.convs {
		if sp, ok := spaceOf(k); ok {
			spaces[sp] = false
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
	for k, recs := range s.convs {
		if sp, ok := spaceOf(k); ok && spaces[sp] {
			if _, ok := recs[""]; ok {
				n++
			}
			delete(s.convs, k)
		}
	}
	return n, nil
}

// spaceOf is the space of a conversation's key.
func spaceOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, convPrefix)
	if !ok {
		return "", false
	}
	sp, _, ok := strings.Cut(rest, "/")
	return sp, ok
}

// GetRaw and ScanRaw read whole keys of the namespaces of the test store,
// for tests that look at what was written where (gateway's security test
// reads the audit log and the key records this way). Code reaches records
// through Namespace; Pebble has no such door.
func (s *Memory) GetRaw(key string) ([]byte, bool, error) { return s.getRaw(key) }

// ScanRaw: see GetRaw.
func (s *Memory) ScanRaw(prefix string, fn func(key string, val []byte) bool) error {
	return s.scanRaw(prefix, fn)
}
