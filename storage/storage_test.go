package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

func sample() *moltbot.Conversation {
	return &moltbot.Conversation{Tenant: "default", ID: "c1", System: "be kind", Model: "local/llama3.2",
		Version: 7, Epoch: 2, Created: 1700000000000, Updated: 1700000001000,
		Messages: []moltbot.Message{
			{Role: moltbot.RoleSystem, Content: "be kind", Created: 1},
			{ID: "t1", Role: moltbot.RoleUser, Content: "héllo \x00 wörld", Created: 2},
			{Role: moltbot.RoleAssistant, Content: strings.Repeat("long ", 1000), Model: "sim/sim", Created: -3},
		}}
}

func TestCodecRoundTrip(t *testing.T) {
	owned := sample()
	owned.User = "user-42"
	for _, c := range []*moltbot.Conversation{sample(), {Tenant: "t", ID: "empty"}, owned} {
		got, err := Decode(Encode(nil, c))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Messages) == 0 {
			c.Messages = nil
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

// encodeV1 is the format-1 encoder (no per-message flags), kept to prove
// that snapshots written by older builds still load.
func encodeV1(c *moltbot.Conversation) []byte {
	b := []byte{formatV1}
	b = binary.AppendUvarint(b, c.Version)
	b = binary.AppendUvarint(b, c.Epoch)
	b = binary.AppendVarint(b, c.Created)
	b = binary.AppendVarint(b, c.Updated)
	for _, s := range []string{c.Tenant, c.ID, c.System, c.Model} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Messages)))
	for _, m := range c.Messages {
		b = append(b, roleCodes[m.Role])
		b = appendString(b, m.Content)
		b = appendString(b, m.Model)
		b = binary.AppendVarint(b, m.Created)
	}
	return b
}

