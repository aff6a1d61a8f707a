package openaiwire

import (
	"strconv"

	js "github.com/moltbot/moltbot/internal/jsonscan"
)

// DecodeChatRequest decodes body into r in one pass when it has the usual
// shape, and reports whether it did; when it reports false r is untouched
// and the caller decodes body with encoding/json, whose result (and error)
// is then the answer. On every body it takes, r is exactly what
// json.Unmarshal into a zero ChatRequest gives (FuzzDecodeChatRequest).
//
// The usual shape: one object (whitespace around it) whose members of
// ChatRequest have the types the fields take (messages an array of objects
// whose content is a string or null, stop a string or null, numbers that
// fit), each member at most once, and no other member encoding/json would
// take for one of them (it matches names case-insensitively). Other
// members are skipped as encoding/json skips them. Content given as parts,
// stop as a list, a key with an escape and the like go the slow way.
func DecodeChatRequest(body []byte, r *ChatRequest) bool {
	b := body
	i := js.WS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	var out ChatRequest
	seen := 0
	i++
	for first := true; ; first = false {
		key, vi, end, ok := js.Member(b, i, first)
		if !ok {
			return false
		}
		if end {
			i = vi
			break
		}
		bit := 0
		null := js.HasPrefix(b, vi, "null")
		if null {
			i = vi + 4 // null leaves every field of ChatRequest as it is (nil)
		}
		switch string(key) {
		case "model":
			bit = 1 << 0
			if !null {
				out.Model, i, ok = js.String(b, vi, "")
			}
		case "messages":
			bit = 1 << 1
			if !null {
				out.Messages, i, ok = messages(b, vi)
			}
		case "stream":
			bit = 1 << 2
			if !null {
				out.Stream, i, ok = js.Bool(b, vi)
			}
		case "stream_options":
			bit = 1 << 3
			if !null {
				out.StreamOptions = &StreamOptions{}
				i, ok = streamOptions(b, vi, out.StreamOptions)
			}
		case "max_tokens":
			bit = 1 << 4
			if !null {
				out.MaxTokens, i, ok = intPtr(b, vi)
			}
		case "max_completion_tokens":
			bit = 1 << 5
			if !null {
				out.MaxCompletionTokens, i, ok = intPtr(b, vi)
			}
		case "temperature":
			bit = 1 << 6
			if !null {
				out.Temperature, i, ok = floatPtr(b, vi)
			}
		case "top_p":
			bit = 1 << 7
			if !null {
				out.TopP, i, ok = floatPtr(b, vi)
			}
		case "stop":
			bit = 1 << 8
			if !null {
				var s string
				s, i, ok = js.String(b, vi, "") // a list of stops goes the slow way
				out.Stop = Stop{s}
			}
		case "seed":
			bit = 1 << 9
			if !null {
				var v int64
				v, i, ok = js.Int(b, vi, 64)
				out.Seed = &v
			}
		case "n":
			bit = 1 << 10
			if !null {
				out.N, i, ok = intPtr(b, vi)
			}
		default:
			if js.Folds(key, "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
				"temperature", "top_p", "stop", "seed", "n") {
				return false
			}
			i, ok = js.Skip(b, vi, 1)
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	if js.WS(b, i) != len(b) {
		return false
	}
	*r = out
	return true
}

// messages reads the array of messages at b[i] (an empty array is an
// empty slice, as encoding/json makes it).
func messages(b []byte, i int) ([]Message, int, bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, i, false
	}
	out := make([]Message, 0, 4)
	i = js.WS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return out, i + 1, true
	}
	for {
		var m Message
		var ok bool
		if i, ok = message(b, i, &m); !ok {
			return nil, i, false
		}
		out = append(out, m)
		i = js.WS(b, i)
		if i >= len(b) {
			return nil, i, false
		}
		if b[i] == ']' {
			return out, i + 1, true
		}
		if b[i] != ',' {
			return nil, i, false
		}
		i = js.WS(b, i+1)
	}
}

// message reads one message object at b[i]: its role, and its content
// when it is a string or null.
func message(b []byte, i int, m *Message) (int, bool) {
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
		switch string(key) {
		case "role":
			bit = 1
			if js.HasPrefix(b, vi, "null") {
				i = vi + 4
				break
			}
			m.Role, i, ok = js.String(b, vi, "")
		case "content":
			bit = 2
			if js.HasPrefix(b, vi, "null") {
				i = vi + 4 // Content.UnmarshalJSON: none
				break
			}
			var s string
			if s, i, ok = js.String(b, vi, ""); ok {
				m.Content = Content{{Type: "text", Text: &s}}
			}
		default:
			if js.Folds(key, "role", "content") {
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

// streamOptions reads the stream_options object at b[i] into o.
func streamOptions(b []byte, i int, o *StreamOptions) (int, bool) {
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
		case "include_usage":
			if seen {
				return i, false
			}
			seen = true
			if js.HasPrefix(b, vi, "null") {
				i = vi + 4
				break
			}
			o.IncludeUsage, i, ok = js.Bool(b, vi)
		default:
			if js.Folds(key, "include_usage") {
				return i, false
			}
			i, ok = js.Skip(b, vi, 2)
		}
		if !ok {
			return i, false
		}
	}
}

func intPtr(b []byte, i int) (*int, int, bool) {
	v, j, ok := js.Int(b, i, js.IntBits)
	if !ok {
		return nil, i, false
	}
	n := int(v)
	return &n, j, true
}

// floatPtr reads a number as encoding/json does into a float64.
func floatPtr(b []byte, i int) (*float64, int, bool) {
	j, ok := js.Number(b, i)
	if !ok {
		return nil, i, false
	}
	v, err := strconv.ParseFloat(string(b[i:j]), 64)
	if err != nil {
		return nil, i, false
	}
	return &v, j, true
}
