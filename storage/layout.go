package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/moltbot/moltbot"
)

// The conversations' layout, shared by Pebble and Memory: a conversation
// is a header record under its key, one record per message, and blobs for
// large payloads, so that a turn writes the header and its own message
// (bytes in proportion to the turn, not to the conversation):
//
//	conv/<space>/<id>                   header: formatHeader | uvarint version | uvarint epoch
//	                                    | varint created | varint updated | flags byte | string tenant
//	                                    | string id | string system | string model | string user
//	                                    | [string bot] | [outbox] | [8 bytes summary] | [8 bytes state]
//	                                    | uvarint count
//	                                    | 8 bytes chain | 8 bytes prev
//	conv/<space>/<id> 0x00 'm' <index>  message <index> (4 bytes, big-endian: they sort):
//	                                    formatRecord | a message as Encode's format 4 writes it,
//	                                    large payloads replaced by their ref
//	conv/<space>/<id> 0x00 'b' <ref>    a payload kept apart: formatBlob | the bytes
//	conv/<space>/<id> 0x00 's'          the summary (flagSummary): formatSummary | appendSummary's
//	conv/<space>/<id> 0x00 't'          the stages' state (flagState): formatState | appendState's
//
// 0x00 is in no id, so a conversation's records sort right after its
// header and before any other conversation's key ([key, key 0x01) holds
// them all); one range deletion removes them.
//
// Under the key, a build before this layout stored the whole snapshot
// (formats 1-3, codec.go). Such a value still loads; the next write
// replaces it with a header and writes every message (migration on read).
//
// What changed: the header holds the count of messages and two prefix
// hashes of their records (xxhash64 of each record in turn, its length
// first): chain over all of them and prev over all but the last. A write
// hashes its own records the same way; equal chains mean the stored
// messages are its first ones and only the new ones are written (a turn);
// equal prev means only the last changed (an incomplete reply replaced).
// Otherwise (a replica that held another owner's history, fewer
// messages than stored) the stored records are compared one by one and
// written from the first that differs. A 64-bit hash can collide: two
// histories of one conversation that differ yet hash the same would keep
// the stored one. That needs two writers of one conversation with
// different histories (a partition) and a 2^-64 chance; it is accepted.
//
// Payloads over BlobThreshold (an image's bytes, a tool result's content)
// go in blobs named by their part's Ref (xxhash64 of the payload in hex,
// when the part has none), written only with their message: later turns
// neither rewrite nor read them, and scanning the history reads only the
// message records (a part held in memory without its Ref, new since the
// conversation was loaded, has its payload hashed again on each write).
// Get loads them (the whole conversation, as Store promises). A blob outlives a message that replaced its own (an
// incomplete reply, a replica's other history) until the conversation is
// deleted.
//
// The summary (Conversation.Summary) is a record of its own, written only
// when it changed: the header holds the xxhash64 of that record, so a turn
// that keeps the summary writes neither it nor more than its hash (a
// summary of 256 tokens in the header would have doubled a turn's bytes).
// The stages' state (Conversation.State: a flow's cursor and variables)
// is kept the same way: a turn that leaves it as it was writes its hash
// only.

const (
	formatHeader = 0x10 // not a snapshot format: an older build says "format 16 is not known"
	formatRecord = 1
	// formatRecordCite is a message record with citations (flagCite):
	// written only for such a message, so an older build reads the rest.
	formatRecordCite = 2
	formatBlob       = 1
	formatSummary    = 1
	formatState      = 1

	recordSep   = 0x00
	kindBlob    = 'b'
	kindMessage = 'm'
	kindSummary = 's'
	kindState   = 't'

	// BlobThreshold is the size above which a payload is kept apart from
	// the history.
	BlobThreshold = 4 << 10
)

// msgKey is the key of message i of the conversation under key.
func msgKey(key []byte, i uint64) []byte {
	k := make([]byte, 0, len(key)+6)
	k = append(append(k, key...), recordSep, kindMessage)
	return binary.BigEndian.AppendUint32(k, uint32(i))
}

