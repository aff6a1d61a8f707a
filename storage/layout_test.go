package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/moltbot/moltbot"
)

// conversation returns a conversation of n messages, user and assistant in turn.
func conversation(id string, n int) *moltbot.Conversation {
	c := &moltbot.Conversation{Tenant: "default", ID: id, System: "be kind", Model: "local/m", Version: 1, Epoch: 1, Created: 1, Updated: 1}
	for i := 0; i < n; i++ {
		c.Messages = append(c.Messages, message(i))
	}
	c.Version = uint64(n + 1)
	return c
}

func message(i int) moltbot.Message {
	if i%2 == 0 {
		return moltbot.Message{ID: fmt.Sprint("n1-", i), Role: moltbot.RoleUser, Content: strings.Repeat("question ", 20), Created: int64(i)}
	}
	return moltbot.Message{ID: fmt.Sprint("n1-", i-1, ":a"), Role: moltbot.RoleAssistant, Content: strings.Repeat("answer ", 60), Model: "sim/sim", Created: int64(i)}
}

// add appends m as a turn does: a new version.
func add(c *moltbot.Conversation, m moltbot.Message) {
	c.Messages = append(c.Messages, m)
	c.Version++
	c.Updated++
}

// records lists the keys under a conversation's key, beside its header.
func (p *Pebble) records(t *testing.T, tenant, id string) []string {
	t.Helper()
	key := Key(tenant, id)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: key, UpperBound: convEnd(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, fmt.Sprintf("%q", it.Key()[len(key):]))
	}
	return out
}

// A turn writes the header and its message, whatever the length of the
// conversation: the bytes of a write do not grow with the history.
func TestPutWritesTheTurn(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var perTurn []int64
	for _, n := range []int{10, 1000} {
		c := conversation(fmt.Sprint("c", n), n)
		if err := p.Put(c, false); err != nil {
			t.Fatal(err)
		}
		before := p.Written()
		add(c, message(n))
		if err := p.Put(c, true); err != nil {
			t.Fatal(err)
		}
		perTurn = append(perTurn, p.Written()-before)
		if got, err := p.Get(c.Tenant, c.ID); err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("n=%d: read back %v", n, err)
		}
	}
	if perTurn[1] > perTurn[0]+16 || perTurn[0] > 600 { // ids and varints a few bytes longer
		t.Errorf("bytes written by one turn: %d with 10 messages, %d with 1000", perTurn[0], perTurn[1])
	}
}

// Every way the stored messages can differ from the written ones leaves
// the store holding exactly what was written: a turn, an incomplete reply
// replaced, fewer messages, another history (a replica that held another
// owner's), a message in the middle changed.
func TestPutWritesWhatChanged(t *testing.T) {
	incomplete := message(11)
	incomplete.Incomplete, incomplete.Content = true, "cut"
	for _, tc := range []struct {
		name   string
		change func(c *moltbot.Conversation)
		writes int // message records written
	}{
		{"turn", func(c *moltbot.Conversation) { add(c, message(10)) }, 1},
		{"two messages", func(c *moltbot.Conversation) { add(c, message(10)); add(c, message(11)) }, 2},
		{"nothing", func(c *moltbot.Conversation) { c.Version++ }, 0},
		{"last replaced", func(c *moltbot.Conversation) { c.Messages[9].Content = "better"; c.Version++ }, 1},
		{"fewer", func(c *moltbot.Conversation) { c.Messages = c.Messages[:4]; c.Version++ }, 0},
		{"none", func(c *moltbot.Conversation) { c.Messages = nil; c.Version++ }, 0},
		{"other history", func(c *moltbot.Conversation) {
			c.Messages = append(c.Messages[:3:3], moltbot.Message{ID: "n2-1", Role: moltbot.RoleUser, Content: "elsewhere"}, message(4), message(5))
			c.Epoch++
		}, 3},
		{"middle changed", func(c *moltbot.Conversation) { c.Messages[2].Content = "edited"; c.Version++ }, 8},
		{"metadata", func(c *moltbot.Conversation) { c.System, c.User = "other", "u"; c.Version++ }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, s := range stores(t) {
				c := conversation("c", 10)
				c.Messages[9] = incomplete
				if err := s.Put(c, true); err != nil {
					t.Fatal(err)
				}
				tc.change(c)
				writes := countWrites(t, s, c)
				got, err := s.Get(c.Tenant, c.ID)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(c.Messages) == 0 {
					c.Messages = nil
				}
				if !reflect.DeepEqual(got, c) {
					t.Fatalf("%s: holds\n%+v\nwant\n%+v", name, got, c)
				}
				if writes != tc.writes {
					t.Errorf("%s: %d message records written, want %d", name, writes, tc.writes)
				}
				if p, ok := s.(*Pebble); ok {
					if recs := p.records(t, c.Tenant, c.ID); len(recs) != len(c.Messages)+1 {
						t.Errorf("records left: %v", recs)
					}
				}
			}
		})
	}
}

