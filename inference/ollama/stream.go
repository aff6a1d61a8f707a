package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moltbot/moltbot/internal/jsonscan"
	"github.com/ollama/ollama/api"
)

// The /api/chat stream is NDJSON: one api.ChatResponse per line, or an
// {"error": "..."} line when the server fails mid-reply. ollama/api reads it
// with a bufio.Scanner over a fresh 8 MiB buffer per call (api/client.go,
// maxBufferSize); this file reads it with a pooled 4 KiB bufio.Reader whose
// lines may grow up to a bound, and decodes the lines moltbot sees in one
// pass without reflection, handing anything unusual to encoding/json.

// DefaultMaxLineBytes bounds one line of the stream when Config.MaxLineBytes
// is 0. A streamed line holds one token (about 200 bytes); only a server that
// ignored "stream" sends the whole reply on one line.
const DefaultMaxLineBytes = 1 << 20

// readerSize is the pooled read buffer: a line that arrives whole in it is
// decoded in place.
const readerSize = 4 << 10

// maxPooledLine is the largest long-line buffer kept in the pool; a call that
// needed more gives it back to the garbage collector.
const maxPooledLine = 64 << 10

// errLineTooLong is returned by lineReader.next; the caller names the bound.
var errLineTooLong = errors.New("line too long")

// lineReader reads newline-terminated lines of at most max bytes. A line
// that arrived whole in the bufio.Reader's buffer is returned in place; one
// that spans reads is assembled in long. One per call, from a pool; not
// safe for concurrent use.
type lineReader struct {
	br    *bufio.Reader
	long  []byte
	max   int
	shape lineShape // the call's token lines (shape.go)
}

var lineReaders = sync.Pool{New: func() any {
	return &lineReader{br: bufio.NewReaderSize(nil, readerSize)}
}}

// getLineReader returns a pooled reader over r with lines of at most max bytes.
func getLineReader(r io.Reader, max int) *lineReader {
	lr := lineReaders.Get().(*lineReader)
	lr.br.Reset(r)
	lr.max = max
	return lr
}

// putLineReader returns lr to the pool, dropping its reference to the body.
func putLineReader(lr *lineReader) {
	lr.br.Reset(nil)
	if cap(lr.long) > maxPooledLine {
		lr.long = nil
	}
	lr.long = lr.long[:0]
	lr.shape.reset()
	lineReaders.Put(lr)
}

// next returns the next line without its "\n" (a last line without one is
// returned too), io.EOF at the end, errLineTooLong as soon as more than max
// bytes of a line have arrived (not when the line ends: a server may never
// end it), or the body's read error. The slice is valid until the next call.
func (lr *lineReader) next() ([]byte, error) {
	lr.long = lr.long[:0]
	for {
		if _, err := lr.br.Peek(1); err != nil { // waits for data
			if err == io.EOF && len(lr.long) > 0 {
				return lr.long, nil
			}
			return nil, err
		}
		buf, _ := lr.br.Peek(lr.br.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if len(lr.long)+i > lr.max {
				return nil, errLineTooLong
			}
			lr.br.Discard(i + 1)
			if len(lr.long) == 0 {
				return buf[:i], nil // in place: bufio does not move it before the next read
			}
			lr.long = append(lr.long, buf[:i]...)
			return lr.long, nil
		}
		// No end of line yet: keep what came and empty the buffer, so that
		// the next Peek waits for new data.
		if len(lr.long)+len(buf) > lr.max {
			return nil, errLineTooLong
		}
		lr.long = append(lr.long, buf...)
		lr.br.Discard(len(buf))
	}
}

// blank reports whether line holds only JSON whitespace (skipped: ollama/api
// would fail on it, but it carries nothing).
func blank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// decodeLine decodes one line of the stream into resp, exactly as ollama/api
// does: first the line as {"error": string} (a non-empty error is returned
// as errMsg), then as api.ChatResponse with encoding/json. err is a line
// that is not valid JSON of those shapes.
//
// Lines of the usual shape (the keys Ollama writes, each once, with values
// of their types, strings without escapes or with the standard ones) are
// decoded by a one-pass scanner that allocates only the strings that
// changed since the previous line (resp keeps that line's); any other line
// is handed to encoding/json, so the result is encoding/json's in every
// case (FuzzDecodeLineMatchesEncodingJSON checks this).
func decodeLine(line []byte, resp *api.ChatResponse) (errMsg string, err error) {
	if msg, ok := scanLine(line, resp, nil); ok {
		return msg, nil
	}
	return decodeSlow(line, resp)
}