// msgsEnd is past the keys of every message of the conversation under key.
func msgsEnd(key []byte) []byte {
	return append(append(make([]byte, 0, len(key)+2), key...), recordSep, kindMessage+1)
}

func blobKey(key []byte, ref string) []byte {
	k := make([]byte, 0, len(key)+2+len(ref))
	return append(append(append(k, key...), recordSep, kindBlob), ref...)
}

// summaryKey is the key of the summary of the conversation under key.
func summaryKey(key []byte) []byte {
	return append(append(make([]byte, 0, len(key)+2), key...), recordSep, kindSummary)
}

// stateKey is the key of the stage state of the conversation under key.
func stateKey(key []byte) []byte {
	return append(append(make([]byte, 0, len(key)+2), key...), recordSep, kindState)
}

// convEnd is past every record of the conversation under key.
func convEnd(key []byte) []byte {
	return append(append(make([]byte, 0, len(key)+1), key...), recordSep+1)
}

// maxMessages bounds a conversation's messages (4-byte indexes).
const maxMessages = 1<<32 - 1

// view is a consistent read of a database (one Pebble iterator, or the
// memory store under its lock). A value may be valid only until the next call.
type view interface {
	get(key []byte) (val []byte, found bool, err error)
	// scan calls fn with each record in [lo, hi), in key order, until fn returns false.
	scan(lo, hi []byte, fn func(key, val []byte) bool) error
}

// batch is the writes of one Put, applied at once (a synced Pebble batch).
type batch interface {
	set(key, val []byte) error
	deleteRange(lo, hi []byte) error
}

// held is what a database holds under a conversation's key.
type held struct {
	found  bool
	legacy *moltbot.Conversation // a whole snapshot written before this layout
	hdr    header
	// whole: no records to build on (a legacy snapshot, an unreadable
	// value): write every message and remove any other.
	whole bool
}

// header is a conversation without its messages, its summary and its
// state, and what they hash to (summary: when hasSummary; state: when
// hasState).
type header struct {
	c           moltbot.Conversation
	count       uint64
	chain, prev uint64
	hasSummary  bool
	summary     uint64
	hasState    bool
	state       uint64
}

// stamp is the (epoch, version) held.
func (h *held) stamp() (epoch, version uint64) {
	if h.legacy != nil {
		return h.legacy.Epoch, h.legacy.Version
	}
	return h.hdr.c.Epoch, h.hdr.c.Version
}

func readHeld(v view, key []byte) (held, error) {
	val, found, err := v.get(key)
	if err != nil || !found {
		return held{}, err
	}
	if len(val) > 0 && val[0] == formatHeader {
		h, err := decodeHeader(val)
		return held{found: true, hdr: h}, err
	}
	c, err := Decode(val)
	return held{found: true, legacy: c, whole: true}, err
}

// encodeHeader appends the header of c; summary and state are the hashes
// of its summary's record and its state's (when c has them).
func encodeHeader(dst []byte, c *moltbot.Conversation, count int, chain, prev, summary, state uint64) []byte {
	dst = append(dst, formatHeader)
	dst = binary.AppendUvarint(dst, c.Version)
	dst = binary.AppendUvarint(dst, c.Epoch)
	dst = binary.AppendVarint(dst, c.Created)
	dst = binary.AppendVarint(dst, c.Updated)
	dst = append(dst, convFlagsOf(c))
	for _, s := range [...]string{c.Tenant, c.ID, c.System, c.Model, c.User} {
		dst = appendString(dst, s)
	}
	if c.Bot != "" {
		dst = appendString(dst, c.Bot)
	}
	if len(c.Outbox) > 0 {
		dst = appendOutbox(dst, c.Outbox)
	}
	if c.Summary != nil {
		dst = binary.BigEndian.AppendUint64(dst, summary)
	}
	if len(c.State) > 0 {
		dst = binary.BigEndian.AppendUint64(dst, state)
	}
	dst = binary.AppendUvarint(dst, uint64(count))
	dst = binary.BigEndian.AppendUint64(dst, chain)
	return binary.BigEndian.AppendUint64(dst, prev)
}

