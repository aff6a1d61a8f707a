package main

import (
	"testing"

	"github.com/moltbot/moltbot/storage"
)

// A rolling upgrade: node A moves its per-node records and runs; a skill
// deletes a key through A (or sets a new value); node B, upgraded later,
// moves its own, older, per-node record of the key. The record moved
// from an earlier release must not beat what was written since: the
// deletion must stay, the newer value must win.
func TestSkillKVMoveDoesNotBeatLaterWrites(t *testing.T) {
	memA, memB := storage.NewMemory(), storage.NewMemory()
	for _, m := range []*storage.Memory{memA, memB} {
		old := m.Namespace(storage.Skills)
		_ = old.Put("default\x00note\x00gone", []byte("old"))
		_ = old.Put("default\x00note\x00kept", []byte("old"))
	}
	a, err := openSkillKV(memA)
	if err != nil {
		t.Fatal(err)
	}
	// Through A, after its upgrade.
	if err := a.Delete("default\x00note\x00gone"); err != nil {
		t.Fatal(err)
	}
	if err := a.Put("default\x00note\x00kept", []byte("new")); err != nil {
		t.Fatal(err)
	}
	b, err := openSkillKV(memB) // B upgrades later
	if err != nil {
		t.Fatal(err)
	}
	// They meet: the full exchange, both ways.
	a.SetPublish(func(m []byte) { _, _ = b.Merge(m) })
	b.SetPublish(func(m []byte) { _, _ = a.Merge(m) })
	for range 3 {
		_, _ = b.Merge(a.State())
		_, _ = a.Merge(b.State())
	}
	for name, s := range map[string]interface {
		Get(string) ([]byte, bool, error)
	}{"A": a, "B": b} {
		if v, found, _ := s.Get("default\x00note\x00gone"); found {
			t.Errorf("%s: the key deleted after the upgrade is back: %q", name, v)
		}
		if v, _, _ := s.Get("default\x00note\x00kept"); string(v) != "new" {
			t.Errorf("%s: the value set after the upgrade lost to a moved one: %q", name, v)
		}
	}
}