// decodeSlow is ollama/api's own decoding of a line.
func decodeSlow(line []byte, resp *api.ChatResponse) (string, error) {
	var e struct {
		Error     string `json:"error,omitempty"`
		SigninURL string `json:"signin_url,omitempty"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return "", err
	}
	if e.Error != "" {
		return e.Error, nil
	}
	*resp = api.ChatResponse{}
	return "", json.Unmarshal(line, resp)
}

// Top-level keys of the fast path, as bits of a "seen" mask.
const (
	kModel = 1 << iota
	kRemoteModel
	kRemoteHost
	kCreatedAt
	kMessage
	kDone
	kDoneReason
	kTotalDuration
	kLoadDuration
	kPromptEvalCount
	kPromptEvalDuration
	kEvalCount
	kEvalDuration
	kError
)

// Keys of message.
const (
	mRole = 1 << iota
	mContent
	mThinking
	mToolName
	mToolCallID
)

// scanLine is the fast path of decodeLine; ok false means "ask encoding/json".
// On success resp holds exactly what json.Unmarshal into a zero
// api.ChatResponse would give, and h (when not nil) where created_at's and
// the message content's values were (lineShape learns from them).
func scanLine(b []byte, resp *api.ChatResponse, h *holes) (errMsg string, ok bool) {
	prev := *resp
	var out api.ChatResponse
	i := jsonscan.WS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i = jsonscan.WS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		seen := 0
		for {
			ks, ke, j, ok := jsonscan.Key(b, i)
			if !ok {
				return "", false
			}
			i = j
			var bit int
			switch string(b[ks:ke]) {
			case "model":
				bit = kModel
				out.Model, i, ok = jsonscan.String(b, i, prev.Model)
			case "remote_model":
				bit = kRemoteModel
				out.RemoteModel, i, ok = jsonscan.String(b, i, prev.RemoteModel)
			case "remote_host":
				bit = kRemoteHost
				out.RemoteHost, i, ok = jsonscan.String(b, i, prev.RemoteHost)
			case "created_at":
				bit = kCreatedAt
				var s, e int
				s, e, ok = rawString(b, i)
				if ok {
					i = e
					ok = out.CreatedAt.UnmarshalJSON(b[s:e]) == nil
					if h != nil {
						h.cs, h.ce = s, e
					}
				}
			case "message":
				bit = kMessage
				i, ok = scanMessage(b, i, &out.Message, &prev.Message, h)
			case "done":
				bit = kDone
				out.Done, i, ok = jsonscan.Bool(b, i)
			case "done_reason":
				bit = kDoneReason
				out.DoneReason, i, ok = jsonscan.String(b, i, prev.DoneReason)
			case "total_duration":
				bit = kTotalDuration
				var v int64
				v, i, ok = jsonscan.Int(b, i, 64)
				out.TotalDuration = time.Duration(v)
			case "load_duration":
				bit = kLoadDuration
				var v int64
				v, i, ok = jsonscan.Int(b, i, 64)
				out.LoadDuration = time.Duration(v)
			case "prompt_eval_count":
				bit = kPromptEvalCount
				var v int64
				v, i, ok = jsonscan.Int(b, i, jsonscan.IntBits)
				out.PromptEvalCount = int(v)
			case "prompt_eval_duration":
				bit = kPromptEvalDuration
				var v int64
				v, i, ok = jsonscan.Int(b, i, 64)
				out.PromptEvalDuration = time.Duration(v)
			case "eval_count":
				bit = kEvalCount
				var v int64
				v, i, ok = jsonscan.Int(b, i, jsonscan.IntBits)
				out.EvalCount = int(v)
			case "eval_duration":
				bit = kEvalDuration
				var v int64
				v, i, ok = jsonscan.Int(b, i, 64)
				out.EvalDuration = time.Duration(v)
			case "error":
				bit = kError
				errMsg, i, ok = jsonscan.String(b, i, "")
			default:
				return "", false
			}
			if !ok || seen&bit != 0 {
				return "", false
			}
			seen |= bit
			i = jsonscan.WS(b, i)
			if i >= len(b) {
				return "", false
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return "", false
			}
			i = jsonscan.WS(b, i+1)
		}
	}
	if jsonscan.WS(b, i) != len(b) {
		return "", false
	}
	if errMsg == "" {
		*resp = out
	}
	return errMsg, true
}

// scanMessage reads the message object at b[i:] into m, as api.Message's
// UnmarshalJSON does (a fresh message, its role lowercased).
func scanMessage(b []byte, i int, m, prev *api.Message, h *holes) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = jsonscan.WS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	seen := 0
	for {
		ks, ke, j, ok := jsonscan.Key(b, i)
		if !ok {
			return i, false
		}
		i = j
		var bit int
		switch string(b[ks:ke]) {
		case "role":
			bit = mRole
			m.Role, i, ok = jsonscan.String(b, i, prev.Role)
			if ok {
				m.Role = strings.ToLower(m.Role) // no copy when already lower case
			}
		case "content":
			bit = mContent
			s := i
			m.Content, i, ok = jsonscan.String(b, i, "")
			if ok && h != nil {
				h.ms, h.me = s, i
			}
		case "thinking":
			bit = mThinking
			m.Thinking, i, ok = jsonscan.String(b, i, "")
		case "tool_name":
			bit = mToolName
			m.ToolName, i, ok = jsonscan.String(b, i, prev.ToolName)
		case "tool_call_id":
			bit = mToolCallID
			m.ToolCallID, i, ok = jsonscan.String(b, i, prev.ToolCallID)
		default:
			return i, false
		}
		if !ok || seen&bit != 0 {
			return i, false
		}
		seen |= bit
		i = jsonscan.WS(b, i)
		if i >= len(b) {
			return i, false
		}
		if b[i] == '}' {
			return i + 1, true
		}
		if b[i] != ',' {
			return i, false
		}
		i = jsonscan.WS(b, i+1)
	}
}

// rawString returns the bounds of the JSON string token at b[i:], quotes
// included, when it has no escapes (for created_at: time.Time.UnmarshalJSON
// reads the raw token, as encoding/json hands it over).
func rawString(b []byte, i int) (int, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for e := i + 1; e < len(b); e++ {
		switch c := b[e]; {
		case c == '"':
			return i, e + 1, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}
