package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/moltbot/moltbot"
)

// Snapshot formats: the first byte of every value. Encode writes formatV2,
// or formatV3 for a conversation that belongs to an end user (so that a
// node of the previous version still reads every other snapshot during a
// rolling upgrade); Decode reads all three (v1 has no per-message flags).
const (
	formatV1 = 1
	formatV2 = 2
	formatV3 = 3 // v2 and the conversation's user after its model
)

// flags (v2)
const (
	flagIncomplete = 1 // message
	flagDeleted    = 1 // conversation
)

// ErrCorrupt is returned for a value that does not decode.
var ErrCorrupt = errors.New("storage: corrupt snapshot")

var roleCodes = map[moltbot.Role]byte{moltbot.RoleSystem: 1, moltbot.RoleUser: 2, moltbot.RoleAssistant: 3}
var codeRoles = [...]moltbot.Role{1: moltbot.RoleSystem, 2: moltbot.RoleUser, 3: moltbot.RoleAssistant}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Encode appends the binary snapshot of c to dst.
//
//	format byte (2) | uvarint version | uvarint epoch | varint created | varint updated
//	| flags byte | string tenant | string id | string system | string model
//	| uvarint n | n × (role byte | flags byte | string id | string content | string model | varint created)
//
// Format 1 had neither flags bytes nor message ids. Format 3 adds
// `string user` after the model.
//
// Strings are a uvarint length then the bytes.
func Encode(dst []byte, c *moltbot.Conversation) []byte {
	format := byte(formatV2)
	if c.User != "" {
		format = formatV3
	}
	dst = append(dst, format)
	dst = binary.AppendUvarint(dst, c.Version)
	dst = binary.AppendUvarint(dst, c.Epoch)
	dst = binary.AppendVarint(dst, c.Created)
	dst = binary.AppendVarint(dst, c.Updated)
	var cf byte
	if c.Deleted {
		cf |= flagDeleted
	}
	dst = append(dst, cf)
	dst = appendString(dst, c.Tenant)
	dst = appendString(dst, c.ID)
	dst = appendString(dst, c.System)
	dst = appendString(dst, c.Model)
	if format == formatV3 {
		dst = appendString(dst, c.User)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.Messages)))
	for i := range c.Messages {
		m := &c.Messages[i]
		dst = append(dst, roleCodes[m.Role])
		var flags byte
		if m.Incomplete {
			flags |= flagIncomplete
		}
		dst = append(dst, flags)
		dst = appendString(dst, m.ID)
		dst = appendString(dst, m.Content)
		dst = appendString(dst, m.Model)
		dst = binary.AppendVarint(dst, m.Created)
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

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Decode parses a snapshot written by Encode. It never panics on bad input.
func Decode(b []byte) (*moltbot.Conversation, error) {
	if len(b) == 0 {
		return nil, ErrCorrupt
	}
	format := b[0]
	if format != formatV1 && format != formatV2 && format != formatV3 {
		return nil, fmt.Errorf("storage: snapshot format %d is not known to this version of moltbot", b[0])
	}
	r := &reader{b: b[1:]}
	c := &moltbot.Conversation{}
	c.Version = r.uvarint()
	c.Epoch = r.uvarint()
	c.Created = r.varint()
	c.Updated = r.varint()
	if format >= formatV2 {
		cf := r.byte()
		if cf&^flagDeleted != 0 {
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
	n := r.uvarint()
	// Each message takes at least 4 bytes: never trust n beyond what is left.
	if r.err == nil && n > uint64(len(r.b))/4 {
		return nil, ErrCorrupt
	}
	if n > 0 {
		c.Messages = make([]moltbot.Message, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		code := r.byte()
		if r.err == nil && (code == 0 || int(code) >= len(codeRoles)) {
			return nil, ErrCorrupt
		}
		m := moltbot.Message{Role: codeRoles[code]}
		if format >= formatV2 {
			flags := r.byte()
			if flags&^flagIncomplete != 0 {
				return nil, ErrCorrupt
			}
			m.Incomplete = flags&flagIncomplete != 0
			m.ID = r.string()
		}
		m.Content = r.string()
		m.Model = r.string()
		m.Created = r.varint()
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
