package ollama

import (
	"github.com/moltbot/moltbot/internal/jsonscan"
	"github.com/ollama/ollama/api"
)

// holes are where a line's values that change from token to token are:
// created_at's token and the message content's string, quotes included
// (ce, me 0: not in the line).
type holes struct{ cs, ce, ms, me int }

// lineShape is the hot path of a stream's token lines, as openai's shape
// is of its chunks: Ollama writes every token's line with the same bytes
// but for created_at and the text, so the call keeps the last line
// scanLine read, cut at those two values. A line with the same bytes
// around them, a created_at token that scanLine would take there
// (rawString, then time.Time's UnmarshalJSON) and a content string that
// jsonscan.String decodes, decodes as that line did with its own time and
// text: scanLine is a left-to-right scan whose decisions depend only on
// the bytes before them, and each of the two values ends at its closing
// quote whatever it holds. A line of another shape is decoded as before
// and, when scanLine takes it (no error, both values there), teaches its
// shape. FuzzLineShapeMatchesEncodingJSON holds it to encoding/json.
//
// A lineShape belongs to one call; it lives with the pooled lineReader and
// is reset between calls.
type lineShape struct {
	buf   []byte // the learned line without its two values
	h     holes  // where they were in it
	resp  api.ChatResponse
	known bool
}

// maxShape bounds the bytes a lineShape keeps (a token line is some 150
// bytes around its values): a server that sends huge lines gets them
// scanned, and a call holds no second copy of one beside the reader's.
const maxShape = 4 << 10

func (s *lineShape) reset() {
	*s = lineShape{buf: s.buf[:0]}
}

// decode is decodeLine, reading a line of the learned shape without
// scanning it and learning the shape of each token line it scans.
func (s *lineShape) decode(line []byte, resp *api.ChatResponse) (errMsg string, err error) {
	if s.match(line, resp) {
		return "", nil
	}
	var h holes
	if msg, ok := scanLine(line, resp, &h); ok {
		if msg == "" {
			s.learn(line, resp, h)
		}
		return msg, nil
	}
	return decodeSlow(line, resp)
}

// match decodes line into resp if it is the learned line with another
// created_at and text; it leaves resp alone otherwise.
func (s *lineShape) match(line []byte, resp *api.ChatResponse) bool {
	if !s.known {
		return false
	}
	h := s.h
	// The learned line is buf[:h.cs] created buf[h.cs:h.cs+(h.ms-h.ce)]
	// content buf[...:]: created_at first (Ollama's order).
	pre, mid := h.cs, h.ms-h.ce
	if len(line) < pre || string(line[:pre]) != string(s.buf[:pre]) {
		return false
	}
	cs, ce, ok := rawString(line, pre)
	if !ok {
		return false
	}
	i := ce
	if len(line)-i < mid || string(line[i:i+mid]) != string(s.buf[pre:pre+mid]) {
		return false
	}
	i += mid
	content, e, ok := jsonscan.String(line, i, "")
	if !ok || string(line[e:]) != string(s.buf[pre+mid:]) {
		return false
	}
	out := s.resp
	if out.CreatedAt.UnmarshalJSON(line[cs:ce]) != nil {
		return false
	}
	out.Message.Content = content
	*resp = out
	return true
}

// learn keeps the shape of line, which scanLine read into resp with its
// values at h: a line with both values, created_at first.
func (s *lineShape) learn(line []byte, resp *api.ChatResponse, h holes) {
	if h.ce == 0 || h.me == 0 || h.ce > h.ms || len(line)-(h.ce-h.cs)-(h.me-h.ms) > maxShape {
		return
	}
	s.buf = append(append(append(s.buf[:0], line[:h.cs]...), line[h.ce:h.ms]...), line[h.me:]...)
	s.h, s.resp, s.known = h, *resp, true
}
