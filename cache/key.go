package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"
	"sync"

	"github.com/moltbot/moltbot"
)

// Key names a stored reply: the tenant whose it is (its id, without the
// incarnation: what a purge names) and the hash of everything that shapes
// the reply.
type Key struct {
	Tenant string
	Sum    [sha256.Size]byte
}

// String is the key as the back tiers store it: "<tenant>/<hex sum>".
func (k Key) String() string {
	var b [sha256.Size * 2]byte
	hex.Encode(b[:], k.Sum[:])
	return k.Tenant + "/" + string(b[:])
}

// Deterministic reports whether a request's reply is meant to be the same
// each time: temperature 0, or a seed given.
func Deterministic(o *moltbot.ChatOptions) bool {
	return o.Temperature != nil && *o.Temperature == 0 || o.Seed != nil
}

// keyVersion heads every hash: a change in what is hashed, or how, changes
// it, so an old entry is never read as a new one's.
const keyVersion = "moltbot.cache.v2\x00"

// KeyOf is turn t's key: a SHA-256 over a canonical encoding (each field
// in a fixed order, length-prefixed; absent and zero told apart) of the
// tenant's space, the end user the turn is for (Turn.User: a
// conversation's user, a user-bound caller's own; users of one tenant
// never share an entry, which would tell one what another sent), the chain, the messages with their parts, and every
// option but the end user's id (ChatOptions.User changes no reply; it is
// for the provider's abuse monitoring). A message's id, time, model and
// channel are left out: the model sees none of them. An image's bytes
// enter by their own hash. TestKeyCoversEveryField holds this list to the
// domain types.
func KeyOf(t *moltbot.Turn) Key { return keyOf(t, keyVersion, len(t.Messages)) }

// keyOf is the hash, headed by version, of t with its first msgs messages.
func keyOf(t *moltbot.Turn, version string, msgs int) Key {
	bp := keyBufs.Get().(*[]byte)
	e := enc{b: (*bp)[:0]}
	e.str(version)
	e.str(t.Tenant)
	e.str(t.User)
	e.uint(uint64(len(t.Chain)))
	for _, r := range t.Chain {
		e.str(r.Provider)
		e.str(r.Model)
	}
	e.uint(uint64(msgs))
	for i := range t.Messages[:msgs] {
		m := &t.Messages[i]
		e.str(string(m.Role))
		e.str(m.Content)
		e.uint(uint64(len(m.Parts)))
		for j := range m.Parts {
			p := &m.Parts[j]
			e.str(string(p.Type))
			e.str(p.Text)
			e.str(p.MIME)
			// The bytes by their hash; Ref names where the store keeps
			// them, which changes nothing the model sees.
			if len(p.Data) > 0 {
				d := sha256.Sum256(p.Data)
				e.raw(d[:])
			} else {
				e.raw(nil)
			}
			e.str(p.CallID)
			e.str(p.Name)
			e.str(p.Arguments)
			e.str(p.Content)
		}
	}
	o := &t.Options
	e.str(o.Model)
	e.int(int64(o.MaxTokens))
	e.float(o.Temperature)
	e.float(o.TopP)
	e.uint(uint64(len(o.Stop)))
	for _, s := range o.Stop {
		e.str(s)
	}
	if o.Seed != nil {
		e.b = append(e.b, 1)
		e.int(*o.Seed)
	} else {
		e.b = append(e.b, 0)
	}
	e.float(o.PresencePenalty)
	e.float(o.FrequencyPenalty)
	e.uint(uint64(len(o.Tools)))
	for i := range o.Tools {
		tl := &o.Tools[i]
		e.str(tl.Name)
		e.str(tl.Description)
		e.raw(tl.Parameters)
		e.bool(tl.Strict)
	}
	if tc := o.ToolChoice; tc != nil {
		e.b = append(e.b, 1)
		e.str(tc.Mode)
		e.str(tc.Name)
	} else {
		e.b = append(e.b, 0)
	}
	if o.ParallelToolCalls != nil {
		e.b = append(e.b, 1)
		e.bool(*o.ParallelToolCalls)
	} else {
		e.b = append(e.b, 0)
	}
	if rf := o.ResponseFormat; rf != nil {
		e.b = append(e.b, 1)
		e.str(rf.Type)
		e.str(rf.Name)
		e.raw(rf.Schema)
		e.bool(rf.Strict)
	} else {
		e.b = append(e.b, 0)
	}
	k := Key{Tenant: tenantOf(t.Tenant), Sum: sha256.Sum256(e.b)}
	if cap(e.b) <= 256<<10 {
		*bp = e.b[:0]
		keyBufs.Put(bp)
	}
	return k
}

// tenantOf is the tenant id of a space ("acme:<incarnation>" -> "acme").
func tenantOf(space string) string {
	id, _, _ := strings.Cut(space, ":")
	return id
}

// keyBufs hold the canonical encoding while it is hashed.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// enc appends a canonical encoding.
type enc struct{ b []byte }

func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)  { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) raw(s []byte)  { e.uint(uint64(len(s))); e.b = append(e.b, s...) }

func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// float encodes an optional number: absent, or its bits (0 and -0 as one).
func (e *enc) float(v *float64) {
	if v == nil {
		e.b = append(e.b, 0)
		return
	}
	f := *v
	if f == 0 {
		f = 0
	}
	e.b = append(e.b, 1)
	e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(f))
}
