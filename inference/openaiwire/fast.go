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
// The usual shape: one object (whitespace around it) whose members are
// the plain fields of a text chat (model, messages, stream,
// stream_options, max_tokens, max_completion_tokens, temperature, top_p,
// stop, seed, n) with the types the fields take (messages an array of
// objects whose content is a string or null, stop a string or null,
// numbers that fit), each at most once. Any other member of the request,
// known (tools, user, ...) or not, content given as parts, stop as a
// list, a key with an escape and the like go the slow way. Unknown
// members of a message or of stream_options are skipped, as
// encoding/json skips them.
func DecodeChatRequest(body []byte, r *ChatRequest) bool {
	b := body
	var out ChatRequest
	i, ok := js.Object(b, js.WS(b, 0), 1, requestKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		// null leaves every field of ChatRequest as it is (nil).
		null := js.HasPrefix(b, vi, "null")
		next, ok = vi+4, true
		switch string(key) {
		case "model":
			bit = 1 << 0
			if !null {
				out.Model, next, ok = js.String(b, vi, "")
			}
		case "messages":
			bit = 1 << 1
			if !null {
				out.Messages, next, ok = messages(b, vi)
			}
		case "stream":
			bit = 1 << 2
			if !null {
				out.Stream, next, ok = js.Bool(b, vi)
			}
		case "stream_options":
			bit = 1 << 3
			if !null {
				out.StreamOptions = &StreamOptions{}
				next, ok = streamOptions(b, vi, out.StreamOptions)
			}
		case "max_tokens":
			bit = 1 << 4
			if !null {
				out.MaxTokens, next, ok = intPtr(b, vi)
			}
		case "max_completion_tokens":
			bit = 1 << 5
			if !null {
				out.MaxCompletionTokens, next, ok = intPtr(b, vi)
			}
		case "temperature":
			bit = 1 << 6
			if !null {
				out.Temperature, next, ok = floatPtr(b, vi)
			}
		case "top_p":
			bit = 1 << 7
			if !null {
				out.TopP, next, ok = floatPtr(b, vi)
			}
		case "stop":
			bit = 1 << 8
			if !null {
				var s string
				s, next, ok = js.String(b, vi, "") // a list of stops goes the slow way
				out.Stop = Stop{s}
			}
		case "seed":
			bit = 1 << 9
			if !null {
				var v int64
				v, next, ok = js.Int(b, vi, 64)
				out.Seed = &v
			}
		case "n":
			bit = 1 << 10
			if !null {
				out.N, next, ok = intPtr(b, vi)
			}
		default:
			// Every other member goes the slow way: a field the fast path
			// does not read (tools, user, logprobs, ...), and a name that
			// is none of ChatRequest's, which the gateway refuses by name
			// (UnknownField) rather than skip.
			return 0, vi, false
		}
		return bit, next, ok
	})
	if !ok || js.WS(b, i) != len(b) {
		return false
	}
	*r = out
	return true
}

// The keys of each object read, for Object's case-folding check.
var (
	requestKeys = []string{"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
		"temperature", "top_p", "stop", "seed", "n", "tools", "tool_choice", "parallel_tool_calls", "response_format",
		"presence_penalty", "frequency_penalty", "user", "logprobs", "top_logprobs", "logit_bias", "store", "metadata",
		"service_tier", "modalities", "audio", "prediction", "reasoning_effort", "verbosity", "web_search_options",
		"functions", "function_call", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
	messageKeys       = []string{"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call", "audio"}
	streamOptionsKeys = []string{"include_usage", "include_obfuscation"}
)

// messages reads the array of messages at b[i] (an empty array is an
// empty slice, as encoding/json makes it).
func messages(b []byte, i int) ([]Message, int, bool) {
	out := make([]Message, 0, 4)
	i, ok := js.Array(b, i, func(i int) (int, bool) {
		var m Message
		next, ok := message(b, i, &m)
		out = append(out, m)
		return next, ok
	})
	if !ok {
		return nil, i, false
	}
	return out, i, true
}

// message reads one message object at b[i]: its role, and its content
// when it is a string or null.
func message(b []byte, i int, m *Message) (int, bool) {
	return js.Object(b, i, 2, messageKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		switch string(key) {
		case "role":
			if js.HasPrefix(b, vi, "null") {
				return 1 << 0, vi + 4, true
			}
			m.Role, next, ok = js.String(b, vi, "")
			return 1 << 0, next, ok
		case "content":
			if js.HasPrefix(b, vi, "null") {
				return 1 << 1, vi + 4, true // Content.UnmarshalJSON: none
			}
			var s string
			if s, next, ok = js.String(b, vi, ""); ok {
				m.Content = Content{{Type: "text", Text: &s}}
			}
			return 1 << 1, next, ok
		case "name", "tool_calls", "tool_call_id", "refusal", "function_call", "audio":
			return 0, vi, false // the slow way
		}
		return 0, vi, true
	})
}

// streamOptions reads the stream_options object at b[i] into o.
func streamOptions(b []byte, i int, o *StreamOptions) (int, bool) {
	return js.Object(b, i, 2, streamOptionsKeys, func(key []byte, vi int) (bit, next int, ok bool) {
		switch string(key) {
		case "include_usage":
		case "include_obfuscation":
			return 0, vi, false // the slow way
		default:
			return 0, vi, true
		}
		if js.HasPrefix(b, vi, "null") {
			return 1, vi + 4, true
		}
		o.IncludeUsage, next, ok = js.Bool(b, vi)
		return 1, next, ok
	})
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
