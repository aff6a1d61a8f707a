package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/moltbot/moltbot"
)

// Snapshot formats: the first byte of a whole conversation's encoding
// (Encode), the wire format of replication and, in the builds before the
// per-message layout (layout.go), the value stored under the
// conversation's key. Encode writes the oldest format that holds the
// conversation, so that a node of the previous version still reads it
// during a rolling upgrade: formatV2; formatV3 for a conversation that
// belongs to an end user; formatV4 for one with a message that has parts
// beyond plain text, or metadata; formatV5 for one whose outbox waits;
// formatV6 for one with a summary; formatV7 for one whose turn stages keep
// state (Conversation.State); formatV8 for one of a bot. Decode reads them
// all (v1 has no per-message flags).
const (
	formatV1 = 1
	formatV2 = 2
	formatV3 = 3 // v2 and the conversation's user after its model
	formatV4 = 4 // v3 and messages with parts and metadata (flagMeta, flagParts)
	formatV5 = 5 // v4 and the outbox (flagOutbox), written only when it is not empty
	formatV6 = 6 // v5 and the summary (flagSummary), written only when there is one
	formatV7 = 7 // v6 and the stages' state (flagState), written only when there is some
	formatV8 = 8 // v7 and the bot after the user (flagBot), written only when there is one
	formatV9 = 9 // v8 and messages with citations (flagCite), written only when one has some
)

// flags of a message (v2; flagMeta and flagParts v4 and the store's records)
const (
	flagIncomplete = 1
	flagMeta       = 2 // string channel | string user
	flagParts      = 4 // uvarint n | n × part
	flagCite       = 8 // uvarint n | n × citation (v9, and records of formatRecordCite)
	messageFlags   = flagIncomplete | flagMeta | flagParts
)

// flags of a conversation (v2; flagOutbox v5, flagSummary v6, flagState v7, flagBot v8,
// all in the store's headers)
const (
	flagDeleted   = 1
	flagOutbox    = 2  // the outbox follows the conversation's strings
	flagSummary   = 4  // the summary follows the outbox (a header: its record's hash)
	flagState     = 8  // the stages' state follows the summary (a header: its record's hash)
	flagBot       = 16 // the bot's name follows the user
	convFlags     = flagDeleted | flagOutbox | flagSummary | flagState | flagBot
	flagDelivFail = 1 // a delivery's flags: given up
)

// appendSummary appends a conversation's summary:
//
//	string text | uvarint messages | string through | string model | varint created
func appendSummary(dst []byte, s *moltbot.Summary) []byte {
	dst = appendString(dst, s.Text)
	dst = binary.AppendUvarint(dst, uint64(s.Messages))
	dst = appendString(dst, s.Through)
	dst = appendString(dst, s.Model)
	return binary.AppendVarint(dst, s.Created)
}

// readSummary reads what appendSummary wrote.
func readSummary(r *reader) *moltbot.Summary {
	s := &moltbot.Summary{Text: r.string()}
	n := r.uvarint()
	if r.err == nil && (n == 0 || n > maxMessages) {
		r.err = ErrCorrupt // a summary covers at least one message
	}
	s.Messages = int(n)
	s.Through = r.string()
	s.Model = r.string()
	s.Created = r.varint()
	return s
}

// appendState appends a conversation's stage state, by name in order (so
// that equal states encode alike, and hash alike in a header):
//
//	uvarint n | n × (string name | bytes value)
func appendState(dst []byte, st moltbot.StageState) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(st)))
	for _, k := range slices.Sorted(maps.Keys(st)) {
		dst = appendString(dst, k)
		dst = appendBytes(dst, st[k])
	}
	return dst
}

// readState reads what appendState wrote: at least one entry, none empty,
// no name twice, within moltbot.MaxStageState.
func readState(r *reader) moltbot.StageState {
	n := r.count(2) // each takes at least 2 bytes
	st := make(moltbot.StageState, n)
	size := 0
	for i := uint64(0); i < n && r.err == nil; i++ {
		k := r.string()
		v := r.bytes()
		if _, dup := st[k]; r.err == nil && (dup || len(v) == 0) {
			r.err = ErrCorrupt
		}
		size += len(k) + len(v)
		st[k] = v
	}
	if r.err == nil && (n == 0 || size > moltbot.MaxStageState) {
		r.err = ErrCorrupt
	}
	return st
}