// headerOf is the conversation a header record describes, without its
// messages (a legacy snapshot decodes whole).
func headerOf(val []byte) (*moltbot.Conversation, error) {
	if len(val) > 0 && val[0] == formatHeader {
		h, err := decodeHeader(val)
		if err != nil {
			return nil, err
		}
		c := h.c
		return &c, nil
	}
	return Decode(val)
}

// decodeHeader parses a header record. It never panics on bad input.
func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) == 0 || b[0] != formatHeader {
		return h, ErrCorrupt
	}
	r := &reader{b: b[1:]}
	c := &h.c
	c.Version = r.uvarint()
	c.Epoch = r.uvarint()
	c.Created = r.varint()
	c.Updated = r.varint()
	cf := r.byte()
	if r.err == nil && cf&^convFlags != 0 {
		return h, ErrCorrupt
	}
	c.Deleted = cf&flagDeleted != 0
	for _, s := range [...]*string{&c.Tenant, &c.ID, &c.System, &c.Model, &c.User} {
		*s = r.string()
	}
	if cf&flagBot != 0 {
		c.Bot = r.string()
	}
	if cf&flagOutbox != 0 {
		c.Outbox = readOutbox(r)
	}
	if cf&flagSummary != 0 {
		h.hasSummary, h.summary = true, r.uint64()
	}
	if cf&flagState != 0 {
		h.hasState, h.state = true, r.uint64()
	}
	h.count = r.uvarint()
	h.chain = r.uint64()
	h.prev = r.uint64()
	if r.err == nil && (len(r.b) != 0 || h.count > maxMessages) {
		return h, ErrCorrupt
	}
	return h, r.err
}

// decodeRecord parses a message record; apart is told of each part whose
// payload is in a blob. It never panics on bad input.
func decodeRecord(b []byte, apart func(part int, data bool)) (moltbot.Message, error) {
	if len(b) == 0 || (b[0] != formatRecord && b[0] != formatRecordCite) {
		return moltbot.Message{}, ErrCorrupt
	}
	r := &reader{b: b[1:]}
	format := byte(formatV4)
	if b[0] == formatRecordCite {
		format = formatV9
	}
	m, err := decodeMessage(r, format, apart)
	if err == nil && len(r.b) != 0 {
		err = ErrCorrupt
	}
	return m, err
}

// apartOf says whether p's payload is kept apart, and by what ref: its
// Data, or else its Content, when over BlobThreshold.
func apartOf(p *moltbot.Part) (ref string, data bool, ok bool) {
	var payload []byte
	switch {
	case len(p.Data) > BlobThreshold:
		payload, data = p.Data, true
	case len(p.Content) > BlobThreshold:
		if p.Ref != "" {
			return p.Ref, false, true
		}
		payload = []byte(p.Content)
	default:
		return "", false, false
	}
	if p.Ref != "" {
		return p.Ref, data, true
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], xxhash.Sum64(payload))
	return hex.EncodeToString(sum[:]), data, true
}

// appendRecord appends the record of m.
func appendRecord(dst []byte, m *moltbot.Message) []byte {
	if len(m.Citations) > 0 {
		return appendMessage(append(dst, formatRecordCite), m, apartOf)
	}
	return appendMessage(append(dst, formatRecord), m, apartOf)
}

// chainOf hashes records in turn, as a header's chain and prev do.
type chainOf struct {
	d *xxhash.Digest
	n [binary.MaxVarintLen64]byte
}

// emptyChain is the chain of no records.
var emptyChain = xxhash.Sum64(nil)

func (h *chainOf) add(rec []byte) uint64 {
	if h.d == nil {
		h.d = xxhash.New()
	}
	h.d.Write(h.n[:binary.PutUvarint(h.n[:], uint64(len(rec)))])
	h.d.Write(rec)
	return h.d.Sum64()
}

