package openaiwire

import (
	"bytes"
	"unicode/utf8"

	js "github.com/moltbot/moltbot/internal/jsonscan"
)

// UnknownField returns the name of the first member of the JSON object
// body that is no field of ChatRequest (compared as encoding/json
// compares them, ignoring case), and ok false when every member is one. A server
// that refuses what it does not know calls it after encoding/json decoded
// body without error: body is then valid JSON, which is all the scan here
// relies on (it never panics on other input, and answers false for it).
//
// It is not folded into DecodeChatRequest: that one takes the usual
// request only and hands every other body, this one included, to
// encoding/json, whose errors come first.
func UnknownField(body []byte) (name string, ok bool) {
	i := js.WS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i++
	for {
		i = js.WS(body, i)
		if i < len(body) && body[i] == ',' {
			i = js.WS(body, i+1)
		}
		if i >= len(body) || body[i] == '}' {
			return "", false
		}
		s, e, valid := js.RawString(body, i)
		if !valid {
			return "", false
		}
		key := body[s:e]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			if key, valid = js.Unquote(key); !valid {
				return "", false
			}
		}
		if !knownField(key) {
			return string(key), true
		}
		i = js.WS(body, e+1)
		if i >= len(body) || body[i] != ':' {
			return "", false
		}
		if i = skipValue(body, js.WS(body, i+1)); i < 0 {
			return "", false
		}
	}
}

// knownField reports whether encoding/json puts a member named key into a
// field of ChatRequest: it matches names as bytes.EqualFold does.
func knownField(key []byte) bool {
	for _, n := range requestKeys {
		if bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}

// skipValue returns the index after the JSON value at b[i], or -1. It
// trusts b to be valid JSON and only keeps count of nesting and strings,
// so that no depth limit applies (encoding/json's is 10000).
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			_, e, ok := js.RawString(b, i)
			if !ok {
				return -1
			}
			if i = e + 1; depth == 0 {
				return i
			}
		case c == '{' || c == '[':
			depth++
			i++
		case c == '}' || c == ']':
			if depth == 0 {
				return -1
			}
			if depth--; depth == 0 {
				return i + 1
			}
			i++
		case depth == 0:
			// A number or a literal: it ends where a delimiter begins.
			for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
				i++
			}
			return i
		default:
			i++
		}
	}
	return -1
}