// appendOutbox appends a conversation's outbox:
//
//	uvarint n | n × (string message | string channel | string address
//	| uvarint attempts | varint next_at | string last_error | flags byte)
func appendOutbox(dst []byte, out []moltbot.Delivery) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(out)))
	for i := range out {
		d := &out[i]
		for _, s := range [...]string{d.Message, d.To.Channel, d.To.Address} {
			dst = appendString(dst, s)
		}
		dst = binary.AppendUvarint(dst, uint64(d.Attempts))
		dst = binary.AppendVarint(dst, d.NextAt)
		dst = appendString(dst, d.LastError)
		var f byte
		if d.Failed {
			f |= flagDelivFail
		}
		dst = append(dst, f)
	}
	return dst
}

// readOutbox reads what appendOutbox wrote.
func readOutbox(r *reader) []moltbot.Delivery {
	n := r.count(7) // each takes at least 7 bytes
	var out []moltbot.Delivery
	for i := uint64(0); i < n && r.err == nil; i++ {
		var d moltbot.Delivery
		d.Message, d.To.Channel, d.To.Address = r.string(), r.string(), r.string()
		a := r.uvarint()
		if a > 1<<20 {
			r.err = ErrCorrupt
		}
		d.Attempts = int(a)
		d.NextAt = r.varint()
		d.LastError = r.string()
		f := r.byte()
		if r.err == nil && f&^flagDelivFail != 0 {
			r.err = ErrCorrupt
		}
		d.Failed = f&flagDelivFail != 0
		out = append(out, d)
	}
	if r.err == nil && n == 0 {
		r.err = ErrCorrupt // a flagged outbox is not empty
	}
	return out
}

// fields of a part, in the order they are encoded (a uvarint mask of those
// present). dataApart and contentApart are the store's own (records,
// never the wire): the payload is in a blob named by the part's ref.
const (
	fieldText = 1 << iota
	fieldMIME
	fieldData
	fieldRef
	fieldCallID
	fieldName
	fieldArguments
	fieldContent
	dataApart
	contentApart
	wireFields = dataApart - 1
)

// ErrCorrupt is returned for a value that does not decode.
var ErrCorrupt = errors.New("storage: corrupt snapshot")

// The roles' codes. A tool message (code 4) always has parts, so it is
// written in format 4 or later only: a build that reads format 4 but not
// this code (before issue 12) says the snapshot is corrupt.
var roleCodes = map[moltbot.Role]byte{moltbot.RoleSystem: 1, moltbot.RoleUser: 2, moltbot.RoleAssistant: 3, moltbot.RoleTool: 4}
var codeRoles = [...]moltbot.Role{1: moltbot.RoleSystem, 2: moltbot.RoleUser, 3: moltbot.RoleAssistant, 4: moltbot.RoleTool}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// convFlagsOf is c's conversation flags, as a snapshot and the store's
// header both write them.
func convFlagsOf(c *moltbot.Conversation) byte {
	var cf byte
	if c.Deleted {
		cf |= flagDeleted
	}
	if len(c.Outbox) > 0 {
		cf |= flagOutbox
	}
	if c.Summary != nil {
		cf |= flagSummary
	}
	if len(c.State) > 0 {
		cf |= flagState
	}
	if c.Bot != "" {
		cf |= flagBot
	}
	return cf
}

