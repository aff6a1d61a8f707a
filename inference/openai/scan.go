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
// each delta an object, content and finish_reason strings or null,
// tool_calls null or empty; usage an object of integers, or null; error
// null), each such member at most once
// and no other member whose name encoding/json would take for one of them
// (it matches names case-insensitively). Anything else (an error chunk, a
// key with an escape, nesting deeper than js.MaxDepth, ...) goes to
// scanChunkSlow, whose result is then the answer: on what it takes,
// fastChunk gives exactly what scanChunkSlow gives
// (FuzzScanChunkMatchesSlow checks this). Strings are decoded by
// scanChunkSlow's own unquote. A chunk with pieces of tool calls is left to
// scanChunkSlow: there are few of them in a reply, and only text is hot.

// The keys of each object read, for Object's case-folding check.
var (
	chunkKeys  = []string{"model", "choices", "usage", "error"}
	choiceKeys = []string{"delta", "finish_reason"}
	deltaKeys  = []string{"content", "tool_calls"}
	usageKeys  = []string{"prompt_tokens", "completion_tokens", "total_tokens"}
)

// fastChunk reads a chunk; ok false means "ask scanChunkSlow".
func fastChunk(b []byte, wantModel bool) (out scanned, ok bool) {
	i, ok := js.Object(b, js.WS(b, 0), 1, chunkKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		switch string(key) {
		case "model":
			s, e, ok := js.RawString(b, vi)
			if ok && wantModel {
				out.model, ok = unquoteOK(b[s:e])
			}
			return 1 << 0, e + 1, ok
		case "choices":
			next, ok = choicesAt(b, vi, &out)
			return 1 << 1, next, ok
		case "usage":
			if js.HasPrefix(b, vi, "null") {
				return 1 << 2, vi + 4, true
			}
			out.usage = &moltbot.Usage{}
			next, ok = usageAt(b, vi, out.usage)
			return 1 << 2, next, ok
		case "error":
			// An error chunk is rare: the slow path reads its message.
			next, ok = js.Literal(b, vi, "null")
			return 1 << 3, next, ok
		}
		return 0, vi, true
	})
	if !ok || js.WS(b, i) != len(b) {
		return out, false
	}
	return out, true
}

// choicesAt reads the array at b[i]: the first choice's delta content and
// finish reason into out; the others must have the same shape.
func choicesAt(b []byte, i int, out *scanned) (int, bool) {
	var skip scanned
	into := out
	return js.Array(b, i, func(i int) (int, bool) {
		next, ok := choice(b, i, into)
		into = &skip
		return next, ok
	})
}

// choice reads one choice object at b[i].
func choice(b []byte, i int, out *scanned) (int, bool) {
	return js.Object(b, i, 2, choiceKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		switch string(key) {
		case "delta":
			next, ok = delta(b, vi, out)
			return 1 << 0, next, ok
		case "finish_reason":
			out.finish, next, ok = stringOrNull(b, vi)
			return 1 << 1, next, ok
		}
		return 0, vi, true
	})
}

// delta reads a choice's delta object at b[i]: its content, and a
// tool_calls that holds nothing (null or [], as some servers send with
// every chunk); a piece of a tool call is not the fast path's.
func delta(b []byte, i int, out *scanned) (int, bool) {
	return js.Object(b, i, 3, deltaKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		switch string(key) {
		case "content":
			out.content, next, ok = stringOrNull(b, vi)
			if ok && b[vi] == '"' {
				out.cs, out.ce = vi, next
			}
			return 1 << 0, next, ok
		case "tool_calls":
			if js.HasPrefix(b, vi, "null") {
				return 1 << 1, vi + 4, true
			}
			next, ok = js.Array(b, vi, func(i int) (int, bool) { return i, false })
			return 1 << 1, next, ok
		}
		return 0, vi, true
	})
}