// countWrites puts c in s and counts the message records the write set.
func countWrites(t *testing.T, s Store, c *moltbot.Conversation) int {
	t.Helper()
	return writeCounting(t, s, c).messages
}

// writeCounting writes c as Put does and tells what was written.
func writeCounting(t *testing.T, s Store, c *moltbot.Conversation) *countingBatch {
	t.Helper()
	var v view
	switch s := s.(type) {
	case *Memory:
		s.mu.Lock()
		defer s.mu.Unlock()
		v = memView{s}
	case *Pebble:
		cv, err := s.convView(Key(c.Tenant, c.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer cv.it.Close()
		v = cv
	}
	old, err := readHeld(v, Key(c.Tenant, c.ID))
	if err != nil {
		t.Fatal(err)
	}
	b := &memBatch{}
	rec := &countingBatch{batch: b}
	if err := writeConv(v, rec, c, old); err != nil {
		t.Fatal(err)
	}
	switch s := s.(type) {
	case *Memory:
		for _, op := range b.ops {
			op(s)
		}
	case *Pebble:
		pb := s.db.NewBatch()
		for _, op := range rec.ops {
			op(pebbleBatch{pb})
		}
		if err := pb.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

type countingBatch struct {
	batch
	messages, summaries, states int
	ops                         []func(b batch)
}

func (b *countingBatch) set(key, val []byte) error {
	switch _, suffix := splitKey(key); {
	case strings.HasPrefix(suffix, string([]byte{recordSep, kindMessage})):
		b.messages++
	case suffix == string([]byte{recordSep, kindSummary}):
		b.summaries++
	case suffix == string([]byte{recordSep, kindState}):
		b.states++
	}
	key, val = bytes.Clone(key), bytes.Clone(val) // a batch copies what it is given
	b.ops = append(b.ops, func(o batch) { o.set(key, val) })
	return b.batch.set(key, val)
}

func (b *countingBatch) deleteRange(lo, hi []byte) error {
	b.ops = append(b.ops, func(o batch) { o.deleteRange(lo, hi) })
	return b.batch.deleteRange(lo, hi)
}

// Large payloads live apart from the history: written once, with their
// message; Get loads them and names them (Ref); later turns neither
// rewrite nor change them.
func TestBlobsApart(t *testing.T) {
	img := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 2<<10)
	result := strings.Repeat("row,", 2<<10)
	small := []byte("tiny gif")
	parts := []moltbot.Part{
		{Type: moltbot.PartText, Text: "what is this? "},
		{Type: moltbot.PartImage, MIME: "image/png", Data: img},
		{Type: moltbot.PartImage, MIME: "image/gif", Data: small},
		{Type: moltbot.PartText, Text: "and this"},
	}
	calls := []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "call_1", Name: "query", Arguments: `{"q":"x"}`}}
	results := []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1", Content: result}, {Type: moltbot.PartToolResult, CallID: "call_2", Content: "ok"}}
	build := func() *moltbot.Conversation {
		c := conversation("c", 2)
		add(c, moltbot.Message{ID: "x:evt", Role: moltbot.RoleUser, Content: moltbot.TextOf(parts), Parts: append([]moltbot.Part(nil), parts...),
			Channel: "slack:acme", User: "U1"})
		add(c, moltbot.Message{ID: "x:evt:a", Role: moltbot.RoleAssistant, Parts: append([]moltbot.Part(nil), calls...), Model: "sim/sim"})
		add(c, moltbot.Message{ID: "x:evt:t", Role: moltbot.RoleUser, Parts: append([]moltbot.Part(nil), results...)})
		return c
	}
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, s := range map[string]Store{"pebble": p, "memory": NewMemory()} {
		t.Run(name, func(t *testing.T) {
			c := build()
			if err := s.Put(c, true); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(c.Tenant, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			imgRef, resRef := got.Messages[2].Parts[1].Ref, got.Messages[4].Parts[0].Ref
			if imgRef == "" || resRef == "" || got.Messages[2].Parts[2].Ref != "" || got.Messages[4].Parts[1].Ref != "" {
				t.Fatalf("refs: %q %q; small ones: %+v %+v", imgRef, resRef, got.Messages[2].Parts[2], got.Messages[4].Parts[1])
			}
			want := build()
			want.Messages[2].Parts[1].Ref, want.Messages[4].Parts[0].Ref = imgRef, resRef
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("holds\n%+v\nwant\n%+v", got, want)
			}
			if got.Messages[2].ExternalID() != "evt" || got.Messages[2].Content != "what is this? and this" {
				t.Errorf("metadata: %+v", got.Messages[2])
			}
			// The next turn, over what Get returned (Refs set), then over
			// what was written (none): the header and one message.
			add(got, message(9))
			if n := countWrites(t, s, got); n != 1 {
				t.Errorf("a turn after the images wrote %d messages", n)
			}
			again := build()
			add(again, message(10))
			if n := countWrites(t, s, again); n != 1 {
				t.Errorf("a turn after the images (no refs) wrote %d messages", n)
			}
			if pb, ok := s.(*Pebble); ok {
				key := Key(c.Tenant, c.ID)
				for _, ref := range []string{imgRef, resRef} {
					if _, closer, err := pb.db.Get(blobKey(key, ref)); err != nil {
						t.Errorf("blob %s: %v", ref, err)
					} else {
						closer.Close()
					}
				}
				v, closer, err := pb.db.Get(msgKey(key, 2))
				if err != nil {
					t.Fatal(err)
				}
				if len(v) > 200 {
					t.Errorf("the history holds the image: a record of %d bytes", len(v))
				}
				closer.Close()
			}
		})
	}
}

// A part may refer to bytes the store does not hold: it reads back with
// its Ref alone.
func TestBlobMissing(t *testing.T) {
	s := NewMemory()
	c := conversation("c", 0)
	big := strings.Repeat("x", BlobThreshold+1)
	add(c, moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "1", Content: big, Ref: "elsewhere"}}})
	s.Put(c, true)
	delete(s.convs[string(Key(c.Tenant, c.ID))], string(blobKey(nil, "elsewhere")))
	got, err := s.Get(c.Tenant, c.ID)
	if err != nil || got.Messages[0].Parts[0].Ref != "elsewhere" || got.Messages[0].Parts[0].Content != "" {
		t.Fatalf("%+v %v", got, err)
	}
}

