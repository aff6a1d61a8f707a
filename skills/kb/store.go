package kb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// KV is the records of the knowledge base's namespace (storage.KB): the
// method set of storage.KV, declared here so that kb need not import
// storage.
type KV interface {
	Get(key string) (val []byte, found bool, err error)
	Put(key string, val []byte) error
	Delete(key string) error
	Scan(fn func(key string, val []byte) bool) error
}

// Limits on what a store takes, from the API and from other nodes alike.
const (
	// MaxDocBytes bounds a document: one document is one cluster change,
	// which must stay well under 1 MB. A bigger one is refused (split it).
	MaxDocBytes = 512 << 10
	// MaxDocs bounds the documents of one knowledge base.
	MaxDocs = 2000
	// MaxDocName bounds a document's name, in bytes.
	MaxDocName = 200
	// MaxBases bounds the knowledge bases of a space.
	MaxBases = 64
	// MaxBaseBytes bounds the text of one knowledge base, MaxSpaceBytes
	// that of a tenant's: every node holds the text in memory (with its
	// chunks and index, about three times as much), on a 512 MB device.
	MaxBaseBytes  = 16 << 20
	MaxSpaceBytes = 32 << 20
	// MaxClockSkew bounds a version from another node: one further in the
	// future than this is refused (it would beat every later change).
	MaxClockSkew = 5 * time.Minute
)

// NameRule describes ValidName, for error messages.
const NameRule = moltbot.TenantIDRule

// ValidName reports whether s may name a knowledge base: what a tenant id
// may be (letters, digits, '-', '_', '.').
func ValidName(s string) bool { return moltbot.ValidTenantID(s) }

// ValidDocName reports whether s may name a document: 1-200 bytes of
// UTF-8 without control characters, not starting with '/', without ".."
// segments (a relative path as `moltbot kb add DIR` sends it).
func ValidDocName(s string) bool {
	if s == "" || len(s) > MaxDocName || !utf8.ValidString(s) || s[0] == '/' {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return false
		}
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// record is a stored document, and the wire form of a cluster change.
// A deleted document stays as a tombstone (no text), so that a node that
// missed the deletion does not bring it back.
type record struct {
	Space string `json:"s"`
	KB    string `json:"kb"`
	Doc   string `json:"doc"`
	// Ver orders the writes of a document (last writer wins): a hybrid
	// clock, unix nanoseconds, ahead of every version seen.
	Ver int64 `json:"v"`
	// Hash is the text's SHA-256 (hex); empty for a tombstone.
	Hash    string `json:"h,omitempty"`
	Deleted bool   `json:"del,omitempty"`
	Text    string `json:"t,omitempty"`
}

func (r *record) key() string { return r.Space + "/" + r.KB + "/" + r.Doc }

func hashOf(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:])
}

// newer reports whether r should replace old (nil: none).
func (r *record) newer(old *record) bool {
	if old == nil {
		return true
	}
	if r.Ver != old.Ver {
		return r.Ver > old.Ver
	}
	return r.Hash > old.Hash || (r.Hash == old.Hash && r.Deleted && !old.Deleted)
}

// check validates a record from outside (another node, a stored value).
func (r *record) check(now time.Time) error {
	switch {
	case r.Space == "" || len(r.Space) > 200 || strings.ContainsAny(r.Space, "/\x00"):
		return fmt.Errorf("kb: bad space %q", r.Space)
	case !ValidName(r.KB):
		return fmt.Errorf("kb: bad knowledge base name %q", r.KB)
	case !ValidDocName(r.Doc):
		return fmt.Errorf("kb: bad document name %q", r.Doc)
	case r.Ver <= 0 || r.Ver > now.Add(MaxClockSkew).UnixNano():
		return fmt.Errorf("kb: document %s: version %d is from the future or not set", r.Doc, r.Ver)
	case r.Deleted && (r.Text != "" || r.Hash != ""):
		return fmt.Errorf("kb: document %s: a deletion with text", r.Doc)
	case !r.Deleted && (len(r.Text) > MaxDocBytes || !utf8.ValidString(r.Text)):
		return fmt.Errorf("kb: document %s: text over %d bytes or not UTF-8", r.Doc, MaxDocBytes)
	case !r.Deleted && r.Hash != hashOf(r.Text):
		return fmt.Errorf("kb: document %s: the hash does not match the text", r.Doc)
	}
	return nil
}