// Encode appends the binary snapshot of c to dst.
//
//	format byte (2) | uvarint version | uvarint epoch | varint created | varint updated
//	| flags byte | string tenant | string id | string system | string model
//	| uvarint n | n × (role byte | flags byte | string id | string content | string model | varint created)
//
// Format 1 had neither flags bytes nor message ids. Format 3 adds
// `string user` after the model. Format 4 is format 3 whose messages may
// have, after created, `string channel | string user` (flag 2) and
// `uvarint n | n × part` (flag 4), where a part is
//
//	string type | uvarint mask | the fields of mask, in order:
//	string text | string mime | string data | string ref | string call id | string name | string arguments | string content
//
// Format 5 adds the outbox after the user (conversation flag 2,
// appendOutbox), format 6 the summary after that (flag 4, appendSummary),
// format 7 the stages' state after that (flag 8, appendState), format 8
// `string bot` right after the user (flag 16).
// Strings are a uvarint length then the bytes.
func Encode(dst []byte, c *moltbot.Conversation) []byte {
	format := byte(formatV2)
	if c.User != "" {
		format = formatV3
	}
	for i := range c.Messages {
		if extended(&c.Messages[i]) {
			format = formatV4
			break
		}
	}
	if len(c.Outbox) > 0 {
		format = formatV5
	}
	if c.Summary != nil {
		format = formatV6
	}
	if len(c.State) > 0 {
		format = formatV7
	}
	if c.Bot != "" {
		format = formatV8
	}
	for i := range c.Messages {
		if len(c.Messages[i].Citations) > 0 {
			format = formatV9
			break
		}
	}
	dst = append(dst, format)
	dst = binary.AppendUvarint(dst, c.Version)
	dst = binary.AppendUvarint(dst, c.Epoch)
	dst = binary.AppendVarint(dst, c.Created)
	dst = binary.AppendVarint(dst, c.Updated)
	dst = append(dst, convFlagsOf(c))
	dst = appendString(dst, c.Tenant)
	dst = appendString(dst, c.ID)
	dst = appendString(dst, c.System)
	dst = appendString(dst, c.Model)
	if format >= formatV3 {
		dst = appendString(dst, c.User)
	}
	if c.Bot != "" {
		dst = appendString(dst, c.Bot)
	}
	if len(c.Outbox) > 0 {
		dst = appendOutbox(dst, c.Outbox)
	}
	if c.Summary != nil {
		dst = appendSummary(dst, c.Summary)
	}
	if len(c.State) > 0 {
		dst = appendState(dst, c.State)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.Messages)))
	for i := range c.Messages {
		dst = appendMessage(dst, &c.Messages[i], nil)
	}
	return dst
}

// plainText reports whether m is text only: no parts, or one text part
// that is its Content. Such a message is written without parts (and reads
// back with Parts nil).
func plainText(m *moltbot.Message) bool {
	if len(m.Parts) == 0 {
		return true
	}
	p := &m.Parts[0]
	return len(m.Parts) == 1 && p.Type == moltbot.PartText && p.Text == m.Content &&
		p.MIME == "" && p.Data == nil && p.Ref == "" && p.CallID == "" && p.Name == "" && p.Arguments == "" && p.Content == ""
}

// extended reports whether m needs format 4: parts beyond plain text, or metadata.
func extended(m *moltbot.Message) bool {
	return m.Channel != "" || m.User != "" || !plainText(m)
}

// appendMessage appends m as Encode writes it in each format (its v4 flags
// only when m has what needs them). apart, when not nil (the store's
// message records), names each payload kept apart from the history: such
// a payload is not written, its ref is, with dataApart or contentApart.
func appendMessage(dst []byte, m *moltbot.Message, apart func(p *moltbot.Part) (ref string, data bool, ok bool)) []byte {
	dst = append(dst, roleCodes[m.Role])
	var flags byte
	if m.Incomplete {
		flags |= flagIncomplete
	}
	if m.Channel != "" || m.User != "" {
		flags |= flagMeta
	}
	if !plainText(m) {
		flags |= flagParts
	}
	if len(m.Citations) > 0 {
		flags |= flagCite
	}
	dst = append(dst, flags)
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Content)
	dst = appendString(dst, m.Model)
	dst = binary.AppendVarint(dst, m.Created)
	if flags&flagMeta != 0 {
		dst = appendString(dst, m.Channel)
		dst = appendString(dst, m.User)
	}
	if flags&flagParts != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(m.Parts)))
		for i := range m.Parts {
			dst = appendPart(dst, &m.Parts[i], apart)
		}
	}
	if flags&flagCite != 0 {
		dst = appendCitations(dst, m.Citations)
	}
	return dst
}

