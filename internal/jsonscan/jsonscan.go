// Package jsonscan is the one-pass JSON scanning behind moltbot's fast
// decoders (Ollama's stream lines, OpenAI's stream chunks, OpenAI's chat
// requests): each reads the shape it expects with these functions and,
// when any of them reports false, hands the whole input to the decoder it
// stands in for (encoding/json, jsonparser), whose result is then the
// answer. Each fast decoder has a fuzz test that it gives exactly what the
// slow one gives on every input it takes.
//
// Every function takes the input and an index into it and returns the
// index after what it read; ok false means "not the fast path's". What
// they accept is valid JSON only: strings with their escapes checked,
// numbers of JSON's grammar, literals spelled out.
package jsonscan

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting Skip walks; deeper values are not the fast
// path's.
const MaxDepth = 32

// WS skips whitespace from b[i].
func WS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// HasPrefix reports whether b[i:] starts with lit.
func HasPrefix(b []byte, i int, lit string) bool {
	return i <= len(b) && len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// Literal reads lit (true, false, null) at b[i].
func Literal(b []byte, i int, lit string) (int, bool) {
	if HasPrefix(b, i, lit) {
		return i + len(lit), true
	}
	return i, false
}

// Key reads `"key"`, whitespace and the colon at b[i] and returns the key's
// bounds and the index of its value (whitespace skipped). Keys with
// escapes or non-ASCII bytes are not the fast path's (encoding/json
// unescapes and case-folds keys).
func Key(b []byte, i int) (ks, ke, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, i, false
	}
	ks = i + 1
	ke = ks
	for ke < len(b) && plain[b[ke]] && b[ke] < utf8.RuneSelf {
		ke++
	}
	if ke >= len(b) || b[ke] != '"' {
		return 0, 0, i, false
	}
	j := WS(b, ke+1)
	if j >= len(b) || b[j] != ':' {
		return 0, 0, i, false
	}
	return ks, ke, WS(b, j+1), true
}

// Member reads the next member of an object whose '{' (first) or previous
// value ends just before b[i]: its key (as Key) and the index of its value,
// or end and the index after the closing '}'.
func Member(b []byte, i int, first bool) (key []byte, vi int, end, ok bool) {
	i = WS(b, i)
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
		i = WS(b, i+1)
	}
	ks, ke, vi, ok := Key(b, i)
	if !ok {
		return nil, i, false, false
	}
	return b[ks:ke], vi, false, true
}

// Object reads the object at b[i], giving each member in turn to member
// with its key and the index of its value. For a key it knows, member reads
// the value and returns a bit of the key's own (1 << n), the index after
// the value and ok. For a key it does not know it returns bit 0 (and ok):
// Object skips the value as encoding/json would (at depth), unless the key
// is one of names but for case, which encoding/json would take for that
// name: then the object is refused, as it is when a known key comes twice.
// Object returns the index after the '}'.
func Object(b []byte, i, depth int, names []string, member func(key []byte, vi int) (bit, next int, ok bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	seen := 0
	i++
	for first := true; ; first = false {
		key, vi, end, ok := Member(b, i, first)
		if !ok {
			return i, false
		}
		if end {
			return vi, true
		}
		var bit int
		bit, i, ok = member(key, vi)
		if ok && bit == 0 {
			if Folds(key, names...) {
				return i, false
			}
			i, ok = Skip(b, vi, depth)
		}
		if !ok || seen&bit != 0 {
			return i, false
		}
		seen |= bit
	}
}

// Array reads the array at b[i], giving the index of each element in turn
// to elem, which reads it and returns the index after it. Array returns the
// index after the ']'.
func Array(b []byte, i int, elem func(i int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return i, false
	}
	i = WS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = elem(i); !ok {
			return i, false
		}
		i = WS(b, i)
		if i >= len(b) {
			return i, false
		}
		if b[i] == ']' {
			return i + 1, true
		}
		if b[i] != ',' {
			return i, false
		}
		i = WS(b, i+1)
	}
}

