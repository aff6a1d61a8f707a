package cache

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/moltbot/moltbot"
)

// Entry is a stored reply. It is never changed once made: tiers and
// readers share it.
type Entry struct {
	Content      string
	ToolCalls    []moltbot.ToolCall
	Served       moltbot.ModelRef
	Usage        moltbot.Usage
	FinishReason string
	// Pieces are the reply's chunks as they streamed, in order: a text
	// piece is its length in bytes (the next bytes of Content); a tool
	// call piece is toolPiece|i, Deltas[i]. Nil when the reply did not
	// stream (nobody saw its pieces): it replays as one text piece and one
	// piece per tool call.
	Pieces []uint32
	Deltas []moltbot.ToolCallDelta
	// Expires is when the entry stops being served (Unix milliseconds).
	Expires int64
}

// toolPiece marks a piece that is a tool call's.
const toolPiece = 1 << 31

// entryOverhead approximates what an entry costs in memory beyond its
// strings and slices: the Entry, its LRU node and the map's share
// (BenchmarkMemoryPerEntry measures the whole).
const entryOverhead = 320

// Size is what e counts against a memory tier's bound.
func (e *Entry) Size() int64 {
	n := entryOverhead + len(e.Content) + len(e.FinishReason) + len(e.Served.Provider) + len(e.Served.Model) + 4*len(e.Pieces)
	for i := range e.ToolCalls {
		c := &e.ToolCalls[i]
		n += int(unsafe.Sizeof(*c)) + len(c.ID) + len(c.Name) + len(c.Arguments)
	}
	for i := range e.Deltas {
		d := &e.Deltas[i]
		n += int(unsafe.Sizeof(*d)) + len(d.ID) + len(d.Name) + len(d.Arguments)
	}
	return int64(n)
}

// newEntry makes the entry of comp from the chunks that streamed it. The
// pieces are kept only when they add up to comp (a reply the router redid
// after a failure nobody saw streamed pieces of both attempts: it is kept
// whole).
func newEntry(comp *moltbot.Completion, chunks []moltbot.Chunk, expires int64) *Entry {
	e := &Entry{Content: comp.Content, Served: comp.Served, Usage: comp.Usage, FinishReason: comp.FinishReason, Expires: expires}
	if len(comp.ToolCalls) > 0 {
		e.ToolCalls = append([]moltbot.ToolCall(nil), comp.ToolCalls...)
	}
	if len(chunks) == 0 {
		return e
	}
	pieces := make([]uint32, 0, len(chunks))
	var deltas []moltbot.ToolCallDelta
	var calls []moltbot.ToolCall
	off := 0
	for i := range chunks {
		c := &chunks[i]
		if c.ToolCall != nil {
			pieces = append(pieces, toolPiece|uint32(len(deltas)))
			deltas = append(deltas, *c.ToolCall)
			calls = moltbot.AddDelta(calls, c.ToolCall)
			continue
		}
		if c.Content == "" {
			continue
		}
		n := len(c.Content)
		if off+n > len(comp.Content) || comp.Content[off:off+n] != c.Content {
			return e
		}
		pieces = append(pieces, uint32(n))
		off += n
	}
	if off != len(comp.Content) || !sameCalls(calls, comp.ToolCalls) {
		return e
	}
	e.Pieces, e.Deltas = pieces, deltas
	return e
}

func sameCalls(a, b []moltbot.ToolCall) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// replay streams e's pieces to fn, as from served.
func (e *Entry) replay(fn moltbot.StreamFunc) error {
	if e.Pieces == nil {
		if e.Content != "" {
			if err := fn(moltbot.Chunk{Content: e.Content, Served: e.Served}); err != nil {
				return err
			}
		}
		for i := range e.ToolCalls {
			c := &e.ToolCalls[i]
			if err := fn(moltbot.Chunk{ToolCall: &moltbot.ToolCallDelta{Index: i, ID: c.ID, Name: c.Name, Arguments: c.Arguments}, Served: e.Served}); err != nil {
				return err
			}
		}
		return nil
	}
	off := 0
	for _, p := range e.Pieces {
		if p&toolPiece != 0 {
			d := e.Deltas[p&^toolPiece] // a copy each: the receiver may keep it
			if err := fn(moltbot.Chunk{ToolCall: &d, Served: e.Served}); err != nil {
				return err
			}
			continue
		}
		if err := fn(moltbot.Chunk{Content: e.Content[off : off+int(p)], Served: e.Served}); err != nil {
			return err
		}
		off += int(p)
	}
	return nil
}

