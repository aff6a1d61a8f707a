package storage

import (
	"errors"
	"reflect"
	"testing"

	"github.com/moltbot/moltbot"
)

func withCitations() *moltbot.Conversation {
	c := sample()
	c.Messages = append(c.Messages, moltbot.Message{ID: "t2:a", Role: moltbot.RoleAssistant, Content: "Refunds take 5 to 10 days [1].", Model: "sim/sim", Created: 9,
		Citations: []moltbot.Citation{
			{N: 1, KB: "support", Document: "returns.md", Heading: "Returns and Refunds > Refunds > Refund timing", Chunk: "returns.md#4", Score: 7.25, Snippet: "We inspect returned items within 3 business days"},
			{N: 2, KB: "support", Document: "zh-退货与退款.md", Chunk: "zh-退货与退款.md#0", Score: 0.5},
		}})
	return c
}

// A reply's citations are stored with it: in the wire format (format 9,
// only for a conversation with some, so an older node reads the others),
// in the store's message records (a record format of their own, likewise)
// and through a restart of the store.
func TestCitationsRoundTrip(t *testing.T) {
	c := withCitations()
	b := Encode(nil, c)
	if b[0] != formatV9 {
		t.Errorf("format %d with citations", b[0])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("wire: %+v %v", got, err)
	}
	if b := Encode(nil, sample()); b[0] != formatV2 {
		t.Errorf("format %d without citations", b[0])
	}
	// Format 8 does not know the flag: such a snapshot is corrupt there.
	b[0] = formatV8
	if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 8 with citations: %v", err)
	}
	rec := appendRecord(nil, &c.Messages[len(c.Messages)-1])
	if rec[0] != formatRecordCite {
		t.Errorf("record format %d with citations", rec[0])
	}
	if r := appendRecord(nil, &c.Messages[0]); r[0] != formatRecord {
		t.Errorf("record format %d without citations", r[0])
	}
	rec[0] = formatRecord
	if _, err := decodeRecord(rec, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a record of format 1 with citations: %v", err)
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