// Snapshots written by the build before this layout (testdata/legacy,
// written by f9bf7a4's Encode; format 1 by encodeV1) load, count, are
// visited, fence writes, and are rewritten in the new layout on the next
// write.
func TestLegacySnapshots(t *testing.T) {
	legacy := map[string][]byte{}
	for _, name := range []string{"v2", "v3", "v2-tombstone"} {
		b, err := os.ReadFile(filepath.Join("testdata", "legacy", name+".snap"))
		if err != nil {
			t.Fatal(err)
		}
		legacy[name] = b
	}
	v1 := sample()
	v1.ID, v1.Messages[1].ID = "legacy-v1", ""
	legacy["v1"] = encodeV1(v1)
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, s := range map[string]Store{"pebble": p, "memory": NewMemory()} {
		t.Run(name, func(t *testing.T) {
			want := map[string]*moltbot.Conversation{}
			for _, b := range legacy {
				c, err := Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				want[c.ID] = c
				key := Key(c.Tenant, c.ID)
				switch s := s.(type) {
				case *Pebble:
					s.db.Set(key, b, pebble.Sync)
				case *Memory:
					s.convs[string(key)] = map[string][]byte{"": b}
				}
			}
			if c := want["legacy"]; c.Messages[3].ExternalID() != "" || c.Messages[2].ExternalID() != "evt-9" || !c.Messages[3].Incomplete {
				t.Fatalf("the legacy snapshot: %+v", c.Messages)
			}
			if n, err := s.Count(); n != len(legacy) || err != nil {
				t.Fatalf("count %d %v", n, err)
			}
			seen := 0
			s.ForEach(func(c *moltbot.Conversation) bool {
				seen++
				if !reflect.DeepEqual(c, want[c.ID]) {
					t.Errorf("ForEach %s: %+v", c.ID, c)
				}
				return true
			})
			if seen != len(legacy) {
				t.Errorf("visited %d", seen)
			}
			for id, c := range want {
				got, err := s.Get(c.Tenant, id)
				if err != nil || !reflect.DeepEqual(got, c) {
					t.Fatalf("get %s: %+v %v", id, got, err)
				}
				if ok, _, _, err := s.PutIfNewer(c, true); ok || err != nil {
					t.Fatalf("%s: the fence let the same version through: %v", id, err)
				}
				c.Version++
				if c.Deleted {
					c.Deleted = false
				}
				add(c, moltbot.Message{ID: "n2-1", Role: moltbot.RoleUser, Content: "after the upgrade"})
				if ok, _, _, err := s.PutIfNewer(c, true); !ok || err != nil {
					t.Fatalf("%s: newer not stored: %v", id, err)
				}
				got, err = s.Get(c.Tenant, id)
				if err != nil || !reflect.DeepEqual(got, c) {
					t.Fatalf("after the rewrite %s: %+v %v", id, got, err)
				}
				if pb, ok := s.(*Pebble); ok {
					v, closer, err := pb.db.Get(Key(c.Tenant, id))
					if err != nil || v[0] != formatHeader {
						t.Fatalf("%s: not rewritten: %v", id, err)
					}
					closer.Close()
					if recs := pb.records(t, c.Tenant, id); len(recs) != len(c.Messages)+1 {
						t.Errorf("%s: records %v", id, recs)
					}
				}
			}
			if n, _ := s.Count(); n != len(legacy) {
				t.Fatalf("count after the rewrite %d", n)
			}
		})
	}
}

