package storage

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/moltbot/moltbot"
)

func withState(id string, n int) *moltbot.Conversation {
	c := conversation(id, n)
	c.State = moltbot.StageState{"flow": []byte(`{"cursor":"ask"}`), "handoff": {0, 1, 2}}
	return c
}

// The stages' state travels with the conversation: in the wire format
// (format 7, only when there is some, so that an older node still reads
// the others) and in the store, where it is a record of its own.
func TestStateRoundTrip(t *testing.T) {
	c := withState("c", 4)
	b := Encode(nil, c)
	if b[0] != formatV7 {
		t.Errorf("format %d with state", b[0])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("wire: %+v %v", got, err)
	}
	if b := Encode(nil, conversation("c", 4)); b[0] == formatV7 {
		t.Error("format 7 without state")
	}
	// Equal states encode alike, whatever the map's order.
	for range 20 {
		if again := Encode(nil, c); string(again) != string(b) {
			t.Fatal("the state's encoding depends on the map's order")
		}
	}
	// A format 6 snapshot that says it has state is corrupt: the flag is
	// not known there.
	b[0] = formatV6
	if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 6 with state: %v", err)
	}
	for name, s := range stores(t) {
		if err := s.Put(c, true); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(c.Tenant, c.ID); err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: %+v %v", name, got, err)
		}
	}
}

// A conversation stored before there was state (a header without the
// flag, a whole snapshot of format 6) still reads, with none.
func TestStateOldConversationsRead(t *testing.T) {
	c := withSummary("c", 5)
	got, err := Decode(Encode(nil, c))
	if err != nil || got.State != nil {
		t.Fatalf("%+v %v", got, err)
	}
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The value an older build wrote: a whole snapshot under the key.
	if err := p.db.Set(Key(c.Tenant, c.ID), Encode(nil, c), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Get(c.Tenant, c.ID); err != nil || got.State != nil || len(got.Messages) != 5 {
		t.Fatalf("legacy: %+v %v", got, err)
	}
	// Its next write adds state.
	c.State = moltbot.StageState{"flow": []byte("1")}
	c.Version++
	if err := p.Put(c, true); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Get(c.Tenant, c.ID); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("migrated: %+v %v", got, err)
	}
}

// A turn that keeps the state does not write it again; a changed state is
// written once; state removed (or a tombstone) leaves no record.
func TestStateWrittenWhenItChanges(t *testing.T) {
	for name, s := range stores(t) {
		c := withState("c", 4)
		if err := s.Put(c, true); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			step   string
			change func(c *moltbot.Conversation)
			states int
		}{
			{"turn", func(c *moltbot.Conversation) { add(c, message(4)) }, 0},
			{"changed", func(c *moltbot.Conversation) {
				c.State = moltbot.StageState{"flow": []byte(`{"cursor":"done"}`)}
				add(c, message(5))
			}, 1},
			{"removed", func(c *moltbot.Conversation) { c.State = nil; c.Version++ }, 0},
			{"back", func(c *moltbot.Conversation) { c.State = moltbot.StageState{"x": {1}}; c.Version++ }, 1},
		} {
			tc.change(c)
			if rec := writeCounting(t, s, c).states; rec != tc.states {
				t.Errorf("%s, %s: %d state records written, want %d", name, tc.step, rec, tc.states)
			}
			got, err := s.Get(c.Tenant, c.ID)
			if err != nil || !reflect.DeepEqual(got, c) {
				t.Fatalf("%s, %s: %+v %v", name, tc.step, got, err)
			}
		}
		if p, ok := s.(*Pebble); ok {
			c.State = nil
			c.Version++
			if err := p.Put(c, true); err != nil {
				t.Fatal(err)
			}
			for _, r := range p.records(t, c.Tenant, c.ID) {
				if r == `"\x00t"` {
					t.Errorf("the state's record stays after it was removed")
				}
			}
			c = withState("c", 2)
			c.Version = 100
			if err := p.Put(c, true); err != nil {
				t.Fatal(err)
			}
			tomb := &moltbot.Conversation{Tenant: c.Tenant, ID: c.ID, Version: 101, Epoch: 1, Deleted: true}
			if err := p.Put(tomb, true); err != nil {
				t.Fatal(err)
			}
			if r := p.records(t, c.Tenant, c.ID); len(r) != 1 {
				t.Errorf("a tombstone holds %v", r)
			}
		}
	}
}

// A state record that is missing, disagrees with its header's hash, or
// holds more than a conversation may keep is a corrupt conversation.
func TestStateCorrupt(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := withState("c", 2)
	if err := p.Put(c, true); err != nil {
		t.Fatal(err)
	}
	key := stateKey(Key(c.Tenant, c.ID))
	val := appendState([]byte{formatState}, moltbot.StageState{"flow": []byte("forged")})
	if err := p.db.Set(key, val, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(c.Tenant, c.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another state: %v", err)
	}
	if err := p.db.Delete(key, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(c.Tenant, c.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no state record: %v", err)
	}
	big := conversation("big", 1)
	big.State = moltbot.StageState{"flow": []byte(strings.Repeat("x", moltbot.MaxStageState+1))}
	if _, err := Decode(Encode(nil, big)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("state past the bound: %v", err)
	}
}