func TestDecodeFormat1AndIncomplete(t *testing.T) {
	c := sample()
	c.Messages[1].ID = "" // format 1 has no message ids
	got, err := Decode(encodeV1(c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("v1: %+v %v", got, err)
	}
	c.Messages[2].Incomplete = true
	c.Deleted = true
	c.Messages[1].ID = "turn-7"
	got, err = Decode(Encode(nil, c))
	if err != nil || !got.Messages[2].Incomplete || got.Messages[1].Incomplete || !got.Deleted || got.Messages[1].ID != "turn-7" {
		t.Fatalf("incomplete flag: %+v %v", got, err)
	}
}

// rich returns sample() with a message of parts and metadata.
func rich() *moltbot.Conversation {
	c := sample()
	parts := []moltbot.Part{{Type: moltbot.PartText, Text: "see "}, {Type: moltbot.PartImage, MIME: "image/png", Data: []byte{0x89, 'P', 'N', 'G'}},
		{Type: moltbot.PartImage, MIME: "image/jpeg", Ref: "0123456789abcdef"}, {Type: "video", Ref: "v1", Name: "future kind"}}
	c.Messages = append(c.Messages,
		moltbot.Message{ID: "x:evt", Role: moltbot.RoleUser, Content: moltbot.TextOf(parts), Parts: parts, Channel: "slack:acme", User: "U1", Created: 4},
		moltbot.Message{ID: "x:evt:a", Role: moltbot.RoleAssistant, Parts: []moltbot.Part{{Type: moltbot.PartToolCall, CallID: "call_1", Name: "q", Arguments: `{"a":1}`}}},
		moltbot.Message{Role: moltbot.RoleUser, Parts: []moltbot.Part{{Type: moltbot.PartToolResult, CallID: "call_1", Content: strings.Repeat("row ", 20)}}})
	return c
}

// Encode writes the oldest format that holds the conversation, so that a
// node of the previous version still reads it during a rolling upgrade:
// format 2; 3 with a user; 4 with a message of parts beyond plain text or
// with metadata.
func TestEncodeFormat(t *testing.T) {
	plain := sample()
	plain.Messages[1].Parts = []moltbot.Part{{Type: moltbot.PartText, Text: plain.Messages[1].Content}} // plain text still
	user := sample()
	user.User = "u"
	channel := sample()
	channel.Messages[1].Channel = "web"
	twoTexts := sample()
	twoTexts.Messages[1].Parts = []moltbot.Part{{Type: moltbot.PartText, Text: "héllo "}, {Type: moltbot.PartText, Text: "\x00 wörld"}}
	for _, tc := range []struct {
		name   string
		c      *moltbot.Conversation
		format byte
	}{
		{"text", sample(), formatV2}, {"one text part", plain, formatV2}, {"user", user, formatV3},
		{"channel", channel, formatV4}, {"two text parts", twoTexts, formatV4}, {"parts", rich(), formatV4},
	} {
		b := Encode(nil, tc.c)
		if b[0] != tc.format {
			t.Errorf("%s: format %d, want %d", tc.name, b[0], tc.format)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "one text part" {
			tc.c.Messages[1].Parts = nil // read back as text
		}
		if !reflect.DeepEqual(got, tc.c) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", tc.name, got, tc.c)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(nil, sample())
	cases := map[string][]byte{
		"empty":          nil,
		"unknown format": append([]byte{formatV9 + 1}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"huge count":     {1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		// A message of format 2 with format 4's flags.
		"v2 parts": func() []byte { b := Encode(nil, rich()); b[0] = formatV2; return b }(),
	}
	for name, b := range cases {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, sample()))
	owned := sample()
	owned.User = "u"
	f.Add(Encode(nil, owned))
	f.Add(Encode(nil, withOutbox()))
	f.Add([]byte{1, 0, 0, 0, 0, 1, 't', 1, 'i', 0, 0, 1, 2, 0, 0, 0})
	f.Add(Encode(nil, rich()))
	f.Add(Encode(nil, withState("c", 2)))
	f.Add(Encode(nil, withCitations()))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged (varints may
		// be non-minimal in the input, so compare values, not bytes).
		again, err := Decode(Encode(nil, c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip of %x: %+v vs %+v (%v)", b, again, c, err)
		}
	})
}

func stores(t *testing.T) map[string]Store {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return map[string]Store{"pebble": p, "memory": NewMemory()}
}

func TestStore(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Get("default", "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get missing: %v", err)
			}
			c := sample()
			if err := s.Put(c, true); err != nil {
				t.Fatal(err)
			}
			other := sample()
			other.Tenant = "acme"
			if err := s.Put(other, false); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get("default", "c1")
			if err != nil || !reflect.DeepEqual(got, c) {
				t.Fatalf("get: %+v %v", got, err)
			}
			if n, _ := s.Count(); n != 2 {
				t.Fatalf("count = %d", n)
			}
			c.Version++
			c.Messages = c.Messages[:1]
			s.Put(c, true)
			if got, _ := s.Get("default", "c1"); got.Version != 8 || len(got.Messages) != 1 {
				t.Fatalf("overwrite: %+v", got)
			}
			if err := s.Delete("default", "c1", true); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete("default", "c1", true); err != nil {
				t.Fatalf("second delete: %v", err)
			}
			if _, err := s.Get("default", "c1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
			if got, err := s.Get("acme", "c1"); err != nil || got.Tenant != "acme" {
				t.Fatalf("other tenant: %v", err)
			}
			s.Close()
			if err := s.Put(c, true); !errors.Is(err, ErrClosed) {
				t.Fatalf("put after close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second close: %v", err)
			}
		})
	}
}

func TestPebbleReopenAndLock(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		c := sample()
		c.ID = fmt.Sprint("c", i)
		if err := p.Put(c, i%10 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of a locked dir: %v", err)
	}
	p.Close()
	p, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, _ := p.Count(); n != 100 {
		t.Fatalf("count after reopen = %d", n)
	}
	if got, err := p.Get("default", "c99"); err != nil || got.Version != 7 {
		t.Fatalf("get after reopen: %v", err)
	}
}

func BenchmarkSnapshotEncode(b *testing.B) {
	c := sample()
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = Encode(buf[:0], c)
	}
}