// Deleting removes the header and every record; a tombstone is a header
// alone. Count, ForEach and DeleteSpaces see conversations, not records,
// whatever their ids (one may extend another's).
func TestDeleteAndWalkOverRecords(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ids := []string{"c1", "c1-x", "c1.x", "c10", "c1:y"}
			for _, id := range ids {
				c := conversation(id, 12)
				c.Messages[3].Parts = []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "1", Content: strings.Repeat("r", BlobThreshold+1)}}
				if err := s.Put(c, false); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := s.Count(); n != len(ids) || err != nil {
				t.Fatalf("count %d %v", n, err)
			}
			tomb := &moltbot.Conversation{Tenant: "default", ID: "c1", Version: 99, Epoch: 1, Deleted: true}
			if err := s.Put(tomb, true); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get("default", "c1"); err != nil || !reflect.DeepEqual(got, tomb) {
				t.Fatalf("tombstone: %+v %v", got, err)
			}
			if p, ok := s.(*Pebble); ok {
				if recs := p.records(t, "default", "c1"); len(recs) != 1 {
					t.Errorf("a tombstone keeps %v", recs)
				}
			}
			if err := s.Delete("default", "c1-x", true); err != nil {
				t.Fatal(err)
			}
			if p, ok := s.(*Pebble); ok {
				if recs := p.records(t, "default", "c1-x"); len(recs) != 0 {
					t.Errorf("deleted, keeps %v", recs)
				}
			}
			if _, err := s.Get("default", "c1-x"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted: %v", err)
			}
			seen := map[string]int{}
			s.ForEach(func(c *moltbot.Conversation) bool { seen[c.ID] = len(c.Messages); return true })
			if want := map[string]int{"c1": 0, "c1.x": 12, "c10": 12, "c1:y": 12}; !reflect.DeepEqual(seen, want) {
				t.Fatalf("ForEach saw %v", seen)
			}
			if n, _ := s.Count(); n != 4 {
				t.Fatalf("count %d", n)
			}
			ds := s.(interface {
				DeleteSpaces(func(string) bool) (int, error)
			})
			if n, err := ds.DeleteSpaces(func(sp string) bool { return sp == "default" }); n != 4 || err != nil {
				t.Fatalf("DeleteSpaces: %d %v", n, err)
			}
			if n, _ := s.Count(); n != 0 {
				t.Fatalf("count after DeleteSpaces %d", n)
			}
		})
	}
}

// Records that disagree with their header fail the read loudly.
func TestLoadCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(recs map[string][]byte)
	}{
		{"a message missing", func(recs map[string][]byte) { delete(recs, string(msgKey(nil, 1))) }},
		{"a message changed", func(recs map[string][]byte) {
			m := message(5)
			recs[string(msgKey(nil, 1))] = appendMessage([]byte{formatRecord}, &m, apartOf)
		}},
		{"a record unreadable", func(recs map[string][]byte) { recs[string(msgKey(nil, 1))] = []byte{formatRecord, 9} }},
		{"a blob unreadable", func(recs map[string][]byte) {
			for k := range recs {
				if strings.HasPrefix(k, string([]byte{recordSep, kindBlob})) {
					recs[k] = []byte{7}
				}
			}
		}},
		{"the header", func(recs map[string][]byte) { recs[""] = recs[""][:len(recs[""])-1] }},
	} {
		s := NewMemory()
		c := conversation("c", 4)
		c.Messages[0].Parts = []moltbot.Part{{Type: moltbot.PartImage, Data: make([]byte, BlobThreshold+1)}}
		s.Put(c, true)
		tc.spoil(s.convs[string(Key(c.Tenant, c.ID))])
		if _, err := s.Get(c.Tenant, c.ID); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", tc.name, err)
		}
		// A plain write replaces a header it cannot read (and trusts one it can).
		if err := s.Put(c, true); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := s.Get(c.Tenant, c.ID); err != nil && tc.name == "the header" {
			t.Errorf("%s: not repaired: %v", tc.name, err)
		}
	}
}

