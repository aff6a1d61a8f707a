package actors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// SharedMux is a SharedState made of parts: auth's records (the base,
// which travels untagged, as the first releases sent it), and the parts
// later features add (a knowledge base's documents, the hand-off queue),
// each under a tag byte of its own. A part's change goes out as its tag
// followed by its bytes; the full exchange sends every part in one frame.
//
//	change:  tag, bytes                      (tag 0x01..0x1f)
//	full:    0x00, then per part: tag, uvarint length, bytes
//
// JSON never starts with a byte below 0x20 but for whitespace (0x09,
// 0x0a, 0x0d, 0x20), so a tag is never mistaken for auth's records: tags
// 0x09, 0x0a and 0x0d are refused. A node of a release before the parts
// refuses a full frame (it logs the merge error) and takes every auth
// change as before: during a rolling upgrade the periodic repair of auth
// waits for the upgrade.
type SharedMux struct {
	base  SharedState
	mu    sync.RWMutex
	parts map[byte]SharedState
	tags  []byte // in the order added
}

// NewSharedMux returns a mux whose untagged part is base (nil: none).
func NewSharedMux(base SharedState) *SharedMux {
	return &SharedMux{base: base, parts: map[byte]SharedState{}}
}

// Add adds st under tag and returns the publisher st's changes must go
// through: it tags them and hands them to publish (the link's
// PublishShared; nil publish: the returned func drops them, a node alone).
func (m *SharedMux) Add(tag byte, st SharedState, publish func([]byte)) (func([]byte), error) {
	if tag == 0 || tag >= 0x20 || tag == '\t' || tag == '\n' || tag == '\r' {
		return nil, fmt.Errorf("shared state: tag %#x is not one of 0x01..0x1f but for 0x09, 0x0a, 0x0d", tag)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.parts[tag]; dup {
		return nil, fmt.Errorf("shared state: tag %#x added twice", tag)
	}
	m.parts[tag] = st
	m.tags = append(m.tags, tag)
	return func(b []byte) {
		if publish == nil {
			return
		}
		out := make([]byte, 0, len(b)+1)
		publish(append(append(out, tag), b...))
	}, nil
}

// State is every part's state in one full frame; with no parts, the base's
// alone, untagged (what a node of the first releases expects).
func (m *SharedMux) State() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.tags) == 0 {
		if m.base == nil {
			return nil
		}
		return m.base.State()
	}
	out := []byte{0}
	frame := func(tag byte, b []byte) {
		out = append(out, tag)
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	if m.base != nil {
		frame(0, m.base.State())
	}
	for _, t := range m.tags {
		frame(t, m.parts[t].State())
	}
	return out
}

// Merge applies a change or a full frame; it counts what the parts
// applied and returns the first error (the other parts are merged all
// the same).
func (m *SharedMux) Merge(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if b[0] != 0 {
		if b[0] < 0x20 && b[0] != '\t' && b[0] != '\n' && b[0] != '\r' {
			return m.mergePart(b[0], b[1:])
		}
		return m.mergePart(0, b)
	}
	n, rest := 0, b[1:]
	var first error
	for len(rest) > 0 {
		tag := rest[0]
		l, k := binary.Uvarint(rest[1:])
		if k <= 0 || l > uint64(len(rest)-1-k) {
			return n, errors.Join(first, errors.New("shared state: a full frame's part is cut short"))
		}
		body := rest[1+k : 1+k+int(l)]
		rest = rest[1+k+int(l):]
		a, err := m.mergePart(tag, body)
		n += a
		if err != nil && first == nil {
			first = err
		}
	}
	return n, first
}

func (m *SharedMux) mergePart(tag byte, b []byte) (int, error) {
	if tag == 0 {
		if m.base == nil {
			return 0, nil
		}
		return m.base.Merge(b)
	}
	m.mu.RLock()
	st := m.parts[tag]
	m.mu.RUnlock()
	if st == nil {
		// A part this node does not run (a newer release's): not an error
		// worth a warning on every exchange.
		return 0, nil
	}
	return st.Merge(b)
}