// chains are the hashes of msgs' records: chains[i] of the first i. The
// records are encoded one at a time in scratch, and not kept.
func chains(msgs []moltbot.Message, scratch *[]byte) []uint64 {
	out := make([]uint64, len(msgs)+1)
	out[0] = emptyChain
	var h chainOf
	for i := range msgs {
		*scratch = appendRecord((*scratch)[:0], &msgs[i])
		out[i+1] = h.add(*scratch)
	}
	return out
}

// writeConv writes c over what the database holds (old, read from v under
// the conversation's write lock): the header, the messages that are not
// stored as they are in c, their blobs, and the removal of stored
// messages past c's.
func writeConv(v view, b batch, c *moltbot.Conversation, old held) error {
	if uint64(len(c.Messages)) > maxMessages {
		return fmt.Errorf("storage: %s/%s: %d messages is too many", c.Tenant, c.ID, len(c.Messages))
	}
	key := Key(c.Tenant, c.ID)
	var scratch []byte
	chain := chains(c.Messages, &scratch)
	n := len(c.Messages)
	from := 0
	if old.found && !old.whole {
		var err error
		if from, err = unchanged(v, key, c.Messages, chain, &old.hdr, &scratch); err != nil {
			return err
		}
	}
	for i := from; i < n; i++ {
		m := &c.Messages[i]
		for j := range m.Parts {
			p := &m.Parts[j]
			ref, data, ok := apartOf(p)
			if !ok {
				continue
			}
			val := []byte{formatBlob}
			if data {
				val = append(val, p.Data...)
			} else {
				val = append(val, p.Content...)
			}
			if err := b.set(blobKey(key, ref), val); err != nil {
				return err
			}
		}
		scratch = appendRecord(scratch[:0], m)
		if err := b.set(msgKey(key, uint64(i)), scratch); err != nil {
			return err
		}
	}
	// Messages past c's: removed. (Under a legacy snapshot there are
	// none, unless an older build overwrote this layout: then they go too.)
	// Without messages (a tombstone) the blobs go as well.
	switch {
	case n == 0 && (old.whole || old.found && old.hdr.count > 0):
		if err := b.deleteRange(append(bytes.Clone(key), recordSep), convEnd(key)); err != nil {
			return err
		}
	case old.whole || old.found && old.hdr.count > uint64(n):
		if err := b.deleteRange(msgKey(key, uint64(n)), msgsEnd(key)); err != nil {
			return err
		}
	}
	// The summary: written when it changed, removed when it went.
	var sum uint64
	switch {
	case c.Summary != nil:
		scratch = appendSummary(append(scratch[:0], formatSummary), c.Summary)
		sum = xxhash.Sum64(scratch)
		if n == 0 || old.whole || !old.found || !old.hdr.hasSummary || old.hdr.summary != sum {
			if err := b.set(summaryKey(key), scratch); err != nil {
				return err
			}
		}
	case old.whole || old.found && old.hdr.hasSummary:
		sk := summaryKey(key)
		if err := b.deleteRange(sk, append(sk, 0)); err != nil {
			return err
		}
	}
	// The stages' state: the same.
	var st uint64
	switch {
	case len(c.State) > 0:
		scratch = appendState(append(scratch[:0], formatState), c.State)
		st = xxhash.Sum64(scratch)
		if n == 0 || old.whole || !old.found || !old.hdr.hasState || old.hdr.state != st {
			if err := b.set(stateKey(key), scratch); err != nil {
				return err
			}
		}
	case old.whole || old.found && old.hdr.hasState:
		sk := stateKey(key)
		if err := b.deleteRange(sk, append(sk, 0)); err != nil {
			return err
		}
	}
	prev := chain[0]
	if n > 0 {
		prev = chain[n-1]
	}
	return b.set(key, encodeHeader(scratch[:0], c, n, chain[n], prev, sum, st))
}