// A message's record is format 4's message, its large payloads named.
func TestRecordRoundTrip(t *testing.T) {
	m := moltbot.Message{ID: "x:1", Role: moltbot.RoleUser, Content: "hi", Channel: "web", User: "v-1", Created: -5, Parts: []moltbot.Part{
		{Type: moltbot.PartText, Text: "hi"}, {Type: moltbot.PartImage, MIME: "image/png", Data: make([]byte, BlobThreshold+1)},
		{Type: "audio", Ref: "r1", MIME: "audio/ogg"}}}
	var apart []int
	got, err := decodeRecord(appendMessage([]byte{formatRecord}, &m, apartOf), func(part int, data bool) {
		if data {
			apart = append(apart, part)
		}
	})
	want := m
	want.Parts = append([]moltbot.Part(nil), m.Parts...)
	ref, _, _ := apartOf(&m.Parts[1])
	want.Parts[1].Data, want.Parts[1].Ref = nil, ref
	if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(apart, []int{1}) {
		t.Fatalf("%+v %v %v", got, apart, err)
	}
}

func FuzzRecords(f *testing.F) {
	c := conversation("c", 2)
	c.User = "u"
	f.Add(encodeHeader(nil, c, 2, 1, 2, 0, 0))
	withSummary := *c
	withSummary.Summary = &moltbot.Summary{Text: "s", Messages: 1}
	f.Add(encodeHeader(nil, &withSummary, 2, 1, 2, 3, 0))
	withSummary.State = moltbot.StageState{"flow": []byte("x")}
	f.Add(encodeHeader(nil, &withSummary, 2, 1, 2, 3, 4))
	rich := moltbot.Message{ID: "x:1", Role: moltbot.RoleUser, Content: "a", Channel: "web", Parts: []moltbot.Part{
		{Type: moltbot.PartText, Text: "a"}, {Type: moltbot.PartToolResult, CallID: "c", Content: strings.Repeat("z", BlobThreshold+1)},
		{Type: moltbot.PartToolCall, CallID: "c", Name: "n", Arguments: "{}"}}}
	f.Add(appendMessage([]byte{formatRecord}, &rich, apartOf))
	f.Add(appendMessage([]byte{formatRecord}, &c.Messages[0], apartOf))
	cited := withCitations()
	f.Add(appendRecord(nil, &cited.Messages[len(cited.Messages)-1]))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeHeader(b); err == nil {
			hc := h.c
			if h.hasSummary {
				hc.Summary = &moltbot.Summary{} // a header holds the summary's hash only
			}
			if h.hasState {
				hc.State = moltbot.StageState{"s": {1}} // and the state's
			}
			again, err := decodeHeader(encodeHeader(nil, &hc, int(h.count), h.chain, h.prev, h.summary, h.state))
			if err != nil || !reflect.DeepEqual(again, h) {
				t.Fatalf("header round trip of %x: %+v vs %+v (%v)", b, again, h, err)
			}
		}
		type apart struct {
			part int
			data bool
		}
		var first []apart
		m, err := decodeRecord(b, func(part int, data bool) { first = append(first, apart{part, data}) })
		if err != nil {
			return
		}
		// Written again as it reads (its apart payloads stay apart: an
		// empty payload with a ref), it reads the same.
		var second []apart
		rf := byte(formatRecord)
		if len(m.Citations) > 0 {
			rf = formatRecordCite
		}
		enc := appendMessage([]byte{rf}, &m, func(p *moltbot.Part) (string, bool, bool) {
			for _, a := range first {
				if &m.Parts[a.part] == p {
					return p.Ref, a.data, true
				}
			}
			return "", false, false
		})
		again, err := decodeRecord(enc, func(part int, data bool) { second = append(second, apart{part, data}) })
		if err != nil || !reflect.DeepEqual(again, m) || !reflect.DeepEqual(first, second) {
			t.Fatalf("record round trip of %x: %+v vs %+v (%v)", b, again, m, err)
		}
	})
}