// usageAt reads the usage object at b[i] into u.
func usageAt(b []byte, i int, u *moltbot.Usage) (int, bool) {
	return js.Object(b, i, 2, usageKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		var v int64
		switch string(key) {
		case "prompt_tokens":
			v, next, ok = js.Int(b, vi, js.IntBits)
			u.PromptTokens = int(v)
			return 1 << 0, next, ok
		case "completion_tokens":
			v, next, ok = js.Int(b, vi, js.IntBits)
			u.CompletionTokens = int(v)
			return 1 << 1, next, ok
		case "total_tokens":
			_, next, ok = js.Int(b, vi, js.IntBits)
			return 1 << 2, next, ok
		}
		return 0, vi, true
	})
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

// shape is the hot path of a stream's text chunks: a server writes every
// token's chunk with the same bytes around the text (the id, the model,
// the created time, "finish_reason":null, ...), so a chunk that is the
// last text chunk fastChunk read, but for another valid JSON string where
// the text was, reads as that chunk did with the new text: fastChunk is a
// left-to-right scan whose every decision depends on the bytes before it,
// and a string value ends at its closing quote whatever it holds, so the
// scan of the bytes around the text is the same, and the text is the
// only thing that differs. shape checks exactly that (the bytes before and
// after, and that what is between is one string that unquote decodes) in
// two comparisons and one pass over the text, instead of scanning the ~200
// bytes of a chunk. FuzzShapeMatchesSlow holds it to scanChunkSlow.
//
// A shape belongs to one stream (one call); it is not safe for concurrent
// use. Its buffer is kept with the pooled reader.
type shape struct {
	buf      []byte // the learned chunk's bytes before its text, then after it
	pre      int    // len(before)
	known    bool   // buf holds a learned chunk
	hasModel bool   // the learned chunk was read with its model
	model    string
	finish   string
}

// maxShape bounds the bytes a shape keeps (a chunk is some 250 bytes
// around its text): a server that sends huge chunks gets them scanned, and
// a call holds no second copy of one beside the reader's.
const maxShape = 4 << 10

// reset forgets what s learned, keeping its buffer.
func (s *shape) reset() {
	*s = shape{buf: s.buf[:0]}
}

// scan is scanChunk, reading a chunk of the learned shape without
// scanning it, and learning the shape of each text chunk it scans.
func (s *shape) scan(data []byte, wantModel bool) (scanned, error) {
	if out, ok := s.match(data, wantModel); ok {
		return out, nil
	}
	out, err := scanChunk(data, wantModel)
	if err == nil {
		s.learn(data, wantModel, &out)
	}
	return out, err
}

// match reads data as the learned chunk with another text; ok false
// means data is not of the learned shape.
func (s *shape) match(data []byte, wantModel bool) (out scanned, ok bool) {
	if !s.known || (wantModel && !s.hasModel) {
		return out, false
	}
	suf := len(s.buf) - s.pre
	end := len(data) - suf // where the text's closing quote ends
	if end < s.pre+2 || string(data[:s.pre]) != string(s.buf[:s.pre]) || string(data[end:]) != string(s.buf[s.pre:]) {
		return out, false
	}
	st, e, ok := js.RawString(data, s.pre)
	if !ok || e+1 != end {
		return out, false
	}
	if out.content, ok = unquoteOK(data[st:e]); !ok {
		return out, false
	}
	out.finish = s.finish
	if wantModel {
		out.model = s.model
	}
	out.cs, out.ce = s.pre, end
	return out, true
}

// learn keeps the shape of a chunk scanChunk read as out: one whose first
// choice's text fastChunk read (cs, ce), and nothing else of note (no
// usage, error or tool calls, which a shape does not carry).
func (s *shape) learn(data []byte, wantModel bool, out *scanned) {
	if out.ce == 0 || out.usage != nil || out.errMsg != "" || out.calls != nil || len(data)-(out.ce-out.cs) > maxShape {
		return
	}
	s.buf = append(append(s.buf[:0], data[:out.cs]...), data[out.ce:]...)
	s.pre = out.cs
	s.known, s.hasModel, s.model, s.finish = true, wantModel, out.model, out.finish
}