// Folds reports whether key is one of names to encoding/json, which
// matches names case-insensitively (ASCII folding suffices: Key refuses
// other bytes). A decoder that meets a key it does not know and that folds
// to one it does hands the input over.
func Folds(key []byte, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// plain marks the bytes a JSON string holds as they are (not '"', '\\' or
// a control character).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// RawString returns the bounds of the inside of the valid JSON string at
// b[i] (its escapes checked, not decoded); its closing quote is b[e].
func RawString(b []byte, i int) (s, e int, ok bool) {
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// String reads the JSON string at b[i] and returns it, reusing prev when
// the bytes are the same (no allocation for a repeated value). It decodes
// as encoding/json does: the standard escapes, surrogate pairs, U+FFFD for
// a lone surrogate or an invalid UTF-8 byte; control characters and
// invalid escapes are not valid JSON.
func String(b []byte, i int, prev string) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	s := i + 1
	e := s
	simple := true
	for e < len(b) {
		for e < len(b) && plain[b[e]] && b[e] < utf8.RuneSelf {
			e++
		}
		if e >= len(b) {
			break
		}
		c := b[e]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", i, false
		}
		if c == '\\' {
			simple = false
			e += 2 // the escaped byte cannot be the closing quote
			continue
		}
		simple = false // c >= utf8.RuneSelf
		e++
	}
	if e >= len(b) {
		return "", i, false
	}
	raw := b[s:e]
	if simple || (bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw)) {
		if string(raw) == prev {
			return prev, e + 1, true
		}
		return string(raw), e + 1, true
	}
	out, ok := Unquote(raw)
	if !ok {
		return "", i, false
	}
	if string(out) == prev {
		return prev, e + 1, true
	}
	return string(out), e + 1, true
}

// Unquote decodes the inside of a JSON string as encoding/json's
// unquoteBytes does, and checks the escapes as its scanner does.
func Unquote(s []byte) ([]byte, bool) {
	b := make([]byte, 0, len(s)+utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			if r+1 >= len(s) {
				return nil, false
			}
			switch s[r+1] {
			case '"', '\\', '/':
				b = append(b, s[r+1])
				r += 2
			case 'b':
				b = append(b, '\b')
				r += 2
			case 'f':
				b = append(b, '\f')
				r += 2
			case 'n':
				b = append(b, '\n')
				r += 2
			case 'r':
				b = append(b, '\r')
				r += 2
			case 't':
				b = append(b, '\t')
				r += 2
			case 'u':
				rr := getu4(s[r:])
				if rr < 0 {
					return nil, false
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != utf8.RuneError {
						r += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
			default:
				return nil, false
			}
		case c == '"' || c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b, true
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// Bool reads true or false (the caller checks what follows).
func Bool(b []byte, i int) (bool, int, bool) {
	if HasPrefix(b, i, "true") {
		return true, i + 4, true
	}
	if HasPrefix(b, i, "false") {
		return false, i + 5, true
	}
	return false, i, false
}

// IntBits is the size of int: encoding/json refuses a number that
// overflows the field it decodes into.
const IntBits = 32 << (^uint(0) >> 63)

// Int reads a JSON integer that fits a signed integer of the given bits.
// Leading zeros or a value out of range are not the fast path's; nor is a
// fraction or an exponent (encoding/json refuses them for an integer
// field).
func Int(b []byte, i int, bits uint) (int64, int, bool) {
	j := i
	neg := false
	if j < len(b) && b[j] == '-' {
		neg = true
		j++
	}
	start := j
	var u uint64
	limit := uint64(1) << (bits - 1) // |min|; max is limit-1
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		if j-start >= 19 { // 19 digits always fit a uint64
			return 0, i, false
		}
		u = u*10 + uint64(b[j]-'0')
		j++
	}
	n := j - start
	if n == 0 || (n > 1 && b[start] == '0') {
		return 0, i, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, i, false
	}
	if neg {
		if u > limit {
			return 0, i, false
		}
		return -int64(u), j, true
	}
	if u >= limit {
		return 0, i, false
	}
	return int64(u), j, true
}

// Number returns the index after the JSON number at b[i].
func Number(b []byte, i int) (int, bool) {
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

// Skip returns the index after the valid JSON value at b[i]; depth is the
// nesting b[i] is at (deeper than MaxDepth is not the fast path's).
func Skip(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		_, e, ok := RawString(b, i)
		return e + 1, ok
	case c == '{':
		if depth >= MaxDepth {
			return i, false
		}
		i++
		for first := true; ; first = false {
			_, vi, end, ok := Member(b, i, first)
			if !ok {
				return i, false
			}
			if end {
				return vi, true
			}
			if i, ok = Skip(b, vi, depth+1); !ok {
				return i, false
			}
		}
	case c == '[':
		if depth >= MaxDepth {
			return i, false
		}
		i = WS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = Skip(b, i, depth+1); !ok {
				return i, false
			}
			i = WS(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = WS(b, i+1)
		}
	case c == 't':
		return Literal(b, i, "true")
	case c == 'f':
		return Literal(b, i, "false")
	case c == 'n':
		return Literal(b, i, "null")
	default:
		return Number(b, i)
	}
}