// unchanged is how many of the first of msgs (whose chains are chain) the
// database holds as they are.
func unchanged(v view, key []byte, msgs []moltbot.Message, chain []uint64, h *header, scratch *[]byte) (int, error) {
	m := int(min(h.count, uint64(len(msgs))))
	if uint64(m) == h.count {
		switch {
		case chain[m] == h.chain:
			return m, nil // a turn: new messages after the stored ones
		case m > 0 && chain[m-1] == h.prev:
			return m - 1, nil // the last one changed
		}
	}
	same := 0
	err := v.scan(msgKey(key, 0), msgKey(key, uint64(m)), func(k, val []byte) bool {
		if same == m {
			return false
		}
		*scratch = appendRecord((*scratch)[:0], &msgs[same])
		if !bytes.Equal(k, msgKey(key, uint64(same))) || !bytes.Equal(val, *scratch) {
			return false
		}
		same++
		return true
	})
	return same, err
}

// loadConv reads the conversation under key, blobs included: ErrNotFound,
// or ErrCorrupt when its records disagree with its header.
func loadConv(v view, key []byte) (*moltbot.Conversation, error) {
	old, err := readHeld(v, key)
	switch {
	case err != nil:
		return nil, err
	case !old.found:
		return nil, ErrNotFound
	case old.legacy != nil:
		return old.legacy, nil
	}
	h := &old.hdr
	c := &h.c
	if h.count > 0 {
		c.Messages = make([]moltbot.Message, 0, min(h.count, 1024))
	}
	type pending struct {
		msg, part int
		data      bool
	}
	var blobs []pending
	var chain chainOf
	sum, prev := emptyChain, emptyChain
	var bad error
	err = v.scan(msgKey(key, 0), msgKey(key, h.count), func(k, val []byte) bool {
		i := len(c.Messages)
		if !bytes.Equal(k, msgKey(key, uint64(i))) {
			bad = ErrCorrupt // a message missing
			return false
		}
		m, err := decodeRecord(val, func(part int, data bool) { blobs = append(blobs, pending{i, part, data}) })
		if err != nil {
			bad = err
			return false
		}
		c.Messages = append(c.Messages, m)
		prev, sum = sum, chain.add(val)
		return true
	})
	switch {
	case err != nil:
		return nil, err
	case bad != nil:
		return nil, bad
	case uint64(len(c.Messages)) != h.count, sum != h.chain, h.count > 0 && prev != h.prev:
		return nil, ErrCorrupt
	}
	if h.hasSummary {
		val, found, err := v.get(summaryKey(key))
		switch {
		case err != nil:
			return nil, err
		case !found, xxhash.Sum64(val) != h.summary, len(val) == 0 || val[0] != formatSummary:
			return nil, ErrCorrupt
		}
		r := &reader{b: val[1:]}
		if c.Summary = readSummary(r); r.err != nil || len(r.b) != 0 {
			return nil, ErrCorrupt
		}
	}
	if h.hasState {
		val, found, err := v.get(stateKey(key))
		switch {
		case err != nil:
			return nil, err
		case !found, xxhash.Sum64(val) != h.state, len(val) == 0 || val[0] != formatState:
			return nil, ErrCorrupt
		}
		r := &reader{b: val[1:]}
		if c.State = readState(r); r.err != nil || len(r.b) != 0 {
			return nil, ErrCorrupt
		}
	}
	for _, p := range blobs {
		if p.part >= len(c.Messages[p.msg].Parts) {
			return nil, ErrCorrupt
		}
		part := &c.Messages[p.msg].Parts[p.part]
		val, found, err := v.get(blobKey(key, part.Ref))
		switch {
		case err != nil:
			return nil, err
		case !found: // a reference to bytes not here: the part keeps its Ref alone
		case len(val) == 0 || val[0] != formatBlob:
			return nil, ErrCorrupt
		case p.data:
			part.Data = append([]byte(nil), val[1:]...)
		default:
			part.Content = string(val[1:])
		}
	}
	return c, nil
}
