package openai

import (
	"github.com/moltbot/moltbot"
	js "github.com/moltbot/moltbot/internal/jsonscan"
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
// key with an escape, nesting deeper than js.MaxDepth, ...) goes to
// scanChunkSlow, whose result is then the answer: on what it takes,
// fastChunk gives exactly what scanChunkSlow gives
// (FuzzScanChunkMatchesSlow checks this). Strings are decoded by
// scanChunkSlow's own unquote.

// fastChunk reads a chunk; ok false means "ask scanChunkSlow".
func fastChunk(b []byte, wantModel bool) (out scanned, ok bool) {
	i := js.WS(b, 0)
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
		key, vi, end, ok := js.Member(b, i, first)
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
			if s, e, ok = js.RawString(b, vi); ok && wantModel {
				out.model, ok = unquoteOK(b[s:e])
			}
			i = e + 1
		case "choices":
			bit = kChoices
			i, ok = choicesAt(b, vi, &out)
		case "usage":
			bit = kUsage
			if js.HasPrefix(b, vi, "null") {
				i = vi + 4
				break
			}
			out.usage = &moltbot.Usage{}
			i, ok = usageAt(b, vi, out.usage)
		case "error":
			bit = kError
			// An error chunk is rare: the slow path reads its message.
			i, ok = js.Literal(b, vi, "null")
		default:
			if js.Folds(key, "model", "choices", "usage", "error") {
				return out, false
			}
			i, ok = js.Skip(b, vi, 1)
		}
		if !ok || seen&bit != 0 {
			return out, false
		}
		seen |= bit
	}
	if js.WS(b, i) != len(b) {
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
	i = js.WS(b, i+1)
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
		i = js.WS(b, i)
		if i >= len(b) {
			return i, false
		}
		if b[i] == ']' {
			return i + 1, true
		}
		if b[i] != ',' {
			return i, false
		}
		i = js.WS(b, i+1)
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
		key, vi, end, ok := js.Member(b, i, first)
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
			if js.Folds(key, "delta", "finish_reason") {
				return i, false
			}
			i, ok = js.Skip(b, vi, 2)
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
		key, vi, end, ok := js.Member(b, i, first)
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
			if js.Folds(key, "content") {
				return i, false
			}
			i, ok = js.Skip(b, vi, 3)
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
		key, vi, end, ok := js.Member(b, i, first)
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
			v, i, ok = js.Int(b, vi, js.IntBits)
			u.PromptTokens = int(v)
		case "completion_tokens":
			bit = 2
			v, i, ok = js.Int(b, vi, js.IntBits)
			u.CompletionTokens = int(v)
		case "total_tokens":
			bit = 4
			_, i, ok = js.Int(b, vi, js.IntBits)
		default:
			if js.Folds(key, "prompt_tokens", "completion_tokens", "total_tokens") {
				return i, false
			}
			i, ok = js.Skip(b, vi, 2)
		}
		if !ok || seen&bit != 0 {
			return i, false
		}
		seen |= bit
	}
}

// stringOrNull reads a JSON string (decoded as scanChunkSlow decodes it)
// or null ("") at b[i]; it returns the index after it.
func stringOrNull(b []byte, i int) (string, int, bool) {
	if js.HasPrefix(b, i, "null") {
		return "", i + 4, true
	}
	s, e, ok := js.RawString(b, i)
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
