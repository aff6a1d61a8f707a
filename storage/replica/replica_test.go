package replica

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/moltbot/moltbot/storage"
)

// net is members whose published messages reach the others when up.
type net struct {
	sets []*Set
	down map[int]bool // members cut off: they neither send nor get
}

func newNet(t *testing.T, n int) *net {
	nw := &net{down: map[int]bool{}}
	for i := range n {
		s, err := Open(Config{KV: storage.NewMemory().Namespace(storage.Skills), MaxValue: 64})
		if err != nil {
			t.Fatal(err)
		}
		nw.sets = append(nw.sets, s)
		s.SetPublish(func(b []byte) {
			if nw.down[i] {
				return
			}
			for j, o := range nw.sets {
				if j != i && !nw.down[j] {
					if _, err := o.Merge(b); err != nil {
						t.Errorf("member %d merging %d's: %v", j, i, err)
					}
				}
			}
		})
	}
	return nw
}

func dump(t *testing.T, s *Set) string {
	var b bytes.Buffer
	if err := s.Scan(func(k string, v []byte) bool { fmt.Fprintf(&b, "%s=%s;", k, v); return true }); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReplicaChangesReachEveryMember(t *testing.T) {
	nw := newNet(t, 3)
	a, b, c := nw.sets[0], nw.sets[1], nw.sets[2]
	if err := a.Put("k1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put("k2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put("k1", []byte("uno")); err != nil { // newer: wins everywhere
		t.Fatal(err)
	}
	for i, s := range nw.sets {
		if got := dump(t, s); got != "k1=uno;k2=two;" {
			t.Errorf("member %d holds %q", i, got)
		}
	}
	if err := b.Delete("k1"); err != nil {
		t.Fatal(err)
	}
	for i, s := range nw.sets {
		if _, found, _ := s.Get("k1"); found {
			t.Errorf("member %d still has the deleted k1", i)
		}
	}
	if !bytes.Equal(a.State(), c.State()) {
		t.Error("members holding the same records have different digests")
	}
}

func TestReplicaRepairsAfterAPartition(t *testing.T) {
	nw := newNet(t, 3)
	a, b, c := nw.sets[0], nw.sets[1], nw.sets[2]
	_ = a.Put("shared", []byte("v0"))
	nw.down[2] = true // c is cut off: it misses these and makes its own
	_ = a.Put("shared", []byte("v1"))
	_ = a.Delete("shared")
	for i := range 40 {
		_ = b.Put(fmt.Sprintf("b%02d", i), []byte("x"))
	}
	_ = c.Put("c-only", []byte("c"))
	nw.down[2] = false
	if bytes.Equal(a.State(), c.State()) {
		t.Fatal("digests agree across a partition")
	}
	// The full exchange: each sends its digest to one other, a few rounds.
	for round := 0; round < 3 && !(bytes.Equal(a.State(), c.State()) && bytes.Equal(b.State(), c.State())); round++ {
		for i, s := range nw.sets {
			o := nw.sets[(i+1)%3]
			if _, err := o.Merge(s.State()); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := dump(t, a)
	for i, s := range nw.sets {
		if got := dump(t, s); got != want {
			t.Errorf("member %d after the exchange: %q, want %q", i, got, want)
		}
	}
	if _, found, _ := c.Get("shared"); found {
		t.Error("the deletion c missed came back")
	}
	if _, found, _ := a.Get("c-only"); !found {
		t.Error("c's record did not reach a")
	}
}

func TestReplicaRefusesFutureVersionsAndBadInput(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, err := Open(Config{KV: storage.NewMemory().Namespace(storage.Skills), MaxValue: 8, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	future := appendBatch(nil, []record{{key: "k", ver: uint64(now.Add(time.Hour).UnixNano()), val: []byte("x")}})
	if n, err := s.Merge(future); n != 0 || err == nil {
		t.Fatalf("a version an hour ahead: %d, %v", n, err)
	}
	if err := s.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// The refused version did not move the clock: a local write is near now.
	v, _, _ := s.cfg.KV.Get("k")
	if ver, _, _, _ := decodeStored(v); ver > uint64(now.Add(time.Second).UnixNano()) {
		t.Fatalf("the clock moved to %d", ver)
	}
	if err := s.Put("k", []byte("too long a value")); err == nil {
		t.Error("a value over MaxValue was stored")
	}
	if err := s.Put("", []byte("v")); err == nil {
		t.Error("an empty key was stored")
	}
	big := appendBatch(nil, []record{{key: "k", ver: 1, val: bytes.Repeat([]byte("x"), 9)}})
	if _, err := s.Merge(big); err == nil {
		t.Error("a member's value over MaxValue merged")
	}
	for _, bad := range [][]byte{{'X'}, {'D', 1, 2}, {'R', 5, 'a'}, {'R', 1, 'k', 0, 0, 0, 0, 0, 0, 0, 1, 1, 3, 'x'}} {
		if _, err := s.Merge(bad); err == nil {
			t.Errorf("%q merged", bad)
		}
	}
	// An older version of a record loses; an equal one keeps the greater bytes.
	if n, _ := s.Merge(appendBatch(nil, []record{{key: "k", ver: 5, val: []byte("old")}})); n != 0 {
		t.Error("an older version replaced a newer one")
	}
}

func TestReplicaReopens(t *testing.T) {
	mem := storage.NewMemory()
	s, _ := Open(Config{KV: mem.Namespace(storage.Skills)})
	_ = s.Put("a", []byte("1"))
	_ = s.Put("b", []byte("2"))
	_ = s.Delete("a")
	s2, err := Open(Config{KV: mem.Namespace(storage.Skills)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.State(), s2.State()) {
		t.Error("the digest read back differs from the one kept")
	}
	if s2.last != s.last {
		t.Errorf("clock read back %d, kept %d", s2.last, s.last)
	}
}

func FuzzReplicaMerge(f *testing.F) {
	f.Add(appendBatch(nil, []record{{key: "k", ver: 1, val: []byte("v")}, {key: "d", ver: 2, del: true}}))
	f.Add(append([]byte{'D'}, make([]byte, 8*buckets)...))
	f.Add([]byte{'R', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := Open(Config{KV: storage.NewMemory().Namespace(storage.Skills), MaxValue: 1 << 10, Publish: func([]byte) {}})
		n, err := s.Merge(b)
		if err == nil && n > 0 {
			// What merged reads back, and the digest agrees with a reopen.
			s2, _ := Open(Config{KV: s.cfg.KV})
			if !bytes.Equal(s.State(), s2.State()) {
				t.Fatal("digest differs from a reopen's")
			}
		}
	})
}
