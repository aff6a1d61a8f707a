package kb

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
)

// memKV is a KV in memory.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

func (k *memKV) Get(key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}
func (k *memKV) Put(key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = append([]byte(nil), v...)
	return nil
}
func (k *memKV) Delete(key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}
func (k *memKV) Scan(fn func(string, []byte) bool) error {
	k.mu.Lock()
	keys := make([]string, 0, len(k.m))
	for key := range k.m {
		keys = append(keys, key)
	}
	k.mu.Unlock()
	sort.Strings(keys)
	for _, key := range keys {
		v, _, _ := k.Get(key)
		if !fn(key, v) {
			break
		}
	}
	return nil
}

func openStore(t *testing.T, kv KV) *Store {
	t.Helper()
	s, err := Open(Config{KV: kv})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStorePutSearchDelete(t *testing.T) {
	kv := newMemKV()
	s := openStore(t, kv)
	docs := exampleDocs(t)
	if !s.Empty() {
		t.Fatal("a new store is not empty")
	}
	if err := s.Put("acme:x1", "support", docs); err != nil {
		t.Fatal(err)
	}
	if s.Empty() {
		t.Fatal("a store with documents is empty")
	}
	found, a, err := s.Search("acme:x1", []string{"support"}, Query{Text: "退款多久到账"})
	if err != nil || len(found) == 0 || a.Coverage < DefaultThreshold {
		t.Fatalf("search: %v, %d results, coverage %.2f", err, len(found), a.Coverage)
	}
	if found[0].Doc != "zh-退货与退款.md" || found[0].KB != "support" {
		t.Fatalf("first result %s in %s", found[0].Doc, found[0].KB)
	}
	// Another space (another tenant, or the same tenant made again) sees nothing.
	if found, _, _ := s.Search("acme:x2", []string{"support"}, Query{Text: "退款多久到账"}); len(found) != 0 {
		t.Fatalf("another space found %d chunks", len(found))
	}
	// The documents survive a restart, and the index is built again.
	s2 := openStore(t, kv)
	if l := s2.List("acme:x1", ""); len(l) != 1 || len(l[0].Docs) != len(docs) || l[0].Chunks == 0 {
		t.Fatalf("after reopening: %+v", l)
	}
	n, err := s2.Delete("acme:x1", "support", "zh-退货与退款.md")
	if err != nil || n != 1 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	found, _, _ = s2.Search("acme:x1", []string{"support"}, Query{Text: "退款多久到账"})
	for _, f := range found {
		if f.Doc == "zh-退货与退款.md" {
			t.Fatalf("a deleted document still answers")
		}
	}
	if _, err := s2.Delete("acme:x1", "support", "zh-退货与退款.md"); moltbot.ErrorCode(err) != moltbot.ENotFound {
		t.Fatalf("deleting twice: %v", err)
	}
	if n, err := s2.Delete("acme:x1", "support", ""); err != nil || n != len(docs)-1 {
		t.Fatalf("deleting the base: %d, %v", n, err)
	}
	if l := openStore(t, kv).List("acme:x1", ""); len(l) != 0 {
		t.Fatalf("a deleted base is listed after a restart: %+v", l)
	}
	if !s2.Empty() || !openStore(t, kv).Empty() {
		t.Fatalf("a store whose documents were all deleted is not empty")
	}
}

func TestStoreRefuses(t *testing.T) {
	s := openStore(t, newMemKV())
	for _, tc := range []struct {
		kb   string
		doc  Doc
		code string
	}{
		{"bad/name", Doc{Name: "a.md", Text: "x"}, moltbot.EInvalid},
		{"ok", Doc{Name: "../etc/passwd", Text: "x"}, moltbot.EInvalid},
		{"ok", Doc{Name: "/abs.md", Text: "x"}, moltbot.EInvalid},
		{"ok", Doc{Name: "a\x00.md", Text: "x"}, moltbot.EInvalid},
		{"ok", Doc{Name: "big.md", Text: strings.Repeat("x", MaxDocBytes+1)}, moltbot.ETooLarge},
		{"ok", Doc{Name: "bin.md", Text: "\xff\xfe"}, moltbot.EInvalid},
	} {
		if err := s.Put("t", tc.kb, []Doc{tc.doc}); moltbot.ErrorCode(err) != tc.code {
			t.Errorf("Put(%q, %q): %v, want %s", tc.kb, tc.doc.Name, err, tc.code)
		}
	}
	if l := s.List("t", ""); len(l) != 0 {
		t.Fatalf("a refused document was stored: %+v", l)
	}
}

// cluster wires n stores as a cluster does: a change goes to every other
// store; Exchange sends one store's manifest to another.
type cluster struct {
	stores []*Store
	mu     sync.Mutex
	queue  []msg
}

type msg struct {
	to int
	b  []byte
}

func newCluster(t *testing.T, n int) *cluster {
	c := &cluster{}
	for i := range n {
		s := openStore(t, newMemKV())
		s.SetPublisher(func(b []byte) {
			c.mu.Lock()
			defer c.mu.Unlock()
			for j := range n {
				if j != i {
					c.queue = append(c.queue, msg{j, b})
				}
			}
		})
		c.stores = append(c.stores, s)
	}
	return c
}

// deliver hands every queued message over, until none is left (drop
// decides which are lost).
func (c *cluster) deliver(t *testing.T, drop func(msg) bool) {
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, m := range q {
			if drop != nil && drop(m) {
				continue
			}
			if _, err := c.stores[m.to].Merge(m.b); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestStoreClusterConverges(t *testing.T) {
	c := newCluster(t, 3)
	docs := exampleDocs(t)
	if err := c.stores[0].Put("acme", "support", docs); err != nil {
		t.Fatal(err)
	}
	// Node 2 misses every change.
	c.deliver(t, func(m msg) bool { return m.to == 2 })
	if l := c.stores[2].List("acme", ""); len(l) != 0 {
		t.Fatalf("node 2 got documents it was not sent")
	}
	for _, i := range []int{1} {
		f, _, _ := c.stores[i].Search("acme", []string{"support"}, Query{Text: "How much does express delivery cost?"})
		if len(f) == 0 || f[0].Doc != "shipping.md" {
			t.Fatalf("node %d: %+v", i, f)
		}
	}
	// Node 2's manifest reaches node 1, which publishes what 2 lacks.
	if _, err := c.stores[1].Merge(c.stores[2].State()); err != nil {
		t.Fatal(err)
	}
	for range (len(docs) + maxPush - 1) / maxPush {
		c.deliver(t, nil)
		c.stores[1].Merge(c.stores[2].State())
	}
	c.deliver(t, nil)
	if l := c.stores[2].List("acme", ""); len(l) != 1 || len(l[0].Docs) != len(docs) {
		t.Fatalf("node 2 after the exchange: %+v", l)
	}
	// A removal on node 2 reaches every node, also one that missed it, by
	// the next exchange.
	if _, err := c.stores[2].Delete("acme", "support", "shipping.md"); err != nil {
		t.Fatal(err)
	}
	c.deliver(t, func(m msg) bool { return m.to == 0 })
	c.stores[2].Merge(c.stores[0].State())
	c.deliver(t, nil)
	for i, s := range c.stores {
		f, _, _ := s.Search("acme", []string{"support"}, Query{Text: "How much does express delivery cost?"})
		for _, x := range f {
			if x.Doc == "shipping.md" {
				t.Fatalf("node %d still answers from a deleted document", i)
			}
		}
		if got, want := s.State(), c.stores[0].State(); string(got) != string(want) {
			t.Fatalf("node %d's manifest differs from node 0's", i)
		}
	}
}

func TestStoreMergeRefuses(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _ := Open(Config{KV: newMemKV(), Now: func() time.Time { return now }})
	good := record{Space: "acme", KB: "kb", Doc: "a.md", Ver: now.UnixNano(), Text: "hello", Hash: hashOf("hello")}
	for name, mut := range map[string]func(r *record){
		"future":   func(r *record) { r.Ver = now.Add(time.Hour).UnixNano() },
		"hash":     func(r *record) { r.Hash = hashOf("other") },
		"doc name": func(r *record) { r.Doc = "../x" },
		"kb name":  func(r *record) { r.KB = "a/b" },
		"space":    func(r *record) { r.Space = "" },
		"version":  func(r *record) { r.Ver = 0 },
	} {
		r := good
		mut(&r)
		b, _ := json.Marshal(change{Doc: &r})
		if n, err := s.Merge(b); n != 0 || !errors.Is(err, errRefused) {
			t.Errorf("%s: merged %d, %v", name, n, err)
		}
	}
	b, _ := json.Marshal(change{Doc: &good})
	if n, err := s.Merge(b); n != 1 || err != nil {
		t.Fatalf("a good record: %d, %v", n, err)
	}
	// An older write loses; the same again is no change.
	old := good
	old.Ver--
	old.Text, old.Hash = "older", hashOf("older")
	ob, _ := json.Marshal(change{Doc: &old})
	if n, _ := s.Merge(ob); n != 0 {
		t.Fatalf("an older record replaced a newer one")
	}
	if n, _ := s.Merge(b); n != 0 {
		t.Fatalf("the same record twice counted twice")
	}
	// The store's clock moved past the version it took.
	if err := s.Put("acme", "kb", []Doc{{Name: "a.md", Text: "mine"}}); err != nil {
		t.Fatal(err)
	}
	if l := s.List("acme", "kb"); l[0].Docs[0].Version <= good.Ver {
		t.Fatalf("a local write got version %d, not after %d", l[0].Docs[0].Version, good.Ver)
	}
}

func FuzzStoreMerge(f *testing.F) {
	r := record{Space: "acme", KB: "kb", Doc: "a.md", Ver: 1, Text: "hi", Hash: hashOf("hi")}
	b, _ := json.Marshal(change{Doc: &r})
	f.Add(b)
	m, _ := json.Marshal(change{Base: &manifest{Space: "acme", KB: "kb", Docs: []entry{{Doc: "a.md", Ver: 2}, {Doc: "mine.md", Ver: 1}}}})
	f.Add(m)
	d, _ := json.Marshal(change{Digest: []digest{{Space: "acme", KB: "kb", N: 1, D: "00"}, {Space: "other", KB: "x", N: 3, D: "ff"}}})
	f.Add(d)
	f.Add([]byte(`{"empty":{}}`))
	f.Add([]byte(`{"doc":{"s":"x","kb":"y","doc":"z","v":1,"del":true}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := Open(Config{KV: newMemKV()})
		s.Put("acme", "kb", []Doc{{Name: "mine.md", Text: "# t\n\nmine"}})
		s.SetPublisher(func(out []byte) {
			if len(out) > MaxMessage {
				t.Fatalf("published %d bytes", len(out))
			}
		})
		s.Merge(b)
		for _, info := range s.List("acme", "") {
			for _, d := range info.Docs {
				if !ValidDocName(d.Name) {
					t.Fatalf("stored a bad name %q", d.Name)
				}
			}
		}
		s.Search("acme", []string{"kb"}, Query{Text: "mine"})
	})
}

// The digest stays small whatever the documents: a count and a hash per
// base. Two nodes that each missed the other's writes converge through
// one exchange each way, with nothing else.
func TestStoreDigestConverges(t *testing.T) {
	c := newCluster(t, 2)
	var docs []Doc
	for i := range 300 {
		docs = append(docs, Doc{Name: "d" + itoa(i) + ".md", Text: "# T\n\ntext " + itoa(i)})
	}
	if err := c.stores[0].Put("acme", "big", docs); err != nil {
		t.Fatal(err)
	}
	c.stores[1].Put("acme", "small", []Doc{{Name: "only-on-1.md", Text: "hello"}})
	c.stores[1].Put("acme", "big", []Doc{{Name: "d7.md", Text: "node 1's newer d7"}})
	c.mu.Lock()
	c.queue = nil // every change lost
	c.mu.Unlock()
	if n := len(c.stores[0].State()); n > 200 {
		t.Fatalf("a digest of one base of 300 documents takes %d bytes", n)
	}
	for round := 0; round < 10; round++ {
		c.stores[1].Merge(c.stores[0].State())
		c.deliver(t, nil)
		c.stores[0].Merge(c.stores[1].State())
		c.deliver(t, nil)
	}
	if a, b := string(c.stores[0].State()), string(c.stores[1].State()); a != b {
		t.Fatalf("the digests differ after the exchange:\n%s\n%s", a, b)
	}
	for i, s := range c.stores {
		f, _, _ := s.Search("acme", []string{"big"}, Query{Text: "node 1's newer d7"})
		if len(f) == 0 || f[0].Doc != "d7.md" || f[0].Text != "node 1's newer d7" {
			t.Fatalf("node %d: the newer d7 did not win: %+v", i, f)
		}
		if l := s.List("acme", ""); len(l) != 2 || len(l[0].Docs) != 300 || len(l[1].Docs) != 1 {
			t.Fatalf("node %d holds %+v", i, l)
		}
	}
}

// The limits on a base's documents and bytes hold for writes here and
// from other nodes alike; a replacement counts once.
func TestStoreLimits(t *testing.T) {
	s := openStore(t, newMemKV())
	var docs []Doc
	for i := range MaxDocs {
		docs = append(docs, Doc{Name: "d" + itoa(i), Text: "x"})
	}
	if err := s.Put("t", "kb", docs); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("t", "kb", []Doc{{Name: "d0", Text: "replaced"}}); err != nil {
		t.Fatalf("a replacement at the limit: %v", err)
	}
	if err := s.Put("t", "kb", []Doc{{Name: "one-more", Text: "x"}}); moltbot.ErrorCode(err) != moltbot.ETooLarge {
		t.Fatalf("one document over %d: %v", MaxDocs, err)
	}
	r := record{Space: "t", KB: "kb", Doc: "from-a-peer", Ver: time.Now().UnixNano(), Text: "x", Hash: hashOf("x")}
	b, _ := json.Marshal(change{Doc: &r})
	if n, err := s.Merge(b); n != 0 || !errors.Is(err, errRefused) {
		t.Fatalf("a peer's document over the limit: %d %v", n, err)
	}
	big := strings.Repeat("长", MaxDocBytes/3-1)
	var bigs []Doc
	for i := 0; len(bigs)*len(big) <= MaxBaseBytes; i++ {
		bigs = append(bigs, Doc{Name: "big" + itoa(i), Text: big})
	}
	if err := s.Put("t", "bytes", bigs); moltbot.ErrorCode(err) != moltbot.ETooLarge || !strings.Contains(err.Error(), "bytes of text") {
		t.Fatalf("a base over %d bytes: %v", MaxBaseBytes, err)
	}
}

// Started, the store indexes a changed base in the background: a turn
// need not build it.
func TestStoreIndexesInTheBackground(t *testing.T) {
	s := openStore(t, newMemKV())
	s.Start()
	defer s.Close()
	r := record{Space: "acme", KB: "kb", Doc: "a.md", Ver: time.Now().UnixNano(), Text: "# Refunds\n\nfive days", Hash: hashOf("# Refunds\n\nfive days")}
	b, _ := json.Marshal(change{Doc: &r})
	if n, err := s.Merge(b); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	waitFor(t, "the base indexed", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		bb := s.bases["acme/kb"]
		return bb != nil && bb.built != nil && len(bb.built.Parts) == 1
	})
}

// Open takes what the KV holds, whatever it is: a record that does not
// decode, check or sit under its own key is skipped, never served.
func FuzzOpen(f *testing.F) {
	good := record{Space: "acme", KB: "kb", Doc: "a.md", Ver: 1, Text: "hi", Hash: hashOf("hi")}
	b, _ := json.Marshal(&good)
	f.Add("acme/kb/a.md", b)
	f.Add("acme/kb/b.md", b)
	f.Add(vecModelKey, []byte("fake/m"))
	f.Add("acme/kb/a.md", []byte(`{"s":"acme","kb":"kb","doc":"a.md","v":1,"del":true}`))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		kv := newMemKV()
		kv.Put(key, val)
		s, err := Open(Config{KV: kv})
		if err != nil {
			t.Fatal(err)
		}
		for k, b := range s.bases {
			for name, r := range b.docs {
				if r.key() != key || k != r.Space+"/"+r.KB || name != r.Doc || r.check(time.Now()) != nil {
					t.Fatalf("kept %q under %q from key %q", name, k, key)
				}
			}
		}
		s.Search("acme", []string{"kb"}, Query{Text: "hi"})
	})
}

// DeleteSpaces (auth's sweep of deleted tenants): every document of a dead
// space goes, as published deletions; the others' stay; dead is asked once
// a space.
func TestStoreDeleteSpaces(t *testing.T) {
	kv := newMemKV()
	s := openStore(t, kv)
	var published int
	s.SetPublisher(func([]byte) { published++ })
	docs := exampleDocs(t)
	for _, sp := range []string{"acme:x1", "beta:y1"} {
		for _, base := range []string{"support", "faq"} {
			if err := s.Put(sp, base, docs); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := published
	asked := map[string]int{}
	n, err := s.DeleteSpaces(func(sp string) bool { asked[sp]++; return sp == "acme:x1" })
	if err != nil || n != 2*len(docs) || asked["acme:x1"] != 1 || asked["beta:y1"] != 1 || published == before {
		t.Fatalf("deleted %d (want %d), %v, asked %v, published %d", n, 2*len(docs), err, asked, published-before)
	}
	if got := s.List("acme:x1", ""); len(got) != 0 {
		t.Errorf("the dead tenant's bases are still listed: %+v", got)
	}
	if got := s.List("beta:y1", ""); len(got) != 2 {
		t.Errorf("the live tenant lost its bases: %+v", got)
	}
	// A reopened store agrees (the deletions were stored).
	if got := openStore(t, kv).List("acme:x1", ""); len(got) != 0 {
		t.Errorf("after a reopen: %+v", got)
	}
}
