package kb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// The cluster's copy of the documents. Every node holds every document;
// the store is a part of the node's shared state (actors.SharedMux, tag
// 0x01), with three messages, all JSON:
//
//   - a change, {"doc": record}: one document written or deleted (a
//     tombstone), sent to every member when it happens. A document is at
//     most MaxDocBytes, so a change stays well under 1 MB.
//   - a digest, {"digest": [{s, kb, n, d}]} (State): per knowledge base,
//     its documents' count and a hash of their names, versions and
//     hashes: about 100 bytes a base, whatever its size, sent every 30 s
//     to one random member and to each that joins.
//   - a base's manifest, {"base": {s, kb, docs: [entry]}}: every document
//     of one base (name, version, hash; no text), published by a node
//     whose digest of that base differs from a digest it received (or
//     that lacks the base). Whoever receives it publishes, as changes,
//     the documents of that base its sender lacks or holds older (at most
//     64 a time; the rest at the next round), and, when it lacks some of
//     the sender's itself, its own manifest, so that the sender sends
//     them.
//
// So a node that missed changes (it was down, a message was lost) tells
// the others which bases differ, they tell it what they hold, and each
// side sends what the other lacks: the exchange converges both ways.
// Last writer wins by version (a hybrid clock: unix nanoseconds, kept
// ahead of every version seen); equal versions keep the greater hash. A
// version beyond now + MaxClockSkew is refused. Tombstones stay, as in
// auth's records: a node that missed a deletion would bring the document
// back. A tenant deleted and made again has a new space (its
// incarnation), so the old tenant's documents are never the new one's.

// change is the wire form of every message.
type change struct {
	Doc    *record   `json:"doc,omitempty"`
	Digest []digest  `json:"digest,omitempty"`
	Base   *manifest `json:"base,omitempty"`
	Empty  *struct{} `json:"empty,omitempty"` // a digest of no base
}

// digest sums up one base of a space.
type digest struct {
	Space string `json:"s"`
	KB    string `json:"kb"`
	N     int    `json:"n"`
	D     string `json:"d"`
}

// manifest is every document of one base.
type manifest struct {
	Space string  `json:"s"`
	KB    string  `json:"kb"`
	Docs  []entry `json:"docs"`
}

// entry is a document in a manifest.
type entry struct {
	Doc  string `json:"doc"`
	Ver  int64  `json:"v"`
	Hash string `json:"h,omitempty"`
	Del  bool   `json:"del,omitempty"`
}

// Bounds on what Merge takes.
const (
	// MaxMessage bounds a message from another node.
	MaxMessage = MaxDocBytes*2 + 64<<10
	// maxPush bounds the documents one manifest makes this node publish:
	// the rest go at the next exchange.
	maxPush = 64
	// maxAsk bounds the manifests one digest makes this node publish.
	maxAsk = 16
)

// digestOf sums up b (s.mu held).
func digestOf(space, kb string, b *base) digest {
	names := make([]string, 0, len(b.docs))
	for n := range b.docs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		r := b.docs[n]
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatInt(r.Ver, 36)))
		h.Write([]byte{0})
		h.Write([]byte(r.Hash))
		if r.Deleted {
			h.Write([]byte{1})
		}
		h.Write([]byte{0})
	}
	return digest{Space: space, KB: kb, N: len(names), D: hex.EncodeToString(h.Sum(nil)[:12])}
}

// manifestOf lists b's documents (s.mu held).
func manifestOf(space, kb string, b *base) *manifest {
	m := &manifest{Space: space, KB: kb, Docs: []entry{}}
	if b != nil {
		for _, r := range b.docs {
			m.Docs = append(m.Docs, entry{Doc: r.Doc, Ver: r.Ver, Hash: r.Hash, Del: r.Deleted})
		}
	}
	sort.Slice(m.Docs, func(i, j int) bool { return m.Docs[i].Doc < m.Docs[j].Doc })
	return m
}

// State is the digest: per base, a count and a hash of its documents.
// With no base it is {"empty":{}}, so that its receiver still answers
// with what it holds (a node that joins with nothing gets everything).
func (s *Store) State() []byte {
	s.mu.Lock()
	d := make([]digest, 0, len(s.bases))
	for k, b := range s.bases {
		space, kb := splitKey(k)
		d = append(d, digestOf(space, kb, b))
	}
	s.mu.Unlock()
	if len(d) == 0 {
		return []byte(`{"empty":{}}`)
	}
	sort.Slice(d, func(i, j int) bool {
		if d[i].Space != d[j].Space {
			return d[i].Space < d[j].Space
		}
		return d[i].KB < d[j].KB
	})
	b, _ := json.Marshal(change{Digest: d})
	return b
}