// appendCitations appends a message's citations:
//
//	uvarint n | n × (uvarint n | string kb | string document | string heading
//	| string chunk | 8 bytes score (float64 bits, big-endian) | string snippet)
func appendCitations(dst []byte, cs []moltbot.Citation) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cs)))
	for i := range cs {
		c := &cs[i]
		dst = binary.AppendUvarint(dst, uint64(max(c.N, 0)))
		dst = appendString(dst, c.KB)
		dst = appendString(dst, c.Document)
		dst = appendString(dst, c.Heading)
		dst = appendString(dst, c.Chunk)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(c.Score))
		dst = appendString(dst, c.Snippet)
	}
	return dst
}

// readCitations reads what appendCitations wrote.
func readCitations(r *reader) []moltbot.Citation {
	// A citation takes at least 14 bytes (5 empty strings, a count, a score).
	n := r.count(14)
	if n == 0 {
		if r.err == nil {
			r.err = ErrCorrupt // a flag set means some
		}
		return nil
	}
	out := make([]moltbot.Citation, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		c := moltbot.Citation{N: int(min(r.uvarint(), 1<<20)), KB: r.string(), Document: r.string(), Heading: r.string(), Chunk: r.string()}
		c.Score = math.Float64frombits(r.uint64())
		c.Snippet = r.string()
		if math.IsNaN(c.Score) || math.IsInf(c.Score, 0) {
			r.err = ErrCorrupt
		}
		out = append(out, c)
	}
	return out
}

func appendPart(dst []byte, p *moltbot.Part, apart func(p *moltbot.Part) (string, bool, bool)) []byte {
	ref, data, content := p.Ref, p.Data, p.Content
	var mask uint64
	if apart != nil {
		if r, isData, ok := apart(p); ok {
			ref = r
			if isData {
				data, mask = nil, dataApart
			} else {
				content, mask = "", contentApart
			}
		}
	}
	for bit, set := range [...]bool{p.Text != "", p.MIME != "", len(data) > 0, ref != "", p.CallID != "", p.Name != "", p.Arguments != "", content != ""} {
		if set {
			mask |= 1 << bit
		}
	}
	dst = appendString(dst, string(p.Type))
	dst = binary.AppendUvarint(dst, mask)
	for bit, s := range [...]string{p.Text, p.MIME, "", ref, p.CallID, p.Name, p.Arguments, content} {
		switch {
		case mask&(1<<bit) == 0:
		case bit == 2:
			dst = appendBytes(dst, data)
		default:
			dst = appendString(dst, s)
		}
	}
	return dst
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = ErrCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// next returns the next length-prefixed bytes, aliasing the input.
func (r *reader) next() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) string() string { return string(r.next()) }

// bytes is a copy of the next length-prefixed bytes (nil when empty).
func (r *reader) bytes() []byte {
	s := r.next()
	if len(s) == 0 {
		return nil
	}
	return append([]byte(nil), s...)
}

// uint64 reads 8 bytes, big-endian.
func (r *reader) uint64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = ErrCorrupt
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// count reads a count of items that take at least min bytes each: never
// trust it beyond what is left.
func (r *reader) count(min int) uint64 {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = ErrCorrupt
		return 0
	}
	return n
}

