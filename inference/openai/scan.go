package openai

import (
	"strings"
	"unicode/utf8"

	"github.com/moltbot/moltbot"
)

// The fast path of scanChunk: one pass over a chunk of the usual shape,
// without jsonparser's path matching or encoding/json's reflection.
//
// It takes a chunk only when it is valid JSON whose members moltbot reads
// have the types they should (model a string; choices an array of objects,
// each delta an object, content and finish_reason strings or null; usage an
// object of integers, or null; error null), each such member at most once
// and no other member whose name encoding/json would take for one of them
// (it matches names case-insensitively). Anything else (an error chunk, a
// key with an escape, nesting deeper than maxDepth, ...) goes to
// scanChunkSlow, whose result is then the answer: on what it takes,
// fastChunk gives exactly what scanChunkSlow gives
// (FuzzScanChunkMatchesSlow checks this).

// maxDepth bounds the nesting fastChunk skips; deeper chunks go the slow way.
const maxDepth = 32

// fastChunk reads a chunk; ok false means "ask scanChunkSlow".
func fastChunk(b []byte, wantModel bool) (out scanned, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return out, false
	}
	const (
		kModel = 1 << iota
		kChoices
		kUsage
		kError
	)
	seen := 0
	i++
	for first := true; ; first = false {
		key, vi, end, ok := member(b, i, first)
		if !ok {
			return out, false
		}
		if end {
			i = vi
			break
		}
		bit := 0
		switch string(key) {
		case "model":
			bit = kModel
			var s, e int
			if s, e, ok = stringAt(b, vi); ok && wantModel {
				out.model, ok = unquoteOK(b[s:e])
			}
			i = e + 1
		case "choices":
			bit = kChoices
			i, ok = choicesAt(b, vi, &out)
		case "usage":
			bit = kUsage
			if hasPrefix(b[vi:], "null") {
				i = vi + 4
				break
			}
			out.usage = &moltbot.Usage{}
			i, ok = usageAt(b, vi, out.usage)
		case "error":
			bit = kError
			// An error chunk is rare: the slow path reads its message.
			if ok = hasPrefix(b[vi:], "null"); ok {
				i = vi + 4
			}
		default:
			if folds(key, "model", "choices", "usage", "error") {
				return out, false
			}
			i, ok = skipValue(b, vi, 0)
		}
		if !ok || seen&bit != 0 {
			return out, false
		}
		seen |= bit
	}
	if skipWS(b, i) != len(b) {
		return out, false
	}
	return out, true
}

// choicesAt reads the array at b[i]: the first choice's delta content and
// finish reason into out; the others must have the same shape.
func choicesAt(b []byte, i int, out *scanned) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return i, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	var skip scanned
	for n := 0; ; n++ {
		into := out
		if n > 0 {
			into = &skip
		}
		var ok bool
		if i, ok = choice(b, i, into); !ok {
			return i, false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, false
		}
		if b[i] == ']' {
			return i + 1, true
		}
		if b[i] != ',' {
			return i, false
		}
		i = skipWS(b, i+1)
	}
}

// choice reads one choice object at b[i].
func choice(b []byte, i int, out *scanned) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	const (
		kDelta = 1 << iota
		kFinish
	)
	seen := 0
	i++
	for first := true; ; first = false {
		key, vi, end, ok := member(b, i, first)
		if !ok {
			return i, false
		}
		if end {
			return vi, true
		}
		bit := 0
		switch string(key) {
		case "delta":
			bit = kDelta
			i, ok = delta(b, vi, out)
		case "finish_reason":
			bit = kFinish
			out.finish, i, ok = stringOrNull(b, vi)
		default:
			if folds(key, "delta", "finish_reason") {
				return i, false
			}
			i, ok = skipValue(b, vi, 1)
		}
		if !ok || seen&bit != 0 {
			return i, false
		}
		seen |= bit
	}
}

// delta reads a choice's delta object at b[i]: its content.
func delta(b []byte, i int, out *scanned) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	seen := false
	i++
	for first := true; ; first = false {
		key, vi, end, ok := member(b, i, first)
		if !ok {
			return i, false
		}
		if end {
			return vi, true
		}
		switch string(key) {
		case "content":
			if seen {
				return i, false
			}
			seen = true
			out.content, i, ok = stringOrNull(b, vi)
		default:
			if folds(key, "content") {
				return i, false
			}
			i, ok = skipValue(b, vi, 2)
		}
		if !ok {
			return i, false
		}
	}
}

// usageAt reads the usage object at b[i] into u.
func usageAt(b []byte, i int, u *moltbot.Usage) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	seen := 0
	i++
	for first := true; ; first = false {
		key, vi, end, ok := member(b, i, first)
		if !ok {
			return i, false
		}
		if end {
			return vi, true
		}
		bit := 0
		var v int64
		switch string(key) {
		case "prompt_tokens":
			bit = 1
			v, i, ok = intAt(b, vi)
			u.PromptTokens = int(v)
		case "completion_tokens":
			bit = 2
			v, i, ok = intAt(b, vi)
			u.CompletionTokens = int(v)
		case "total_tokens":
			bit = 4
			_, i, ok = intAt(b, vi)
		default:
			if folds(key, "prompt_tokens", "completion_tokens", "total_tokens") {
				return i, false
			}
			i, ok = skipValue(b, vi, 1)
		}
		if !ok || seen&bit != 0 {
			return i, false
		}
		seen |= bit
	}
}