// splitKey splits a base's key, space "/" kb.
func splitKey(k string) (space, kb string) {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// errRefused marks what Merge refused.
var errRefused = errors.New("kb: merge refused records")

// Merge applies a message from another node: a change is stored when it
// is newer than what this node holds; a digest makes this node publish
// the manifests of the bases that differ; a manifest makes it publish
// what the sender lacks. It reports the documents stored.
func (s *Store) Merge(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > MaxMessage {
		return 0, fmt.Errorf("%w: a message of %d bytes, over %d", errRefused, len(b), MaxMessage)
	}
	var c change
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, fmt.Errorf("%w: %v", errRefused, err)
	}
	switch {
	case c.Doc != nil:
		return s.mergeDoc(c.Doc)
	case c.Base != nil:
		return 0, s.mergeManifest(c.Base)
	case c.Digest != nil || c.Empty != nil:
		s.mergeDigest(c.Digest)
		return 0, nil
	}
	return 0, fmt.Errorf("%w: a message of no known kind", errRefused)
}

func (s *Store) mergeDoc(r *record) (int, error) {
	if r.Deleted {
		r.Text = ""
	}
	if err := r.check(s.now()); err != nil {
		return 0, fmt.Errorf("%w: %v", errRefused, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var old *record
	b := s.bases[r.Space+"/"+r.KB]
	if b != nil {
		old = b.docs[r.Doc]
	}
	if !r.newer(old) {
		return 0, nil
	}
	if !r.Deleted {
		n, size := live(b), len(r.Text)
		if old == nil || old.Deleted {
			n++
		} else {
			size -= len(old.Text)
		}
		if err := s.fits(r.Space, r.KB, b, n, size); err != nil {
			return 0, fmt.Errorf("%w: %v", errRefused, err)
		}
	}
	val, _ := json.Marshal(r)
	if err := s.kv.Put(r.key(), val); err != nil {
		return 0, fmt.Errorf("kb: storing %s: %w", r.Doc, err)
	}
	s.put(r)
	return 1, nil
}

// mergeDigest publishes the manifest of every base whose digest differs
// from the sender's, or that the sender lacks (at most maxAsk).
func (s *Store) mergeDigest(ds []digest) {
	theirs := make(map[string]digest, len(ds))
	for _, d := range ds {
		theirs[d.Space+"/"+d.KB] = d
	}
	s.mu.Lock()
	pub := s.publish
	var out [][]byte
	add := func(m *manifest) {
		if len(out) < maxAsk {
			if b, err := json.Marshal(change{Base: m}); err == nil {
				out = append(out, b)
			}
		}
	}
	for k, b := range s.bases {
		space, kb := splitKey(k)
		if d, ok := theirs[k]; !ok || d != digestOf(space, kb, b) {
			add(manifestOf(space, kb, b))
		}
	}
	// The bases the sender has and this node has not: an empty manifest
	// asks for them.
	for k, d := range theirs {
		if _, ok := s.bases[k]; !ok && ValidName(d.KB) && d.Space != "" {
			add(manifestOf(d.Space, d.KB, nil))
		}
	}
	s.mu.Unlock()
	s.send(pub, out)
}

// mergeManifest publishes the documents of m's base that its sender
// lacks or holds older, and, when this node lacks some of the sender's
// (or holds them older), its own manifest of the base, which makes the
// sender send them.
func (s *Store) mergeManifest(m *manifest) error {
	if !ValidName(m.KB) || m.Space == "" {
		return fmt.Errorf("%w: a manifest of base %q", errRefused, m.KB)
	}
	theirs := make(map[string]entry, len(m.Docs))
	for _, e := range m.Docs {
		theirs[e.Doc] = e
	}
	future := s.now().Add(MaxClockSkew).UnixNano()
	s.mu.Lock()
	pub := s.publish
	var out [][]byte
	b := s.bases[m.Space+"/"+m.KB]
	// What this node lacks of the sender's: its own manifest then goes
	// out, and the sender (every node that holds more) sends it.
	for _, e := range m.Docs {
		var r *record
		if b != nil {
			r = b.docs[e.Doc]
		}
		if e.Ver <= future && ValidDocName(e.Doc) && (&record{Ver: e.Ver, Hash: e.Hash, Deleted: e.Del}).newer(r) {
			if msg, err := json.Marshal(change{Base: manifestOf(m.Space, m.KB, b)}); err == nil {
				out = append(out, msg)
			}
			break
		}
	}
	if b != nil {
		names := make([]string, 0, len(b.docs))
		for n := range b.docs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if len(out) == maxPush {
				break
			}
			r := b.docs[n]
			if e, ok := theirs[n]; ok && (e.Ver > future || !r.newer(&record{Ver: e.Ver, Hash: e.Hash, Deleted: e.Del})) {
				continue // theirs is as new (or from the future: refused, and never the reason to send)
			}
			if msg, err := json.Marshal(change{Doc: r}); err == nil {
				out = append(out, msg)
			}
		}
	}
	s.mu.Unlock()
	s.send(pub, out)
	return nil
}