func benchPut(b *testing.B, sync bool) {
	p, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c := &moltbot.Conversation{Tenant: "default", ID: "bench", Messages: []moltbot.Message{
		{Role: moltbot.RoleUser, Content: strings.Repeat("question ", 20)},
		{Role: moltbot.RoleAssistant, Content: strings.Repeat("answer ", 60)}}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.ID = fmt.Sprint("c", i%1000)
		i++
		if err := p.Put(c, sync); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshotWriteSync(b *testing.B)   { benchPut(b, true) }
func BenchmarkSnapshotWriteNoSync(b *testing.B) { benchPut(b, false) }

func TestPutIfNewer(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			c := sample() // epoch 2, version 7
			if ok, _, _, err := s.PutIfNewer(c, true); !ok || err != nil {
				t.Fatalf("first: %v %v", ok, err)
			}
			for _, tc := range []struct {
				epoch, version uint64
				stored         bool
			}{{2, 7, false}, {2, 6, false}, {1, 99, false}, {2, 8, true}, {3, 1, true}, {2, 100, false}} {
				d := sample()
				d.Epoch, d.Version = tc.epoch, tc.version
				held, _ := s.Get("default", "c1")
				ok, e, v, err := s.PutIfNewer(d, false)
				if err != nil || ok != tc.stored || ok != Newer(d.Epoch, d.Version, held.Epoch, held.Version) {
					t.Errorf("(%d,%d): stored %v (holds %d,%d) %v", tc.epoch, tc.version, ok, e, v, err)
				}
				want := [2]uint64{held.Epoch, held.Version} // refused: what is held
				if ok {
					want = [2]uint64{d.Epoch, d.Version}
				}
				if [2]uint64{e, v} != want {
					t.Errorf("(%d,%d): stored %v, reports (%d,%d), want %v", tc.epoch, tc.version, ok, e, v, want)
				}
			}
			got, _ := s.Get("default", "c1")
			if got.Epoch != 3 || got.Version != 1 {
				t.Errorf("holds (%d,%d)", got.Epoch, got.Version)
			}
		})
	}
}

// The fence's order: epoch first, then version; equal is not newer.
func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		e1, v1, e2, v2 uint64
		want           bool
	}{{1, 1, 1, 1, false}, {1, 2, 1, 1, true}, {1, 1, 1, 2, false}, {2, 0, 1, 99, true}, {1, 99, 2, 0, false}, {0, 1, 0, 0, true}} {
		if got := Newer(tc.e1, tc.v1, tc.e2, tc.v2); got != tc.want {
			t.Errorf("Newer(%d,%d, %d,%d) = %v", tc.e1, tc.v1, tc.e2, tc.v2, got)
		}
	}
}

// A failed write, or a held copy that cannot be read, fails the
// conditional write.
func TestPutIfNewerFailures(t *testing.T) {
	m := NewMemory()
	m.Put(sample(), true)
	m.SetFail(errors.New("disk full"))
	d := sample()
	d.Version++
	if ok, _, _, err := m.PutIfNewer(d, true); ok || err == nil {
		t.Fatalf("a failed write stored: %v %v", ok, err)
	}
	m.SetFail(nil)
	m.convs[string(Key(d.Tenant, d.ID))][""] = []byte{99}
	if ok, _, _, err := m.PutIfNewer(d, true); ok || err == nil {
		t.Fatalf("replaced an unreadable copy: %v %v", ok, err)
	}
}

// Health says when the store is gone.
func TestHealth(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]interface {
		Store
		Health() error
	}{"pebble": p, "memory": NewMemory()} {
		if err := s.Health(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		s.Close()
		if err := s.Health(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s closed: %v", name, err)
		}
	}
}