// member reads the next member of an object whose '{' (first) or previous
// value ends just before b[i]: its key and the index of its value, or end
// and the index after the closing '}'. Keys with escapes or non-ASCII bytes
// are not the fast path's (ok false).
func member(b []byte, i int, first bool) (key []byte, vi int, end, ok bool) {
	i = skipWS(b, i)
	if i >= len(b) {
		return nil, i, false, false
	}
	if b[i] == '}' {
		return nil, i + 1, true, true
	}
	if !first {
		if b[i] != ',' {
			return nil, i, false, false
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, i, false, false
	}
	ks := i + 1
	ke := ks
	for ke < len(b) && plain[b[ke]] && b[ke] < utf8.RuneSelf {
		ke++
	}
	if ke >= len(b) || b[ke] != '"' {
		return nil, i, false, false // escapes, control and non-ASCII bytes are not the fast path's
	}
	j := skipWS(b, ke+1)
	if j >= len(b) || b[j] != ':' {
		return nil, i, false, false
	}
	return b[ks:ke], skipWS(b, j+1), false, true
}

// folds reports whether key, not one of names, is one of them to
// encoding/json (ASCII case folding; member refuses other bytes).
func folds(key []byte, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// stringAt returns the bounds of the inside of the valid JSON string at
// b[i] (its closing quote is b[e]).
func stringAt(b []byte, i int) (s, e int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, i, false
	}
	for e = i + 1; e < len(b); e++ {
		for e < len(b) && plain[b[e]] {
			e++
		}
		if e >= len(b) {
			break
		}
		switch c := b[e]; {
		case c == '"':
			return i + 1, e, true
		case c < 0x20:
			return 0, e, false
		case c == '\\':
			e++
			if e >= len(b) {
				return 0, e, false
			}
			switch b[e] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if e+4 >= len(b) || !isHex(b[e+1]) || !isHex(b[e+2]) || !isHex(b[e+3]) || !isHex(b[e+4]) {
					return 0, e, false
				}
				e += 4
			default:
				return 0, e, false
			}
		}
	}
	return 0, e, false
}

// plain marks the bytes a JSON string holds as they are (not '"', '\\' or
// a control character).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// stringOrNull reads a JSON string (decoded as the slow path decodes it)
// or null ("") at b[i]; it returns the index after it.
func stringOrNull(b []byte, i int) (string, int, bool) {
	if hasPrefix(b[i:], "null") {
		return "", i + 4, true
	}
	s, e, ok := stringAt(b, i)
	if !ok {
		return "", e, false
	}
	v, ok := unquoteOK(b[s:e])
	return v, e + 1, ok
}

// unquoteOK decodes a string's inside as scanChunkSlow does.
func unquoteOK(raw []byte) (string, bool) {
	s, err := unquote(raw)
	return s, err == nil
}

// intAt reads a JSON integer that fits an int (as encoding/json takes it
// into an int field; not a fraction, an exponent or leading zeros).
func intAt(b []byte, i int) (int64, int, bool) {
	j := i
	neg := j < len(b) && b[j] == '-'
	if neg {
		j++
	}
	start := j
	var u uint64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		if j-start >= 18 { // 18 digits fit an int on every platform moltbot runs
			return 0, i, false
		}
		u = u*10 + uint64(b[j]-'0')
		j++
	}
	n := j - start
	if n == 0 || n > 1 && b[start] == '0' || intBits == 32 && u > 1<<31-1 {
		return 0, i, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, i, false
	}
	if neg {
		return -int64(u), j, true
	}
	return int64(u), j, true
}

const intBits = 32 << (^uint(0) >> 63)

// skipValue returns the index after the valid JSON value at b[i]; depth is
// the nesting b[i] is at.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		_, e, ok := stringAt(b, i)
		return e + 1, ok
	case c == '{':
		if depth >= maxDepth {
			return i, false
		}
		i++
		for first := true; ; first = false {
			_, vi, end, ok := member(b, i, first)
			if !ok {
				return i, false
			}
			if end {
				return vi, true
			}
			if i, ok = skipValue(b, vi, depth+1); !ok {
				return i, false
			}
		}
	case c == '[':
		if depth >= maxDepth {
			return i, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipWS(b, i+1)
		}
	case c == 't':
		return i + 4, hasPrefix(b[i:], "true")
	case c == 'f':
		return i + 5, hasPrefix(b[i:], "false")
	case c == 'n':
		return i + 4, hasPrefix(b[i:], "null")
	default:
		return skipNumber(b, i)
	}
}

// skipNumber returns the index after the JSON number at b[i].
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

func hasPrefix(b []byte, lit string) bool {
	return len(b) >= len(lit) && string(b[:len(lit)]) == lit
}
