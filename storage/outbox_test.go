package storage

import (
	"reflect"
	"testing"

	"github.com/moltbot/moltbot"
)

func withOutbox() *moltbot.Conversation {
	c := sample()
	c.Outbox = []moltbot.Delivery{
		{Message: "t1:a", To: moltbot.Destination{Channel: "slack-main", Address: "C1/1700000000.1"}, Attempts: 2, NextAt: 1700000000123, LastError: "HTTP 502"},
		{Message: "t2:a", To: moltbot.Destination{Channel: "hook", Address: "https://example.com/cb"}, Attempts: 20, Failed: true},
	}
	return c
}

// The outbox travels with the conversation: in the wire format (format 5,
// only when it is not empty) and in the store's header.
func TestOutboxRoundTrip(t *testing.T) {
	c := withOutbox()
	b := Encode(nil, c)
	if b[0] != formatV5 {
		t.Errorf("format %d with an outbox", b[0])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got.Outbox, c.Outbox) {
		t.Fatalf("wire: %+v %v", got, err)
	}
	if b := Encode(nil, sample()); b[0] == formatV5 {
		t.Error("format 5 without an outbox")
	}
	for name, s := range stores(t) {
		if err := s.Put(c, true); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(c.Tenant, c.ID)
		if err != nil || !reflect.DeepEqual(got.Outbox, c.Outbox) {
			t.Fatalf("%s: %+v %v", name, got, err)
		}
		// Delivered: the outbox empties, and stays empty on reading.
		c2 := withOutbox()
		c2.Outbox = nil
		c2.Version++
		if err := s.Put(c2, true); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(c.Tenant, c.ID); len(got.Outbox) != 0 {
			t.Errorf("%s: outbox after delivery %+v", name, got.Outbox)
		}
	}
}

// A header scan sees every conversation's outbox without its messages.
func TestForEachHeader(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := withOutbox()
	if err := p.Put(c, true); err != nil {
		t.Fatal(err)
	}
	other := sample()
	other.ID = "other"
	if err := p.Put(other, true); err != nil {
		t.Fatal(err)
	}
	seen := map[string]*moltbot.Conversation{}
	if err := p.ForEachHeader(func(h *moltbot.Conversation) bool { seen[h.ID] = h; return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || len(seen[c.ID].Messages) != 0 || !reflect.DeepEqual(seen[c.ID].Outbox, c.Outbox) || seen[c.ID].Version != c.Version {
		t.Fatalf("headers: %+v", seen)
	}
}