// Decode parses a snapshot written by Encode. It never panics on bad input.
func Decode(b []byte) (*moltbot.Conversation, error) {
	if len(b) == 0 {
		return nil, ErrCorrupt
	}
	format := b[0]
	if format < formatV1 || format > formatV9 {
		return nil, fmt.Errorf("storage: snapshot format %d is not known to this version of moltbot", b[0])
	}
	r := &reader{b: b[1:]}
	c := &moltbot.Conversation{}
	c.Version = r.uvarint()
	c.Epoch = r.uvarint()
	c.Created = r.varint()
	c.Updated = r.varint()
	var cf byte
	if format >= formatV2 {
		cf = r.byte()
		known := byte(flagDeleted)
		if format >= formatV5 {
			known |= flagOutbox
		}
		if format >= formatV6 {
			known |= flagSummary
		}
		if format >= formatV7 {
			known |= flagState
		}
		if format >= formatV8 {
			known |= flagBot
		}
		if cf&^known != 0 {
			return nil, ErrCorrupt
		}
		c.Deleted = cf&flagDeleted != 0
	}
	c.Tenant = r.string()
	c.ID = r.string()
	c.System = r.string()
	c.Model = r.string()
	if format >= formatV3 {
		c.User = r.string()
	}
	if cf&flagBot != 0 {
		c.Bot = r.string()
	}
	if cf&flagOutbox != 0 {
		c.Outbox = readOutbox(r)
	}
	if cf&flagSummary != 0 {
		c.Summary = readSummary(r)
	}
	if cf&flagState != 0 {
		c.State = readState(r)
	}
	// Each message takes at least 4 bytes.
	n := r.count(4)
	if n > 0 {
		c.Messages = make([]moltbot.Message, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		m, err := decodeMessage(r, format, nil)
		if err != nil {
			return nil, err
		}
		c.Messages = append(c.Messages, m)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, ErrCorrupt
	}
	return c, nil
}

// decodeMessage reads one message of a snapshot of format. apart, when
// not nil (the store's message records: format 4 with payloads kept
// apart), is told of each part whose payload is in a blob (its Ref): its
// Data, or else its Content; the wire has none.
func decodeMessage(r *reader, format byte, apart func(part int, data bool)) (moltbot.Message, error) {
	code := r.byte()
	if r.err == nil && (code == 0 || int(code) >= len(codeRoles)) {
		return moltbot.Message{}, ErrCorrupt
	}
	m := moltbot.Message{Role: codeRoles[code]}
	var flags byte
	if format >= formatV2 {
		flags = r.byte()
		known := byte(flagIncomplete)
		if format >= formatV4 {
			known = messageFlags
		}
		if format >= formatV9 {
			known |= flagCite
		}
		if flags&^known != 0 {
			return m, ErrCorrupt
		}
		m.Incomplete = flags&flagIncomplete != 0
		m.ID = r.string()
	}
	m.Content = r.string()
	m.Model = r.string()
	m.Created = r.varint()
	if flags&flagMeta != 0 {
		m.Channel = r.string()
		m.User = r.string()
	}
	if flags&flagParts != 0 {
		// A part takes at least 2 bytes (an empty type, an empty mask).
		n := r.count(2)
		if n > 0 {
			m.Parts = make([]moltbot.Part, 0, n)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			p, kind, err := decodePart(r, apart != nil)
			if err != nil {
				return m, err
			}
			if kind != 0 {
				apart(len(m.Parts), kind == dataApart)
			}
			m.Parts = append(m.Parts, p)
		}
		if plainText(&m) {
			m.Parts = nil // as Encode writes it
		}
	}
	if flags&flagCite != 0 {
		m.Citations = readCitations(r)
	}
	return m, r.err
}

// decodePart reads a part; kind is dataApart or contentApart when its
// payload is kept apart (only in a record).
func decodePart(r *reader, record bool) (p moltbot.Part, kind uint64, err error) {
	p.Type = moltbot.PartType(r.string())
	mask := r.uvarint()
	known := uint64(wireFields)
	if record {
		known |= dataApart | contentApart
	}
	switch {
	case r.err != nil:
		return p, 0, r.err
	case mask&^known != 0,
		mask&dataApart != 0 && mask&(contentApart|fieldData) != 0,
		mask&contentApart != 0 && mask&fieldContent != 0,
		mask&(dataApart|contentApart) != 0 && mask&fieldRef == 0:
		return p, 0, ErrCorrupt
	}
	for bit, f := range [...]*string{&p.Text, &p.MIME, nil, &p.Ref, &p.CallID, &p.Name, &p.Arguments, &p.Content} {
		switch {
		case mask&(1<<bit) == 0:
		case f == nil:
			p.Data = r.bytes()
			if p.Data == nil && r.err == nil {
				return p, 0, ErrCorrupt // a field present is not empty
			}
		default:
			*f = r.string()
			if *f == "" && r.err == nil {
				return p, 0, ErrCorrupt
			}
		}
	}
	return p, mask & (dataApart | contentApart), r.err
}
