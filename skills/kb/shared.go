package kb

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// The cluster's copy of the documents. Every node holds every document;
// the store is a part of the node's shared state (actors.SharedMux, tag
// 0x01), with two messages, both JSON:
//
//   - a change, {"doc": record}: one document written or deleted (a
//     tombstone), sent to every member when it happens. A document is at
//     most MaxDocBytes, so a change stays well under 1 MB.
//   - a manifest, {"manifest": [entry...]} (State): every document's key,
//     version and hash, no text, sent every 30 s to one random member and
//     to each that joins. Its receiver publishes, as changes, what the
//     sender lacks or holds older, so the exchange converges both ways
//     (the receiver's own manifest goes out in its turn).
//
// Last writer wins by version (a hybrid clock: unix nanoseconds, kept
// ahead of every version seen); equal versions keep the greater hash. A
// version beyond now + MaxClockSkew is refused. Tombstones stay, as in
// auth's records: a node that missed a deletion would bring the document
// back. A tenant deleted and made again has a new space (its
// incarnation), so the old tenant's documents are never the new one's.

// change is the wire form of both messages.
type change struct {
	Doc      *record `json:"doc,omitempty"`
	Manifest []entry `json:"manifest,omitempty"`
}

// entry is a document in a manifest.
type entry struct {
	Space string `json:"s"`
	KB    string `json:"kb"`
	Doc   string `json:"doc"`
	Ver   int64  `json:"v"`
	Hash  string `json:"h,omitempty"`
	Del   bool   `json:"del,omitempty"`
}

// Bounds on what Merge takes.
const (
	// MaxMessage bounds a message from another node.
	MaxMessage = MaxDocBytes*2 + 64<<10
	// maxPush bounds the documents one manifest makes this node publish:
	// the rest go at the next exchange.
	maxPush = 64
)

// State is the manifest: every document's key, version and hash.
func (s *Store) State() []byte {
	s.mu.Lock()
	m := make([]entry, 0, 16)
	for _, b := range s.bases {
		for _, r := range b.docs {
			m = append(m, entry{Space: r.Space, KB: r.KB, Doc: r.Doc, Ver: r.Ver, Hash: r.Hash, Del: r.Deleted})
		}
	}
	s.mu.Unlock()
	// An empty manifest is "{}", not nothing: its receiver then sends
	// every document (a node that joins with none gets them all).
	sort.Slice(m, func(i, j int) bool { return m[i].key() < m[j].key() })
	b, _ := json.Marshal(change{Manifest: m})
	return b
}

func (e *entry) key() string { return e.Space + "/" + e.KB + "/" + e.Doc }

// errRefused counts the records Merge refused.
var errRefused = errors.New("kb: merge refused records")

// Merge applies a message from another node: a change is stored when it
// is newer than what this node holds; a manifest makes this node publish
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
	if c.Doc != nil {
		return s.mergeDoc(c.Doc)
	}
	s.mergeManifest(c.Manifest)
	return 0, nil
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
	if !r.Deleted && live(b)+1 > MaxDocs && (old == nil || old.Deleted) {
		return 0, fmt.Errorf("%w: knowledge base %s would hold more than %d documents", errRefused, r.KB, MaxDocs)
	}
	val, _ := json.Marshal(r)
	if err := s.kv.Put(r.key(), val); err != nil {
		return 0, fmt.Errorf("kb: storing %s: %w", r.Doc, err)
	}
	s.put(r)
	return 1, nil
}

// mergeManifest publishes what the sender of m lacks or holds older.
func (s *Store) mergeManifest(m []entry) {
	theirs := make(map[string]*entry, len(m))
	for i := range m {
		e := &m[i]
		if e.Ver > s.now().Add(MaxClockSkew).UnixNano() {
			continue // refused: a version from the future never wins here
		}
		theirs[e.key()] = e
	}
	s.mu.Lock()
	pub := s.publish
	var out [][]byte
	for _, b := range s.bases {
		for _, r := range b.docs {
			if len(out) == maxPush {
				break
			}
			e := theirs[r.key()]
			if e != nil && !r.newer(&record{Ver: e.Ver, Hash: e.Hash, Deleted: e.Del}) {
				continue
			}
			msg, err := json.Marshal(change{Doc: r})
			if err == nil {
				out = append(out, msg)
			}
		}
	}
	s.mu.Unlock()
	s.send(pub, out)
}
