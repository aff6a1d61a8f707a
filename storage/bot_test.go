package storage

import (
	"errors"
	"reflect"
	"testing"
)

// A conversation's bot travels with it: in the wire format (format 8,
// only when there is one, so that an older node still reads the others)
// and in the store's header, through a restart of the store.
func TestBotRoundTrip(t *testing.T) {
	c := withSummary("c", 6)
	c.User, c.Bot = "u1", "support"
	b := Encode(nil, c)
	if b[0] != formatV8 {
		t.Errorf("format %d with a bot", b[0])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("wire: %+v %v", got, err)
	}
	if b := Encode(nil, withSummary("c", 6)); b[0] != formatV6 {
		t.Errorf("format %d without a bot", b[0])
	}
	// A format 6 or 7 snapshot that says it has a bot is corrupt: the
	// flag is not known there.
	for _, f := range []byte{formatV6, formatV7} {
		b[0] = f
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("format %d with a bot: %v", f, err)
		}
	}
	// A bot and the stages' state together.
	both := withSummary("c", 6)
	both.Bot, both.State = "support", map[string][]byte{"flow": []byte(`{"node":"ask"}`)}
	if got, err := Decode(Encode(nil, both)); err != nil || !reflect.DeepEqual(got, both) {
		t.Fatalf("bot and state: %+v %v", got, err)
	}
	for name, s := range stores(t) {
		if err := s.Put(c, true); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(c.Tenant, c.ID); err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: %+v %v", name, got, err)
		}
		// A turn later (a message more): the bot stays in the header.
		c2 := *c
		c2.Messages = append(c2.Messages[:len(c2.Messages):len(c2.Messages)], c.Messages[0])
		c2.Messages[len(c2.Messages)-1].ID = "m-more"
		c2.Version++
		if err := s.Put(&c2, true); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(c.Tenant, c.ID); err != nil || got.Bot != "support" || len(got.Messages) != len(c2.Messages) {
			t.Fatalf("%s after a turn: bot %q, %v", name, got.Bot, err)
		}
	}
}