// base is one knowledge base of a space: its documents and, once built,
// its index.
type base struct {
	docs  map[string]*record // by document name, tombstones included
	built *Base              // nil: to be built (a document changed)
}

// Store holds every space's knowledge bases: documents in the KV (one
// record each, the text with it), indexes in memory, built from the
// documents when a node starts (so a new ChunkerVersion reindexes) and
// again when a document of the base changes. In a cluster every node
// holds every document (State and Merge, through the publisher). Safe for
// concurrent use.
type Store struct {
	kv       KV
	maxRunes int
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	bases   map[string]*base // by space + "/" + kb
	live    int              // documents not deleted, of every base (Empty)
	lastVer int64
	publish func([]byte)

	buildMu sync.Mutex // one index build at a time

	// The embedder (embed.go): nil embed, none.
	embed     moltbot.EmbedFunc
	vecModel  string // the model the last vectors came from (s.mu)
	wake      chan struct{}
	stopEmbed context.CancelFunc
	embedDone chan struct{}
	// runMu guards started (Start was called), closed (Close was) and the
	// indexer's stopEmbed and embedDone.
	runMu   sync.Mutex
	started bool
	closed  bool
}

// Config configures a Store.
type Config struct {
	KV KV
	// MaxChunkRunes is the chunk size (0: DefaultChunkRunes).
	MaxChunkRunes int
	Logger        *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Embed, when set, embeds chunks (the node's embedding chain): the
	// store's bases get vectors in the background (Start), and searches
	// with a query vector fuse them with BM25.
	Embed moltbot.EmbedFunc
}

// Open reads the stored documents. A record that does not decode or
// check is skipped and logged, not fatal: the others serve.
func Open(cfg Config) (*Store, error) {
	s := &Store{kv: cfg.KV, maxRunes: cfg.MaxChunkRunes, log: cfg.Logger, now: cfg.Now, bases: map[string]*base{}, embed: cfg.Embed}
	s.wake = make(chan struct{}, 1)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	bad := 0
	err := s.kv.Scan(func(key string, val []byte) bool {
		if strings.HasPrefix(key, vecPrefix) {
			return true // a chunk's vector (embed.go)
		}
		var r record
		if json.Unmarshal(val, &r) != nil || r.check(s.now()) != nil || r.key() != key {
			bad++
			return true
		}
		s.put(&r)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("kb: reading the documents: %w", err)
	}
	if bad > 0 {
		s.log.Warn("knowledge-base records that do not decode were skipped", "records", bad)
	}
	if s.embed != nil {
		if m, ok, _ := s.kv.Get(vecModelKey); ok {
			s.vecModel = string(m)
		}
	}
	return s, nil
}

// SetPublisher sets where the store's changes go (the cluster's
// publisher, Node.sharePart's); nil: nowhere (a node alone).
func (s *Store) SetPublisher(fn func([]byte)) {
	s.mu.Lock()
	s.publish = fn
	s.mu.Unlock()
}

// put keeps r in memory (s.mu held, or before the store is shared).
func (s *Store) put(r *record) {
	bk := r.Space + "/" + r.KB
	b := s.bases[bk]
	if b == nil {
		b = &base{docs: map[string]*record{}}
		s.bases[bk] = b
	}
	mem := *r
	if old := b.docs[r.Doc]; old != nil && !old.Deleted {
		s.live--
	}
	if !r.Deleted {
		s.live++
	}
	b.docs[r.Doc] = &mem
	b.built = nil
	s.poke()
	if r.Ver > s.lastVer {
		s.lastVer = r.Ver
	}
}

// nextVer is a version newer than every one written or seen (s.mu held).
func (s *Store) nextVer() int64 {
	v := s.now().UnixNano()
	if v <= s.lastVer {
		v = s.lastVer + 1
	}
	s.lastVer = v
	return v
}

// Put stores docs in knowledge base kb of space (a document of the same
// name is replaced) and indexes the base again. Every document is checked
// before any is stored.
func (s *Store) Put(space, kb string, docs []Doc) error {
	if !ValidName(kb) {
		return moltbot.Errorf(moltbot.EInvalid, "knowledge base name %q: %s", kb, NameRule)
	}
	for _, d := range docs {
		switch {
		case !ValidDocName(d.Name):
			return moltbot.Errorf(moltbot.EInvalid, "document name %q: 1-%d bytes of text, a relative path without '..'", d.Name, MaxDocName)
		case len(d.Text) > MaxDocBytes:
			return moltbot.Errorf(moltbot.ETooLarge, "document %q has %d bytes; a document is bounded by %d bytes (one cluster change): split it", d.Name, len(d.Text), MaxDocBytes)
		case !utf8.ValidString(d.Text):
			return moltbot.Errorf(moltbot.EInvalid, "document %q is not UTF-8 text", d.Name)
		}
	}
	s.mu.Lock()
	bk := space + "/" + kb
	b := s.bases[bk]
	n, size := live(b), 0
	for _, d := range docs {
		if old := docOf(b, d.Name); old != nil && !old.Deleted {
			size -= len(old.Text)
		} else {
			n++
		}
		size += len(d.Text)
	}
	if err := s.fits(space, kb, b, n, size); err != nil {
		s.mu.Unlock()
		return err
	}
	var out [][]byte
	for _, d := range docs {
		r := &record{Space: space, KB: kb, Doc: d.Name, Ver: s.nextVer(), Hash: hashOf(d.Text), Text: d.Text}
		b, err := s.store(r)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		out = append(out, b)
	}
	pub := s.publish
	s.mu.Unlock()
	s.send(pub, out)
	_, err := s.index(space, kb)
	return err
}

// docOf is b's document name, or nil.
func docOf(b *base, name string) *record {
	if b == nil {
		return nil
	}
	return b.docs[name]
}

// fits checks the limits for base kb of space (b, nil when new) holding n
// documents and size bytes more of text (s.mu held).
func (s *Store) fits(space, kb string, b *base, n, size int) error {
	if live(b) == 0 && s.spaceBases(space) >= MaxBases {
		return moltbot.Errorf(moltbot.ETooLarge, "a tenant has at most %d knowledge bases", MaxBases)
	}
	if n > MaxDocs {
		return moltbot.Errorf(moltbot.ETooLarge, "knowledge base %q would hold %d documents; at most %d", kb, n, MaxDocs)
	}
	if base := liveBytes(b) + size; base > MaxBaseBytes {
		return moltbot.Errorf(moltbot.ETooLarge, "knowledge base %q would hold %d bytes of text; at most %d", kb, base, MaxBaseBytes)
	}
	total := size
	for k, o := range s.bases {
		if sp, _ := splitKey(k); sp == space {
			total += liveBytes(o)
		}
	}
	if total > MaxSpaceBytes {
		return moltbot.Errorf(moltbot.ETooLarge, "the tenant's knowledge bases would hold %d bytes of text; at most %d", total, MaxSpaceBytes)
	}
	return nil
}

// liveBytes is the text of b's documents that are not deleted.
func liveBytes(b *base) int {
	if b == nil {
		return 0
	}
	n := 0
	for _, r := range b.docs {
		n += len(r.Text)
	}
	return n
}

// live counts b's documents that are not deleted.
func live(b *base) int {
	if b == nil {
		return 0
	}
	n := 0
	for _, r := range b.docs {
		if !r.Deleted {
			n++
		}
	}
	return n
}

// spaceBases counts space's knowledge bases (s.mu held).
func (s *Store) spaceBases(space string) int {
	n := 0
	for k, b := range s.bases {
		if strings.HasPrefix(k, space+"/") && live(b) > 0 {
			n++
		}
	}
	return n
}

// store writes r and keeps it (s.mu held); it returns r's wire form.
func (s *Store) store(r *record) ([]byte, error) {
	b, err := json.Marshal(change{Doc: r})
	if err != nil {
		return nil, err
	}
	val, _ := json.Marshal(r)
	if err := s.kv.Put(r.key(), val); err != nil {
		return nil, fmt.Errorf("kb: storing %s: %w", r.Doc, err)
	}
	s.put(r)
	return b, nil
}

func (s *Store) send(pub func([]byte), msgs [][]byte) {
	if pub == nil {
		return
	}
	for _, m := range msgs {
		pub(m)
	}
}

// Delete removes document doc from kb of space, or every document of kb
// when doc is "". It reports how many it removed; none is ENotFound.
func (s *Store) Delete(space, kb, doc string) (int, error) {
	s.mu.Lock()
	b := s.bases[space+"/"+kb]
	var names []string
	if b != nil {
		for name, r := range b.docs {
			if !r.Deleted && (doc == "" || name == doc) {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		s.mu.Unlock()
		if doc == "" {
			return 0, moltbot.Errorf(moltbot.ENotFound, "knowledge base %q has no documents", kb)
		}
		return 0, moltbot.Errorf(moltbot.ENotFound, "knowledge base %q has no document %q", kb, doc)
	}
	sort.Strings(names)
	var out [][]byte
	for _, name := range names {
		m, err := s.store(&record{Space: space, KB: kb, Doc: name, Ver: s.nextVer(), Deleted: true})
		if err != nil {
			s.mu.Unlock()
			return 0, err
		}
		out = append(out, m)
	}
	pub := s.publish
	s.mu.Unlock()
	s.send(pub, out)
	return len(names), nil
}

// DocInfo describes a stored document.
type DocInfo struct {
	Name    string `json:"name"`
	Bytes   int    `json:"bytes"`
	Hash    string `json:"sha256"`
	Version int64  `json:"version"`
}

// BaseInfo describes a knowledge base.
type BaseInfo struct {
	Name   string    `json:"name"`
	Docs   []DocInfo `json:"documents"`
	Chunks int       `json:"chunks"`
	Bytes  int       `json:"bytes"`
	// Vectors counts the chunks with an embedding, from EmbeddingModel
	// (none without an embedding chain, or until the embedder got there).
	Vectors        int    `json:"vectors"`
	EmbeddingModel string `json:"embedding_model,omitempty"`
	// Chunker is the ChunkerVersion the index was built with (always
	// this build's: indexes are built from the documents at start).
	Chunker int `json:"chunker_version"`
}

// List describes space's knowledge bases (kb "": all of them), sorted by
// name; a base whose documents were all deleted is not listed.
func (s *Store) List(space, kb string) []BaseInfo {
	var names []string
	s.mu.Lock()
	for k, b := range s.bases {
		sp, name, _ := strings.Cut(k, "/")
		if sp == space && (kb == "" || name == kb) && live(b) > 0 {
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	sort.Strings(names)
	out := make([]BaseInfo, 0, len(names))
	for _, name := range names {
		built, _ := s.index(space, name)
		info := BaseInfo{Name: name, Chunker: ChunkerVersion}
		if built != nil {
			info.Chunks = len(built.Parts)
		}
		s.mu.Lock()
		if b := s.bases[space+"/"+name]; b != nil && b.built != nil && b.built.vec != nil {
			info.EmbeddingModel = b.built.Model
			for _, h := range b.built.vec.has {
				if h {
					info.Vectors++
				}
			}
		}
		s.mu.Unlock()
		s.mu.Lock()
		if b := s.bases[space+"/"+name]; b != nil {
			for _, r := range b.docs {
				if !r.Deleted {
					info.Docs = append(info.Docs, DocInfo{Name: r.Doc, Bytes: len(r.Text), Hash: r.Hash, Version: r.Ver})
					info.Bytes += len(r.Text)
				}
			}
		}
		s.mu.Unlock()
		sort.Slice(info.Docs, func(i, j int) bool { return info.Docs[i].Name < info.Docs[j].Name })
		out = append(out, info)
	}
	return out
}

// index returns kb's index, building it when a document changed since
// the last build (nil, nil: no such base, or no documents).
func (s *Store) index(space, kb string) (*Base, error) {
	bk := space + "/" + kb
	s.mu.Lock()
	b := s.bases[bk]
	if b == nil {
		s.mu.Unlock()
		return nil, nil
	}
	if b.built != nil {
		built := b.built
		s.mu.Unlock()
		return built, nil
	}
	s.mu.Unlock()
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	if b = s.bases[bk]; b == nil || b.built != nil {
		var built *Base
		if b != nil {
			built = b.built
		}
		s.mu.Unlock()
		return built, nil
	}
	docs := make([]Doc, 0, len(b.docs))
	for _, r := range b.docs {
		if !r.Deleted {
			docs = append(docs, Doc{Name: r.Doc, Text: r.Text})
		}
	}
	s.mu.Unlock()
	sort.Slice(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	built := NewBase(docs, s.maxRunes)
	s.mu.Lock()
	// A change while building left built nil again: this build is of the
	// older documents, kept for this search; the next builds anew.
	if cur := s.bases[bk]; cur == b && b.built == nil && s.unchanged(b, docs) {
		b.built = built
	}
	s.mu.Unlock()
	s.poke() // the new index has no vectors yet
	return built, nil
}

// unchanged reports whether b holds exactly docs (s.mu held).
func (s *Store) unchanged(b *base, docs []Doc) bool {
	if live(b) != len(docs) {
		return false
	}
	for _, d := range docs {
		r := b.docs[d.Name]
		if r == nil || r.Deleted || r.Text != d.Text {
			return false
		}
	}
	return true
}

// Search searches knowledge bases kbs of space: each one's ranking is
// fused by reciprocal rank (scores of different bases do not compare),
// and the answer's Coverage is the best base's. A base that does not
// exist is skipped.
func (s *Store) Search(space string, kbs []string, q Query) ([]Found, Answer, error) {
	k := q.K
	if k <= 0 {
		k = 4
	}
	var all Answer
	type ranked struct {
		kb string
		a  Answer
	}
	var rs []ranked
	for _, name := range kbs {
		b, err := s.index(space, name)
		if err != nil {
			return nil, Answer{}, err
		}
		if b == nil {
			continue
		}
		a := b.Search(q)
		if len(b.Parts) > 0 {
			all.Bases++
		}
		all.Coverage = max(all.Coverage, a.Coverage)
		all.Cosine = max(all.Cosine, a.Cosine)
		rs = append(rs, ranked{name, a})
	}
	if len(rs) == 1 {
		found := make([]Found, len(rs[0].a.Results))
		for i, r := range rs[0].a.Results {
			found[i] = Found{KB: rs[0].kb, Result: r}
		}
		all.Results = rs[0].a.Results
		return found, all, nil
	}
	// Several bases: fuse their rankings by rank.
	type key struct{ base, i int }
	sum := map[key]float64{}
	for bi, r := range rs {
		for i := range r.a.Results {
			sum[key{bi, i}] += 1 / float64(RRFK+i+1)
		}
	}
	keys := make([]key, 0, len(sum))
	for kk := range sum {
		keys = append(keys, kk)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if sum[a] != sum[b] {
			return sum[a] > sum[b]
		}
		if rs[a.base].a.Results[a.i].Score != rs[b.base].a.Results[b.i].Score {
			return rs[a.base].a.Results[a.i].Score > rs[b.base].a.Results[b.i].Score
		}
		return a.base < b.base
	})
	var found []Found
	for i, kk := range keys {
		if i == k {
			break
		}
		r := rs[kk.base].a.Results[kk.i]
		r.Rank = i + 1
		found = append(found, Found{KB: rs[kk.base].kb, Result: r})
		all.Results = append(all.Results, r)
	}
	return found, all, nil
}

// Found is a search's result with the knowledge base it came from.
type Found struct {
	KB string
	Result
}

// VectorModel is the embedding model of the store's vectors ("": none
// yet): a query vector helps only when this model made it.
func (s *Store) VectorModel() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vecModel
}

// DeleteSpaces deletes every document of the spaces dead reports true
// (auth's sweep of deleted tenants' data: dead is asked once a space), on
// every member (the deletions are published as any others), and reports
// how many documents went.
func (s *Store) DeleteSpaces(dead func(space string) bool) (int, error) {
	type pair struct{ space, kb string }
	verdict := map[string]bool{}
	var gone []pair
	s.mu.Lock()
	for k, b := range s.bases {
		sp, name, _ := strings.Cut(k, "/")
		if live(b) == 0 {
			continue
		}
		d, seen := verdict[sp]
		if !seen {
			d = dead(sp)
			verdict[sp] = d
		}
		if d {
			gone = append(gone, pair{sp, name})
		}
	}
	s.mu.Unlock()
	n := 0
	for _, g := range gone {
		k, err := s.Delete(g.space, g.kb, "")
		n += k
		if err != nil && moltbot.ErrorCode(err) != moltbot.ENotFound {
			return n, err
		}
	}
	return n, nil
}
