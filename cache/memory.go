package cache

import (
	"crypto/sha256"
	"sync"
)

// memory is the in-process tier: an LRU bounded in bytes (Entry.Size).
// Entries are kept decoded, so a hit costs a map lookup and no copy.
type memory struct {
	mu        sync.Mutex
	max       int64
	used      int64
	m         map[[sha256.Size]byte]*node
	lru       node // sentinel: lru.next is the most recently used
	evictions uint64
}

type node struct {
	prev, next *node
	sum        [sha256.Size]byte
	tenant     string
	e          *Entry
	size       int64
	expires    int64 // Unix ms: the entry's, or sooner (a front tier's)
}

func newMemory(max int64) *memory {
	m := &memory{max: max, m: map[[sha256.Size]byte]*node{}}
	m.lru.next, m.lru.prev = &m.lru, &m.lru
	return m
}

func (m *memory) unlink(n *node) {
	n.prev.next, n.next.prev = n.next, n.prev
}

func (m *memory) front(n *node) {
	n.prev, n.next = &m.lru, m.lru.next
	m.lru.next.prev = n
	m.lru.next = n
}

// get returns the entry under sum unless it expired by now (Unix ms).
func (m *memory) get(sum *[sha256.Size]byte, now int64) *Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.m[*sum]
	if n == nil {
		return nil
	}
	if n.expires <= now {
		m.remove(n)
		return nil
	}
	if m.lru.next != n {
		m.unlink(n)
		m.front(n)
	}
	return n.e
}

// put stores e under k until expires; it reports how many entries it
// evicted to make room. An entry larger than the tier is not stored.
func (m *memory) put(k Key, e *Entry, expires int64) int {
	size := e.Size()
	if size > m.max {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.m[k.Sum]; old != nil {
		m.remove(old)
	}
	evicted := 0
	for m.used+size > m.max && m.lru.prev != &m.lru {
		m.remove(m.lru.prev)
		evicted++
	}
	m.evictions += uint64(evicted)
	n := &node{sum: k.Sum, tenant: k.Tenant, e: e, size: size, expires: expires}
	m.m[k.Sum] = n
	m.front(n)
	m.used += size
	return evicted
}

func (m *memory) remove(n *node) {
	m.unlink(n)
	delete(m.m, n.sum)
	m.used -= n.size
}

// purge removes tenant's entries (every entry for ""), and reports how many.
func (m *memory) purge(tenant string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := 0
	for n := m.lru.next; n != &m.lru; {
		next := n.next
		if tenant == "" || n.tenant == tenant {
			m.remove(n)
			k++
		}
		n = next
	}
	return k
}

// stats returns the entries and bytes held.
func (m *memory) stats() (entries, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.m)), m.used
}
