package cache

import (
	"reflect"
	"testing"

	"github.com/moltbot/moltbot"
)

var served = moltbot.ModelRef{Provider: "sim", Model: "sim"}

func streamed() (*moltbot.Completion, []moltbot.Chunk) {
	chunks := []moltbot.Chunk{
		{Content: "Hel", Served: served}, {Content: "lo", Served: served},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, ID: "c1", Name: "get"}, Served: served},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `{"a":`}, Served: served},
		{ToolCall: &moltbot.ToolCallDelta{Index: 0, Arguments: `1}`}, Served: served},
		{Content: "!", Served: served},
	}
	comp := &moltbot.Completion{Content: "Hello!", ToolCalls: []moltbot.ToolCall{{ID: "c1", Name: "get", Arguments: `{"a":1}`}},
		Served: served, Usage: moltbot.Usage{PromptTokens: 3, CompletionTokens: 4}, FinishReason: "tool_calls"}
	return comp, chunks
}

func replayed(t *testing.T, e *Entry) []moltbot.Chunk {
	t.Helper()
	var out []moltbot.Chunk
	if err := e.replay(func(c moltbot.Chunk) error { out = append(out, c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// An entry replays the pieces it was streamed in, through its stored form
// too.
func TestEntryReplaysItsPieces(t *testing.T) {
	comp, chunks := streamed()
	e := newEntry(comp, chunks, 99)
	if len(e.Pieces) != 6 || len(e.Deltas) != 3 {
		t.Fatalf("pieces %v deltas %v", e.Pieces, e.Deltas)
	}
	d, err := decodeEntry(e.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, e) {
		t.Fatalf("decoded %+v\nwant %+v", d, e)
	}
	for _, x := range []*Entry{e, d} {
		if got := replayed(t, x); !reflect.DeepEqual(got, chunks) {
			t.Errorf("replayed %+v\nwant %+v", got, chunks)
		}
	}
	c := d.completion()
	if c.Content != "Hello!" || c.Cache != moltbot.CacheHit || c.FinishReason != "tool_calls" || c.Usage.CompletionTokens != 4 || len(c.ToolCalls) != 1 {
		t.Errorf("completion %+v", c)
	}
	if exp, ok := expiresOf(e.encode(nil)); !ok || exp != 99 {
		t.Errorf("expires %d %v", exp, ok)
	}
}

// Pieces that do not add up to the reply (a reply redone after a failure
// nobody saw) are not kept: the reply replays whole.
func TestEntryWithoutPieces(t *testing.T) {
	comp, chunks := streamed()
	chunks = append([]moltbot.Chunk{{Content: "Hel"}}, chunks...)
	e := newEntry(comp, chunks, 1)
	if e.Pieces != nil {
		t.Fatalf("pieces kept: %v", e.Pieces)
	}
	got := replayed(t, e)
	if len(got) != 2 || got[0].Content != "Hello!" || got[1].ToolCall.Arguments != `{"a":1}` || got[1].ToolCall.ID != "c1" {
		t.Errorf("replayed %+v", got)
	}
	d, err := decodeEntry(e.encode(nil))
	if err != nil || d.Pieces != nil || d.Content != "Hello!" {
		t.Errorf("decoded %+v %v", d, err)
	}
	if e := newEntry(&moltbot.Completion{Content: "ab", FinishReason: "stop"}, []moltbot.Chunk{{Content: "a"}}, 1); e.Pieces != nil {
		t.Errorf("pieces short of the reply kept: %v", e.Pieces)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	comp, chunks := streamed()
	b := newEntry(comp, chunks, 5).encode(nil)
	for i := range b {
		if _, err := decodeEntry(b[:i]); err == nil {
			t.Fatalf("a truncated entry (%d of %d bytes) decoded", i, len(b))
		}
	}
	if _, err := decodeEntry(append(b, 0)); err == nil {
		t.Error("trailing bytes decoded")
	}
	bad := append([]byte{}, b...)
	bad[0] = 9
	if _, err := decodeEntry(bad); err == nil {
		t.Error("another version decoded")
	}
}

// Stored entries come back from Pebble and from Redis, which another node
// (or anything that can write there) wrote: decoding never panics, and an
// entry that decodes replays within its content.
func FuzzDecodeEntry(f *testing.F) {
	comp, chunks := streamed()
	f.Add(newEntry(comp, chunks, 5).encode(nil))
	f.Add(newEntry(comp, nil, 5).encode(nil))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 5, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		n := 0
		err = e.replay(func(c moltbot.Chunk) error { n += len(c.Content); return nil })
		if err != nil || n != len(e.Content) {
			t.Fatalf("replayed %d of %d bytes: %v", n, len(e.Content), err)
		}
		if _, err := decodeEntry(e.encode(nil)); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
	})
}