func TestForEach(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for i := 0; i < 10; i++ {
				c := sample()
				c.ID = fmt.Sprint("c", i)
				s.Put(c, false)
			}
			n := 0
			s.ForEach(func(c *moltbot.Conversation) bool { n++; return true })
			if n != 10 {
				t.Fatalf("visited %d", n)
			}
			n = 0
			s.ForEach(func(c *moltbot.Conversation) bool { n++; return n < 3 })
			if n != 3 {
				t.Fatalf("did not stop: %d", n)
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, db := range map[string]Namespaces{"pebble": p, "memory": NewMemory()} {
		t.Run(name, func(t *testing.T) {
			keys, tenants := db.Namespace(AuthKeys), db.Namespace(AuthTenants)
			keys.Put("b", []byte("2"))
			keys.Put("a", []byte("1"))
			tenants.Put("t", []byte("t"))
			if v, ok, err := keys.Get("a"); !ok || err != nil || string(v) != "1" {
				t.Fatalf("get: %q %v %v", v, ok, err)
			}
			if _, ok, _ := keys.Get("zz"); ok {
				t.Fatal("found a missing key")
			}
			if _, ok, _ := keys.Get("t"); ok {
				t.Fatal("a key of another namespace")
			}
			var seen []string
			keys.Scan(func(k string, v []byte) bool { seen = append(seen, k+"="+string(v)); return true })
			if strings.Join(seen, ",") != "a=1,b=2" {
				t.Fatalf("scan %v", seen)
			}
			keys.Delete("a")
			if _, ok, _ := keys.Get("a"); ok {
				t.Fatal("not deleted")
			}
		})
	}
	// Records are not conversations.
	if n, _ := p.Count(); n != 0 {
		t.Fatalf("count %d", n)
	}
}

// No namespace's keys can fall in another's, nor among the conversations.
// Every namespace's puts are synced but the output cache's: an entry lost
// in a crash is a miss, not a lost record.
func TestNamespacesDisjoint(t *testing.T) {
	prefixes := []string{convPrefix, string(healthKey)}
	for _, ns := range namespaces {
		if ns.Name == "" || !strings.HasSuffix(ns.prefix, "/") || !ns.syncPut && ns != Cache {
			t.Errorf("namespace %+v: a name, a prefix ending in '/', synced puts", ns)
		}
		prefixes = append(prefixes, ns.prefix)
	}
	for i, a := range prefixes {
		for j, b := range prefixes {
			if i != j && strings.HasPrefix(a, b) {
				t.Errorf("%q falls in %q", a, b)
			}
		}
	}
}

// A database written before namespaces (auth and audit wrote whole keys:
// keys/<id>, tenants/<id>, signing/<kid>, jwks/<kid>, audit/<id>) reads
// the same through them, and what they write lands on the same keys.
func TestNamespacesKeepTheKeys(t *testing.T) {
	p, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct {
		ns      Namespace
		old, id string
	}{{AuthKeys, "keys/abcdefgh", "abcdefgh"}, {AuthTenants, "tenants/acme", "acme"}, {AuthSigning, "signing/k1", "k1"},
		{AuthJWKS, "jwks/k1", "k1"}, {Audit, "audit/0000000000000001", "0000000000000001"}} {
		if err := p.db.Set([]byte(c.old), []byte("old "+c.old), nil); err != nil {
			t.Fatal(err)
		}
		kv := p.Namespace(c.ns)
		if v, ok, err := kv.Get(c.id); !ok || err != nil || string(v) != "old "+c.old {
			t.Errorf("%s: %q %v %v", c.ns.Name, v, ok, err)
		}
		kv.Put(c.id+"x", []byte("new"))
		if v, closer, err := p.db.Get([]byte(c.old + "x")); err != nil || string(v) != "new" {
			t.Errorf("%s: written elsewhere than %sx: %v", c.ns.Name, c.old, err)
		} else {
			closer.Close()
		}
	}
}

// DefaultOptions are what zero Options resolve to.
func TestDefaultOptions(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o != DefaultOptions() {
		t.Errorf("zero resolves to %+v, DefaultOptions is %+v", o, DefaultOptions())
	}
}

// BumpEpoch raises the held copy's epoch above the floor in one step and
// keeps its content; the former epoch's writes are fenced off after it.
func TestBumpEpoch(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := s.BumpEpoch("default", "c1", 0, true); !errors.Is(err, ErrNotFound) {
				t.Fatalf("bump of nothing: %v", err)
			}
			c := sample() // epoch 2, version 7
			if err := s.Put(c, true); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ floor, want uint64 }{{0, 3}, {1, 4}, {9, 10}} {
				got, err := s.BumpEpoch("default", "c1", tc.floor, true)
				if err != nil || got.Epoch != tc.want || got.Version != 7 || len(got.Messages) != len(c.Messages) {
					t.Fatalf("floor %d: %+v %v, want epoch %d, version 7, the messages", tc.floor, got, err, tc.want)
				}
				held, err := s.Get("default", "c1")
				if err != nil || held.Epoch != tc.want || len(held.Messages) != len(c.Messages) {
					t.Fatalf("floor %d: holds %+v %v", tc.floor, held, err)
				}
			}
			late := sample()
			late.Epoch, late.Version = 9, 99
			if ok, _, _, _ := s.PutIfNewer(late, true); ok {
				t.Fatal("the former epoch's write was stored after the bump")
			}
		})
	}
}
