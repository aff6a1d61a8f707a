package storage

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/moltbot/moltbot"
)

func withSummary(id string, n int) *moltbot.Conversation {
	c := conversation(id, n)
	c.Summary = &moltbot.Summary{Text: "they spoke of rivers", Messages: 4, Through: c.Messages[3].ID, Model: "sim/sim", Created: 7}
	return c
}

// The summary travels with the conversation: in the wire format (format
// 6, only when there is one, so that an older node still reads the
// others) and in the store, where it is a record of its own.
func TestSummaryRoundTrip(t *testing.T) {
	c := withSummary("c", 6)
	b := Encode(nil, c)
	if b[0] != formatV6 {
		t.Errorf("format %d with a summary", b[0])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("wire: %+v %v", got, err)
	}
	if b := Encode(nil, conversation("c", 6)); b[0] == formatV6 {
		t.Error("format 6 without a summary")
	}
	// A format 5 snapshot that says it has a summary is corrupt: the flag
	// is not known there.
	b[0] = formatV5
	if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 5 with a summary: %v", err)
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

// A turn that keeps the summary does not write it again; a new summary is
// written once; a summary removed (or a tombstone) leaves no record.
func TestSummaryWrittenWhenItChanges(t *testing.T) {
	for name, s := range stores(t) {
		c := withSummary("c", 6)
		if err := s.Put(c, true); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			step      string
			change    func(c *moltbot.Conversation)
			summaries int
		}{
			{"turn", func(c *moltbot.Conversation) { add(c, message(6)) }, 0},
			{"new summary", func(c *moltbot.Conversation) {
				c.Summary = &moltbot.Summary{Text: "rivers, then stones", Messages: 6, Through: c.Messages[5].ID, Created: 8}
				add(c, message(7))
			}, 1},
			{"removed", func(c *moltbot.Conversation) { c.Summary = nil; c.Version++ }, 0},
			{"back", func(c *moltbot.Conversation) {
				c.Summary = &moltbot.Summary{Text: "again", Messages: 2, Through: c.Messages[1].ID}
				c.Version++
			}, 1},
		} {
			tc.change(c)
			rec := writeCounting(t, s, c).summaries
			if rec != tc.summaries {
				t.Errorf("%s, %s: %d summary records written, want %d", name, tc.step, rec, tc.summaries)
			}
			got, err := s.Get(c.Tenant, c.ID)
			if err != nil || !reflect.DeepEqual(got, c) {
				t.Fatalf("%s, %s: %+v %v", name, tc.step, got, err)
			}
		}
		if p, ok := s.(*Pebble); ok {
			c.Summary = nil
			c.Version++
			if err := p.Put(c, true); err != nil {
				t.Fatal(err)
			}
			for _, r := range p.records(t, c.Tenant, c.ID) {
				if r == `"\x00s"` {
					t.Errorf("the summary's record stays after it was removed")
				}
			}
			c = withSummary("c", 6)
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

// A summary record that is missing or disagrees with its header's hash is
// a corrupt conversation, never a silently different context.
func TestSummaryCorrupt(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := withSummary("c", 6)
	if err := p.Put(c, true); err != nil {
		t.Fatal(err)
	}
	key := summaryKey(Key(c.Tenant, c.ID))
	val := appendSummary([]byte{formatSummary}, &moltbot.Summary{Text: "forged", Messages: 4, Through: c.Messages[3].ID})
	if err := p.db.Set(key, val, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(c.Tenant, c.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another summary: %v", err)
	}
	if err := p.db.Delete(key, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(c.Tenant, c.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no summary record: %v", err)
	}
}
