package replica

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// Two members that write the same key at the same version with different
// values (the hybrid clock gives both last+1 after they saw the same
// version from a member whose clock runs ahead) while their changes do
// not reach each other must still converge at the full exchange: the
// digest has to tell the two records apart.
func TestReplicaEqualVersionsDifferentValuesConverge(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a, _ := Open(Config{KV: storage.NewMemory().Namespace(storage.Skills), Now: clock})
	b, _ := Open(Config{KV: storage.NewMemory().Namespace(storage.Skills), Now: clock})
	// Both saw a record of a member 4 minutes ahead.
	ahead := appendBatch(nil, []record{{key: "other", ver: uint64(now.Add(4 * time.Minute).UnixNano()), val: []byte("x")}})
	for _, s := range []*Set{a, b} {
		if _, err := s.Merge(ahead); err != nil {
			t.Fatal(err)
		}
	}
	// Partitioned, each writes k.
	_ = a.Put("k", []byte("from-a"))
	_ = b.Put("k", []byte("from-b"))
	// The full exchange, both ways, a few rounds.
	wire := func(from, to *Set) {
		from.SetPublish(func(m []byte) { _, _ = to.Merge(m) })
	}
	wire(a, b)
	wire(b, a)
	for range 3 {
		_, _ = b.Merge(a.State())
		_, _ = a.Merge(b.State())
	}
	va, _, _ := a.Get("k")
	vb, _, _ := b.Get("k")
	if !bytes.Equal(va, vb) {
		t.Fatalf("members disagree for good: a holds %q, b holds %q (digests equal: %v)", va, vb, bytes.Equal(a.State(), b.State()))
	}
}

// A member whose stored record is newer than its clock (written while the
// clock ran ahead, then the clock was set right and the node restarted)
// must not report a write or a deletion of that key done when it is not.
func TestReplicaWriteAfterClockStepBackIsNotLost(t *testing.T) {
	mem := storage.NewMemory()
	now := time.Unix(1_800_000_000, 0).Add(time.Hour) // an hour ahead
	clock := func() time.Time { return now }
	s, _ := Open(Config{KV: mem.Namespace(storage.Skills), Now: clock})
	if err := s.Put("k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(-time.Hour) // NTP sets it right; the node restarts
	s, _ = Open(Config{KV: mem.Namespace(storage.Skills), Now: clock})
	if err := s.Put("k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get("k"); string(v) != "new" {
		t.Errorf("Put returned nil but k holds %q", v)
	}
	if err := s.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Get("k"); found {
		t.Error("Delete returned nil but k is still there")
	}
}

// Tombstones are kept for good: a skill that sets and deletes keys of
// its own making (a session id, a user's input) grows every member's
// store without bound, though it never holds more than one key.
func TestReplicaTombstonesGrowWithoutBound(t *testing.T) {
	t.Skip("known, not fixed: tombstones are kept for good (docs/DESIGN.md); drop this skip to see the growth")
	kv := storage.NewMemory().Namespace(storage.Skills)
	s, _ := Open(Config{KV: kv})
	for i := range 1000 {
		k := fmt.Sprintf("t\x00skill\x00session-%d", i)
		_ = s.Put(k, []byte("v"))
		_ = s.Delete(k)
	}
	n := 0
	_ = kv.Scan(func(string, []byte) bool { n++; return true })
	if n > 256 {
		t.Errorf("a skill holding at most 1 key left %d records in the store", n)
	}
}

// slowKV is a namespace whose writes take a while (a synced write).
type slowKV struct {
	storage.KV
	d time.Duration
}

func (k slowKV) Put(key string, val []byte) error { time.Sleep(k.d); return k.KV.Put(key, val) }

// A member's batch (up to 512 KB: thousands of records, each a synced
// write) must not hold this member's own writes (a skill's context.kv.set
// in a turn) until the whole batch is stored.
func TestReplicaLocalWriteNotHeldByABatch(t *testing.T) {
	s, _ := Open(Config{KV: slowKV{storage.NewMemory().Namespace(storage.Skills), time.Millisecond}})
	var recs []record
	now := uint64(time.Now().UnixNano())
	for i := range 1000 {
		recs = append(recs, record{key: fmt.Sprintf("r%04d", i), ver: now, val: []byte("v")})
	}
	batch := appendBatch(nil, recs)
	done := make(chan struct{})
	go func() { _, _ = s.Merge(batch); close(done) }()
	time.Sleep(20 * time.Millisecond) // the batch is being stored
	start := time.Now()
	if err := s.Put("mine", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("a local write waited %v for a member's batch", d)
	}
	<-done
}

// A key set through one member and deleted through another a moment
// later, before the set reached it (changes go out in the background):
// the deletion, the later write, must win once the set arrives.
func TestReplicaDeleteBeforeTheSetArrives(t *testing.T) {
	t.Skip("known, not fixed: Delete of a key this member does not hold yet writes no tombstone")
	nw := newNet(t, 2)
	a, b := nw.sets[0], nw.sets[1]
	nw.down[0] = true // a's change is still on its way
	_ = a.Put("k", []byte("v"))
	nw.down[0] = false
	_ = b.Delete("k") // a moment later, through b
	for range 3 {
		_, _ = b.Merge(a.State())
		_, _ = a.Merge(b.State())
	}
	for i, s := range nw.sets {
		if _, found, _ := s.Get("k"); found {
			t.Errorf("member %d: the key deleted after it was set is there", i)
		}
	}
}