// completion is e as a turn's reply.
func (e *Entry) completion() *moltbot.Completion {
	c := &moltbot.Completion{Content: e.Content, Served: e.Served, Usage: e.Usage, FinishReason: e.FinishReason, Cache: moltbot.CacheHit}
	if len(e.ToolCalls) > 0 {
		c.ToolCalls = append([]moltbot.ToolCall(nil), e.ToolCalls...)
	}
	return c
}

// The stored form (pebble, redis): a version byte, then the fields in
// order, numbers as uvarints, strings length-prefixed.
const entryVersion = 1

// encode appends e's stored form to b.
func (e *Entry) encode(b []byte) []byte {
	w := enc{b: b}
	w.b = append(w.b, entryVersion)
	w.uint(uint64(e.Expires))
	w.str(e.Served.Provider)
	w.str(e.Served.Model)
	w.str(e.FinishReason)
	w.uint(uint64(e.Usage.PromptTokens))
	w.uint(uint64(e.Usage.CompletionTokens))
	w.str(e.Content)
	w.uint(uint64(len(e.ToolCalls)))
	for _, c := range e.ToolCalls {
		w.str(c.ID)
		w.str(c.Name)
		w.str(c.Arguments)
	}
	if e.Pieces == nil {
		w.b = append(w.b, 0)
	} else {
		w.b = append(w.b, 1)
		w.uint(uint64(len(e.Pieces)))
		for _, p := range e.Pieces {
			w.uint(uint64(p))
		}
		w.uint(uint64(len(e.Deltas)))
		for _, d := range e.Deltas {
			w.uint(uint64(d.Index))
			w.str(d.ID)
			w.str(d.Name)
			w.str(d.Arguments)
		}
	}
	return w.b
}

// errCorrupt: a stored entry that does not decode (written by another
// version, or damaged): treated as absent.
var errCorrupt = errors.New("cache: a stored entry does not decode")

// decodeEntry reads a stored entry. It trusts nothing in b: counts are
// held to the bytes that remain, pieces to the content and the deltas.
func decodeEntry(b []byte) (*Entry, error) {
	d := dec{b: b}
	if d.byte() != entryVersion {
		return nil, errCorrupt
	}
	e := &Entry{}
	e.Expires = int64(d.uint())
	e.Served.Provider = d.str()
	e.Served.Model = d.str()
	e.FinishReason = d.str()
	e.Usage.PromptTokens = int(d.uint() & 0x7fffffff)
	e.Usage.CompletionTokens = int(d.uint() & 0x7fffffff)
	e.Content = d.str()
	if n := d.count(3); n > 0 {
		e.ToolCalls = make([]moltbot.ToolCall, n)
		for i := range e.ToolCalls {
			e.ToolCalls[i] = moltbot.ToolCall{ID: d.str(), Name: d.str(), Arguments: d.str()}
		}
	}
	switch d.byte() {
	case 0:
	case 1:
		e.Pieces = make([]uint32, d.count(1))
		text := 0
		for i := range e.Pieces {
			v := d.uint()
			if v > 0xffffffff {
				d.err = errCorrupt
			}
			e.Pieces[i] = uint32(v)
			if e.Pieces[i]&toolPiece == 0 {
				text += int(e.Pieces[i])
			}
		}
		if n := d.count(4); n > 0 {
			e.Deltas = make([]moltbot.ToolCallDelta, n)
			for i := range e.Deltas {
				e.Deltas[i] = moltbot.ToolCallDelta{Index: int(d.uint() & 0xffff), ID: d.str(), Name: d.str(), Arguments: d.str()}
			}
		}
		if text != len(e.Content) {
			return nil, errCorrupt
		}
		for _, p := range e.Pieces {
			if p&toolPiece != 0 && int(p&^toolPiece) >= len(e.Deltas) {
				return nil, errCorrupt
			}
		}
	default:
		return nil, errCorrupt
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}

// dec reads what enc wrote; the first error sticks and reads return zeros.
type dec struct {
	b   []byte
	err error
}

func (d *dec) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a number of items each at least min bytes long: one that
// the bytes left cannot hold is corrupt (no allocation is made for it).
func (d *dec) count(min int) int {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.b)/min) {
		d.err = errCorrupt
		return 0
	}
	return int(n)
}

// expiresOf reads a stored entry's expiry without decoding the rest.
func expiresOf(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] != entryVersion {
		return 0, false
	}
	v, n := binary.Uvarint(b[1:])
	return int64(v), n > 0
}
