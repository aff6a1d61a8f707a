package cache

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func key(tenant string, i byte) Key { return Key{Tenant: tenant, Sum: sha256.Sum256([]byte{i})} }

func sum(tenant string, i byte) *[sha256.Size]byte { k := key(tenant, i); return &k.Sum }

func TestMemoryLRUBoundedInBytes(t *testing.T) {
	e := &Entry{Content: strings.Repeat("x", 100)}
	size := e.Size()
	m := newMemory(3 * size)
	for i := byte(0); i < 3; i++ {
		if n := m.put(key("a", i), e, 100); n != 0 {
			t.Fatalf("evicted %d while there was room", n)
		}
	}
	if m.get(sum("a", 0), 1) == nil { // 0 is now the most recent
		t.Fatal("0 missing")
	}
	if n := m.put(key("a", 3), e, 100); n != 1 {
		t.Fatalf("evicted %d, want 1", n)
	}
	if m.get(sum("a", 1), 1) != nil {
		t.Error("the least recently used entry stayed")
	}
	for _, i := range []byte{0, 2, 3} {
		if m.get(sum("a", i), 1) == nil {
			t.Errorf("%d evicted", i)
		}
	}
	if n, b := m.stats(); n != 3 || b != 3*size {
		t.Errorf("stats %d entries %d bytes", n, b)
	}
	// Larger than the whole tier: not stored, nothing evicted.
	if m.put(key("a", 9), &Entry{Content: strings.Repeat("x", int(4*size))}, 100); m.get(sum("a", 9), 1) != nil {
		t.Error("an entry larger than the tier was stored")
	}
	if n, _ := m.stats(); n != 3 {
		t.Errorf("%d entries", n)
	}
	// Replacing an entry does not count it twice.
	m.put(key("a", 0), e, 100)
	if n, b := m.stats(); n != 3 || b != 3*size {
		t.Errorf("after a replace: %d entries %d bytes", n, b)
	}
}

func TestMemoryExpiresAndPurges(t *testing.T) {
	m := newMemory(1 << 20)
	e := &Entry{Content: "x"}
	m.put(key("a", 1), e, 10)
	m.put(key("a", 2), e, 100)
	m.put(key("b", 3), e, 100)
	if m.get(sum("a", 1), 10) != nil {
		t.Error("an expired entry was served")
	}
	if n, _ := m.stats(); n != 2 {
		t.Errorf("the expired entry stayed: %d", n)
	}
	if k := m.purge("a"); k != 1 || m.get(sum("b", 3), 1) == nil {
		t.Errorf("purge a: %d", k)
	}
	if k := m.purge(""); k != 1 {
		t.Errorf("purge all: %d", k)
	}
	if n, b := m.stats(); n != 0 || b != 0 {
		t.Errorf("after purge: %d %d", n, b)
	}
}
